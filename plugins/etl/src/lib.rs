//! ETL: parses a CSV line or a JSON record, normalises each field to the type its schema gives
//! (strings trimmed, numbers and booleans parsed, timestamps to RFC 3339 in UTC) and emits JSON.
//! A record that does not fit is an error, dead-lettered with the reason.
//!
//! User config: `columns`, the CSV columns in order (default `["id", "name", "amount", "time"]`),
//! and `schema`, each field's type: `string`, `integer`, `float`, `bool` or `timestamp` (default
//! `{id = "string", name = "string", amount = "float", time = "timestamp"}`).
//!
//! Input:  ` o-1 , Ada ,12.50,1764201600` or `{"id":"o-1","name":"Ada","amount":"12.5","time":"2025-11-27 00:00:00"}`
//! Output: `{"amount":12.5,"id":"o-1","name":"Ada","time":"2025-11-27T00:00:00Z"}`

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use pfn_abi::{
    Context, Error, Json, StatefulFunction,
    serde::Deserialize,
    serde_json::{Map, Value},
};

/// A field's type.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(crate = "pfn_abi::serde", rename_all = "lowercase")]
pub enum Kind {
    String,
    Integer,
    Float,
    Bool,
    Timestamp,
}

/// The function: the CSV columns and the schema, read once from user config.
#[derive(Debug)]
pub struct Etl {
    columns: Vec<String>,
    schema: BTreeMap<String, Kind>,
}

#[pfn_abi::function]
impl StatefulFunction for Etl {
    type Input<'a> = &'a str;
    type Output = Result<Json<Map<String, Value>>, String>;

    fn init(ctx: &Context<'_>) -> Result<Self, Error> {
        let columns = ctx.user_config_or("columns", ["id", "name", "amount", "time"].map(String::from).to_vec())?;
        let default =
            [("id", Kind::String), ("name", Kind::String), ("amount", Kind::Float), ("time", Kind::Timestamp)];
        let schema = ctx.user_config_or("schema", default.map(|(name, kind)| (name.to_owned(), kind)).into())?;
        Ok(Self { columns, schema })
    }

    fn process(&mut self, _ctx: &mut Context<'_>, line: &str) -> Self::Output {
        let record = if line.trim_start().starts_with('{') { self.json(line)? } else { self.csv(line)? };
        let mut out = Map::new();
        for (field, kind) in &self.schema {
            let raw = record.get(field).filter(|value| !value.is_null()).ok_or(format!("no {field}"))?;
            out.insert(field.clone(), normalise(raw, *kind).map_err(|reason| format!("{field}: {reason}"))?);
        }
        Ok(Json(out))
    }
}

impl Etl {
    fn json(&self, line: &str) -> Result<Map<String, Value>, String> {
        pfn_abi::serde_json::from_str(line).map_err(|error| format!("not a JSON object: {error}"))
    }

    fn csv(&self, line: &str) -> Result<Map<String, Value>, String> {
        let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(line.as_bytes());
        let row = reader.records().next().ok_or("an empty line")?.map_err(|error| format!("not CSV: {error}"))?;
        if row.len() != self.columns.len() {
            return Err(format!(
                "{} CSV fields, expected {} ({})",
                row.len(),
                self.columns.len(),
                self.columns.join(",")
            ));
        }
        Ok(self.columns.iter().cloned().zip(row.iter().map(|field| Value::String(field.to_owned()))).collect())
    }
}

/// `raw` as `kind`: strings are trimmed, and text is parsed into numbers, booleans and times.
pub fn normalise(raw: &Value, kind: Kind) -> Result<Value, String> {
    let text = match raw {
        Value::String(text) => text.trim().to_owned(),
        other => other.to_string(),
    };
    let parsed = match kind {
        Kind::String => Some(Value::String(text.clone())),
        Kind::Integer => text.parse::<i64>().ok().map(Value::from),
        Kind::Float => text.parse::<f64>().ok().filter(|x| x.is_finite()).map(Value::from),
        Kind::Bool => text.to_lowercase().parse::<bool>().ok().map(Value::Bool),
        Kind::Timestamp => {
            timestamp(&text).map(|time| Value::String(time.to_rfc3339_opts(SecondsFormat::AutoSi, true)))
        }
    };
    parsed.ok_or(format!("{text:?} is not a {}", format!("{kind:?}").to_lowercase()))
}

/// RFC 3339, `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD` (UTC), or seconds (milliseconds past 10^11)
/// since the Unix epoch.
fn timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(number) = text.parse::<i64>() {
        return if number.abs() < 100_000_000_000 {
            DateTime::from_timestamp(number, 0)
        } else {
            DateTime::from_timestamp_millis(number)
        };
    }
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").map(|time| time.and_utc()))
        .or_else(|_| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d").map(|date| date.and_time(Default::default()).and_utc())
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_each_kind_and_names_what_does_not_fit() {
        let text = |s: &str| Value::String(s.to_owned());
        assert_eq!(normalise(&text(" 12.50 "), Kind::Float), Ok(Value::from(12.5)));
        assert_eq!(normalise(&Value::from(7), Kind::String), Ok(text("7")));
        assert_eq!(normalise(&text("TRUE"), Kind::Bool), Ok(Value::Bool(true)));
        assert_eq!(normalise(&text("1764201600"), Kind::Timestamp), Ok(text("2025-11-27T00:00:00Z")));
        assert_eq!(normalise(&text("1764201600500"), Kind::Timestamp), Ok(text("2025-11-27T00:00:00.500Z")));
        assert_eq!(normalise(&text("2025-11-27T01:00:00+01:00"), Kind::Timestamp), Ok(text("2025-11-27T00:00:00Z")));
        assert_eq!(normalise(&text("2025-11-27"), Kind::Timestamp), Ok(text("2025-11-27T00:00:00Z")));
        assert_eq!(normalise(&text("soon"), Kind::Timestamp), Err("\"soon\" is not a timestamp".to_owned()));
    }
}
