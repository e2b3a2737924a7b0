//! Environments that score with their own program (`[scoring.program]`, the Codabench
//! contract), run through the real binary: the permission flag, the input/output layout, the
//! scores files, failures and the time limit. Python-specific tests skip (saying so) without
//! `python3`; the contract itself is covered by `/bin/sh` programs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

const FLAG: &str = "--allow-scoring-program";

fn fixture() -> PathBuf {
    repo().join("fixtures/envs/program-scored")
}

fn have_python() -> bool {
    let found = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "skipping: python3 not found on PATH (the /bin/sh tests still cover the contract)"
        );
    }
    found
}

/// A copy of the fixture whose `[scoring.program]` runs `command` with `timeout_s`.
fn env_with_program(dir: &Path, command: &[&str], timeout_s: u64) -> PathBuf {
    let env = dir.join("env");
    copy_dir(&fixture(), &env);
    let manifest = std::fs::read_to_string(env.join("environment.toml")).unwrap();
    let (head, _) = manifest.split_once("[scoring.program]").expect("fixture has a program table");
    // A JSON array of strings is a valid TOML array.
    let table = format!(
        "[scoring.program]\ncommand = {}\ntimeout_s = {timeout_s}\nprimary = \"accuracy\"\n",
        serde_json::to_string(command).unwrap()
    );
    std::fs::write(env.join("environment.toml"), format!("{head}{table}")).unwrap();
    env
}

fn sh_env(dir: &Path) -> PathBuf {
    env_with_program(dir, &["sh", "{program}/score.sh", "{input}", "{output}"], 30)
}

