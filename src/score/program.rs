//! `[scoring.program]`: an environment's own scoring program (the Codabench contract), and the
//! scores it writes. Running it lives in `eval/program.rs`; this module is the pure part.

use std::collections::BTreeMap;

pub use crate::env::scoring::{ProgramSpec, ProgramSpecError};

/// The Codabench-style program: `command` runs in a scratch folder holding `program/` (a copy of
/// `dir`), `input/ref`, `input/res` and `output/`, and leaves `output/scores.json` (or
/// `output/scores.txt`) behind.
#[derive(Debug, thiserror::Error)]
pub enum ScoresError {
    #[error("{file}: not valid JSON: {source}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file}: expected a JSON object of scores, like {{\"accuracy\": 0.5}}")]
    NotAnObject { file: String },
    #[error("{file}: holds no scores")]
    NoScores { file: String },
    #[error("{file}: key \"{key}\": {number} is not a finite number")]
    NotFinite { file: String, key: String, number: serde_json::Number },
    #[error("{file}: key \"{key}\": expected a number, found {found}")]
    NotANumber { file: String, key: String, found: serde_json::Value },
    /// `line` counts from 1.
    #[error("{file} line {line}: expected `key: number`, found {text:?}")]
    NotKeyValue { file: String, line: usize, text: String },
    #[error("{file} line {line}: key \"{key}\": {value:?} is not a number")]
    TxtNotANumber { file: String, line: usize, key: String, value: String },
}

/// `scores.json`: an object of numbers; nested objects are flattened with `.` (`{"a":{"b":1}}`
/// is `a.b`). Anything else is refused, naming `file` and the key.
pub fn parse_scores_json(file: &str, text: &str) -> Result<BTreeMap<String, f64>, ScoresError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|source| ScoresError::Json { file: file.to_string(), source })?;
    let serde_json::Value::Object(map) = value else {
        return Err(ScoresError::NotAnObject { file: file.to_string() });
    };
    let mut out = BTreeMap::new();
    flatten(file, "", &map, &mut out)?;
    if out.is_empty() {
        return Err(ScoresError::NoScores { file: file.to_string() });
    }
    Ok(out)
}

fn flatten(
    file: &str,
    prefix: &str,
    map: &serde_json::Map<String, serde_json::Value>,
    out: &mut BTreeMap<String, f64>,
) -> Result<(), ScoresError> {
    for (k, v) in map {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            serde_json::Value::Object(inner) => flatten(file, &key, inner, out)?,
            serde_json::Value::Number(n) => {
                let Some(x) = n.as_f64().filter(|x| x.is_finite()) else {
                    return Err(ScoresError::NotFinite {
                        file: file.to_string(),
                        key,
                        number: n.clone(),
                    });
                };
                out.insert(key, x);
            }
            other => {
                return Err(ScoresError::NotANumber {
                    file: file.to_string(),
                    key,
                    found: other.clone(),
                })
            }
        }
    }
    Ok(())
}

/// `scores.txt`, Codabench's YAML of `key: value` lines (blank lines and `#` comments skipped).
pub fn parse_scores_txt(file: &str, text: &str) -> Result<BTreeMap<String, f64>, ScoresError> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line == "---" {
            continue;
        }
        let (key, value) = line.split_once(':').ok_or_else(|| ScoresError::NotKeyValue {
            file: file.to_string(),
            line: n + 1,
            text: line.to_string(),
        })?;
        let (key, value) = (key.trim().trim_matches(['"', '\'']), value.trim());
        let x: f64 = value.parse().ok().filter(|x: &f64| x.is_finite()).ok_or_else(|| {
            ScoresError::TxtNotANumber {
                file: file.to_string(),
                line: n + 1,
                key: key.to_string(),
                value: value.to_string(),
            }
        })?;
        out.insert(key.to_string(), x);
    }
    if out.is_empty() {
        return Err(ScoresError::NoScores { file: file.to_string() });
    }
    Ok(out)
}

