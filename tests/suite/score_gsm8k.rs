//! The gsm8k manifest through `benchgen score`, against lm-evaluation-harness's `gsm8k` rules:
//! strict-match (`#### (\-?[0-9\.\,]+)`, first match) is the accuracy, flexible-extract
//! (`(-?[$0-9.,]{2,})|(-?[0-9]+)`, last match, first non-empty group) a variant, both compared
//! by exact match after `regexes_to_ignore` [",", "\$", "(?s).*#### ", "\.$"] and lowercasing on
//! both sides. On hand-written items in the real format and, when `BENCHGEN_DATA_DIR` is set, on
//! the real test file.

use std::path::{Path, PathBuf};

use crate::common::*;
use serde_json::{json, Value};

/// A copy of the shipped gsm8k environment whose test phase reads the hand-written items.
fn gsm8k_with_fixture(root: &Path) -> PathBuf {
    let env = root.join("gsm8k");
    std::fs::create_dir_all(env.join("data")).unwrap();
    let manifest =
        std::fs::read_to_string(repo().join("environments/gsm8k/environment.toml")).unwrap();
    let manifest = manifest.replacen(
        "dataset = \"benchmarks/gsm8k/test.jsonl\"",
        "data = \"data/items.jsonl\"",
        1,
    );
    assert!(manifest.contains("data = \"data/items.jsonl\""));
    std::fs::write(env.join("environment.toml"), manifest).unwrap();
    std::fs::copy(repo().join("environments/gsm8k/README.md"), env.join("README.md")).unwrap();
    std::fs::copy(repo().join("fixtures/scoring/gsm8k.jsonl"), env.join("data/items.jsonl"))
        .unwrap();
    env
}

fn score(dir: &Path, env: &str, preds: &[Value]) -> Value {
    let text: String = preds.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(dir.join("preds.jsonl"), text).unwrap();
    serde_json::from_str(&ok(&benchgen(
        dir,
        &["score", "--env", env, "--predictions", "preds.jsonl", "--json"],
    )))
    .unwrap()
}

fn newest_run(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .max_by_key(|p| p.file_name().unwrap().to_str().unwrap().parse::<u64>().unwrap())
        .unwrap()
}

#[test]
fn reference_solutions_score_fully_under_both_filters() {
    let dir = tempfile::tempdir().unwrap();
    let env = gsm8k_with_fixture(dir.path());
    let items = read_jsonl(&repo().join("fixtures/scoring/gsm8k.jsonl"));
    let preds: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, it)| json!({"id": i.to_string(), "prediction": it["answer"]}))
        .collect();
    let b = score(dir.path(), env.to_str().unwrap(), &preds);
    assert_eq!(b["accuracy"].as_f64(), Some(100.0), "{b}");
    assert_eq!(b["variants"]["flexible-extract"].as_f64(), Some(100.0), "{b}");
    assert_eq!(b["overall_score"], b["accuracy"]);
}

#[test]
fn perturbed_predictions_score_as_lm_eval_would() {
    // (prediction, strict-match extraction, strict right, flexible-extract extraction, flexible
    // right); one row per fixture item, in order. Extractions are after regexes_to_ignore.
    let cases: [(&str, Option<&str>, bool, &str, bool); 11] = [
        // Target 18. A well-formed solution: both filters find 18.
        ("She sells 9 eggs and makes 9 * 2 = $18.\n#### 18", Some("18"), true, "18", true),
        // Target 1000. Wrong number after ####: both take 999.
        ("They cost 2 * 500 = 1000.\n#### 999", Some("999"), false, "999", false),
        // Target 42. No ####: strict finds nothing ([invalid]); flexible's last number is 42.
        ("6 * 7 = 42", None, false, "42", true),
        // Target -3. Text after the answer: strict takes the first #### (-3), flexible the
        // last number of the extra text (13).
        ("#### -3\nQuestion 2: 5 + 8 = 13", Some("-3"), true, "13", false),
        // Target 5. "The answer is 5." without ####: strict has nothing; flexible matches "5."
        // and regexes_to_ignore drops the trailing period.
        ("The answer is 5.", None, false, "5", true),
        // Target 2400. "#### $2,400.": strict's regex needs a digit, '-', '.' or ',' right
        // after "#### ", so "$" fails it; flexible takes "$2,400." → "2400".
        ("#### $2,400.", None, false, "2400", true),
        // Target 7. "7.0" keeps its ".0": not equal to "7" under exact match, for both.
        ("3 + 4 = 7\n#### 7.0", Some("7.0"), false, "7.0", false),
        // Target 12. "#### 12." then a newline: the period goes ("\.$"), both right.
        ("Half of 24 is 12, so #### 12.\n", Some("12"), true, "12", true),
        // Target 60. A different number after the answer on the same line: strict takes 60,
        // flexible the last number, 61.
        ("20 * 3 = 60 people.\n#### 60 people total, not 61", Some("60"), true, "61", false),
        // Target 3. A lone digit: flexible's first alternative needs two characters, so its
        // second group (-?[0-9]+) is the match.
        ("The answer is 3", None, false, "3", true),
        // Target 18. "####18" has no space: strict misses; flexible finds 18.
        ("####18", None, false, "18", true),
    ];
    let dir = tempfile::tempdir().unwrap();
    let env = gsm8k_with_fixture(dir.path());
    let preds: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"id": i.to_string(), "prediction": c.0}))
        .collect();
    let b = score(dir.path(), env.to_str().unwrap(), &preds);
    let n = cases.len() as f64;
    let strict = cases.iter().filter(|c| c.2).count();
    let flexible = cases.iter().filter(|c| c.4).count();
    assert_eq!((strict, flexible), (4, 7), "the table itself");
    assert_eq!(b["correct"], strict, "{b}");
    assert!((b["accuracy"].as_f64().unwrap() - 100.0 * strict as f64 / n).abs() < 1e-9, "{b}");
    assert!(
        (b["variants"]["flexible-extract"].as_f64().unwrap() - 100.0 * flexible as f64 / n).abs()
            < 1e-9,
        "{b}"
    );

    let run = newest_run(dir.path());
    let details =
        read_json(&run.join("detailed_results.json"))["items"].as_array().unwrap().clone();
    for (d, c) in details.iter().zip(&cases) {
        assert_eq!(d["extracted"], c.1.map_or(Value::Null, |s| json!(s)), "strict: {}", c.0);
        assert_eq!(d["correct"], c.2, "strict: {}", c.0);
        let v = &d["variants"][0];
        assert_eq!(
            (v["name"].as_str(), v["extracted"].as_str()),
            (Some("flexible-extract"), Some(c.3)),
            "flexible: {}",
            c.0
        );
        assert_eq!(v["correct"], c.4, "flexible: {}", c.0);
    }
    let scores = read_json(&run.join("scoring_output/scores.json"));
    assert_eq!(scores["variants"]["flexible-extract"]["correct"], flexible, "{scores}");
    assert_eq!(scores["correct"], strict);
}