fn eval_json(dir: &Path, env: &Path) -> Value {
    let out = ok(&benchgen(dir, &["eval", "--env", env.to_str().unwrap(), FLAG, "--json"]));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Runs an eval expected to fail; returns the failed run's record and the command's stderr.
fn failed_eval(dir: &Path, env: &Path) -> (Value, String) {
    let o = benchgen(dir, &["eval", "--env", env.to_str().unwrap(), FLAG]);
    assert!(!o.status.success(), "expected failure:\n{}\n{}", stdout(&o), stderr(&o));
    let record = read_json(&dir.join("runs/1/run.json"));
    assert_eq!(record["status"], "Failed", "{record}");
    (record, stderr(&o))
}

fn first_int(text: &str) -> Option<i64> {
    let re = regex::Regex::new(r"^\s*(-?[0-9][0-9,]*)").unwrap();
    let any = regex::Regex::new(r"-?[0-9]+").unwrap();
    let s = match re.captures(text) {
        Some(c) => c[1].replace(',', ""),
        None => any.find(text)?.as_str().to_string(),
    };
    s.parse().ok()
}

/// What score.py computes, recomputed here from the fixture's data and the run's predictions.
fn expected_scores(predictions: &[(String, String)]) -> (f64, f64, usize, f64, f64) {
    let items = read_jsonl(&fixture().join("data/test.jsonl"));
    let pred = |id: &str| {
        predictions.iter().find(|(i, _)| i == id).map_or("", |(_, p)| p.as_str()).to_string()
    };
    let (mut correct, mut answered, mut err) = (0usize, 0usize, 0i64);
    let (mut add, mut sub) = ((0, 0), (0, 0));
    for it in &items {
        let target: i64 = it["answer"].as_str().unwrap().parse().unwrap();
        let is_add = it["question"].as_str().unwrap().contains('+');
        let bucket = if is_add { &mut add } else { &mut sub };
        bucket.1 += 1;
        let Some(got) = first_int(&pred(it["id"].as_str().unwrap())) else { continue };
        answered += 1;
        err += (got - target).abs();
        if got == target {
            correct += 1;
            bucket.0 += 1;
        }
    }
    let mae = if answered > 0 { err as f64 / answered as f64 } else { 0.0 };
    let frac = |(c, n): (i32, i32)| if n > 0 { c as f64 / n as f64 } else { 0.0 };
    (correct as f64 / items.len() as f64, mae, answered, frac(add), frac(sub))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn check_python_scores(scores: &Value, predictions: &[(String, String)]) {
    let (accuracy, mae, answered, add, sub) = expected_scores(predictions);
    assert!(close(scores["accuracy"].as_f64().unwrap(), accuracy), "{scores} vs {accuracy}");
    assert!(close(scores["mean_abs_error"].as_f64().unwrap(), mae), "{scores} vs {mae}");
    assert_eq!(scores["answered"].as_f64().unwrap(), answered as f64, "{scores}");
    assert!(close(scores["by_op.add"].as_f64().unwrap(), add), "{scores}");
    assert!(close(scores["by_op.sub"].as_f64().unwrap(), sub), "{scores}");
    assert_eq!(scores.as_object().unwrap().len(), 5, "{scores}");
}

fn run_predictions(run: &Path) -> Vec<(String, String)> {
    read_jsonl(&run.join("predictions.jsonl"))
        .iter()
        .map(|p| {
            (p["id"].as_str().unwrap().to_string(), p["prediction"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn python_program_scores_an_eval_end_to_end() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let breakdown = eval_json(dir.path(), &fixture());
    let run = dir.path().join("runs/1");
    assert_eq!(read_json(&run.join("run.json"))["status"], "Completed");

    let predictions = run_predictions(&run);
    assert_eq!(predictions.len(), 12);
    let scores = read_json(&run.join("scoring_output/scores.json"));
    check_python_scores(&scores, &predictions);
    let accuracy = scores["accuracy"].as_f64().unwrap();
    // The embedded model gets some right and some wrong, so the numbers mean something.
    assert!(accuracy > 0.0 && accuracy < 1.0, "{accuracy}");

    // The Overall Score is the program's primary key, a fraction shown as a percentage.
    assert!(close(breakdown["overall_score"].as_f64().unwrap(), accuracy * 100.0), "{breakdown}");
    assert_eq!(breakdown["primary"], "accuracy");
    assert_eq!(breakdown["program_scores"], scores);
    assert_eq!(read_json(&run.join("score_breakdown.json"))["program_scores"], scores);

    // Its stdout and stderr are the Scoring Output log, and show in the run's log.
    let scoring_log = std::fs::read_to_string(run.join("scoring_output/scoring.log")).unwrap();
    let correct = (accuracy * 12.0).round() as usize;
    assert!(scoring_log.contains(&format!("scored 12 items: {correct} correct")), "{scoring_log}");
    assert!(
        scoring_log.contains("score.py: 12 answered") && scoring_log.contains("--- stderr ---"),
        "{scoring_log}"
    );
    let log = std::fs::read_to_string(run.join("log.txt")).unwrap();
    assert!(log.contains("scored 12 items") && log.contains("Status: Completed"), "{log}");

    // The built-in per-item view is still written, and valid.
    let detailed = read_json(&run.join("detailed_results.json"));
    assert_eq!(detailed["items"].as_array().unwrap().len(), 12);
    assert!(std::fs::read_to_string(run.join("detailed_results.html"))
        .unwrap()
        .contains("</html>"));
}

#[test]
fn without_the_flag_nothing_runs_and_no_run_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let command = format!("touch {}", marker.display());
    let env = env_with_program(dir.path(), &["sh", "-c", &command], 30);
    let env_arg = env.to_str().unwrap();
    for args in [
        vec!["eval", "--env", env_arg],
        vec!["score", "--env", env_arg, "--predictions", "nope.jsonl"],
    ] {
        let o = benchgen(dir.path(), &args);
        assert!(!o.status.success(), "{args:?} should be refused");
        let err = stderr(&o);
        assert!(
            err.contains(FLAG) && err.contains(env_arg) && err.contains("touch"),
            "{args:?}: {err}"
        );
        assert!(!dir.path().join("runs").exists(), "{args:?} created a run");
    }
    assert!(!marker.exists(), "the program ran without the flag");
    // Built-in scorers need no flag.
    ok(&benchgen(dir.path(), &["eval", "--limit", "2"]));
}

#[test]
fn sh_program_follows_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let env = sh_env(dir.path());
    let breakdown = eval_json(dir.path(), &env);
    let run = dir.path().join("runs/1");
    let scores = read_json(&run.join("scoring_output/scores.json"));
    // input/ref/reference.jsonl has every item, input/res/predictions.jsonl every prediction.
    assert_eq!(
        scores,
        serde_json::json!({"accuracy": 0.5, "references": 12.0, "predictions": 12.0})
    );
    assert_eq!(breakdown["overall_score"].as_f64(), Some(50.0));
    let scoring_log = std::fs::read_to_string(run.join("scoring_output/scoring.log")).unwrap();
    assert!(
        scoring_log.contains("score.sh: 12 references")
            && scoring_log.contains("score.sh: 12 predictions"),
        "{scoring_log}"
    );
}

#[test]
fn the_program_sees_the_reference_data_and_the_unpacked_submission() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    std::fs::create_dir(&seen).unwrap();
    // Copies what it was given somewhere the test can look, then scores.
    let script = format!(
        "cp -r \"$1\" {seen}/input && ls \"$3\" > {seen}/program.txt && pwd > {seen}/cwd.txt && echo '{{\"accuracy\": 1}}' > \"$2/scores.json\"",
        seen = seen.display()
    );
    let env = env_with_program(
        dir.path(),
        &["sh", "-c", &script, "sh", "{input}", "{output}", "{program}"],
        30,
    );
    eval_json(dir.path(), &env);
    let reference = read_jsonl(&seen.join("input/ref/reference.jsonl"));
    let items = read_jsonl(&fixture().join("data/test.jsonl"));
    assert_eq!(reference.len(), items.len());
    for (r, it) in reference.iter().zip(&items) {
        assert_eq!(r["id"], it["id"]);
        assert_eq!(r["target"], it["answer"]);
        assert_eq!(r["targets"], serde_json::json!([it["answer"]]));
        assert_eq!(r["fields"]["question"], it["question"]);
    }
    // The raw phase file, and the submission as the platform would unpack it.
    assert_eq!(
        std::fs::read(seen.join("input/ref/test.jsonl")).unwrap(),
        std::fs::read(fixture().join("data/test.jsonl")).unwrap()
    );
    let submission = unzip(&dir.path().join("runs/1/submission.zip"));
    let submitted = std::fs::read_to_string(seen.join("input/res/predictions.jsonl")).unwrap();
    assert_eq!(submitted, submission["predictions.jsonl"]);
    assert_eq!(submitted.lines().count(), 12);
    assert!(read_json(&seen.join("input/res/metadata.json"))["run_id"].as_u64() == Some(1));
    let program = std::fs::read_to_string(seen.join("program.txt")).unwrap();
    assert!(program.contains("score.py") && program.contains("score.sh"), "{program}");
    // Its working directory is the scratch folder, which is gone afterwards.
    let cwd = std::fs::read_to_string(seen.join("cwd.txt")).unwrap();
    let cwd = Path::new(cwd.trim());
    assert!(
        cwd.file_name().unwrap().to_string_lossy().starts_with("benchgen-scoring-"),
        "{}",
        cwd.display()
    );
    assert!(!cwd.exists(), "scratch folder {} left behind", cwd.display());
}

#[test]
fn failing_program_fails_the_run_with_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_with_program(
        dir.path(),
        &["sh", "-c", "echo half done; echo 'bad things happened' >&2; exit 3"],
        30,
    );
    let (record, err) = failed_eval(dir.path(), &env);
    let error = record["error"].as_str().unwrap();
    assert!(
        error.contains("bad things happened")
            && error.contains('3')
            && error.contains("scoring program"),
        "{error}"
    );
    assert!(err.contains("bad things happened"), "{err}");
    let scoring_log =
        std::fs::read_to_string(dir.path().join("runs/1/scoring_output/scoring.log")).unwrap();
    assert!(
        scoring_log.contains("half done") && scoring_log.contains("bad things happened"),
        "{scoring_log}"
    );
}

#[test]
fn program_writing_no_scores_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_with_program(dir.path(), &["sh", "-c", "echo forgot to write scores"], 30);
    let (record, _) = failed_eval(dir.path(), &env);
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("neither output/scores.json nor output/scores.txt"), "{error}");
}

