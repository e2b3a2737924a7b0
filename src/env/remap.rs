//! `[phases.source_fields]`: how a hub file's rows become the rows the rest of the manifest
//! expects.
//!
//! The official files under `$BENCHGEN_DATA_DIR` and the same benchmark on the hub are often laid
//! out differently (ARC's JSONL nests `question.stem`, its parquet has a flat `question` and
//! columnar `choices`; MMLU's CSVs have columns A–D and a letter, its parquet a `choices` list and
//! an index). Rather than a second `[fields]` and prompt per layout, each hub row is rewritten
//! into the local layout: every key of the table is set to the value of its minijinja expression
//! over the raw row (all expressions see the raw row, so `question = "{'stem': question}"` works),
//! and every other key is kept as it was.

use std::collections::BTreeMap;

use minijinja::{Environment as Jinja, UndefinedBehavior, Value as JinjaValue};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A checked `[phases.source_fields]` table.
#[derive(Debug, Clone)]
pub struct Remap {
    fields: Vec<(String, String)>,
}

fn jinja() -> Jinja<'static> {
    let mut jinja = Jinja::new();
    // A misspelt hub column must fail on the row that lacks it, not become an empty field.
    jinja.set_undefined_behavior(UndefinedBehavior::Strict);
    jinja.add_function("records", records);
    jinja
}

/// `records({'text': ['a', 'b'], 'label': ['A', 'B']})` = `[{'text': 'a', 'label': 'A'}, …]`:
/// HF datasets store a list of records as one record of parallel lists.
fn records(columns: JinjaValue) -> Result<JinjaValue, minijinja::Error> {
    let invalid = |why: &str| {
        minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("records(): {why}"))
    };
    let Ok(Value::Object(cols)) = serde_json::to_value(&columns) else {
        return Err(invalid("expects a record of parallel lists"));
    };
    super::dataset::records_of(&cols)
        .map(JinjaValue::from_serialize)
        .map_err(|e| invalid(&e.to_string()))
}

/// A `source_fields` table that does not compile.
#[derive(Debug, thiserror::Error)]
pub enum RemapError {
    #[error("source_fields: empty field name")]
    EmptyFieldName,
    #[error("source_fields.{field} = \"{expression}\": {source}")]
    BadExpression {
        field: String,
        expression: String,
        #[source]
        source: minijinja::Error,
    },
}

impl Remap {
    /// Compiles every expression once, so a typo is reported when the manifest is read.
    pub fn new(table: &BTreeMap<String, String>) -> Result<Self, RemapError> {
        let jinja = jinja();
        for (key, expr) in table {
            if key.is_empty() {
                return Err(RemapError::EmptyFieldName);
            }
            jinja.compile_expression(expr).map_err(|source| RemapError::BadExpression {
                field: key.clone(),
                expression: expr.clone(),
                source,
            })?;
        }
        Ok(Self { fields: table.iter().map(|(k, v)| (k.clone(), v.clone())).collect() })
    }

    /// Rewrites `values` (`(row number, index, row)` as the readers give them) in place; `unit`
    /// and `origin` name a failing row.
    pub fn apply(
        &self,
        origin: &str,
        unit: &str,
        values: &mut [(usize, usize, Value)],
    ) -> Result<()> {
        let jinja = jinja();
        let compiled = self
            .fields
            .iter()
            .map(|(k, e)| jinja.compile_expression(e).map(|c| (k, e, c)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::env(origin, format!("source_fields: {e}")))?;
        for (line, _, row) in values.iter_mut() {
            let Value::Object(obj) = row else {
                return Err(Error::env(origin, format!("{unit} {line}: item is not an object")));
            };
            let ctx = JinjaValue::from_serialize(&*obj);
            let mut out: Map<String, Value> = Map::new();
            for (key, expr, c) in &compiled {
                let v = c.eval(&ctx).map_err(|e| {
                    Error::env(
                        origin,
                        format!("{unit} {line}: source_fields.{key} = \"{expr}\": {e}"),
                    )
                })?;
                let v = serde_json::to_value(&v).map_err(|e| {
                    Error::env(origin, format!("{unit} {line}: source_fields.{key} = \"{expr}\" gives no data value: {e}"))
                })?;
                out.insert((*key).clone(), v);
            }
            obj.extend(out);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn remap(pairs: &[(&str, &str)]) -> Remap {
        Remap::new(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
            .expect("valid")
    }

    fn one(r: &Remap, row: Value) -> Result<Value> {
        let mut v = vec![(1, 0, row)];
        r.apply("hub.parquet", "row", &mut v)?;
        Ok(v.remove(0).2)
    }

    #[test]
    fn rows_take_the_local_layout_from_the_raw_row() {
        // ARC on the hub: a flat question, columnar choices.
        let arc = remap(&[("question", "{'stem': question, 'choices': records(choices)}")]);
        let row = json!({"id": "x", "question": "Why?", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "B"});
        let got = one(&arc, row).unwrap();
        assert_eq!(got["question"]["stem"], "Why?");
        assert_eq!(
            got["question"]["choices"],
            json!([{"text": "a", "label": "A"}, {"text": "b", "label": "B"}])
        );
        assert_eq!(got["answerKey"], "B", "other keys are kept");
        // MMLU on the hub: choices by index, the answer as an index.
        let mmlu = remap(&[
            ("A", "choices[0]"),
            ("D", "choices[3]"),
            ("answer", "'ABCD'[answer]"),
            ("rest", "choices[1:]"),
        ]);
        let got =
            one(&mmlu, json!({"question": "q", "choices": ["w", "x", "y", "z"], "answer": 3}))
                .unwrap();
        assert_eq!(
            (got["A"].as_str(), got["D"].as_str(), got["answer"].as_str()),
            (Some("w"), Some("z"), Some("D"))
        );
        assert_eq!(got["rest"], json!(["x", "y", "z"]));
    }

    #[test]
    fn mistakes_name_the_field_the_expression_and_the_row() {
        let e =
            Remap::new(&BTreeMap::from([("A".to_string(), "choices[0".to_string())])).unwrap_err();
        assert!(matches!(&e, RemapError::BadExpression { field, .. } if field == "A"), "{e:?}");
        assert!(std::error::Error::source(&e).is_some_and(|s| s.is::<minijinja::Error>()));
        let e = e.to_string();
        assert!(e.contains("source_fields.A = \"choices[0\""), "{e}");
        let e = Remap::new(&BTreeMap::from([(String::new(), "x".to_string())])).unwrap_err();
        assert_eq!(e.to_string(), "source_fields: empty field name");
        let r = remap(&[("A", "choice[0]")]);
        let e = one(&r, json!({"choices": ["a"]})).unwrap_err().to_string();
        assert!(
            e.contains("hub.parquet") && e.contains("row 1") && e.contains("source_fields.A"),
            "{e}"
        );
        let r = remap(&[("c", "records(choices)")]);
        for (bad, why) in [
            (json!({"text": ["a"], "label": ["A", "B"]}), "differ in length"),
            (json!({"text": "a"}), "\"text\" is not a list"),
            (json!(["a"]), "parallel lists"),
        ] {
            let e = one(&r, json!({ "choices": bad })).unwrap_err().to_string();
            assert!(e.contains("records(): ") && e.contains(why), "{e}");
        }
    }
}
