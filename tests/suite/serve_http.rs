//! `benchgen serve` over plain HTTP (no browser): what URLs can reach, the remote-bind refusal,
//! escaping of hostile names, the Evaluate form's checks, runs started from the pages and the
//! live log stream. The browser tests are in `serve_browser.rs`.

use std::path::Path;
use std::time::Duration;

use crate::common::openai_server::{Behavior, OpenAiServer};
use crate::common::serve::{request, wait_for_end, Served};
use crate::common::*;

/// A completed run 1 of the embedded default (3 items) in `dir/runs`, made by the CLI.
fn cli_run(dir: &Path) {
    let mut cmd = benchgen_command();
    cmd.args(["eval", "--limit", "3", "--runs-dir", "runs"]).current_dir(dir);
    crate::common::serve::isolate(&mut cmd, dir);
    ok(&output_within(&mut cmd, Duration::from_secs(120)));
}

#[test]
fn paths_in_urls_never_leave_the_runs_folder() {
    let dir = tempfile::tempdir().unwrap();
    cli_run(dir.path());
    let secret = "top secret, outside the runs folder";
    std::fs::write(dir.path().join("secret.txt"), secret).unwrap();
    // An environment folder in the server's working folder is no environment name.
    copy_dir(&repo().join("fixtures/embedded/env"), &dir.path().join("sneaky"));
    let served = Served::start(dir.path(), &[]);

    let record = served.get("/runs/1/files/run.json");
    assert_eq!(record.status, 200);
    assert_eq!(record.body, std::fs::read(dir.path().join("runs/1/run.json")).unwrap());
    assert_eq!(served.get("/runs/1/files/scoring_output/scores.json").status, 200);
    assert_eq!(served.get("/envs/arithmetic").status, 200);

    for path in [
        "/runs/1/files/../../secret.txt",
        "/runs/1/files/..%2F..%2Fsecret.txt",
        "/runs/1/files/%2E%2E/%2E%2E/secret.txt",
        "/runs/1/files/scoring_output/../run.json",
        "/runs/1/files/scoring_output/../../../secret.txt",
        "/runs/1/files/%2Fetc%2Fpasswd",
        "/runs/1/files/secret.txt",
        "/runs/..%2Fsecret.txt",
        "/runs/..%2F..%2Fetc%2Fpasswd",
        "/runs/1%2F..%2F..%2Fsecret.txt/files/run.json",
        "/runs/..%2Fruns%2F1/files/run.json",
        "/runs/01",
        "/runs/+1",
        "/runs/abc",
        "/runs/99",
        "/runs/-1/log",
        "/runs/99/files/run.json",
        "/runs/abc/finetune",
        "/envs/..%2Fsecret.txt",
        "/envs/%2Fetc/overview",
        "/envs/..%2F..%2Fetc/phases",
        "/envs/sneaky",
        "/envs/sneaky/evaluate",
        "/envs/arithmetic/nosuchtab",
    ] {
        let reply = served.get(path);
        assert_eq!(reply.status, 404, "{path}: {}", reply.text());
        assert!(!reply.text().contains(secret) && !reply.text().contains("root:"), "{path}");
    }
}

#[test]
fn a_non_loopback_address_is_refused_without_allow_remote() {
    let dir = tempfile::tempdir().unwrap();
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let mut cmd = benchgen_command();
        cmd.args(["serve", "--addr", addr]).current_dir(dir.path());
        let out = output_within(&mut cmd, Duration::from_secs(30));
        assert!(!out.status.success(), "{addr}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("--allow-remote") && err.contains("no authentication"), "{err}");
        assert!(!stdout(&out).contains("http://"), "{}", stdout(&out));
    }
}

#[test]
fn requests_from_other_sites_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), &[]);
    let form = "model=embedded&phase=test";
    let path = "/envs/arithmetic/evaluate";
    let headers = [("Content-Type", "application/x-www-form-urlencoded")];
    for extra in
        [("Origin", "http://evil.example"), ("Origin", "null"), ("Sec-Fetch-Site", "cross-site")]
    {
        let reply = request(&served.addr, "POST", path, &[headers[0], extra], form);
        assert_eq!(reply.status, 403, "{extra:?}");
    }
    // A name of another site pointed at 127.0.0.1 (DNS rebinding) reads nothing.
    let reply = request(&served.addr, "GET", "/", &[("Host", "evil.example:8080")], "");
    assert_eq!(reply.status, 403);
    assert!(!reply.text().contains("arithmetic"));
    assert!(!dir.path().join("runs").exists(), "a refused request started a run");
    assert_eq!(request(&served.addr, "GET", "/", &[("Host", "localhost")], "").status, 200);
}