#[test]
fn non_numeric_scores_and_a_missing_primary_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_with_program(
        dir.path(),
        &["sh", "-c", "echo '{\"accuracy\": \"high\"}' > \"$1/scores.json\"", "sh", "{output}"],
        30,
    );
    let (record, _) = failed_eval(dir.path(), &env);
    let error = record["error"].as_str().unwrap();
    assert!(
        error.contains("output/scores.json")
            && error.contains("\"accuracy\"")
            && error.contains("number"),
        "{error}"
    );

    let dir = tempfile::tempdir().unwrap();
    let env = env_with_program(
        dir.path(),
        &["sh", "-c", "echo '{\"f1\": 0.5}' > \"$1/scores.json\"", "sh", "{output}"],
        30,
    );
    let (record, _) = failed_eval(dir.path(), &env);
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("no \"accuracy\"") && error.contains("f1"), "{error}");
}

#[test]
fn program_past_its_timeout_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!("sleep 60 & echo $! > {}; wait", pid_file.display());
    let env = env_with_program(dir.path(), &["sh", "-c", &script], 1);
    let started = Instant::now();
    let (record, _) = failed_eval(dir.path(), &env);
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("timeout_s = 1") && error.contains("killed"), "{error}");
    // The background child went with its process group.
    let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
    let gone = (0..50).any(|_| {
        let alive = process_alive(&pid);
        if alive {
            std::thread::sleep(Duration::from_millis(100));
        }
        !alive
    });
    assert!(gone, "child {pid} still running");
}

