//! `eval --shard K/N` and `merge`: an evaluation split into shards and merged is the
//! evaluation run whole (predictions, scores, breakdown and reports byte for byte, but for the
//! Run ID and durations), for generation, few-shot prompts drawn by position, and multiple
//! choice; shards that do not belong together are refused, naming them.

use std::path::{Path, PathBuf};

use crate::common::*;
use serde_json::Value;

fn run_dir(runs: &Path, id: u64) -> PathBuf {
    runs.join(id.to_string())
}

fn eval(cwd: &Path, args: &[&str]) -> u64 {
    let mut all = vec!["eval", "--runs-dir", "runs"];
    all.extend_from_slice(args);
    run_id(&ok(&benchgen(cwd, &all)))
}

/// A JSON file with the fields that name the run or time it taken out.
fn json_without_run(path: &Path) -> Value {
    let mut v = read_json(path);
    for key in ["run_id", "duration_s", "created"] {
        v.as_object_mut().unwrap().remove(key);
        if let Some(b) = v.get_mut("breakdown").and_then(Value::as_object_mut) {
            b.remove(key);
        }
    }
    v
}

/// The detailed-results page without its run number and duration.
fn html_without_run(path: &Path, run: u64) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text =
        text.replace(&format!("Run {run} "), "Run _ ").replace(&format!("run {run}<"), "run _<");
    let duration = regex::Regex::new(r"Duration</td><td>[0-9.]+s").unwrap();
    duration.replace_all(&text, "Duration</td><td>_s").into_owned()
}

fn assert_same_as_whole(runs: &Path, merged: u64, whole: u64) {
    let (m, w) = (run_dir(runs, merged), run_dir(runs, whole));
    let (mz, wz) = (unzip(&m.join("submission.zip")), unzip(&w.join("submission.zip")));
    assert_eq!(mz["predictions.jsonl"], wz["predictions.jsonl"], "submission predictions");
    for file in ["score_breakdown.json", "detailed_results.json"] {
        assert_eq!(json_without_run(&m.join(file)), json_without_run(&w.join(file)), "{file}");
    }
    assert_eq!(
        html_without_run(&m.join("detailed_results.html"), merged),
        html_without_run(&w.join("detailed_results.html"), whole)
    );
    for entry in std::fs::read_dir(w.join("scoring_output")).unwrap() {
        let name = entry.unwrap().file_name();
        let read = |d: &Path| std::fs::read(d.join("scoring_output").join(&name)).unwrap();
        assert_eq!(read(&m), read(&w), "scoring_output/{name:?}");
    }
    if w.join("finetune.jsonl").exists() {
        assert_eq!(
            std::fs::read(m.join("finetune.jsonl")).unwrap(),
            std::fs::read(w.join("finetune.jsonl")).unwrap()
        );
    }
    let record = read_json(&m.join("run.json"));
    assert_eq!(record["status"], "Completed", "{record}");
    assert!(record["settings"].get("shard").is_none(), "{record}");
    assert_eq!(record["shards"].as_array().unwrap().len(), 4, "{record}");
}

/// Runs shards 0..4 of `args` with another batch size each, then merges them by group.
fn shards_then_merge(cwd: &Path, args: &[&str]) -> (Vec<u64>, u64) {
    let mut ids = Vec::new();
    for k in 0..4 {
        let shard = format!("{k}/4");
        let batch = (k + 1).to_string();
        let mut all = args.to_vec();
        all.extend_from_slice(&["--shard", &shard, "--batch-size", &batch]);
        ids.push(eval(cwd, &all));
    }
    let group = read_json(&run_dir(&cwd.join("runs"), ids[0]).join("run.json"))["settings"]
        ["group"]
        .as_str()
        .unwrap()
        .to_string();
    let merged = run_id(&ok(&benchgen(cwd, &["merge", "--group", &group, "--runs-dir", "runs"])));
    (ids, merged)
}

