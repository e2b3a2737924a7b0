//! `--model running:URL[#MODEL]`: the real binary against a local OpenAI-compatible server
//! (started by each test on 127.0.0.1) produces the same run files as a local model, with the
//! server's answers as its predictions.

use crate::common::openai_server;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use openai_server::{answer_for, option_logprob, Behavior, OpenAiServer};
use serde_json::Value;

/// A wrong answer or a stuck request must fail the test, not hang it.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// `benchgen ARGS` in `cwd` with `env` set and no API key inherited, killed after [`RUN_LIMIT`].
fn run(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = crate::common::benchgen_command();
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("BENCHGEN_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env("BENCHGEN_REQUEST_TIMEOUT", "30")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    output_within(&mut cmd, RUN_LIMIT)
}

fn embedded_items() -> Vec<Value> {
    read_jsonl(&repo().join("fixtures/embedded/env/data/test.jsonl"))
}

fn by_id<'a>(records: &'a [Value], id: &Value) -> &'a Value {
    records.iter().find(|r| r["id"] == *id).unwrap_or_else(|| panic!("no record for {id}"))
}

/// Fails, names `needle` in its error, and leaves a Failed run behind.
fn assert_failed_run(out: &Output, run_dir: &Path, needles: &[&str]) {
    assert!(!out.status.success(), "expected a failure\nstdout:\n{}", stdout(out));
    let err = stderr(out);
    let rec = read_json(&run_dir.join("run.json"));
    assert_eq!(rec["status"], "Failed", "{rec}");
    let recorded = rec["error"].as_str().unwrap_or_default();
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
        assert!(recorded.contains(n), "run.json error lacks {n:?}: {recorded}");
    }
}

#[test]
fn eval_over_a_server_writes_every_run_file_with_the_servers_answers() {
    let server = OpenAiServer::start(Behavior::default());
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("running:{}#test-model", server.url());
    let out = run(dir.path(), &["eval", "--model", &spec, "--runs-dir", "X"], &[]);
    let log = ok(&out);
    let run_dir = dir.path().join("X/1");
    for needle in
        ["Status: Running", "Processing: 100/100 (100%)", "/v1/completions", "Status: Completed"]
    {
        assert!(log.contains(needle), "missing {needle:?} in:\n{log}");
    }
    for f in [
        "run.json",
        "predictions.jsonl",
        "submission.zip",
        "scoring_output/scores.json",
        "score_breakdown.json",
        "detailed_results.json",
        "detailed_results.html",
        "finetune.jsonl",
        "log.txt",
    ] {
        assert!(run_dir.join(f).is_file(), "missing {f}");
    }

    // Every prediction is exactly what the server answered, sent as a plain completion.
    let items = embedded_items();
    let preds = read_jsonl(&run_dir.join("predictions.jsonl"));
    assert_eq!(preds.len(), items.len());
    let mut right = 0;
    for it in &items {
        let p = by_id(&preds, &it["id"]);
        let q = it["question"].as_str().unwrap();
        let answer = answer_for(q);
        assert_eq!(p["prediction"], answer, "{p}");
        assert_eq!(p["prompt"], q);
        assert_eq!(p["tokens_in"], q.chars().count());
        assert_eq!(p["finish_reason"], "eos");
        right += usize::from(answer == it["answer"].as_str().unwrap());
    }
    assert!(right > 0 && right < items.len(), "the server should be right only sometimes: {right}");
    let requests = server.requests();
    let completions: Vec<_> = requests.iter().filter(|r| r.path == "/v1/completions").collect();
    assert_eq!(completions.len(), items.len());
    assert!(
        requests.iter().all(|r| r.path == "/v1/completions"),
        "no /v1/models call with #MODEL given"
    );
    for r in &completions {
        assert_eq!(r.body["model"], "test-model");
        assert_eq!(r.body["max_tokens"], 8);
        assert_eq!(r.body["temperature"], 0.0);
        assert_eq!(r.body["stop"], serde_json::json!(["\n"]));
        assert!(r.body["seed"].is_u64() && r.authorization.is_none());
    }

    // The score is the share the server got right.
    let b = read_json(&run_dir.join("score_breakdown.json"));
    assert_eq!(b["correct"], right);
    assert!(
        (b["accuracy"].as_f64().unwrap() - 100.0 * right as f64 / items.len() as f64).abs() < 1e-9
    );
    assert_eq!(read_json(&run_dir.join("scoring_output/scores.json"))["correct"], right);
    assert_eq!(read_jsonl(&run_dir.join("finetune.jsonl")).len(), right);
    let zip = unzip(&run_dir.join("submission.zip"));
    assert_eq!(zip["predictions.jsonl"].lines().count(), items.len());
    let detailed = read_json(&run_dir.join("detailed_results.json"));
    assert_eq!(
        detailed["items"].as_array().unwrap().iter().filter(|r| r["correct"] == true).count(),
        right
    );

    let rec = read_json(&run_dir.join("run.json"));
    assert_eq!(rec["status"], "Completed");
    assert_eq!(rec["model"]["spec"], spec);
    assert_eq!(rec["model"]["origin"], spec);
    assert!(rec["model"]["parameters"].is_null());
    assert!(rec["model"].get("files").is_none(), "{rec}");
}

