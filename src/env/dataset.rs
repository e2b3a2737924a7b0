//! Items of one phase, read from `.jsonl` (one object per line), `.json` (an array), `.csv`
//! (a header row, or the column names the phase gives) or `.parquet` (one object per row).

use serde_json::{Map, Value};

use super::manifest::{ChoicesField, Fields};
use super::remap::Remap;
use crate::error::{Error, Result};

/// One benchmark item: its id, its raw fields (what prompt templates see), its target and, for
/// multiple choice, its choices and the index of the right one.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub fields: Map<String, Value>,
    /// The target as shown in reports: the first reference when there are several.
    pub target: String,
    /// Every acceptable reference: the target field's strings when it is a JSON list, else
    /// just `target`. Generation scoring credits the best match.
    pub targets: Vec<String>,
    pub choices: Vec<String>,
    pub choice_labels: Vec<String>,
    /// Index into `choices` of the correct one (multiple choice only).
    pub target_index: Option<usize>,
}

/// Numbers and other non-string values are compared as their JSON text.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `a.b.c` walks nested objects, so nested datasets need no flattening.
fn lookup<'v>(obj: &'v Map<String, Value>, path: &str) -> Option<&'v Value> {
    let mut parts = path.split('.');
    let mut cur = obj.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur).filter(|v| !v.is_null())
}

fn choices_of(
    obj: &Map<String, Value>,
    fields: &Fields,
    at: &dyn Fn(String) -> Error,
) -> Result<(Vec<String>, Vec<String>)> {
    let Some(spec) = &fields.choices else { return Ok((Vec::new(), Vec::new())) };
    let entries: Vec<Value> = match spec {
        ChoicesField::Path(path) => match lookup(obj, path) {
            Some(Value::Array(a)) => a.clone(),
            Some(Value::Object(o)) => columnar_choices(o, fields).ok_or_else(|| {
                at(format!(
                    "choices field \"{path}\" is an object but not parallel lists \"{}\" and \"{}\"",
                    fields.choice_text, fields.choice_label
                ))
            })?,
            Some(_) => return Err(at(format!("choices field \"{path}\" is not a list"))),
            None => return Err(at(format!("missing choices field \"{path}\""))),
        },
        ChoicesField::Columns(cols) => {
            let values = cols
                .iter()
                .map(|c| lookup(obj, c).cloned().ok_or_else(|| at(format!("missing choice field \"{c}\""))))
                .collect::<Result<Vec<_>>>()?;
            match &fields.choices_split {
                // One option per piece, so a field may hold several options.
                Some(sep) => {
                    // A list already holds one option per entry: only text is split.
                    let texts: Vec<String> = values
                        .iter()
                        .flat_map(|v| match v {
                            Value::Array(a) => a.iter().map(|e| value_text(e).trim().to_string()).collect::<Vec<_>>(),
                            other => value_text(other).split(sep.as_str()).map(|p| p.trim().to_string()).collect(),
                        })
                        .filter(|p| !p.is_empty())
                        .collect();
                    check_count(texts.len(), at)?;
                    let labels = (0..texts.len()).map(default_label).collect();
                    return Ok((texts, labels));
                }
                None => values,
            }
        }
    };
    let mut texts = Vec::with_capacity(entries.len());
    let mut labels = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        match e {
            Value::Object(o) => {
                let text = o.get(&fields.choice_text).ok_or_else(|| {
                    at(format!(
                        "choice {i} has no \"{}\" key (set [fields] choice_text)",
                        fields.choice_text
                    ))
                })?;
                texts.push(value_text(text));
                labels
                    .push(o.get(&fields.choice_label).map_or_else(|| default_label(i), value_text));
            }
            other => {
                texts.push(value_text(other));
                labels.push(match spec {
                    ChoicesField::Columns(cols) => cols[i].clone(),
                    ChoicesField::Path(_) => default_label(i),
                });
            }
        }
    }
    check_count(texts.len(), at)?;
    Ok((texts, labels))
}

/// Parallel lists ([`records_of`]) that are not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnsError {
    #[error("\"{column}\" is not a list")]
    NotAList { column: String },
    #[error("the lists differ in length")]
    LengthsDiffer,
}