#[test]
fn merged_shards_equal_the_whole_run_for_generation_few_shot_and_multiple_choice() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let runs = cwd.join("runs");

    // Generation: the embedded environment, items split 5/5/5/5.
    let whole = eval(cwd, &["--limit", "20"]);
    let (ids, merged) = shards_then_merge(cwd, &["--limit", "20"]);
    for (k, id) in ids.iter().enumerate() {
        let rec = read_json(&run_dir(&runs, *id).join("run.json"));
        assert_eq!(rec["settings"]["shard"], format!("{k}/4"));
        assert_eq!(rec["items"], 5, "{rec}");
    }
    assert_same_as_whole(&runs, merged, whole);
    // Its duration is the evaluation's wall time: the first shard's start to the last one's end.
    let time = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    let records: Vec<Value> =
        ids.iter().map(|id| read_json(&run_dir(&runs, *id).join("run.json"))).collect();
    let first = records.iter().map(|r| time(&r["created"])).min().unwrap();
    let last = records.iter().map(|r| time(&r["finished"])).max().unwrap();
    let merged_record = read_json(&run_dir(&runs, merged).join("run.json"));
    let span = (last - first).num_milliseconds() as f64 / 1000.0;
    assert_eq!(merged_record["duration_s"].as_f64(), Some(span), "{merged_record}");
    let breakdown = read_json(&run_dir(&runs, merged).join("score_breakdown.json"));
    assert_eq!(breakdown["duration_s"].as_f64(), Some(span));

    // Few-shot examples drawn at random per position: a shard's item must get the prompt it
    // gets in the whole run. Three items over four shards: shard 3 holds none.
    let env = cwd.join("fewshot");
    copy_dir(&repo().join("fixtures/envs/fewshot"), &env);
    let manifest = std::fs::read_to_string(env.join("environment.toml")).unwrap();
    let random = manifest.replacen("sampler = \"first_n\"", "sampler = \"random\"", 1);
    assert_ne!(manifest, random);
    std::fs::write(env.join("environment.toml"), random).unwrap();
    let env = env.to_str().unwrap();
    let whole = eval(cwd, &["--env", env]);
    let (_, merged) = shards_then_merge(cwd, &["--env", env]);
    assert_same_as_whole(&runs, merged, whole);

    // Multiple choice by log-likelihood, merged by naming the runs.
    let env = repo().join("fixtures/envs/choice");
    let env = env.to_str().unwrap();
    let whole = eval(cwd, &["--env", env]);
    let (ids, _) = shards_then_merge(cwd, &["--env", env]);
    let mut args = vec!["merge", "--runs-dir", "runs"];
    let names: Vec<String> = ids.iter().rev().map(u64::to_string).collect();
    args.extend(names.iter().map(String::as_str));
    let merged = run_id(&ok(&benchgen(cwd, &args)));
    assert_same_as_whole(&runs, merged, whole);
    // A merged run re-runs whole and reproduces.
    let merged = merged.to_string();
    assert!(ok(&benchgen(cwd, &["verify", &merged, "--runs-dir", "runs"])).contains("reproduces"));
}