#[test]
fn requests_run_concurrently_and_faults_are_retried() {
    let server =
        OpenAiServer::start(Behavior { faults: vec![429, 500, 503, 429], ..Behavior::default() });
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("running:{}/v1/#test-model", server.url());
    let out =
        run(dir.path(), &["eval", "--model", &spec, "--limit", "40", "--batch-size", "4"], &[]);
    ok(&out);
    assert_eq!(read_json(&dir.path().join("runs/1/run.json"))["status"], "Completed");
    let peak = server.max_in_flight();
    assert!(peak > 1 && peak <= 4, "requests in flight at once: {peak}");
    assert_eq!(server.faults_served(), 4);
    // Each failed request was sent again: 40 answers plus the 4 faults.
    assert_eq!(server.requests().iter().filter(|r| r.path == "/v1/completions").count(), 44);
    let preds = read_jsonl(&dir.path().join("runs/1/predictions.jsonl"));
    assert_eq!(preds.len(), 40);
    for p in &preds {
        assert_eq!(p["prediction"], answer_for(p["prompt"].as_str().unwrap()));
    }

    // --batch-size 1: one request at a time.
    let server = OpenAiServer::start(Behavior::default());
    let spec = format!("running:{}#test-model", server.url());
    ok(&run(dir.path(), &["eval", "--model", &spec, "--limit", "10", "--batch-size", "1"], &[]));
    assert_eq!(server.max_in_flight(), 1);
}

#[test]
fn the_api_key_is_sent_and_a_401_fails_the_run() {
    let server =
        OpenAiServer::start(Behavior { api_key: Some("sk-test".into()), ..Behavior::default() });
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("running:{}#test-model", server.url());
    let args = ["eval", "--model", &spec, "--limit", "5"];
    ok(&run(dir.path(), &args, &[("BENCHGEN_API_KEY", "sk-test"), ("OPENAI_API_KEY", "sk-other")]));
    let requests = server.requests();
    assert_eq!(requests.len(), 5);
    assert!(
        requests.iter().all(|r| r.authorization.as_deref() == Some("Bearer sk-test")),
        "{requests:?}"
    );

    // OPENAI_API_KEY is the fallback.
    ok(&run(dir.path(), &args, &[("OPENAI_API_KEY", "sk-test")]));

    // A wrong key: 401, not retried, the server's message shown, the run Failed.
    let before = server.requests().len();
    let out = run(dir.path(), &args, &[("BENCHGEN_API_KEY", "wrong")]);
    assert_failed_run(
        &out,
        &dir.path().join("runs/3"),
        &["HTTP 401", "Incorrect API key provided", "BENCHGEN_API_KEY"],
    );
    assert!(server.requests().len() - before <= 5, "a 401 must not be retried");
}

