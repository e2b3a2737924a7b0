//! Nothing lost: a run killed (SIGKILL) or interrupted (SIGINT) at any point and resumed with
//! `eval --resume ID` ends with the same artifacts as a run that was never stopped. The real
//! binary runs on a generated environment big enough to be stopped mid-way.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

/// Items in the generated environment: the embedded 100, repeated under new ids. Enough that
/// the embedded model (about 3 ms an item at batch size 1) is still running when killed.
const ITEMS: usize = 1000;

/// The embedded environment with `ITEMS` items.
fn make_env(root: &Path) -> PathBuf {
    make_env_from(root, "fixtures/embedded/env", ITEMS)
}

/// The fixture environment `source` with its items repeated under new ids up to `count`.
fn make_env_from(root: &Path, source: &str, count: usize) -> PathBuf {
    let env = root.join("env");
    copy_dir(&repo().join(source), &env);
    let items = read_jsonl(&repo().join(source).join("data/test.jsonl"));
    let mut text = String::new();
    for n in 0..count {
        let mut it = items[n % items.len()].clone();
        it["id"] = Value::from(format!("{}-r{}", it["id"].as_str().unwrap(), n / items.len()));
        text.push_str(&it.to_string());
        text.push('\n');
    }
    std::fs::write(env.join("data/test.jsonl"), text).unwrap();
    env
}

