//! Phases read from `.parquet` files and from `source = "hf://datasets/…"` against a fake hub on
//! 127.0.0.1: the real binary downloads into a fresh HF cache, evaluates with the embedded
//! model, and works offline from that cache afterwards.

use crate::common::hub_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::common::*;
use hub_server::*;
use serde_json::Value;

const REPO: &str = "test-org/tiny-data";
const FILE: &str = "data/test-00000-of-00001.parquet";
const SOURCE: &str = "hf://datasets/test-org/tiny-data@main/data/test-00000-of-00001.parquet";

fn parquet_fixture() -> Vec<u8> {
    std::fs::read(repo().join("fixtures/parquet/tiny-data").join(FILE)).unwrap()
}

/// The repo as the hub would hold it: the data file and a README that must never be fetched.
fn tiny_data() -> HubFixture {
    let files = BTreeMap::from([
        (FILE.to_string(), parquet_fixture()),
        ("README.md".to_string(), b"# tiny data\n".to_vec()),
    ]);
    dataset(REPO, files)
}

/// The embedded arithmetic environment with phases `hub` (the parquet via `source`), `local`
/// (the same eight items as jsonl) and `file` (the parquet inside the environment), plus any
/// extra `[[phases]]` text.
fn make_env(root: &Path, extra_phases: &str) -> PathBuf {
    let env = root.join("env");
    copy_dir(&repo().join("fixtures/embedded/env"), &env);
    let manifest = std::fs::read_to_string(env.join("environment.toml")).unwrap();
    let phases = format!(
        "[[phases]]\nname = \"hub\"\nsource = \"{SOURCE}\"\n\n[[phases]]\nname = \"local\"\ndata = \"data/first8.jsonl\"\n\n\
         [[phases]]\nname = \"file\"\ndata = \"data/test.parquet\"\n\n{extra_phases}"
    );
    let old = "[[phases]]\nname = \"test\"\ndata = \"data/test.jsonl\"\n";
    assert!(manifest.contains(old), "the embedded manifest changed:\n{manifest}");
    std::fs::write(env.join("environment.toml"), manifest.replace(old, &phases)).unwrap();
    let lines: Vec<String> = std::fs::read_to_string(env.join("data/test.jsonl"))
        .unwrap()
        .lines()
        .take(8)
        .map(str::to_string)
        .collect();
    std::fs::write(env.join("data/first8.jsonl"), lines.join("\n") + "\n").unwrap();
    std::fs::write(env.join("data/test.parquet"), parquet_fixture()).unwrap();
    env
}

/// A scratch HF_HOME, runs folder and environment; the child sees only these and the endpoint.
struct Home {
    tmp: tempfile::TempDir,
    env: PathBuf,
}

impl Home {
    fn new(extra_phases: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let env = make_env(tmp.path(), extra_phases);
        Self { tmp, env }
    }

    fn repo_dir(&self) -> PathBuf {
        self.tmp.path().join("hf/hub/datasets--test-org--tiny-data")
    }

    fn run_dir(&self, id: u32) -> PathBuf {
        self.tmp.path().join("runs").join(id.to_string())
    }

    /// `benchgen` with the hub at `endpoint` and a clean environment plus `vars`, killed after
    /// two minutes so a hung download fails the test instead of hanging it.
    fn run(&self, endpoint: &str, vars: &[(&str, &str)], args: &[&str]) -> Output {
        let mut cmd = benchgen_on_hub(endpoint, &self.tmp.path().join("hf"));
        cmd.args(args).current_dir(self.tmp.path());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        output_within(&mut cmd, Duration::from_secs(120))
    }

    fn eval(&self, endpoint: &str, vars: &[(&str, &str)], phase: &str) -> Output {
        let runs = self.tmp.path().join("runs");
        let args = [
            "eval",
            "--env",
            self.env.to_str().unwrap(),
            "--phase",
            phase,
            "--runs-dir",
            runs.to_str().unwrap(),
        ];
        self.run(endpoint, vars, &args)
    }

