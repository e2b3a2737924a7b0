//! `benchgen eval` on the embedded default, run as a user would: the real binary, from a
//! directory that has nothing to do with the repository.

use crate::common::*;
use serde_json::Value;

/// The embedded environment's items, read from the fixture the binary embeds.
fn embedded_items() -> Vec<Value> {
    read_jsonl(&repo().join("fixtures/embedded/env/data/test.jsonl"))
}

fn first_number(s: &str) -> Option<i64> {
    let t = s.trim_start();
    let end = t.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(t.len());
    t[..end].parse().ok()
}

#[test]
fn default_eval_writes_every_file_with_consistent_content() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&benchgen(dir.path(), &["eval"]));
    let run = dir.path().join("runs/1");

    // Live log, in the platform's words.
    for needle in [
        "Status: Running",
        "Run ID: 1",
        "Model: embedded:arithmetic-llama",
        "Environment: arithmetic",
        "Created: ",
        "Loading benchmark data",
        "Loading model",
        "Processing: 10/100 (10%)",
        "Processing: 100/100 (100%)",
        "Score Breakdown",
        "Status: Completed",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    let log = std::fs::read_to_string(run.join("log.txt")).unwrap();
    assert!(log.contains("Processing: 50/100 (50%)") && log.contains("accuracy="), "{log}");
    // Every line of the file is stamped with the UTC time it was logged; the console's are not.
    let stamp = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ").unwrap();
    assert!(log.lines().all(|l| stamp.is_match(l)), "{log}");
    assert!(!out.lines().any(|l| stamp.is_match(l)), "{out}");
    // Progress lines say how fast it goes and how long is left.
    let rates = regex::Regex::new(
        r"(?m)^Processing: 50/100 \(50%\) [0-9.]+ items/s, [0-9.]+ tokens/s, ETA [0-9hms]+$",
    )
    .unwrap();
    assert!(rates.is_match(&out), "{out}");

    // Predictions: one per item, every id once.
    let items = embedded_items();
    let preds = read_jsonl(&run.join("predictions.jsonl"));
    assert_eq!(preds.len(), items.len());
    // The throughput line counts what the journal holds.
    let sum = |k: &str| preds.iter().map(|p| p[k].as_u64().unwrap()).sum::<u64>();
    let want = format!("Generated {} tokens for 100 items in ", sum("tokens_out"));
    let line = log
        .lines()
        .map(benchgen::log::strip_timestamp)
        .find(|l| l.starts_with(&want))
        .unwrap_or_else(|| panic!("no {want:?} line in:\n{log}"));
    assert!(line.ends_with(&format!("tokens/s ({} prompt tokens)", sum("tokens_in"))), "{line}");
    let mut ids: Vec<&str> = preds.iter().map(|p| p["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut want: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    want.sort_unstable();
    assert_eq!(ids, want);
    for p in &preds {
        for key in ["prompt", "prediction", "tokens_in", "tokens_out", "finish_reason"] {
            assert!(p.get(key).is_some(), "prediction lacks {key}: {p}");
        }
        assert!(p["tokens_in"].as_u64().unwrap() > 1);
    }

    // The submission holds the same predictions (in item order) plus metadata.
    let zip = unzip(&run.join("submission.zip"));
    assert_eq!(zip.keys().collect::<Vec<_>>(), ["metadata.json", "predictions.jsonl"]);
    let submitted: Vec<Value> =
        zip["predictions.jsonl"].lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let item_order: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(submitted.iter().map(|p| p["id"].as_str().unwrap()).collect::<Vec<_>>(), item_order);
    for s in &submitted {
        assert!(preds.contains(s), "submitted record not in the journal: {s}");
    }
    let meta: Value = serde_json::from_str(&zip["metadata.json"]).unwrap();
    assert_eq!(meta["run_id"], 1);

    // Correctness recomputed here, independently of the scorer: first number == answer.
    let detailed = read_json(&run.join("detailed_results.json"));
    let records = detailed["items"].as_array().unwrap();
    assert_eq!(records.len(), items.len());
    let mut correct = 0;
    for (r, it) in records.iter().zip(&items) {
        assert_eq!(r["id"], it["id"]);
        assert_eq!(r["prompt"], it["question"]);
        assert_eq!(r["target"], it["answer"]);
        let want = first_number(r["prediction"].as_str().unwrap())
            == it["answer"].as_str().unwrap().parse().ok();
        assert_eq!(r["correct"].as_bool().unwrap(), want, "{r}");
        correct += usize::from(want);
    }

    // The model really ran: neither nothing nor everything right, and not one constant answer.
    let distinct: std::collections::HashSet<&str> =
        preds.iter().map(|p| p["prediction"].as_str().unwrap()).collect();
    assert!(distinct.len() > 20, "suspiciously few distinct predictions: {distinct:?}");
    assert!(correct > 0 && correct < items.len(), "correct = {correct}");

    let b = read_json(&run.join("score_breakdown.json"));
    assert_eq!(b["correct"], correct);
    assert_eq!(b["total"], items.len());
    let pct = 100.0 * correct as f64 / items.len() as f64;
    assert!((b["accuracy"].as_f64().unwrap() - pct).abs() < 1e-9);
    assert_eq!(b["overall_score"], b["accuracy"]);
    let exact = records.iter().filter(|r| r["exact"] == true).count();
    assert_eq!(b["exact"], exact);
    assert!(out.contains(&format!("accuracy={pct:.2}% correct={correct}/100")), "{out}");

    let scores = read_json(&run.join("scoring_output/scores.json"));
    assert_eq!(scores["correct"], correct);
    assert!(run.join("scoring_output/scoring.log").is_file());

    let rec = read_json(&run.join("run.json"));
    assert_eq!(rec["status"], "Completed");
    assert_eq!(rec["run_id"], 1);
    assert_eq!(rec["submission"], "submission.zip");
    assert_eq!(rec["items"], 100);
    assert!(rec["duration_s"].as_f64().unwrap() > 0.0);

    // The fine-tune set holds exactly the correct items, in chat format.
    let ft = read_jsonl(&run.join("finetune.jsonl"));
    assert_eq!(ft.len(), correct);
    for line in &ft {
        assert_eq!(line["messages"][0]["role"], "user");
        assert_eq!(line["messages"][1]["role"], "assistant");
    }

    let html = std::fs::read_to_string(run.join("detailed_results.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("arith-000"));
    // Self-contained: inline style and script only, nothing fetched.
    assert!(!html.contains("src=") && !html.contains("http"), "HTML must be self-contained");
    assert_eq!(page_data(&html)["items"].as_array().unwrap().len(), 100);

    // The Evaluations tab.
    let list = ok(&benchgen(dir.path(), &["runs", "list"]));
    assert!(
        list.contains("Completed")
            && list.contains("arithmetic")
            && list.contains(&format!("{pct:.2}"))
            && list.contains(" Items ")
            && list.contains(" 100  "),
        "{list}"
    );
    let show = ok(&benchgen(dir.path(), &["runs", "show", "1"]));
    assert!(show.contains("Run ID:       1") && show.contains("Items:        100\n"), "{show}");
    // Every file of the run is listed (this run has them all).
    for f in [
        "run.json",
        "log.txt",
        "predictions.jsonl",
        "submission.zip",
        "scoring_output/scores.json",
        "scoring_output/scoring.log",
        "score_breakdown.json",
        "detailed_results.json",
        "detailed_results.html",
        "finetune.jsonl",
    ] {
        assert!(run.join(f).is_file() && show.contains(&format!("runs/1/{f}\n")), "{f}: {show}");
    }
    let ft_out = ok(&benchgen(dir.path(), &["runs", "show", "1", "--finetune"]));
    assert_eq!(ft_out.lines().count(), correct);
}

#[test]
fn json_flag_prints_the_breakdown_and_model_dir_matches_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let out = benchgen(dir.path(), &["eval", "--json", "--limit", "30", "--batch-size", "7"]);
    let text = ok(&out);
    let mut b: Value = serde_json::from_str(&text).expect("stdout is only JSON");
    assert_eq!(b["total"], 30);
    // The Score Breakdown, with where the run is beside it.
    let run = b.as_object_mut().unwrap();
    assert_eq!(run.remove("run_id"), Some(Value::from(1)));
    let run_dir = run.remove("run_dir").unwrap();
    assert!(run_dir.as_str().unwrap().ends_with("runs/1"), "{run_dir}");
    assert_eq!(b, read_json(&dir.path().join("runs/1/score_breakdown.json")));
    assert!(stderr(&out).contains("Processing: 30/30 (100%)"));

    // The embedded model copied to a directory loads through --model DIR to the same answers.
    let model_dir = dir.path().join("model");
    copy_dir(&repo().join("fixtures/embedded/model"), &model_dir);
    let args = ["eval", "--limit", "30", "--model", model_dir.to_str().unwrap()];
    ok(&benchgen(dir.path(), &args));
    let a = read_jsonl(&dir.path().join("runs/1/predictions.jsonl"));
    let mut b = read_jsonl(&dir.path().join("runs/2/predictions.jsonl"));
    let key = |v: &Value| v["id"].as_str().unwrap().to_string();
    let mut a = a;
    a.sort_by_key(key);
    b.sort_by_key(key);
    assert_eq!(a, b);
}

#[test]
fn two_evals_started_at_once_get_different_run_ids() {
    let dir = tempfile::tempdir().unwrap();
    let spawn = || {
        crate::common::benchgen_command()
            .args(["eval", "--limit", "20"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let id = |o: &std::process::Output| {
        let s = ok(o);
        s.lines().find_map(|l| l.strip_prefix("Run ID: ")).unwrap().trim().to_string()
    };
    let mut ids = [id(&a), id(&b)];
    ids.sort();
    assert_eq!(ids, ["1".to_string(), "2".to_string()]);
    for i in ["1", "2"] {
        assert_eq!(
            read_json(&dir.path().join("runs").join(i).join("run.json"))["status"],
            "Completed"
        );
    }
}