#[test]
fn multiple_choice_over_a_server_follows_its_echoed_logprobs() {
    let env = repo().join("fixtures/envs/choice");
    let items = read_jsonl(&env.join("data/test.jsonl"));
    for refuse_zero in [false, true] {
        let server = OpenAiServer::start(Behavior {
            refuse_zero_max_tokens: refuse_zero,
            delay: Duration::ZERO,
            ..Behavior::default()
        });
        let dir = tempfile::tempdir().unwrap();
        // No #MODEL: the one model the server lists is used.
        let spec = format!("running:{}", server.url());
        let out = run(
            dir.path(),
            &["eval", "--env", env.to_str().unwrap(), "--model", &spec, "--batch-size", "3"],
            &[],
        );
        ok(&out);
        let run_dir = dir.path().join("runs/1");
        let preds = read_jsonl(&run_dir.join("predictions.jsonl"));
        assert_eq!(preds.len(), items.len());
        let mut right = 0;
        for it in &items {
            let p = by_id(&preds, &it["id"]);
            let q = it["question"].as_str().unwrap();
            let options: Vec<&str> =
                it["options"].as_array().unwrap().iter().map(|o| o.as_str().unwrap()).collect();
            let want: Vec<f64> = options.iter().map(|o| option_logprob(q, o)).collect();
            let got: Vec<f64> = p["choice_logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() < 1e-9,
                    "{}: logprobs {got:?}, the server implies {want:?}",
                    it["id"]
                );
            }
            let best = (0..want.len()).fold(0, |b, i| if want[i] > want[b] { i } else { b });
            assert_eq!(p["prediction"], options[best], "{}", it["id"]);
            assert_eq!(p["finish_reason"], "loglikelihood");
            right += usize::from("ABCDE".find(it["answer"].as_str().unwrap()) == Some(best));
        }
        assert!(right > 0 && right < items.len(), "right = {right}");
        assert_eq!(read_json(&run_dir.join("score_breakdown.json"))["correct"], right);
        let rec = read_json(&run_dir.join("run.json"));
        assert_eq!(rec["model"]["origin"], format!("{spec}#test-model"));
        let requests = server.requests();
        assert_eq!(requests[0].path, "/v1/models");
        let scored: Vec<_> = requests.iter().filter(|r| r.path == "/v1/completions").collect();
        assert!(scored.iter().all(|r| r.body["echo"] == true
            && r.body["logprobs"] == 1
            && r.body["prompt"].as_str().unwrap().starts_with("<s>")));
        let zero = scored.iter().filter(|r| r.body["max_tokens"] == 0).count();
        let options: usize = items.iter().map(|it| it["options"].as_array().unwrap().len()).sum();
        // A server refusing max_tokens 0 is asked again with 1, once per option.
        assert_eq!(
            (zero, scored.len()),
            if refuse_zero { (options, 2 * options) } else { (options, options) }
        );
    }

    // A server without prompt logprobs: a clear error, the run Failed.
    let server = OpenAiServer::start(Behavior { logprobs: false, ..Behavior::default() });
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("running:{}#test-model", server.url());
    let out = run(dir.path(), &["eval", "--env", env.to_str().unwrap(), "--model", &spec], &[]);
    assert_failed_run(
        &out,
        &dir.path().join("runs/1"),
        &["need a server that returns prompt logprobs with echo=true", "no logprobs"],
    );
}