/// HF datasets store a list of records as one record of parallel lists
/// (`{"text": [...], "label": [...]}`): the list of records it stands for.
pub(super) fn records_of(
    columns: &Map<String, Value>,
) -> std::result::Result<Vec<Value>, ColumnsError> {
    let mut len = None;
    for (name, col) in columns {
        let n =
            col.as_array().ok_or_else(|| ColumnsError::NotAList { column: name.clone() })?.len();
        if *len.get_or_insert(n) != n {
            return Err(ColumnsError::LengthsDiffer);
        }
    }
    Ok((0..len.unwrap_or(0))
        .map(|i| {
            Value::Object(
                columns.iter().map(|(name, col)| (name.clone(), col[i].clone())).collect(),
            )
        })
        .collect())
}

/// Choices stored as HF stores a list of `{text, label}` records: its text and (optional)
/// label columns as [`records_of`] turns them back into the list.
fn columnar_choices(o: &Map<String, Value>, fields: &Fields) -> Option<Vec<Value>> {
    o.get(&fields.choice_text)?;
    let columns: Map<String, Value> = [&fields.choice_text, &fields.choice_label]
        .into_iter()
        .filter_map(|k| o.get(k).map(|v| (k.clone(), v.clone())))
        .collect();
    records_of(&columns).ok()
}

fn check_count(n: usize, at: &dyn Fn(String) -> Error) -> Result<()> {
    if n < 2 {
        return Err(at(format!("{n} choice(s); multiple choice needs at least two")));
    }
    Ok(())
}

/// A list target is a set of references; anything else is one.
fn targets_of(v: &Value, at: &dyn Fn(String) -> Error) -> Result<Vec<String>> {
    match v {
        Value::Array(refs) if refs.is_empty() => Err(at("target list is empty".into())),
        Value::Array(refs) => Ok(refs.iter().map(value_text).collect()),
        other => Ok(vec![value_text(other)]),
    }
}

/// A–Z, then numbers from 27 on (so that no two options share a label).
fn default_label(i: usize) -> String {
    super::scoring::option_letter(i).map_or_else(|| (i + 1).to_string(), String::from)
}

/// The target names the right choice by label ("B"), by 0-based index ("1"), or by its text.
fn resolve_target(target: &str, texts: &[String], labels: &[String]) -> Option<usize> {
    let t = target.trim();
    labels
        .iter()
        .position(|l| l == t)
        .or_else(|| t.parse::<usize>().ok().filter(|&i| i < texts.len()))
        .or_else(|| texts.iter().position(|c| c.trim() == t))
}

/// `unit` is what `line` counts: lines of a text file, rows of a parquet file.
fn to_item(
    origin: &str,
    (unit, line): (&str, usize),
    default_id: String,
    value: Value,
    fields: &Fields,
) -> Result<Item> {
    let at = |msg: String| Error::env(origin, format!("{unit} {line}: {msg}"));
    let Value::Object(obj) = value else {
        return Err(at("item is not a JSON object".into()));
    };
    let id = match &fields.id {
        Some(key) => {
            value_text(lookup(&obj, key).ok_or_else(|| at(format!("missing id field \"{key}\"")))?)
        }
        None => default_id,
    };
    let targets = targets_of(
        lookup(&obj, &fields.target).ok_or_else(|| {
            at(format!(
                "missing target field \"{}\" (set [fields] target in environment.toml)",
                fields.target
            ))
        })?,
        &at,
    )?;
    let target = targets[0].clone();
    if let Some(input) = &fields.input {
        if lookup(&obj, input).is_none() {
            return Err(at(format!("missing input field \"{input}\"")));
        }
    }
    let (choices, choice_labels) = choices_of(&obj, fields, &at)?;
    let target_index = if choices.is_empty() {
        None
    } else {
        Some(resolve_target(&target, &choices, &choice_labels).ok_or_else(|| {
            at(format!(
                "target \"{target}\" is neither a choice label ({}), an index nor a choice",
                choice_labels.join(", ")
            ))
        })?)
    };
    Ok(Item { id, fields: obj, target, targets, choices, choice_labels, target_index })
}