/// Whether `pid` is a live process (a zombie awaiting its reaper counts as dead).
fn process_alive(pid: &str) -> bool {
    if Path::new("/proc/self").exists() {
        return std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        });
    }
    let kill = std::process::Command::new("kill").args(["-0", pid]).output().expect("kill runs");
    kill.status.success()
}

#[test]
fn scores_txt_is_read_and_files_outside_output_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    // scores.json files written outside output/ must not be read back.
    let script = "echo '{\"accuracy\": 1}' > scores.json; echo '{\"accuracy\": 1}' > \"$1/scores.json\"; \
                  printf -- '---\\n# Codabench YAML\\naccuracy: 0.25\\nf1: 12.5\\n' > \"$2/scores.txt\"";
    let env = env_with_program(dir.path(), &["sh", "-c", script, "sh", "{input}", "{output}"], 30);
    let breakdown = eval_json(dir.path(), &env);
    assert_eq!(breakdown["overall_score"].as_f64(), Some(25.0), "{breakdown}");
    let scores = read_json(&dir.path().join("runs/1/scoring_output/scores.json"));
    assert_eq!(scores, serde_json::json!({"accuracy": 0.25, "f1": 12.5}));
}

/// Zips `env` under a top folder, as a user zipping the environment folder would.
fn zip_env(env: &Path, dest: &Path) {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(dest).unwrap());
    let mut stack = vec![env.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(env).unwrap().to_string_lossy().replace('\\', "/");
                zip.start_file(
                    format!("program-scored/{rel}"),
                    zip::write::SimpleFileOptions::default(),
                )
                .unwrap();
                zip.write_all(&std::fs::read(&path).unwrap()).unwrap();
            }
        }
    }
    zip.finish().unwrap();
}

#[test]
fn a_zipped_environment_runs_its_program() {
    let dir = tempfile::tempdir().unwrap();
    // Run directly (no `sh` in front): the copy must be executable although zips carry no modes.
    let env = env_with_program(dir.path(), &["{program}/score.sh", "{input}", "{output}"], 30);
    let archive = dir.path().join("program-scored.zip");
    zip_env(&env, &archive);
    std::fs::remove_dir_all(&env).unwrap();
    let breakdown = eval_json(dir.path(), &archive);
    assert_eq!(breakdown["program_scores"]["references"].as_f64(), Some(12.0), "{breakdown}");
    assert_eq!(breakdown["overall_score"].as_f64(), Some(50.0));

    if have_python() {
        let archive = dir.path().join("python.zip");
        zip_env(&fixture(), &archive);
        let dir2 = tempfile::tempdir().unwrap();
        eval_json(dir2.path(), &archive);
        let run = dir2.path().join("runs/1");
        check_python_scores(
            &read_json(&run.join("scoring_output/scores.json")),
            &run_predictions(&run),
        );
    }
}

