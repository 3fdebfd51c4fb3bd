//! How `pfn functions` prints what it reports: JSON, or a table of one `field  value` row per
//! leaf, nested fields named by their path (`instances.0.status.numReceived`).

use clap::ValueEnum;
use serde_json::Value;

/// `--output`: how a report is printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Json,
    Table,
}

/// Prints `value` as `format` says.
pub fn print(value: &Value, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Table => print!("{}", table(value)),
    }
    Ok(())
}

/// The table of `value`: a list of scalars one per line, anything else one row per leaf.
pub fn table(value: &Value) -> String {
    if let Value::Array(items) = value
        && items.iter().all(|item| !item.is_object() && !item.is_array())
    {
        return items.iter().map(|item| format!("{}\n", scalar(item))).collect();
    }
    let mut rows = Vec::new();
    leaves(value, String::new(), &mut rows);
    let width = rows.iter().map(|(field, _)| field.len()).max().unwrap_or(0);
    rows.iter().map(|(field, value)| format!("{field:<width$}  {value}\n")).collect()
}

fn leaves(value: &Value, path: String, rows: &mut Vec<(String, String)>) {
    let child = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (key, value) in fields {
                leaves(value, child(key), rows);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (index, value) in items.iter().enumerate() {
                leaves(value, child(&index.to_string()), rows);
            }
        }
        leaf => rows.push((path, scalar(leaf))),
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_fields_are_rows_named_by_their_path() {
        let value = serde_json::json!({"numInstances": 1, "instances": [{"status": {"running": true}}], "name": "f"});
        assert_eq!(
            table(&value),
            "instances.0.status.running  true\nname                        f\nnumInstances                1\n"
        );
        assert_eq!(table(&serde_json::json!(["a", "b"])), "a\nb\n");
    }
}
