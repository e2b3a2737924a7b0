//! Items of one phase, read from `.jsonl` (one object per line) or `.json` (an array).

use serde_json::{Map, Value};

use super::manifest::Fields;
use crate::error::{Error, Result};

/// One benchmark item: its id, its raw fields (what prompt templates see) and its target.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub fields: Map<String, Value>,
    pub target: String,
}

/// Numbers and other non-string targets are compared as their JSON text.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn to_item(origin: &str, line: usize, index: usize, value: Value, fields: &Fields) -> Result<Item> {
    let at = |msg: String| Error::env(origin, format!("line {line}: {msg}"));
    let Value::Object(obj) = value else {
        return Err(at("item is not a JSON object".into()));
    };
    let id = match &fields.id {
        Some(key) => match obj.get(key) {
            Some(Value::Null) | None => return Err(at(format!("missing id field \"{key}\""))),
            Some(v) => value_text(v),
        },
        None => index.to_string(),
    };
    let target = match obj.get(&fields.target) {
        Some(v) => value_text(v),
        None => {
            return Err(at(format!(
                "missing target field \"{}\" (set [fields] target in environment.toml)",
                fields.target
            )))
        }
    };
    if let Some(input) = &fields.input {
        if !obj.contains_key(input) {
            return Err(at(format!("missing input field \"{input}\"")));
        }
    }
    Ok(Item { id, fields: obj, target })
}

/// Parses a phase file; `origin` names it in errors (with 1-based line numbers).
pub fn parse_items(origin: &str, name: &str, bytes: &[u8], fields: &Fields) -> Result<Vec<Item>> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::env(origin, format!("not UTF-8: {e}")))?;
    let mut items = Vec::new();
    if name.ends_with(".jsonl") {
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(line)
                .map_err(|e| Error::env(origin, format!("line {}: not valid JSON: {e}", n + 1)))?;
            let index = items.len();
            items.push(to_item(origin, n + 1, index, value, fields)?);
        }
    } else if name.ends_with(".json") {
        let value: Value =
            serde_json::from_str(text).map_err(|e| Error::env(origin, format!("not valid JSON: {e}")))?;
        let Value::Array(values) = value else {
            return Err(Error::env(origin, "expected a JSON array of items"));
        };
        for (i, v) in values.into_iter().enumerate() {
            items.push(to_item(origin, i + 1, i, v, fields)?);
        }
    } else {
        return Err(Error::env(origin, "unsupported data format; use .jsonl or .json"));
    }
    if items.is_empty() {
        return Err(Error::env(origin, "phase has no items"));
    }
    let mut seen = std::collections::HashMap::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(first) = seen.insert(item.id.as_str(), i) {
            return Err(Error::env(
                origin,
                format!("duplicate item id \"{}\" (items {} and {})", item.id, first + 1, i + 1),
            ));
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(id: Option<&str>) -> Fields {
        Fields { id: id.map(str::to_string), input: Some("q".into()), target: "a".into() }
    }

    #[test]
    fn ids_default_to_line_index_and_targets_to_text() {
        let data = b"{\"q\":\"1+1\",\"a\":2}\n\n{\"q\":\"2+2\",\"a\":\"4\"}\n";
        let items = parse_items("t", "x.jsonl", data, &fields(None)).unwrap();
        assert_eq!(items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["0", "1"]);
        assert_eq!(items[0].target, "2");
        assert_eq!(items[1].target, "4");
    }

    #[test]
    fn errors_name_the_line() {
        let data = b"{\"q\":\"1\",\"a\":1,\"id\":\"x\"}\n{\"q\":\"2\"}\n";
        let err = parse_items("d.jsonl", "d.jsonl", data, &fields(Some("id"))).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = parse_items("d.jsonl", "d.jsonl", b"{not json\n", &fields(None)).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("not valid JSON"), "{err}");
    }

    #[test]
    fn duplicate_ids_and_empty_phases_are_refused() {
        let data = b"{\"id\":\"a\",\"q\":\"1\",\"a\":1}\n{\"id\":\"a\",\"q\":\"2\",\"a\":2}\n";
        let err = parse_items("d", "d.jsonl", data, &fields(Some("id"))).unwrap_err().to_string();
        assert!(err.contains("duplicate item id \"a\""), "{err}");
        let err = parse_items("d", "d.jsonl", b"\n", &fields(None)).unwrap_err().to_string();
        assert!(err.contains("no items"), "{err}");
    }

    #[test]
    fn json_arrays_are_read() {
        let data = br#"[{"q":"a","a":"b"},{"q":"c","a":"d"}]"#;
        let items = parse_items("d", "d.json", data, &fields(None)).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].fields["q"], "c");
    }
}