/// An environment and a model whose names and texts are markup: every page shows them as text.
#[test]
fn hostile_names_are_shown_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let envs = dir.path().join("envs");
    let folder = "x<img src=x onerror=alert(1)>";
    let env = envs.join(folder);
    copy_dir(&repo().join("fixtures/embedded/env"), &env);
    let manifest = std::fs::read_to_string(env.join("environment.toml")).unwrap();
    let manifest = manifest
        .replacen("name = \"arithmetic\"", "name = \"a\\\"><script>alert(2)</script>\"", 1)
        .replacen("description = ", "description = \"<b onmouseover=alert(3)>hi</b>\" # ", 1);
    assert!(manifest.contains("alert(2)") && manifest.contains("alert(3)"), "{manifest}");
    std::fs::write(env.join("environment.toml"), manifest).unwrap();
    std::fs::write(
        env.join("README.md"),
        "# Hostile\n\n<script>alert(4)</script>\n\n[click](javascript:alert(5))\n",
    )
    .unwrap();
    let registry = dir.path().join("config/benchgen/models.toml");
    std::fs::create_dir_all(registry.parent().unwrap()).unwrap();
    let model = repo().join("fixtures/embedded/model");
    std::fs::write(
        &registry,
        format!("[models.\"<img src=y onerror=alert(6)>\"]\nsource = \"{}\"\n", model.display()),
    )
    .unwrap();
    let envs_var = envs.display().to_string();
    let vars = [("BENCHGEN_ENVS", envs_var.as_str())];

    // A run of both, from the command line, for the run pages.
    let mut cmd = benchgen_command();
    cmd.args(["eval", "--env", folder, "--model", "platform:<img src=y onerror=alert(6)>"])
        .args(["--limit", "2", "--runs-dir", "runs"])
        .current_dir(dir.path());
    crate::common::serve::isolate(&mut cmd, dir.path());
    cmd.env("BENCHGEN_ENVS", &envs);
    ok(&output_within(&mut cmd, Duration::from_secs(120)));

    let served = Served::start(dir.path(), &vars);
    let env_url = format!("/envs/{}", "x%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E");
    let pages = [
        "/".to_string(),
        env_url.clone(),
        format!("{env_url}/phases"),
        format!("{env_url}/leaderboard"),
        format!("{env_url}/evaluations"),
        format!("{env_url}/evaluate"),
        "/runs".into(),
        "/runs/1".into(),
    ];
    let mut seen = String::new();
    for page in &pages {
        let reply = served.get(page);
        assert_eq!(reply.status, 200, "{page}: {}", reply.text());
        let html = reply.text();
        for raw in ["<img src=x", "<img src=y", "<script>alert", "<b onmouseover", "javascript:"] {
            assert!(!html.contains(raw), "{page} holds {raw:?} unescaped:\n{html}");
        }
        seen.push_str(&html);
    }
    // ... and they are there, as text.
    for shown in [
        "x&lt;img src=x onerror=alert(1)&gt;",
        "a&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;",
        "&lt;b onmouseover=alert(3)&gt;hi&lt;/b&gt;",
        "&lt;script&gt;alert(4)&lt;/script&gt;",
        "platform:&lt;img src=y onerror=alert(6)&gt;",
        &format!("href=\"{env_url}\""),
    ] {
        assert!(seen.contains(shown), "no {shown:?} in the pages");
    }
}

