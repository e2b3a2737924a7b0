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

/// `score --submission` scores an archive as it was made: environment, phase, limit and shard
/// from its `metadata.json`; flags that contradict it are refused, naming both values.
#[test]
fn a_submission_is_scored_as_its_metadata_says_it_was_made() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    ok(&benchgen(cwd, &["eval", "--limit", "7"]));
    let out = ok(&benchgen(cwd, &["score", "--submission", "runs/1/submission.zip", "--json"]));
    let rescored: Value = serde_json::from_str(&out).unwrap();
    let original = read_json(&cwd.join("runs/1/score_breakdown.json"));
    for k in ["correct", "total", "accuracy", "answer_rate"] {
        assert_eq!(rescored[k], original[k], "{k}");
    }
    assert_eq!(rescored["total"], 7);
    for (flag, value, says) in [
        ("--limit", "9", "the submission was made with --limit 7"),
        ("--phase", "train", "the submission was made with --phase test"),
    ] {
        let out = benchgen(cwd, &["score", "--submission", "runs/1/submission.zip", flag, value]);
        assert!(!out.status.success(), "{flag} {value}");
        assert!(stderr(&out).contains(says), "{flag}: {}", stderr(&out));
    }

    // An environment given by path: found again by --env, refused when another is given, and
    // named when it cannot be found by its name alone.
    let choice = repo().join("fixtures/envs/choice");
    let choice = choice.to_str().unwrap();
    let zip = format!(
        "runs/{}/submission.zip",
        run_id(&ok(&benchgen(cwd, &["eval", "--env", choice, "--limit", "5"])))
    );
    let out = benchgen(cwd, &["score", "--submission", &zip]);
    assert!(stderr(&out).contains("give its folder or .zip with --env"), "{}", stderr(&out));
    let out = ok(&benchgen(cwd, &["score", "--submission", &zip, "--env", choice, "--json"]));
    let rescored: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rescored["total"], 5);
    let fewshot = repo().join("fixtures/envs/fewshot");
    let out = benchgen(cwd, &["score", "--submission", &zip, "--env", fewshot.to_str().unwrap()]);
    assert!(
        stderr(&out)
            .contains("--env fewshot-fixture: the submission was made with --env choice-fixture"),
        "{}",
        stderr(&out)
    );

    // A shard's archive is scored over the shard's items.
    let id = run_id(&ok(&benchgen(cwd, &["eval", "--limit", "10", "--shard", "1/3"])));
    let shard = read_json(&cwd.join(format!("runs/{id}/score_breakdown.json")));
    let zip = format!("runs/{id}/submission.zip");
    let out = ok(&benchgen(cwd, &["score", "--submission", &zip, "--json"]));
    let rescored: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (rescored["total"].clone(), rescored["correct"].clone()),
        (shard["total"].clone(), shard["correct"].clone())
    );
    assert_eq!(rescored["total"], 3);
}