#[test]
fn chat_environments_use_chat_completions_with_system_and_user_turns() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("chat-env");
    copy_dir(&repo().join("fixtures/embedded/env"), &env);
    let manifest = std::fs::read_to_string(env.join("environment.toml")).unwrap();
    assert!(manifest.contains("chat = \"auto\""));
    let manifest =
        manifest.replace("chat = \"auto\"", "chat = true\nsystem = \"You add and subtract.\"");
    std::fs::write(env.join("environment.toml"), manifest).unwrap();

    let server = OpenAiServer::start(Behavior::default());
    let spec = format!("running:{}#test-model", server.url());
    let out = run(
        dir.path(),
        &["eval", "--env", env.to_str().unwrap(), "--model", &spec, "--limit", "12"],
        &[],
    );
    let log = ok(&out);
    assert!(log.contains("/v1/chat/completions"), "{log}");
    let items = embedded_items();
    let requests = server.requests();
    assert_eq!(requests.len(), 12);
    for r in &requests {
        assert_eq!(r.path, "/v1/chat/completions");
        let messages = r.body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2, "{}", r.body);
        assert_eq!(
            messages[0],
            serde_json::json!({"role": "system", "content": "You add and subtract."})
        );
        assert_eq!(messages[1]["role"], "user");
        let q = messages[1]["content"].as_str().unwrap();
        assert!(items[..12].iter().any(|it| it["question"] == q), "unexpected user turn {q:?}");
        assert!(r.body.get("prompt").is_none());
    }
    let preds = read_jsonl(&dir.path().join("runs/1/predictions.jsonl"));
    for it in &items[..12] {
        let p = by_id(&preds, &it["id"]);
        assert_eq!(p["prediction"], answer_for(it["question"].as_str().unwrap()));
        assert_eq!(
            p["prompt"],
            format!("You add and subtract.\n\n{}", it["question"].as_str().unwrap())
        );
    }
}