/// A score as a percentage: values in [0, 1] are fractions (0.25 → 25%), others are taken as
/// percentages already.
pub fn as_percent(x: f64) -> f64 {
    if (0.0..=1.0).contains(&x) {
        x * 100.0
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_flattened_and_non_numbers_are_named() {
        let s = parse_scores_json(
            "scores.json",
            r#"{"accuracy": 0.5, "by": {"easy": 1, "hard": 0.25}}"#,
        )
        .unwrap();
        assert_eq!(s.get("accuracy"), Some(&0.5));
        assert_eq!(s.get("by.easy"), Some(&1.0));
        assert_eq!(s.get("by.hard"), Some(&0.25));
        let e = parse_scores_json("out/scores.json", r#"{"accuracy": "high"}"#).unwrap_err();
        assert!(matches!(&e, ScoresError::NotANumber { key, .. } if key == "accuracy"), "{e:?}");
        let e = e.to_string();
        assert_eq!(e, "out/scores.json: key \"accuracy\": expected a number, found \"high\"");
        assert!(
            e.contains("out/scores.json") && e.contains("\"accuracy\"") && e.contains("number"),
            "{e}"
        );
        assert_eq!(
            parse_scores_json("s", "[1]").unwrap_err().to_string(),
            "s: expected a JSON object of scores, like {\"accuracy\": 0.5}"
        );
        assert!(parse_scores_json("s", "{}").unwrap_err().to_string().contains("no scores"));
        let e = parse_scores_json("s", "{").unwrap_err();
        assert!(std::error::Error::source(&e).is_some_and(|s| s.is::<serde_json::Error>()));
        assert!(e.to_string().contains("not valid JSON"));
    }

    #[test]
    fn txt_lines_are_key_number() {
        let s =
            parse_scores_txt("scores.txt", "# comment\naccuracy: 0.75\n\n\"f1\": 12.5\n").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s["accuracy"], 0.75);
        assert_eq!(s["f1"], 12.5);
        let e = parse_scores_txt("scores.txt", "accuracy: lots\n").unwrap_err().to_string();
        assert_eq!(e, "scores.txt line 1: key \"accuracy\": \"lots\" is not a number");
        assert!(e.contains("line 1") && e.contains("accuracy"), "{e}");
        let e = parse_scores_txt("scores.txt", "just text\n").unwrap_err().to_string();
        assert_eq!(e, "scores.txt line 1: expected `key: number`, found \"just text\"");
        assert!(parse_scores_txt("scores.txt", "\n")
            .unwrap_err()
            .to_string()
            .contains("no scores"));
    }

    #[test]
    fn fractions_become_percentages() {
        assert_eq!(as_percent(0.25), 25.0);
        assert_eq!(as_percent(1.0), 100.0);
        assert_eq!(as_percent(42.0), 42.0);
    }

    #[test]
    fn placeholders_and_checks() {
        let p = ProgramSpec {
            dir: "scoring".into(),
            command: vec![
                "python3".into(),
                "{program}/score.py".into(),
                "{input}".into(),
                "{output}".into(),
            ],
            timeout_s: 5,
            primary: "accuracy".into(),
        };
        assert_eq!(
            p.argv("/t/program", "/t/input", "/t/output"),
            ["python3", "/t/program/score.py", "/t/input", "/t/output"]
        );
        assert_eq!(p.shown(), "python3 {program}/score.py {input} {output}");
        assert!(p.check().is_ok());
        let e = ProgramSpec { command: vec![], ..p.clone() }.check().unwrap_err();
        assert_eq!(e, ProgramSpecError::NoCommand);
        assert_eq!(
            e.to_string(),
            "[scoring.program] command must name a program, e.g. [\"python3\", \"{program}/score.py\", \"{input}\", \"{output}\"]"
        );
        assert!(ProgramSpec { timeout_s: 0, ..p.clone() }.check().is_err());
        assert!(ProgramSpec { dir: "../x".into(), ..p.clone() }.check().is_err());
        assert_eq!(
            ProgramSpec { dir: "/abs".into(), ..p }.check(),
            Err(ProgramSpecError::DirOutside { dir: "/abs".into() })
        );
    }
}