#[test]
fn run_evaluation_starts_the_cli_run_and_refusals_show_on_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("config/benchgen/models.toml");
    std::fs::create_dir_all(registry.parent().unwrap()).unwrap();
    std::fs::write(&registry, "[models.broken]\nsource = \"/nonexistent/model-folder\"\n").unwrap();
    let served = Served::start(dir.path(), &[]);
    let runs = dir.path().join("runs");
    let evaluate = "/envs/arithmetic/evaluate";

    // What the tab did not offer, or a limit that is no number, is refused before anything runs.
    for (form, says) in [
        ("model=%2Fetc%2Fpasswd&phase=test", "not one of the models offered"),
        ("phase=test", "Select a model"),
        ("model=embedded&phase=nope", "has no phase nope"),
        ("model=embedded&phase=test&limit=0", "Limit must be"),
        ("model=embedded&phase=test&limit=ten", "Limit must be"),
    ] {
        let reply = served.post_form(evaluate, form);
        assert_eq!(reply.status, 400, "{form}");
        assert!(reply.text().contains(says), "{form}: {}", reply.text());
    }
    // An offered model that `eval` refuses: its message, on the page; no run is left behind.
    let reply = served.post_form(evaluate, "model=platform%3Abroken&phase=test");
    assert_eq!(reply.status, 422, "{}", reply.text());
    let page = reply.text();
    assert!(
        page.contains("id=\"eval-error\"") && page.contains("/nonexistent/model-folder"),
        "{page}"
    );
    assert!(
        runs.read_dir().map_or(true, |mut d| d.next().is_none()),
        "a refused run left a folder"
    );

    // Three at once: three Run IDs, as three `benchgen eval` processes would get.
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let addr = served.addr.clone();
            std::thread::spawn(move || {
                let origin = format!("http://{addr}");
                request(
                    &addr,
                    "POST",
                    "/envs/arithmetic/evaluate",
                    &[("Content-Type", "application/x-www-form-urlencoded"), ("Origin", &origin)],
                    "model=embedded&phase=test&limit=4",
                )
            })
        })
        .collect();
    let mut ids: Vec<u64> = handles
        .into_iter()
        .map(|h| {
            let reply = h.join().unwrap();
            assert_eq!(reply.status, 303, "{}", reply.text());
            let location = reply.header("location").expect("a redirect").to_string();
            location.strip_prefix("/runs/").and_then(|i| i.parse().ok()).expect(&location)
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3]);
    for id in ids {
        assert_eq!(wait_for_end(&runs, id), "Completed");
        let record = read_json(&runs.join(format!("{id}/run.json")));
        assert_eq!(record["run_id"], id);
        assert_eq!(record["settings"]["limit"], 4);
        // The embedded model, recorded as `eval` records its default.
        assert_eq!(record["settings"]["model"], serde_json::Value::Null);
        assert_eq!(record["model"]["spec"], "embedded");
        let page = served.get(&format!("/runs/{id}")).text();
        assert!(page.contains("id=\"breakdown\"") && page.contains("Completed"), "{page}");
        let submission = format!("href=\"/runs/{id}/files/submission.zip\"");
        assert!(page.contains(&submission), "{page}");
    }
}

#[test]
fn the_live_log_streams_the_log_and_ends_with_the_status() {
    let dir = tempfile::tempdir().unwrap();
    cli_run(dir.path());
    let served = Served::start(dir.path(), &[]);
    let log = std::fs::read_to_string(dir.path().join("runs/1/log.txt")).unwrap();

    let reply = served.get("/runs/1/log");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let all = events(&reply.text());
    let lines: Vec<&str> = all.iter().filter(|e| e.0.is_none()).map(|e| e.2.as_str()).collect();
    assert_eq!(lines, log.lines().collect::<Vec<_>>());
    // log.txt's lines as they are, timestamps included.
    let plain: Vec<&str> = lines.iter().map(|l| benchgen::log::strip_timestamp(l)).collect();
    assert!(plain.iter().any(|l| l.starts_with("Processing: 3/3 (100%)")), "{lines:?}");
    assert_eq!(
        all.last().map(|e| (e.0.as_deref(), e.2.as_str())),
        Some((Some("end"), "Completed"))
    );

    // A browser that reconnects after the Run ID line goes on from the next one.
    let after = all
        .iter()
        .find(|e| benchgen::log::strip_timestamp(&e.2) == "Run ID: 1")
        .and_then(|e| e.1.clone())
        .unwrap();
    let reply = request(&served.addr, "GET", "/runs/1/log", &[("Last-Event-ID", &after)], "");
    let resumed = events(&reply.text());
    let first = resumed.first().map(|e| e.2.as_str());
    assert_eq!(first, log.lines().nth(2), "resumed at {after}");
    assert_eq!(resumed.len(), all.len() - 2);
}

