//! Enrichment: adds fixed fields from user config and the entry of a lookup table kept in the
//! function's state (loaded with `pfn functions putstate`) to each JSON record.
//!
//! User config: `fields`, an object of fields to add (default none); `lookup_field`, the record
//! field whose value names the lookup entry (default `customer`); `lookup_as`, where the entry
//! goes (default `details`). The entry of value `v` is the JSON object in state key `lookup/v`;
//! a value with no entry gets `null`.
//!
//! Input:  `{"order":"o-1","customer":"ada"}`, with state `lookup/ada` = `{"tier":"gold"}` and
//!         `fields = {region = "eu"}`
//! Output: `{"customer":"ada","details":{"tier":"gold"},"order":"o-1","region":"eu"}`

use pfn_abi::{
    Context, Error, Json, StatefulFunction,
    serde_json::{self, Map, Value},
};

/// The function: what to add, read once from user config.
#[derive(Debug)]
pub struct Enrich {
    fields: Map<String, Value>,
    lookup_field: String,
    lookup_as: String,
}

#[pfn_abi::function]
impl StatefulFunction for Enrich {
    type Input<'a> = Json<Map<String, Value>>;
    type Output = Result<Json<Map<String, Value>>, String>;

    fn init(ctx: &Context<'_>) -> Result<Self, Error> {
        Ok(Self {
            fields: ctx.user_config_or("fields", Map::new())?,
            lookup_field: ctx.user_config_or("lookup_field", "customer".to_owned())?,
            lookup_as: ctx.user_config_or("lookup_as", "details".to_owned())?,
        })
    }

    fn process(&mut self, ctx: &mut Context<'_>, Json(mut record): Self::Input<'_>) -> Self::Output {
        let entry = match record.get(&self.lookup_field) {
            Some(Value::String(name)) => lookup(ctx, name)?,
            Some(Value::Number(number)) => lookup(ctx, &number.to_string())?,
            _ => return Err(format!("no {} to look up", self.lookup_field)),
        };
        record.insert(self.lookup_as.clone(), entry);
        record.extend(self.fields.iter().map(|(name, value)| (name.clone(), value.clone())));
        Ok(Json(record))
    }
}

/// The lookup entry of `name`, or `null` when the table has none.
fn lookup(ctx: &Context<'_>, name: &str) -> Result<Value, String> {
    let key = format!("lookup/{name}");
    match ctx.get_state(&key).map_err(|error| format!("{key}: {error}"))? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|error| format!("{key} is not JSON: {error}")),
        None => Ok(Value::Null),
    }
}