fn csv_values(
    origin: &str,
    bytes: &[u8],
    columns: Option<&[String]>,
) -> Result<Vec<(usize, usize, Value)>> {
    let mut reader =
        csv::ReaderBuilder::new().has_headers(columns.is_none()).flexible(false).from_reader(bytes);
    let header: Vec<String> = match columns {
        Some(c) => c.to_vec(),
        None => reader
            .headers()
            .map_err(|e| Error::env(origin, format!("CSV header: {e}")))?
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').to_string())
            .collect(),
    };
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            Error::env(origin, format!("line {line}: {e}"))
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.len() != header.len() {
            return Err(Error::env(
                origin,
                format!("line {line}: {} fields, expected {}", record.len(), header.len()),
            ));
        }
        let obj: Map<String, Value> = header
            .iter()
            .zip(record.iter())
            .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
            .collect();
        out.push((line, out.len(), Value::Object(obj)));
    }
    Ok(out)
}

/// Parses a phase file; `origin` names it in errors (with 1-based line numbers). `columns`
/// names the fields of a CSV without a header row.
pub fn parse_items(
    origin: &str,
    name: &str,
    bytes: &[u8],
    fields: &Fields,
    columns: Option<&[String]>,
) -> Result<Vec<Item>> {
    let (items, mut problems) = parse_all(
        &Source { origin, name, part: None, first_index: 0, remap: None },
        bytes,
        fields,
        columns,
    );
    if problems.is_empty() {
        Ok(items)
    } else {
        Err(problems.swap_remove(0))
    }
}

/// Every problem of a phase file, not only the first (for `env validate`), and how many items
/// parsed.
pub fn check_items(
    source: &Source,
    bytes: &[u8],
    fields: &Fields,
    columns: Option<&[String]>,
) -> (Vec<Item>, Vec<Error>) {
    parse_all(source, bytes, fields, columns)
}

/// Which file items come from. `part` is set when a phase reads a whole folder: items then
/// carry the file's stem as the field `_file`, and default ids become `stem/line-index`.
pub struct Source<'a> {
    pub origin: &'a str,
    pub name: &'a str,
    pub part: Option<&'a str>,
    /// The index of the file's first row in its table (a later shard of a hub table).
    pub first_index: usize,
    /// Rewrites each row into the manifest's layout first (a hub file's `source_fields`).
    pub remap: Option<&'a Remap>,
}

fn parse_all(
    source: &Source,
    bytes: &[u8],
    fields: &Fields,
    columns: Option<&[String]>,
) -> (Vec<Item>, Vec<Error>) {
    let Source { origin, name, part, first_index, remap } = *source;
    let mut problems = Vec::new();
    let mut values = match read_values(origin, name, bytes, columns, &mut problems) {
        Ok(v) => v,
        Err(e) => return (Vec::new(), vec![e]),
    };
    let unit = if name.ends_with(".parquet") { "row" } else { "line" };
    if let Some(r) = remap {
        if let Err(e) = r.apply(origin, unit, &mut values) {
            return (Vec::new(), vec![e]);
        }
    }
    for v in &mut values {
        v.1 += first_index;
    }
    let mut items = Vec::with_capacity(values.len());
    for (line, index, mut v) in values {
        if let (Some(stem), Value::Object(obj)) = (part, &mut v) {
            obj.insert("_file".into(), Value::String(stem.to_string()));
        }
        let default_id = match part {
            Some(stem) => format!("{stem}/{index}"),
            None => index.to_string(),
        };
        match to_item(origin, (unit, line), default_id, v, fields) {
            Ok(item) => items.push(item),
            Err(e) => problems.push(e),
        }
    }
    if items.is_empty() && problems.is_empty() {
        problems.push(Error::env(origin, "phase has no items"));
    }
    let mut seen = std::collections::HashMap::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(first) = seen.insert(item.id.as_str(), i) {
            problems.push(Error::env(
                origin,
                format!("duplicate item id \"{}\" (items {} and {})", item.id, first + 1, i + 1),
            ));
        }
    }
    (items, problems)
}