/// A run recorded as Running that no process holds (killed by SIGKILL, a machine that went
/// down) is said to be stopped, with its resume command, and its log stream ends, instead of
/// the page waiting for it forever. One whose lock is held streams on.
#[test]
fn a_run_no_process_holds_is_shown_stopped_not_live() {
    let dir = tempfile::tempdir().unwrap();
    cli_run(dir.path());
    let record = dir.path().join("runs/1/run.json");
    let mut rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    rec["status"] = "Running".into();
    std::fs::write(&record, rec.to_string()).unwrap();
    let served = Served::start(dir.path(), &[]);

    let page = served.get("/runs/1").text();
    assert!(page.contains("id=\"stopped\"") && page.contains("--resume 1"), "{page}");
    assert!(!page.contains("EventSource"), "a stopped run is not watched live: {page}");
    assert!(served.get("/runs").text().contains("badge Stopped"));
    let shown = benchgen_command()
        .args(["runs", "show", "1", "--runs-dir"])
        .arg(dir.path().join("runs"))
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("killed or crashed") && shown.contains("--resume 1"), "{shown}");
    let all = events(&served.get("/runs/1/log").text());
    assert_eq!(all.last().map(|e| (e.0.as_deref(), e.2.as_str())), Some((Some("end"), "Running")));

    // While a process holds the run's lock, the same record is a live run.
    let lock = std::fs::File::open(dir.path().join("runs/1/.lock")).unwrap();
    lock.lock().unwrap();
    let page = served.get("/runs/1").text();
    assert!(page.contains("EventSource") && !page.contains("id=\"stopped\""), "{page}");
    drop(lock);
}

/// Server-sent events: (event name, id, data) each.
fn events(stream: &str) -> Vec<(Option<String>, Option<String>, String)> {
    stream
        .split("\n\n")
        .filter(|block| block.lines().any(|l| l.starts_with("data:")))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.strip_prefix(' ').unwrap_or(v).to_string())
            };
            (field("event:"), field("id:"), field("data:").unwrap_or_default())
        })
        .collect()
}

#[test]
fn a_running_endpoint_is_badged_only_while_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = OpenAiServer::start(Behavior::default());
    // A port nothing listens on: bound, then let go.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let registry = dir.path().join("config/benchgen/models.toml");
    std::fs::create_dir_all(registry.parent().unwrap()).unwrap();
    std::fs::write(
        &registry,
        format!(
            "[models.live]\nsource = \"running:{}#test-model\"\n\
             [models.gone]\nsource = \"running:http://127.0.0.1:{dead}\"\n",
            server.url()
        ),
    )
    .unwrap();
    let served = Served::start(dir.path(), &[]);
    let page = served.get("/envs/arithmetic/evaluate").text();
    let entry = |alias: &str| {
        let start =
            page.find(&format!("value=\"platform:{alias}\"")).unwrap_or_else(|| panic!("{page}"));
        page[start..].split("</label>").next().unwrap_or("").to_string()
    };
    assert!(entry("live").contains("badge running"), "{}", entry("live"));
    assert!(!entry("gone").contains("badge running"), "{}", entry("gone"));
    assert!(page.contains("Running (2)"), "{page}");
    assert!(server.requests().iter().any(|r| r.path == "/v1/models"));
}

#[test]
fn a_registry_that_cannot_be_read_is_said_and_the_embedded_model_still_offered() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("config/benchgen/models.toml");
    std::fs::create_dir_all(registry.parent().unwrap()).unwrap();
    std::fs::write(&registry, "[models.x\nsource = ").unwrap();
    let served = Served::start(dir.path(), &[]);
    let reply = served.get("/envs/arithmetic/evaluate");
    assert_eq!(reply.status, 200);
    let page = reply.text();
    assert!(page.contains("models.toml"), "the registry's problem is not shown: {page}");
    assert!(page.contains("value=\"embedded\""), "{page}");
    assert_eq!(served.post_form("/envs/arithmetic/evaluate", "model=embedded&limit=2").status, 303);
    assert_eq!(wait_for_end(&dir.path().join("runs"), 1), "Completed");
}