#[test]
fn shards_that_do_not_make_one_evaluation_are_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let limit = ["--limit", "6"];
    let shard = |k: &str, extra: &[&str]| {
        let mut args = limit.to_vec();
        args.extend_from_slice(&["--shard", k]);
        args.extend_from_slice(extra);
        eval(cwd, &args)
    };
    let (a, b) = (shard("0/3", &[]), shard("1/3", &[]));
    let merge = |ids: &[u64]| {
        let names: Vec<String> = ids.iter().map(u64::to_string).collect();
        let mut args = vec!["merge", "--runs-dir", "runs"];
        args.extend(names.iter().map(String::as_str));
        let out = benchgen(cwd, &args);
        assert!(!out.status.success(), "{ids:?} merged");
        stderr(&out)
    };
    let err = merge(&[a, b]);
    assert!(err.contains("missing shard(s) 2/3"), "{err}");
    let err = merge(&[a, b, b]);
    assert!(
        err.contains("shard 1/3 is there twice") && err.contains(&format!("runs {b} and {b}")),
        "{err}"
    );
    let other_seed = shard("2/3", &["--seed", "5"]);
    let err = merge(&[a, b, other_seed]);
    assert!(err.contains("--seed") && err.contains(&format!("run {other_seed}")), "{err}");
    let other_n = shard("2/4", &["--group", "other"]);
    let err = merge(&[a, b, other_n]);
    assert!(err.contains("share N") || err.contains("--group"), "{err}");
    let whole = eval(cwd, &limit);
    let err = merge(&[a, b, whole]);
    assert!(err.contains(&format!("run {whole} is not a shard")), "{err}");

    // A failed shard is named, with how to redo it.
    let c = shard("2/3", &[]);
    let record = run_dir(&cwd.join("runs"), c).join("run.json");
    let mut rec = read_json(&record);
    rec["status"] = "Failed".into();
    std::fs::write(&record, rec.to_string()).unwrap();
    let err = merge(&[a, b, c]);
    assert!(err.contains(&format!("run {c} (shard 2/3) is Failed")), "{err}");
    // By group, the shard's Completed run stands in for its failed one (a requeued task).
    let again = shard("2/3", &[]);
    let group = rec["settings"]["group"].as_str().unwrap().to_string();
    let out = ok(&benchgen(cwd, &["merge", "--group", &group, "--runs-dir", "runs"]));
    let merged = read_json(&run_dir(&cwd.join("runs"), run_id(&out)).join("run.json"));
    let used: Vec<u64> = merged["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["run_id"].as_u64().unwrap())
        .collect();
    assert_eq!(used, [a, b, again]);
    // Completed twice (a requeued task that had finished): the same predictions count once,
    // other ones are refused.
    let twice = shard("2/3", &[]);
    let out = ok(&benchgen(cwd, &["merge", "--group", &group, "--runs-dir", "runs"]));
    let merged = read_json(&run_dir(&cwd.join("runs"), run_id(&out)).join("run.json"));
    assert_eq!(merged["shards"][2]["run_id"], again, "{merged}");
    let runs = cwd.join("runs");
    std::fs::copy(
        run_dir(&runs, a).join("submission.zip"),
        run_dir(&runs, twice).join("submission.zip"),
    )
    .unwrap();
    let out = benchgen(cwd, &["merge", "--group", &group, "--runs-dir", "runs"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("completed twice with different predictions"), "{err}");
    assert!(err.contains(&format!("runs {again} and {twice}")), "{err}");

    // --shard on the command line: parsed, and checked against N.
    for (bad, says) in [("3/3", "K must be below N"), ("x", "expected K/N")] {
        let out = benchgen(cwd, &["eval", "--shard", bad, "--runs-dir", "runs"]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(says), "{bad}: {}", stderr(&out));
    }
}

#[test]
fn a_shard_resumes_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let runs = cwd.join("runs");
    let whole = eval(cwd, &["--limit", "8"]);
    let first = eval(cwd, &["--limit", "8", "--shard", "0/2"]);
    let second = eval(cwd, &["--limit", "8", "--shard", "1/2"]);
    // The second shard as a crash leaves it: Failed, one prediction journaled.
    let dir2 = run_dir(&runs, second);
    let mut rec = read_json(&dir2.join("run.json"));
    rec["status"] = "Failed".into();
    std::fs::write(dir2.join("run.json"), rec.to_string()).unwrap();
    let journal = std::fs::read_to_string(dir2.join("predictions.jsonl")).unwrap();
    std::fs::write(
        dir2.join("predictions.jsonl"),
        journal.lines().next().unwrap().to_string() + "\n",
    )
    .unwrap();
    let id = second.to_string();
    let out = benchgen(cwd, &["eval", "--resume", &id, "--shard", "0/2", "--runs-dir", "runs"]);
    assert!(stderr(&out).contains("different --shard"), "{}", stderr(&out));
    let out = ok(&benchgen(cwd, &["eval", "--resume", &id, "--runs-dir", "runs"]));
    assert!(out.contains("Resuming with 1 prediction(s)"), "{out}");
    let rec = read_json(&dir2.join("run.json"));
    assert_eq!((rec["status"].as_str(), rec["items"].as_u64()), (Some("Completed"), Some(4)));
    let shown = ok(&benchgen(cwd, &["runs", "show", &id, "--runs-dir", "runs"]));
    assert!(shown.contains("Items:        4 (limit 8, shard 1/2)"), "{shown}");
    let listed = ok(&benchgen(cwd, &["runs", "list", "--runs-dir", "runs"]));
    assert!(listed.contains("4 (limit 8, shard 1/2)"), "{listed}");
    let (a, b) = (first.to_string(), id);
    let merged = run_id(&ok(&benchgen(cwd, &["merge", &a, &b, "--runs-dir", "runs"])));
    let m = unzip(&run_dir(&runs, merged).join("submission.zip"));
    let w = unzip(&run_dir(&runs, whole).join("submission.zip"));
    assert_eq!(m["predictions.jsonl"], w["predictions.jsonl"]);
}