/// The raw objects of a file with their line numbers; bad JSON lines become problems.
fn read_values(
    origin: &str,
    name: &str,
    bytes: &[u8],
    columns: Option<&[String]>,
    problems: &mut Vec<Error>,
) -> Result<Vec<(usize, usize, Value)>> {
    let values: Vec<(usize, usize, Value)> = if name.ends_with(".csv") {
        csv_values(origin, bytes, columns)?
    } else if name.ends_with(".parquet") {
        super::parquet::parquet_values(origin, bytes)?
    } else {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| Error::env(origin, format!("not UTF-8: {e}")))?;
        if name.ends_with(".jsonl") {
            let mut v = Vec::new();
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str(line) {
                    // Without an id field, an item's id is its 0-based line index.
                    Ok(value) => v.push((n + 1, n, value)),
                    Err(e) => problems
                        .push(Error::env(origin, format!("line {}: not valid JSON: {e}", n + 1))),
                }
            }
            v
        } else if name.ends_with(".json") {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| Error::env(origin, format!("not valid JSON: {e}")))?;
            let Value::Array(values) = value else {
                return Err(Error::env(origin, "expected a JSON array of items"));
            };
            values.into_iter().enumerate().map(|(i, v)| (i + 1, i, v)).collect()
        } else {
            return Err(Error::env(
                origin,
                "unsupported data format; use .jsonl, .json, .csv or .parquet",
            ));
        }
    };
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(id: Option<&str>) -> Fields {
        Fields {
            id: id.map(str::to_string),
            input: Some("q".into()),
            target: "a".into(),
            ..Fields::default()
        }
    }

    fn parse(data: &[u8], f: &Fields) -> Result<Vec<Item>> {
        parse_items("d.jsonl", "d.jsonl", data, f, None)
    }

    #[test]
    fn ids_default_to_line_index_and_targets_to_text() {
        let data = b"{\"q\":\"1+1\",\"a\":2}\n\n{\"q\":\"2+2\",\"a\":\"4\"}\n";
        let items = parse(data, &fields(None)).unwrap();
        // A blank line still counts: ids are line indices, stable under edits elsewhere.
        assert_eq!(items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["0", "2"]);
        assert_eq!(items[0].target, "2");
        assert_eq!(items[1].target, "4");
    }

    #[test]
    fn errors_name_the_line() {
        let data = b"{\"q\":\"1\",\"a\":1,\"id\":\"x\"}\n{\"q\":\"2\"}\n";
        let err = parse(data, &fields(Some("id"))).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = parse(b"{not json\n", &fields(None)).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("not valid JSON"), "{err}");
    }

    #[test]
    fn duplicate_ids_and_empty_phases_are_refused() {
        let data = b"{\"id\":\"a\",\"q\":\"1\",\"a\":1}\n{\"id\":\"a\",\"q\":\"2\",\"a\":2}\n";
        let err = parse(data, &fields(Some("id"))).unwrap_err().to_string();
        assert!(err.contains("duplicate item id \"a\""), "{err}");
        let err = parse(b"\n", &fields(None)).unwrap_err().to_string();
        assert!(err.contains("no items"), "{err}");
    }

    #[test]
    fn json_arrays_are_read() {
        let data = br#"[{"q":"a","a":"b"},{"q":"c","a":"d"}]"#;
        let items = parse_items("d", "d.json", data, &fields(None), None).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].fields["q"], "c");
    }

    #[test]
    fn nested_choices_with_labels_as_in_arc() {
        let f = Fields {
            id: Some("id".into()),
            input: Some("question.stem".into()),
            target: "answerKey".into(),
            choices: Some(ChoicesField::Path("question.choices".into())),
            ..Fields::default()
        };
        let line = br#"{"id":"q1","question":{"stem":"Pick","choices":[{"text":"x","label":"1"},{"text":"y","label":"2"}]},"answerKey":"2"}"#;
        let items = parse(line, &f).unwrap();
        assert_eq!(items[0].choices, ["x", "y"]);
        assert_eq!(items[0].choice_labels, ["1", "2"]);
        assert_eq!(items[0].target_index, Some(1));
        let bad = br#"{"id":"q1","question":{"stem":"Pick","choices":[{"text":"x","label":"A"},{"text":"y","label":"B"}]},"answerKey":"E"}"#;
        let err = parse(bad, &f).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("\"E\"") && err.contains("A, B"), "{err}");
    }

    #[test]
    fn columnar_choices_as_hf_parquet_stores_them() {
        let f = Fields {
            target: "answerKey".into(),
            choices: Some(ChoicesField::Path("choices".into())),
            ..Fields::default()
        };
        let line = br#"{"choices":{"text":["x","y","z"],"label":["1","2","3"]},"answerKey":"3"}"#;
        let items = parse(line, &f).unwrap();
        assert_eq!(items[0].choices, ["x", "y", "z"]);
        assert_eq!(items[0].choice_labels, ["1", "2", "3"]);
        assert_eq!(items[0].target_index, Some(2));
        let unlabelled = parse(br#"{"choices":{"text":["x","y"]},"answerKey":"B"}"#, &f).unwrap();
        assert_eq!(unlabelled[0].choice_labels, ["A", "B"]);
        assert_eq!(unlabelled[0].target_index, Some(1));
        for bad in [
            &br#"{"choices":{"text":["x","y"],"label":["1"]},"answerKey":"1"}"#[..],
            br#"{"choices":{"words":["x","y"]},"answerKey":"1"}"#,
        ] {
            let err = parse(bad, &f).unwrap_err().to_string();
            assert!(
                err.contains("line 1") && err.contains("not parallel lists \"text\" and \"label\""),
                "{err}"
            );
        }
    }

    #[test]
    fn headerless_csv_with_named_columns_as_in_mmlu() {
        let f = Fields {
            input: Some("question".into()),
            target: "answer".into(),
            choices: Some(ChoicesField::Columns(vec![
                "A".into(),
                "B".into(),
                "C".into(),
                "D".into(),
            ])),
            ..Fields::default()
        };
        let cols: Vec<String> =
            ["question", "A", "B", "C", "D", "answer"].iter().map(|s| s.to_string()).collect();
        let data = b"\"What is 2, plus 2?\",3,4,5,6,B\nSecond,a,b,c,d,D\n";
        let items = parse_items("m.csv", "m.csv", data, &f, Some(&cols)).unwrap();
        assert_eq!(items[0].fields["question"], "What is 2, plus 2?");
        assert_eq!(items[0].choices, ["3", "4", "5", "6"]);
        assert_eq!(items[0].target_index, Some(1));
        assert_eq!(items[1].target_index, Some(3));
        let err = parse_items("m.csv", "m.csv", b"only,three,fields\n", &f, Some(&cols))
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.csv") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn list_targets_are_references() {
        let f = Fields { target: "golden_answers".into(), ..Fields::default() };
        let data =
            b"{\"golden_answers\":[\"Cotswolds\",\"The Cotswolds\"]}\n{\"golden_answers\":\"x\"}\n";
        let items = parse(data, &f).unwrap();
        assert_eq!(items[0].target, "Cotswolds");
        assert_eq!(items[0].targets, ["Cotswolds", "The Cotswolds"]);
        assert_eq!(items[1].targets, ["x"]);
        let err = parse(b"{\"golden_answers\":[]}\n", &f).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("target list is empty"), "{err}");
    }

    #[test]
    fn choices_split_builds_options_from_several_fields_as_in_truthfulqa() {
        let f = Fields {
            target: "Best Answer".into(),
            choices: Some(ChoicesField::Columns(vec![
                "Best Answer".into(),
                "Incorrect Answers".into(),
            ])),
            choices_split: Some(";".into()),
            ..Fields::default()
        };
        let data = b"Question,Best Answer,Incorrect Answers\nQ?,Nothing happens,You die; You get sick;\nR?,Yes,No\n";
        let items = parse_items("t.csv", "t.csv", data, &f, None).unwrap();
        assert_eq!(items[0].choices, ["Nothing happens", "You die", "You get sick"]);
        assert_eq!(items[0].choice_labels, ["A", "B", "C"]);
        assert_eq!(items[0].target_index, Some(0));
        assert_eq!(items[1].choices, ["Yes", "No"]);
        let err = parse_items(
            "t.csv",
            "t.csv",
            b"Question,Best Answer,Incorrect Answers\nQ?,Yes,;\n",
            &f,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 2") && err.contains("1 choice(s)"), "{err}");
        // A list field holds one option per entry, separators and all (a hub row's answers).
        let listed = br#"{"Best Answer":"No","Incorrect Answers":["Yes; always","Maybe"]}"#;
        let items = parse(listed, &f).unwrap();
        assert_eq!(items[0].choices, ["No", "Yes; always", "Maybe"]);
    }
}