#[test]
fn the_five_shot_phase_names_where_to_get_the_train_split() {
    let dir = tempfile::tempdir().unwrap();
    // A data folder with the test file only, as shared/data is.
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("benchmarks/gsm8k")).unwrap();
    std::fs::copy(
        repo().join("fixtures/scoring/gsm8k.jsonl"),
        data.join("benchmarks/gsm8k/test.jsonl"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        crate::common::benchgen_command()
            .args(args)
            .current_dir(dir.path())
            .env("BENCHGEN_DATA_DIR", &data)
            // The train split's hub fallback must not reach the internet from a test.
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_HOME", dir.path().join("hf"))
            .env_remove("HF_HUB_CACHE")
            .output()
            .unwrap()
    };
    let o = run(&["eval", "--env", "gsm8k", "--limit", "1"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("benchmarks/gsm8k/train.jsonl")
            && err.contains("hf://datasets/openai/gsm8k@main/main/train-00000-of-00001.parquet"),
        "{err}"
    );
    // The zero-shot phase runs on the test file alone, with the bare question as the prompt.
    let o = run(&["eval", "--env", "gsm8k", "--phase", "test-zeroshot", "--limit", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let preds = read_jsonl(&newest_run(dir.path()).join("predictions.jsonl"));
    let items = read_jsonl(&data.join("benchmarks/gsm8k/test.jsonl"));
    for p in &preds {
        let i: usize = p["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            p["prompt"],
            format!("Question: {}\nAnswer:", items[i]["question"].as_str().unwrap())
        );
    }
    assert_eq!(preds.len(), 2);
}

#[test]
fn real_test_file_has_1319_items_and_its_solutions_score_fully() {
    let Some(data) = std::env::var_os("BENCHGEN_DATA_DIR") else {
        eprintln!("SKIPPED: BENCHGEN_DATA_DIR not set; the real GSM8K test file is in ../shared/data/benchmarks/gsm8k");
        return;
    };
    let items = read_jsonl(&Path::new(&data).join("benchmarks/gsm8k/test.jsonl"));
    assert_eq!(items.len(), 1319);
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&benchgen(dir.path(), &["env", "show", "gsm8k"]));
    assert!(out.contains("test (default): benchmarks/gsm8k/test.jsonl — 1319 items, 5-shot from phase train (first_n)"), "{out}");
    assert!(out.contains("test-zeroshot: benchmarks/gsm8k/test.jsonl — 1319 items\n"), "{out}");
    assert!(out.contains("variant flexible-extract: extract"), "{out}");
    let preds: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, it)| json!({"id": i.to_string(), "prediction": it["answer"]}))
        .collect();
    let b = score(dir.path(), "gsm8k", &preds);
    assert_eq!((b["total"].as_u64(), b["correct"].as_u64()), (Some(1319), Some(1319)), "{b}");
    assert_eq!(b["variants"]["flexible-extract"].as_f64(), Some(100.0), "{b}");
    // Only the final line's number: "#### N" alone scores the same.
    let bare: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, it)| json!({"id": i.to_string(), "prediction": format!("#### {}", it["answer"].as_str().unwrap().rsplit("#### ").next().unwrap())}))
        .collect();
    let b = score(dir.path(), "gsm8k", &bare);
    assert_eq!(b["correct"].as_u64(), Some(1319), "{b}");
}