#[test]
fn the_served_model_is_found_or_must_be_named() {
    let server = OpenAiServer::start(Behavior {
        models: vec!["alpha".into(), "beta".into()],
        ..Behavior::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("running:{}", server.url());
    let out = run(dir.path(), &["eval", "--model", &spec, "--limit", "3"], &[]);
    assert_failed_run(&out, &dir.path().join("runs/1"), &["2 models (alpha, beta)", "#MODEL_NAME"]);
    ok(&run(dir.path(), &["eval", "--model", &format!("{spec}#alpha"), "--limit", "3"], &[]));
    // The server refuses a model it does not serve, with its own message (a 404: no retry).
    let out = run(dir.path(), &["eval", "--model", &format!("{spec}#gamma"), "--limit", "3"], &[]);
    assert_failed_run(&out, &dir.path().join("runs/3"), &["HTTP 404", "does not exist"]);
}

#[test]
fn an_unreachable_server_fails_the_run_naming_its_url() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = run(dir.path(), &["eval", "--model", &format!("running:{url}"), "--limit", "3"], &[]);
    assert_failed_run(&out, &dir.path().join("runs/1"), &[&url, "cannot reach", "attempt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn generate_completes_prompts_on_a_server() {
    let server = OpenAiServer::start(Behavior::default());
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("running:{}#test-model", server.url());
    let out = ok(&run(
        dir.path(),
        &["generate", "--model", &spec, "--prompt", "2+3=", "--stop", "\n", "--json"],
        &[],
    ));
    let line: Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(line["text"], answer_for("2+3="));
    assert_eq!(line["prompt"], "2+3=");
    let out = ok(&run(
        dir.path(),
        &["generate", "--model", &spec, "--prompt", "7-2=", "--chat", "--json"],
        &[],
    ));
    let line: Value = serde_json::from_str(out.trim()).expect("one JSON line");
    // No --stop: the server's whole answer.
    assert_eq!(line["text"], format!("{}\nmore text", answer_for("7-2=")));
    let requests = server.requests();
    assert_eq!(
        requests.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/v1/completions", "/v1/chat/completions"]
    );
    assert_eq!(requests[0].body["stop"], serde_json::json!(["\n"]));
    assert_eq!(
        requests[1].body["messages"],
        serde_json::json!([{"role": "user", "content": "7-2="}])
    );
    assert!(requests[1].body.get("stop").is_none());
}

#[test]
fn an_interrupted_server_run_resumes_to_the_servers_answers() {
    let server =
        OpenAiServer::start(Behavior { delay: Duration::from_millis(40), ..Behavior::default() });
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("running:{}#test-model", server.url());
    let journal = dir.path().join("runs/1/predictions.jsonl");
    let mut child = spawn_eval(dir.path(), &spec, &[]);
    let lines = || journal_lines(&journal);
    wait_for_journal(&mut child, &journal, 10);
    assert!(Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "stderr:\n{}", stderr(&out));
    assert_eq!(read_json(&dir.path().join("runs/1/run.json"))["status"], "Interrupted");
    let kept = lines();
    assert!((10..100).contains(&kept), "{kept} lines journaled");

    ok(&run(dir.path(), &["eval", "--resume", "1"], &[]));
    let rec = read_json(&dir.path().join("runs/1/run.json"));
    assert_eq!(rec["status"], "Completed");
    let preds = read_jsonl(&journal);
    assert_eq!(preds.len(), 100);
    let ids: std::collections::HashSet<&str> =
        preds.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 100);
    for p in &preds {
        assert_eq!(p["prediction"], answer_for(p["prompt"].as_str().unwrap()));
    }
    // Only the items not journaled were asked again (plus at most the two in flight at Ctrl-C).
    let asked = server.requests().len();
    assert!((100..=102).contains(&asked), "{asked} requests");
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_still_records_the_run_interrupted() {
    // Slow answers: after the first Ctrl-C the run would wait for the requests in flight.
    let server =
        OpenAiServer::start(Behavior { delay: Duration::from_secs(3), ..Behavior::default() });
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("running:{}#test-model", server.url());
    let journal = dir.path().join("runs/1/predictions.jsonl");
    let mut child = spawn_eval(dir.path(), &spec, &["--limit", "10"]);
    wait_for_journal(&mut child, &journal, 2);
    let int = || {
        assert!(Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success())
    };
    int();
    std::thread::sleep(Duration::from_millis(300));
    let second = Instant::now();
    int();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "stderr:\n{}", stderr(&out));
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "the second Ctrl-C did not exit at once: {:?}",
        second.elapsed()
    );
    let rec = read_json(&dir.path().join("runs/1/run.json"));
    assert_eq!(rec["status"], "Interrupted", "{rec}");
    assert!(
        rec["resume_command"].as_str().unwrap().starts_with("benchgen eval --resume 1 --runs-dir "),
        "{rec}"
    );

    ok(&run(dir.path(), &["eval", "--resume", "1"], &[]));
    assert_eq!(read_json(&dir.path().join("runs/1/run.json"))["status"], "Completed");
    assert_eq!(read_jsonl(&journal).len(), 10);
}

/// `benchgen eval --model SPEC --batch-size 2 EXTRA` in `cwd`, left running.
fn spawn_eval(cwd: &std::path::Path, spec: &str, extra: &[&str]) -> std::process::Child {
    crate::common::benchgen_command()
        .args(["eval", "--model", spec, "--batch-size", "2"])
        .args(extra)
        .current_dir(cwd)
        .env_remove("BENCHGEN_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn journal_lines(journal: &std::path::Path) -> usize {
    std::fs::read_to_string(journal).map_or(0, |t| t.lines().count())
}

/// Waits until the run has journaled `n` items, while it is still running.
fn wait_for_journal(child: &mut std::process::Child, journal: &std::path::Path, n: usize) {
    let started = Instant::now();
    while journal_lines(journal) < n {
        assert!(started.elapsed() < RUN_LIMIT, "the journal never reached {n} lines");
        assert!(child.try_wait().unwrap().is_none(), "benchgen ended before it was interrupted");
        std::thread::sleep(Duration::from_millis(10));
    }
}