    /// (id, prompt, prediction) of each prediction of a run, by id (runs write them as they
    /// finish).
    fn predictions(&self, id: u32) -> Vec<(String, String, String)> {
        let mut out: Vec<_> = read_jsonl(&self.run_dir(id).join("predictions.jsonl"))
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap().to_string(),
                    p["prompt"].as_str().unwrap().to_string(),
                    p["prediction"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    fn accuracy(&self, id: u32) -> f64 {
        read_json(&self.run_dir(id).join("score_breakdown.json"))["accuracy"].as_f64().unwrap()
    }

    fn run_json(&self, id: u32) -> Value {
        read_json(&self.run_dir(id).join("run.json"))
    }
}

fn fails(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected failure\nstdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
    stderr(o) + &stdout(o)
}

#[test]
fn a_hub_parquet_source_evaluates_like_the_same_items_from_jsonl_then_works_offline() {
    let home = Home::new("");
    let server = HubServer::start(tiny_data());
    let url = server.url();
    ok(&home.eval(&url, &[], "hub"));
    ok(&home.eval(&url, &[], "local"));
    ok(&home.eval(&url, &[], "file"));
    let from_hub = home.predictions(1);
    assert_eq!(from_hub.len(), 8);
    assert_eq!(
        from_hub,
        home.predictions(2),
        "parquet from the hub and jsonl must give the same predictions"
    );
    assert_eq!(
        from_hub,
        home.predictions(3),
        "parquet in the environment must give the same predictions"
    );
    assert_eq!((from_hub[0].0.as_str(), from_hub[0].1.as_str()), ("arith-000", "33-3="));
    assert!(home.accuracy(1) > 0.0, "the embedded model answers some of these");
    assert_eq!(home.accuracy(1), home.accuracy(2));

    // One file list, then only the named file; the log names the commit it resolved to.
    let reqs = server.requests();
    assert_eq!(
        reqs.iter().filter(|r| r.path.starts_with("/api/datasets/")).count(),
        1,
        "{reqs:#?}"
    );
    assert_eq!(server.touched(), [FILE.to_string()].into());
    let log = std::fs::read_to_string(home.run_dir(1).join("log.txt")).unwrap();
    assert!(log.contains(&format!("Data source: hf://datasets/{REPO}@{COMMIT}/{FILE}")), "{log}");

    // The standard layout: refs/main holds the commit, the snapshot file links into blobs/.
    let dir = home.repo_dir();
    assert_eq!(std::fs::read_to_string(dir.join("refs/main")).unwrap(), COMMIT);
    assert!(!dir.join("refs").join(COMMIT).exists(), "a commit must not be recorded as a ref");
    let link = dir.join("snapshots").join(COMMIT).join(FILE);
    assert!(
        link.symlink_metadata().unwrap().file_type().is_symlink(),
        "{} is not a link",
        link.display()
    );
    let blob = std::fs::canonicalize(&link).unwrap();
    assert_eq!(blob.parent().unwrap(), std::fs::canonicalize(dir.join("blobs")).unwrap());
    assert_eq!(blob.file_name().unwrap().to_str().unwrap(), sha256_hex(&parquet_fixture()));
    assert_eq!(std::fs::read(&blob).unwrap(), parquet_fixture());

    // The hub gone: offline works from the cache, with the same data hash; online says why not.
    let hash = home.run_json(1)["environment"]["content_sha256"].clone();
    assert!(hash.is_string(), "{}", home.run_json(1));
    server.stop();
    ok(&home.eval(&url, &[("HF_HUB_OFFLINE", "1")], "hub"));
    assert_eq!(home.predictions(4), from_hub);
    assert_eq!(home.run_json(4)["environment"]["content_sha256"], hash);
    let runs = home.tmp.path().join("runs");
    let env = home.env.to_str().unwrap();
    ok(&home.run(
        &url,
        &[],
        &[
            "eval",
            "--env",
            env,
            "--phase",
            "hub",
            "--runs-dir",
            runs.to_str().unwrap(),
            "--offline",
        ],
    ));
    assert_eq!(home.predictions(5), from_hub);
    let msg = fails(&home.eval(&url, &[], "hub"));
    assert!(msg.contains(&url) && msg.contains("HF_HUB_OFFLINE=1"), "{msg}");
}

#[test]
fn offline_with_an_empty_cache_names_the_file_and_the_cache() {
    let home = Home::new("");
    let msg = fails(&home.eval("http://127.0.0.1:9", &[("HF_HUB_OFFLINE", "1")], "hub"));
    for needle in
        [&format!("dataset hf://datasets/{REPO}"), FILE, "HF_HUB_OFFLINE", "not fully cached"]
    {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
    assert!(msg.contains(&home.repo_dir().display().to_string()), "{msg}");
}

#[test]
fn missing_files_and_repos_are_named() {
    let mut fx = tiny_data();
    fx.files.remove(FILE);
    let server = HubServer::start(fx);
    let home = Home::new(&format!(
        "[[phases]]\nname = \"norepo\"\nsource = \"hf://datasets/test-org/no-such-data/{FILE}\"\n\n\
         [[phases]]\nname = \"notext\"\nsource = \"hf://datasets/{REPO}/README.txt\"\n"
    ));
    let msg = fails(&home.eval(&server.url(), &[], "hub"));
    assert!(msg.contains(&format!("has no file {FILE}")) && msg.contains("README.md"), "{msg}");
    assert!(server.fetched().is_empty(), "nothing is downloaded for a file the repo lacks");

    // Listed but not served: the download's 404 names the file.
    server.update(|fx| {
        fx.listed_only.insert(FILE.into());
    });
    let msg = fails(&home.eval(&server.url(), &[], "hub"));
    assert!(
        msg.contains(&format!("{FILE} not found in the repository at commit {COMMIT}")),
        "{msg}"
    );

    let msg = fails(&home.eval(&server.url(), &[], "norepo"));
    assert!(
        msg.contains("repository not found") && msg.contains("hf://datasets/ORG/NAME"),
        "{msg}"
    );

    // A malformed reference fails when the manifest is read, naming what is expected.
    let bad = Home::new("[[phases]]\nname = \"bad\"\nsource = \"hf://datasets/only-org\"\n");
    let msg = fails(&bad.run(&server.url(), &[], &["env", "validate", bad.env.to_str().unwrap()]));
    assert!(
        msg.contains("phase \"bad\"") && msg.contains("hf://datasets/ORG/NAME@REVISION/PATH"),
        "{msg}"
    );
}

#[test]
fn a_dataset_under_benchgen_data_dir_takes_precedence_over_the_source() {
    let phase = format!(
        "[[phases]]\nname = \"both\"\ndataset = \"tiny/test.jsonl\"\nsource = \"{SOURCE}\"\n"
    );
    let home = Home::new(&phase);
    let data_dir = home.tmp.path().join("data");
    std::fs::create_dir_all(data_dir.join("tiny")).unwrap();
    let three: Vec<String> = std::fs::read_to_string(home.env.join("data/first8.jsonl"))
        .unwrap()
        .lines()
        .take(3)
        .map(str::to_string)
        .collect();
    std::fs::write(data_dir.join("tiny/test.jsonl"), three.join("\n") + "\n").unwrap();
    let server = HubServer::start(tiny_data());
    let url = server.url();
    let data_var = ("BENCHGEN_DATA_DIR", data_dir.to_str().unwrap());

    ok(&home.eval(&url, &[data_var], "both"));
    assert_eq!(home.predictions(1).len(), 3, "the file under BENCHGEN_DATA_DIR is read");
    assert!(
        server.requests().is_empty(),
        "the hub is not asked when the data dir has the file: {:#?}",
        server.requests()
    );

    // Unset, or set without the file: the source.
    ok(&home.eval(&url, &[], "both"));
    assert_eq!(home.predictions(2).len(), 8);
    let empty = home.tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    ok(&home.eval(&url, &[("BENCHGEN_DATA_DIR", empty.to_str().unwrap())], "both"));
    assert_eq!(home.predictions(3).len(), 8);

    // Neither: the error names both.
    server.stop();
    let fresh = Home::new(&phase);
    let msg = fails(&fresh.eval(
        &url,
        &[("HF_HUB_OFFLINE", "1"), ("BENCHGEN_DATA_DIR", empty.to_str().unwrap())],
        "both",
    ));
    assert!(
        msg.contains("tiny/test.jsonl")
            && msg.contains(SOURCE)
            && msg.contains("BENCHGEN_DATA_DIR"),
        "{msg}"
    );
}

#[test]
fn env_validate_and_show_read_parquet_and_hub_phases() {
    let home = Home::new("[[phases]]\nname = \"broken\"\ndata = \"data/broken.parquet\"\n");
    std::fs::write(home.env.join("data/broken.parquet"), b"PAR1 this is not parquet").unwrap();
    let server = HubServer::start(tiny_data());
    let env = home.env.to_str().unwrap();
    let o = home.run(&server.url(), &[], &["env", "validate", env]);
    let out = fails(&o);
    for needle in [
        "phase hub: 8 items, 0 problem(s)",
        "phase file: 8 items, 0 problem(s)",
        "phase broken: 0 items, 1 problem(s)",
        "broken.parquet: not a readable parquet file",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }

    let show = ok(&home.run(&server.url(), &[], &["env", "show", env]));
    assert!(show.contains(&format!("hub (default): {SOURCE} — 8 items")), "{show}");
    assert!(show.contains("file: data/test.parquet — 8 items"), "{show}");
    assert!(
        show.contains("broken: data/broken.parquet — data not available")
            && show.contains("not a readable parquet file"),
        "{show}"
    );
}

#[test]
fn the_shipped_math500_falls_back_to_its_hub_source_and_names_both_when_neither_is_there() {
    let home = Home::new("");
    // Offline with an empty cache: no network, and the phase says what it tried.
    let show = ok(&home.run(
        "http://127.0.0.1:9",
        &[("HF_HUB_OFFLINE", "1")],
        &["env", "show", "math500"],
    ));
    for needle in [
        "data not available",
        "benchmarks/math500/test.jsonl",
        "hf://datasets/HuggingFaceH4/MATH-500@main/test.jsonl",
        "not fully cached",
    ] {
        assert!(show.contains(needle), "missing {needle:?} in:\n{show}");
    }
}

#[test]
fn a_gated_dataset_needs_the_token_and_says_so() {
    let mut fx = tiny_data();
    fx.token = Some("hf_secret".into());
    let server = HubServer::start(fx);
    let home = Home::new("");
    let msg = fails(&home.eval(&server.url(), &[], "hub"));
    assert!(
        msg.contains("access denied (HTTP 401)")
            && msg.contains("set HF_TOKEN")
            && msg.contains("dataset's terms"),
        "{msg}"
    );
    ok(&home.eval(&server.url(), &[("HF_TOKEN", "hf_secret")], "hub"));
    // The refusal came before a run existed: this is the first.
    assert_eq!(home.predictions(1).len(), 8);
    assert!(server
        .requests()
        .iter()
        .any(|r| r.authorization.as_deref() == Some("Bearer hf_secret")));
}
