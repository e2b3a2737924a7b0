//! `benchgen score`: saved predictions re-scored without a model, as a run of their own.

use crate::common::*;
use serde_json::Value;

fn write_predictions(path: &std::path::Path, preds: &[(String, String)]) {
    let text: String = preds
        .iter()
        .map(|(id, p)| format!("{}\n", serde_json::json!({"id": id, "prediction": p})))
        .collect();
    std::fs::write(path, text).unwrap();
}

#[test]
fn rescoring_a_submission_reproduces_its_run() {
    let dir = tempfile::tempdir().unwrap();
    ok(&benchgen(dir.path(), &["eval", "--limit", "40"]));
    let out = ok(&benchgen(
        dir.path(),
        &["score", "--submission", "runs/1/submission.zip", "--limit", "40", "--json"],
    ));
    let rescored: Value = serde_json::from_str(&out).unwrap();
    let original = read_json(&dir.path().join("runs/1/score_breakdown.json"));
    for k in ["correct", "exact", "answered", "total", "accuracy", "exact_match", "answer_rate"] {
        assert_eq!(rescored[k], original[k], "{k}");
    }
    let rec = read_json(&dir.path().join("runs/2/run.json"));
    assert_eq!(rec["status"], "Completed");
    assert!(rec["model"]["spec"].as_str().unwrap().starts_with("submission:"));
    let a = read_json(&dir.path().join("runs/1/detailed_results.json"));
    let b = read_json(&dir.path().join("runs/2/detailed_results.json"));
    assert_eq!(a["items"], b["items"]);
}

#[test]
fn reference_answers_score_everything_and_perturbations_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let items = read_jsonl(&repo().join("fixtures/embedded/env/data/test.jsonl"));
    let reference: Vec<(String, String)> = items
        .iter()
        .map(|i| (i["id"].as_str().unwrap().into(), i["answer"].as_str().unwrap().into()))
        .collect();
    let path = dir.path().join("ref.jsonl");
    write_predictions(&path, &reference);
    let b: Value = serde_json::from_str(&ok(&benchgen(
        dir.path(),
        &["score", "--predictions", "ref.jsonl", "--json"],
    )))
    .unwrap();
    assert_eq!((b["accuracy"].as_f64(), b["exact_match"].as_f64()), (Some(100.0), Some(100.0)));

    // Wrong number, extra text after the number, no number at all, and a missing item.
    let mut perturbed = reference.clone();
    perturbed[0].1 = format!("{}", perturbed[0].1.parse::<i64>().unwrap() + 1);
    perturbed[1].1 = format!("{} is the answer", perturbed[1].1);
    perturbed[2].1 = "no idea".into();
    perturbed.remove(3);
    write_predictions(&path, &perturbed);
    let b: Value = serde_json::from_str(&ok(&benchgen(
        dir.path(),
        &["score", "--predictions", "ref.jsonl", "--json"],
    )))
    .unwrap();
    let n = items.len();
    assert_eq!(
        b["correct"],
        n - 3,
        "wrong number, no number and missing are wrong; extra text still counts"
    );
    assert_eq!(b["exact"], n - 4, "exact match needs the bare answer");
    assert_eq!(b["answered"], n - 2);

    perturbed.push(("no-such-item".into(), "1".into()));
    write_predictions(&path, &perturbed);
    let o = benchgen(dir.path(), &["score", "--predictions", "ref.jsonl"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown item id \"no-such-item\""), "{}", stderr(&o));
}