#[test]
fn shard_auto_reads_the_schedulers_variables() {
    let dir = tempfile::tempdir().unwrap();
    let run = |vars: &[(&str, &str)]| {
        let mut cmd = benchgen_command();
        cmd.current_dir(dir.path()).args([
            "eval",
            "--limit",
            "4",
            "--shard",
            "auto",
            "--runs-dir",
            "runs",
        ]);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    // Slurm --array=0-6:2, task 4: shard 2 of 4.
    let out = run(&[
        ("SLURM_ARRAY_TASK_ID", "4"),
        ("SLURM_ARRAY_TASK_COUNT", "4"),
        ("SLURM_ARRAY_TASK_MIN", "0"),
        ("SLURM_ARRAY_TASK_MAX", "6"),
        ("SLURM_ARRAY_TASK_STEP", "2"),
    ]);
    let id = run_id(&ok(&out));
    let rec = read_json(&run_dir(&dir.path().join("runs"), id).join("run.json"));
    assert_eq!(rec["settings"]["shard"], "2/4");
    // A Kubernetes Indexed Job.
    let out = run(&[("JOB_COMPLETION_INDEX", "1"), ("BENCHGEN_SHARDS", "2")]);
    let id = run_id(&ok(&out));
    let rec = read_json(&run_dir(&dir.path().join("runs"), id).join("run.json"));
    assert_eq!(rec["settings"]["shard"], "1/2");
    let out = run(&[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no scheduler variables"), "{}", stderr(&out));
}

/// examples/slurm's scripts, run as a job array's tasks would run them (Slurm's variables set
/// by hand; a real cluster is not started here), then the merge job's.
#[test]
fn the_slurm_scripts_run_the_shards_and_merge_them() {
    if std::env::var_os("BENCHGEN_TEST_RUNNER").is_some() {
        eprintln!(
            "skipping: the scripts run the benchgen binary directly, which a cross build cannot"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let script = |name: &str, vars: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(repo().join("examples/slurm").join(name)).current_dir(dir.path());
        cmd.env("BENCHGEN", env!("CARGO_BIN_EXE_benchgen"))
            .env("GROUP", "slurm-test")
            .env("RUNS_DIR", &runs)
            .env("EVAL_LIMIT", "6");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        ok(&cmd.output().unwrap())
    };
    // --array=0-4:2 gives task ids 0, 2 and 4.
    for id in ["4", "0", "2"] {
        script(
            "eval-array.sbatch",
            &[
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_MAX", "4"),
                ("SLURM_ARRAY_TASK_STEP", "2"),
                ("SLURM_CPUS_PER_TASK", "1"),
            ],
        );
    }
    let merged = run_id(&script("merge.sbatch", &[]));
    let record = read_json(&run_dir(&runs, merged).join("run.json"));
    assert_eq!(record["status"], "Completed", "{record}");
    assert_eq!(record["items"], 6, "{record}");
    let shards: Vec<&str> =
        record["shards"].as_array().unwrap().iter().map(|s| s["shard"].as_str().unwrap()).collect();
    assert_eq!(shards, ["0/3", "1/3", "2/3"]);
}
