//! Multiple choice by log-likelihood through the real binary: a fixture environment always,
//! the official ARC files when `BENCHGEN_DATA_DIR` points at the shared data.

use crate::common::*;
use serde_json::Value;

fn first_max(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

#[test]
fn acc_and_acc_norm_follow_the_journaled_log_likelihoods() {
    let dir = tempfile::tempdir().unwrap();
    let env = repo().join("fixtures/envs/choice");
    let out =
        ok(&benchgen(dir.path(), &["eval", "--env", env.to_str().unwrap(), "--batch-size", "4"]));
    assert!(out.contains("Acc Norm"), "{out}");
    // Multiple choice counts its throughput in log-likelihood requests (one per option).
    let line = out.lines().find(|l| l.starts_with("Processing: 30/30 (100%)")).unwrap();
    assert!(line.contains(" items/s, ") && line.ends_with(" requests/s"), "{line}");
    let run = dir.path().join("runs/1");
    let items = read_jsonl(&env.join("data/test.jsonl"));
    let preds = read_jsonl(&run.join("predictions.jsonl"));
    assert_eq!(preds.len(), items.len());

    // Recompute acc and acc_norm here from the journal: argmax of the log-likelihoods, raw and
    // divided by the option's length in characters.
    let (mut correct, mut correct_norm) = (0, 0);
    for it in &items {
        let p = preds.iter().find(|p| p["id"] == it["id"]).unwrap();
        assert_eq!(p["finish_reason"], "loglikelihood");
        let options: Vec<&str> =
            it["options"].as_array().unwrap().iter().map(|o| o.as_str().unwrap()).collect();
        let lps: Vec<f64> =
            p["choice_logprobs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(lps.len(), options.len());
        assert!(lps.iter().all(|&lp| lp < 0.0));
        let target = "ABCDE".find(it["answer"].as_str().unwrap()).unwrap();
        let raw = first_max(&lps);
        assert_eq!(p["prediction"], options[raw]);
        let norm: Vec<f64> =
            lps.iter().zip(&options).map(|(lp, o)| lp / o.chars().count() as f64).collect();
        correct += usize::from(raw == target);
        correct_norm += usize::from(first_max(&norm) == target);
    }
    let b = read_json(&run.join("score_breakdown.json"));
    assert_eq!(b["correct"], correct);
    assert!(
        (b["acc_norm"].as_f64().unwrap() - 100.0 * correct_norm as f64 / items.len() as f64).abs()
            < 1e-9
    );
    assert_eq!(b["overall_score"], b["accuracy"]);
    // The trained model knows arithmetic: far above the ~30% of guessing among 3-5 options.
    assert!(correct * 2 > items.len(), "correct = {correct}/{}", items.len());
    let scores = read_json(&run.join("scoring_output/scores.json"));
    assert_eq!(scores["correct_norm"], correct_norm);
    options_are_reported(&run, &preds, correct_norm);

    // Batch size does not change the picks.
    ok(&benchgen(dir.path(), &["eval", "--env", env.to_str().unwrap(), "--batch-size", "1"]));
    let b1 = read_json(&dir.path().join("runs/2/score_breakdown.json"));
    assert_eq!(
        (b1["correct"].clone(), b1["acc_norm"].clone()),
        (b["correct"].clone(), b["acc_norm"].clone())
    );
}

/// Detailed results (JSON, and the page's embedded data) give every option with the journal's
/// log-likelihood, its per-character value and both picks.
fn options_are_reported(run: &std::path::Path, preds: &[Value], correct_norm: usize) {
    let detailed = read_json(&run.join("detailed_results.json"));
    let html = std::fs::read_to_string(run.join("detailed_results.html")).unwrap();
    let page = page_data(&html);
    assert_eq!(page["multiple_choice"], true);
    assert_eq!(page["items"], detailed["items"], "the page shows what the JSON holds");
    let mut norm_right = 0;
    for d in detailed["items"].as_array().unwrap() {
        let p = preds.iter().find(|p| p["id"] == d["id"]).unwrap();
        let choice = &d["choice"];
        let options = choice["options"].as_array().unwrap();
        let lps = p["choice_logprobs"].as_array().unwrap();
        assert_eq!(options.len(), lps.len(), "{d}");
        for (o, lp) in options.iter().zip(lps) {
            assert_eq!(&o["loglik"], lp, "{d}");
            let chars = o["text"].as_str().unwrap().chars().count() as f64;
            let norm = lp.as_f64().unwrap() / chars;
            assert!((o["loglik_norm"].as_f64().unwrap() - norm).abs() < 1e-12, "{d}");
        }
        let best = |key: &str| {
            let v: Vec<f64> = options.iter().map(|o| o[key].as_f64().unwrap()).collect();
            first_max(&v) as u64
        };
        assert_eq!(choice["acc_pick"].as_u64(), Some(best("loglik")), "{d}");
        assert_eq!(choice["acc_norm_pick"].as_u64(), Some(best("loglik_norm")), "{d}");
        assert_eq!(d["correct"], choice["acc_pick"] == choice["target"], "{d}");
        norm_right += usize::from(choice["acc_norm_pick"] == choice["target"]);
    }
    assert_eq!(norm_right, correct_norm);
}

#[test]
fn official_arc_and_mmlu_files_load_and_score() {
    let Some(data) = std::env::var_os("BENCHGEN_DATA_DIR") else {
        eprintln!("SKIPPED: BENCHGEN_DATA_DIR not set; the ARC and MMLU tests need ../shared/data");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, file, count) in [
        ("arc-easy", "ARC-Easy-Test.jsonl", 2376),
        ("arc-challenge", "ARC-Challenge-Test.jsonl", 1170),
    ] {
        let lines = read_jsonl(&std::path::Path::new(&data).join("benchmarks/arc").join(file));
        assert_eq!(lines.len(), count, "{file}");
        let env = repo().join("environments").join(name);
        let out = benchgen(
            dir.path(),
            &["eval", "--env", env.to_str().unwrap(), "--limit", "25", "--json"],
        );
        let b: Value = serde_json::from_str(&ok(&out)).unwrap();
        assert_eq!(b["total"], 25);
        assert_eq!(b["primary"], "acc_norm");
        assert_eq!(b["answer_rate"], 100.0);
    }

    // MMLU: 57 headerless CSVs per split, every row a valid four-option item.
    let out = ok(&benchgen(dir.path(), &["env", "validate", "mmlu"]));
    for line in [
        "phase test: 14042 items, 0 problem(s)",
        "phase val: 1531 items, 0 problem(s)",
        "phase dev: 285 items, 0 problem(s)",
    ] {
        assert!(out.contains(line), "{out}");
    }
    let out = ok(&benchgen(
        dir.path(),
        &["eval", "--env", "mmlu", "--phase", "dev", "--limit", "3", "--json"],
    ));
    let b: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(b["total"], 3);
    let run = std::fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .max()
        .unwrap();
    let preds = read_jsonl(&run.join("predictions.jsonl"));
    let first = preds
        .iter()
        .find(|p| p["id"] == "abstract_algebra_dev/0")
        .expect("ids are file stem / row");
    let prompt = first["prompt"].as_str().unwrap();
    assert!(prompt.starts_with("The following are multiple choice questions (with answers) about abstract algebra.\n\n"), "{prompt}");
    assert!(
        prompt.ends_with("Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer:"),
        "{prompt}"
    );
    assert_eq!(first["choice_logprobs"].as_array().unwrap().len(), 4);
}

#[test]
fn loglikelihood_without_choices_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env");
    copy_dir(&repo().join("fixtures/envs/choice"), &env);
    let m = std::fs::read_to_string(env.join("environment.toml"))
        .unwrap()
        .replace("choices = \"options\"\n", "");
    std::fs::write(env.join("environment.toml"), m).unwrap();
    let o = benchgen(dir.path(), &["eval", "--env", env.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("needs [fields] choices"), "{}", stderr(&o));
}

#[test]
fn options_longer_than_the_context_are_refused_or_scored_on_the_context_s_last_tokens() {
    // TruthfulQA's six-shot preamble is longer than the embedded model's 512 tokens.
    let dir = tempfile::tempdir().unwrap();
    let data = repo().join("fixtures/hub-layouts/data");
    let eval = |extra: &[&str]| {
        let mut cmd = crate::common::benchgen_command();
        cmd.args(["eval", "--env", "truthfulqa-mc1"])
            .args(extra)
            .current_dir(dir.path())
            .env("BENCHGEN_DATA_DIR", &data);
        output_within(&mut cmd, std::time::Duration::from_secs(120))
    };
    let refused = eval(&[]);
    assert!(!refused.status.success());
    let msg = stderr(&refused);
    assert!(
        msg.contains("more than the model's context of 512") && msg.contains("--truncate left"),
        "{msg}"
    );

    ok(&eval(&["--truncate", "left"]));
    // Run 1 is the refused one.
    let preds = read_jsonl(&dir.path().join("runs/2/predictions.jsonl"));
    assert_eq!(preds.len(), 2);
    for (p, options) in preds.iter().zip([4, 3]) {
        let (kept, dropped) =
            (p["tokens_in"].as_u64().unwrap(), p["tokens_dropped"].as_u64().unwrap());
        // What was cut is the context's start: what is kept plus the longest option fits.
        assert!(dropped > 0 && kept < 512, "{p}");
        assert_eq!(p["choice_logprobs"].as_array().unwrap().len(), options, "{p}");
    }
}