#[test]
fn score_command_runs_the_program_on_saved_predictions() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let items = read_jsonl(&fixture().join("data/test.jsonl"));
    // Right for even items, off by one for odd ones, unanswered for the last.
    let predictions: Vec<(String, String)> = items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let answer: i64 = it["answer"].as_str().unwrap().parse().unwrap();
            let p = match i {
                11 => "no idea".to_string(),
                i if i % 2 == 0 => answer.to_string(),
                _ => format!("{}", answer + 1),
            };
            (it["id"].as_str().unwrap().to_string(), p)
        })
        .collect();
    let text: String = predictions
        .iter()
        .map(|(id, p)| format!("{}\n", serde_json::json!({"id": id, "prediction": p})))
        .collect();
    std::fs::write(dir.path().join("preds.jsonl"), text).unwrap();
    let env = fixture();
    let args = ["score", "--env", env.to_str().unwrap(), "--predictions", "preds.jsonl", "--json"];
    let o = benchgen(dir.path(), &args);
    assert!(!o.status.success() && stderr(&o).contains(FLAG), "{}", stderr(&o));
    assert!(!dir.path().join("runs").exists());

    let mut with_flag = args.to_vec();
    with_flag.push(FLAG);
    let breakdown: Value = serde_json::from_str(&ok(&benchgen(dir.path(), &with_flag))).unwrap();
    let scores = read_json(&dir.path().join("runs/1/scoring_output/scores.json"));
    check_python_scores(&scores, &predictions);
    assert!(close(scores["accuracy"].as_f64().unwrap(), 6.0 / 12.0), "{scores}");
    assert!(close(scores["mean_abs_error"].as_f64().unwrap(), 5.0 / 11.0), "{scores}");
    assert!(close(breakdown["overall_score"].as_f64().unwrap(), 50.0), "{breakdown}");
}

#[test]
fn verify_needs_the_flag_again() {
    let dir = tempfile::tempdir().unwrap();
    let env = sh_env(dir.path());
    eval_json(dir.path(), &env);
    let o = benchgen(dir.path(), &["verify", "1"]);
    assert!(!o.status.success() && stderr(&o).contains(FLAG), "{}", stderr(&o));
    let out = ok(&benchgen(dir.path(), &["verify", "1", FLAG]));
    assert!(out.contains("run 1 reproduces"), "{out}");
}

#[test]
fn env_show_and_validate_name_the_program_and_bad_tables_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let env = fixture();
    let shown = ok(&benchgen(dir.path(), &["env", "show", env.to_str().unwrap()]));
    assert!(
        shown.contains("scoring program: `python3 {program}/score.py {input} {output}`")
            && shown.contains(FLAG),
        "{shown}"
    );
    let validated = ok(&benchgen(dir.path(), &["env", "validate", env.to_str().unwrap()]));
    assert!(
        validated.contains("scoring program") && validated.contains("2 file(s)"),
        "{validated}"
    );

    let bad = env_with_program(dir.path(), &[], 30);
    let o = benchgen(dir.path(), &["env", "validate", bad.to_str().unwrap()]);
    assert!(
        !o.status.success() && stderr(&o).contains("[scoring.program] command"),
        "{}",
        stderr(&o)
    );
    // A program folder that is missing is reported, not run.
    std::fs::remove_dir_all(bad.join("scoring")).unwrap();
    let manifest = std::fs::read_to_string(bad.join("environment.toml"))
        .unwrap()
        .replace("command = []", "command = [\"sh\"]");
    std::fs::write(bad.join("environment.toml"), manifest).unwrap();
    let o = benchgen(dir.path(), &["env", "validate", bad.to_str().unwrap()]);
    assert!(!o.status.success() && stdout(&o).contains("holds no files"), "{}", stdout(&o));
}

#[test]
fn resume_needs_the_flag_again_and_a_changed_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_with_program(dir.path(), &["sh", "{program}/fail.sh"], 30);
    std::fs::write(env.join("scoring/fail.sh"), "echo 'not today' >&2\nexit 1\n").unwrap();
    failed_eval(dir.path(), &env);
    let o = benchgen(dir.path(), &["eval", "--resume", "1"]);
    assert!(!o.status.success() && stderr(&o).contains(FLAG), "{}", stderr(&o));
    // The program is part of the environment's content: a run does not continue on another one.
    std::fs::write(env.join("scoring/fail.sh"), "echo '{\"accuracy\": 1}' > \"$1/scores.json\"\n")
        .unwrap();
    let o = benchgen(dir.path(), &["eval", "--resume", "1", FLAG]);
    assert!(!o.status.success() && stderr(&o).contains("changed since run 1"), "{}", stderr(&o));
    assert_eq!(read_json(&dir.path().join("runs/1/run.json"))["status"], "Failed");
}

#[test]
fn unknown_program_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let env = sh_env(dir.path());
    let manifest = std::fs::read_to_string(env.join("environment.toml"))
        .unwrap()
        .replace("timeout_s", "timeout");
    std::fs::write(env.join("environment.toml"), manifest).unwrap();
    let o = benchgen(dir.path(), &["env", "validate", env.to_str().unwrap()]);
    assert!(
        !o.status.success() && stderr(&o).contains("unknown field `timeout`"),
        "{}",
        stderr(&o)
    );
}