fn eval_args(env: &Path, runs: &Path) -> Vec<String> {
    [
        "eval",
        "--env",
        env.to_str().unwrap(),
        "--batch-size",
        "1",
        "--runs-dir",
        runs.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

fn spawn(cwd: &Path, args: &[String]) -> Child {
    crate::common::benchgen_command()
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("benchgen starts")
}

fn journal_lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// Waits until the journal holds at least `n` lines; panics if the run ends first.
fn wait_for_lines(child: &mut Child, journal: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while journal_lines(journal) < n {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {n} items were journaled"
        );
        assert!(Instant::now() < deadline, "no progress to {n} journal lines");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Every artifact of `got` equals `want`'s (both run ID 1 in their own runs folder).
fn assert_same_artifacts(want: &Path, got: &Path, case: &str) {
    // Predictions as sets of lines, compared as written (not re-parsed: floats must survive).
    let lines = |p: &Path| {
        let mut v: Vec<String> = std::fs::read_to_string(p.join("predictions.jsonl"))
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    let journal = lines(got);
    let items = read_json(&want.join("run.json"))["items"].as_u64().unwrap() as usize;
    assert_eq!(journal.len(), items, "{case}: every item journaled exactly once");
    assert!(journal == lines(want), "{case}: predictions differ");
    let (w, g) = (unzip(&want.join("submission.zip")), unzip(&got.join("submission.zip")));
    assert!(
        w["predictions.jsonl"] == g["predictions.jsonl"],
        "{case}: submission predictions differ"
    );
    for file in ["scoring_output/scores.json", "detailed_results.json"] {
        assert_eq!(
            read_json(&want.join(file)),
            read_json(&got.join(file)),
            "{case}: {file} differs"
        );
    }
    for file in ["scoring_output/scoring.log", "finetune.jsonl"] {
        // finetune.jsonl only exists for environments with a [finetune] section.
        assert!(
            std::fs::read(want.join(file)).ok() == std::fs::read(got.join(file)).ok(),
            "{case}: {file} differs"
        );
    }
    // The page shows the duration; everything else on it must match.
    let page = |p: &Path| {
        let html = std::fs::read_to_string(p.join("detailed_results.html")).unwrap();
        let re = regex::Regex::new(r"<td>Duration</td><td>[0-9.]+s</td>").unwrap();
        re.replace(&html, "").into_owned()
    };
    assert!(page(want) == page(got), "{case}: detailed_results.html differs");
    let (mut wb, mut gb) = (
        read_json(&want.join("score_breakdown.json")),
        read_json(&got.join("score_breakdown.json")),
    );
    wb.as_object_mut().unwrap().remove("duration_s");
    gb.as_object_mut().unwrap().remove("duration_s");
    assert_eq!(wb, gb, "{case}: score breakdown differs");
    let (wr, gr) = (read_json(&want.join("run.json")), read_json(&got.join("run.json")));
    assert_eq!(gr["status"], "Completed", "{case}");
    for key in ["items", "overall_score", "model", "environment", "settings"] {
        assert_eq!(wr[key], gr[key], "{case}: run.json {key} differs");
    }
    assert!(gr.get("resume_command").is_none() && gr["error"].is_null(), "{case}: {gr}");
    // Every artifact went through a temporary file and a rename; none is left behind.
    let mut names: Vec<String> = std::fs::read_dir(got)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.extend(
        std::fs::read_dir(got.join("scoring_output"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned()),
    );
    assert!(
        !names.iter().any(|n| n.starts_with(".tmp-")),
        "{case}: temporary files left: {names:?}"
    );
}

/// Cuts the journal's last line in half (no newline), as a crash mid-write would leave it.
fn tear_last_line(journal: &Path) {
    let bytes = std::fs::read(journal).unwrap();
    let body = &bytes[..bytes.len() - 1];
    let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let cut = start + (body.len() - start) / 2;
    std::fs::write(journal, &bytes[..cut]).unwrap();
}

#[test]
fn killed_runs_resume_to_the_same_artifacts_as_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let env = make_env(dir.path());
    let t = Instant::now();
    let reference = dir.path().join("runs-ref");
    ok(&benchgen(
        dir.path(),
        &eval_args(&env, &reference).iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    eprintln!("uninterrupted run: {:.1}s", t.elapsed().as_secs_f64());

    // (journal lines before SIGKILL, tear the last line first)
    for (n, torn) in [(1, false), (100, false), (450, true), (800, false)] {
        let case = format!("killed after {n} lines{}", if torn { ", torn" } else { "" });
        let runs = dir.path().join(format!("runs-{n}"));
        let journal = runs.join("1/predictions.jsonl");
        let mut child = spawn(dir.path(), &eval_args(&env, &runs));
        wait_for_lines(&mut child, &journal, n);
        child.kill().unwrap(); // SIGKILL: no chance to clean up
        child.wait().unwrap();
        let left = journal_lines(&journal);
        assert!(left < ITEMS, "{case}: the run finished before the kill ({left} lines)");
        assert_eq!(read_json(&runs.join("1/run.json"))["status"], "Running", "{case}");
        if torn {
            tear_last_line(&journal);
        }
        let t = Instant::now();
        let out =
            benchgen(dir.path(), &["eval", "--resume", "1", "--runs-dir", runs.to_str().unwrap()]);
        let text = ok(&out);
        eprintln!("{case}: {left} lines journaled, resume took {:.1}s", t.elapsed().as_secs_f64());
        assert!(
            text.contains("Status: Running (resumed)") && text.contains("Status: Completed"),
            "{text}"
        );
        if torn {
            assert!(text.contains("cut off mid-write"), "{case}: {text}");
        }
        assert_same_artifacts(&reference.join("1"), &runs.join("1"), &case);
    }

    // A Completed run is final: resuming it again changes nothing.
    let runs = dir.path().join("runs-1");
    let before = std::fs::read(runs.join("1/predictions.jsonl")).unwrap();
    let text =
        ok(&benchgen(dir.path(), &["eval", "--resume", "1", "--runs-dir", runs.to_str().unwrap()]));
    assert!(text.contains("already Completed"), "{text}");
    assert_eq!(std::fs::read(runs.join("1/predictions.jsonl")).unwrap(), before);
}

#[test]
fn killed_multiple_choice_run_resumes_to_the_same_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let env = make_env_from(dir.path(), "fixtures/envs/choice", 600);
    let reference = dir.path().join("runs-ref");
    ok(&benchgen(
        dir.path(),
        &eval_args(&env, &reference).iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let runs = dir.path().join("runs");
    let journal = runs.join("1/predictions.jsonl");
    let mut child = spawn(dir.path(), &eval_args(&env, &runs));
    wait_for_lines(&mut child, &journal, 200);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(journal_lines(&journal) < 600, "the run finished before the kill");
    tear_last_line(&journal);
    ok(&benchgen(dir.path(), &["eval", "--resume", "1", "--runs-dir", runs.to_str().unwrap()]));
    assert_same_artifacts(&reference.join("1"), &runs.join("1"), "multiple choice");
}

#[test]
fn sigint_marks_the_run_interrupted_with_the_command_that_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let env = make_env(dir.path());
    let runs = dir.path().join("runs");
    let mut child = spawn(dir.path(), &eval_args(&env, &runs));
    wait_for_lines(&mut child, &runs.join("1/predictions.jsonl"), 30);
    // A run still going cannot be resumed a second time.
    let twice =
        benchgen(dir.path(), &["eval", "--resume", "1", "--runs-dir", runs.to_str().unwrap()]);
    assert!(
        !twice.status.success() && stderr(&twice).contains("still running"),
        "{}",
        stderr(&twice)
    );
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "stderr:\n{}", stderr(&out));

    let rec = read_json(&runs.join("1/run.json"));
    assert_eq!(rec["status"], "Interrupted", "{rec}");
    let command = rec["resume_command"].as_str().expect("resume_command recorded").to_string();
    let runs_abs = std::fs::canonicalize(&runs).unwrap();
    assert_eq!(command, format!("benchgen eval --resume 1 --runs-dir {}", runs_abs.display()));
    let journaled = journal_lines(&runs.join("1/predictions.jsonl"));
    assert!((30..ITEMS).contains(&journaled), "{journaled} lines");

    // The recorded command, as a user would paste it (here from another directory).
    let args: Vec<&str> = command.split(' ').skip(1).collect();
    let elsewhere = tempfile::tempdir().unwrap();
    ok(&benchgen(elsewhere.path(), &args));
    assert_eq!(read_json(&runs.join("1/run.json"))["status"], "Completed");

    let reference = dir.path().join("runs-ref");
    ok(&benchgen(
        dir.path(),
        &eval_args(&env, &reference).iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    assert_same_artifacts(&reference.join("1"), &runs.join("1"), "SIGINT");
}

#[test]
fn resume_refuses_other_settings_unknown_runs_and_foreign_journal_lines() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let r = runs.to_str().unwrap();
    ok(&benchgen(dir.path(), &["eval", "--limit", "5", "--seed", "7", "--runs-dir", r]));

    let model_dir = dir.path().join("model");
    copy_dir(&repo().join("fixtures/embedded/model"), &model_dir);
    let cases: [(&[&str], &str); 8] = [
        (&["--model", model_dir.to_str().unwrap()], "--model"),
        (&["--seed", "8"], "--seed"),
        (&["--limit", "6"], "--limit"),
        (&["--env", "arc-easy"], "--env"),
        (&["--dtype", "bf16"], "--dtype"),
        (&["--kv-dtype", "bf16"], "--kv-dtype"),
        (&["--truncate", "left"], "--truncate"),
        (&["--phase", "train"], "--phase"),
    ];
    for (extra, flag) in cases {
        let mut args = vec!["eval", "--resume", "1", "--runs-dir", r];
        args.extend_from_slice(extra);
        let out = benchgen(dir.path(), &args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = stderr(&out);
        assert!(err.contains(&format!("different {flag}")), "{args:?}: {err}");
    }
    // The same settings again (and another batch size) are accepted.
    let same = [
        "eval",
        "--resume",
        "1",
        "--seed",
        "7",
        "--limit",
        "5",
        "--model",
        "embedded",
        "--dtype",
        "auto",
        "--batch-size",
        "3",
        "--kv-budget",
        "20MB",
        "--runs-dir",
        r,
    ];
    assert!(ok(&benchgen(dir.path(), &same)).contains("already Completed"));

    let out = benchgen(dir.path(), &["eval", "--resume", "99", "--runs-dir", r]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("there is no run 99 to resume"), "{}", stderr(&out));

    // A journal line for an item the environment lacks: the run cannot be resumed as it was.
    let mut rec = read_json(&runs.join("1/run.json"));
    rec["status"] = "Failed".into();
    std::fs::write(runs.join("1/run.json"), rec.to_string()).unwrap();
    let journal = runs.join("1/predictions.jsonl");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.push_str("{\"id\":\"no-such-item\",\"prediction\":\"1\"}\n");
    std::fs::write(&journal, text).unwrap();
    let out = benchgen(dir.path(), &["eval", "--resume", "1", "--runs-dir", r]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("\"no-such-item\""), "{}", stderr(&out));
}
