//! Filtering: keeps the JSON records that satisfy every rule of the user config (or any, with
//! `match = "any"`), and drops the others.
//!
//! User config: `rules`, a list of `{field, op, value}` with `op` one of `eq`, `ne`, `gt`, `ge`,
//! `lt`, `le` (numbers, or strings compared as text) and `contains` (a substring); a record
//! without the field fails the rule. `match`: `all` (default) or `any`.
//!
//! With `rules = [{field = "temp", op = "gt", value = 30}]`:
//! `{"sensor":"s1","temp":31.5}` passes as it came, `{"sensor":"s2","temp":20}` is dropped, and
//! a line that is not a JSON object is dead-lettered.

use std::cmp::Ordering;

use pfn_abi::{
    Context, Error, StatefulFunction,
    serde::Deserialize,
    serde_json::{Map, Value},
};

/// One field comparison.
#[derive(Debug, Clone, Deserialize)]
#[serde(crate = "pfn_abi::serde")]
pub struct Rule {
    pub field: String,
    pub op: Op,
    pub value: Value,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(crate = "pfn_abi::serde", rename_all = "lowercase")]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
}

impl Rule {
    /// Whether `record` satisfies the rule.
    pub fn holds(&self, record: &Map<String, Value>) -> bool {
        let Some(found) = record.get(&self.field) else { return false };
        if self.op == Op::Contains {
            return matches!((found, &self.value), (Value::String(text), Value::String(part)) if text.contains(part.as_str()));
        }
        let order = match (found, &self.value) {
            (Value::Number(a), Value::Number(b)) => a.as_f64().zip(b.as_f64()).and_then(|(a, b)| a.partial_cmp(&b)),
            (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
            (a, b) => (a == b).then_some(Ordering::Equal),
        };
        match self.op {
            Op::Eq => order == Some(Ordering::Equal),
            Op::Ne => order != Some(Ordering::Equal),
            Op::Gt => order == Some(Ordering::Greater),
            Op::Ge => matches!(order, Some(Ordering::Greater | Ordering::Equal)),
            Op::Lt => order == Some(Ordering::Less),
            Op::Le => matches!(order, Some(Ordering::Less | Ordering::Equal)),
            Op::Contains => false,
        }
    }
}

/// The function: its rules, read once from user config.
#[derive(Debug)]
pub struct Filter {
    rules: Vec<Rule>,
    any: bool,
}

#[pfn_abi::function]
impl StatefulFunction for Filter {
    type Input<'a> = &'a str;
    type Output = Result<Option<String>, String>;

    fn init(ctx: &Context<'_>) -> Result<Self, Error> {
        let rules: Vec<Rule> = ctx.user_config_as("rules")?.ok_or(Error::user("user config `rules` is missing"))?;
        let any = ctx.user_config_or("match", "all".to_owned())? == "any";
        Ok(Self { rules, any })
    }

    fn process(&mut self, _ctx: &mut Context<'_>, input: &str) -> Self::Output {
        let record: Map<String, Value> =
            pfn_abi::serde_json::from_str(input).map_err(|error| format!("not a JSON object: {error}"))?;
        let keep = if self.any {
            self.rules.iter().any(|rule| rule.holds(&record))
        } else {
            self.rules.iter().all(|rule| rule.holds(&record))
        };
        Ok(keep.then(|| input.to_owned()))
    }
}
