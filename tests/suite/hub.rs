//! `--model hf:ORG/NAME[@REVISION]` against a fake hub on 127.0.0.1: the real binary downloads
//! into a fresh HF cache, and the cache is then checked file by file.

use crate::common::hub_server;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::common::*;
use hub_server::*;

const SPEC: &str = "hf:test-org/tiny-llama";

/// A scratch HF_HOME and runs folder; the child sees only these and the endpoint.
struct Home {
    tmp: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Self { tmp: tempfile::tempdir().unwrap() }
    }

    fn hf_home(&self) -> PathBuf {
        self.tmp.path().join("hf")
    }

    fn repo_dir(&self) -> PathBuf {
        self.hf_home().join("hub/models--test-org--tiny-llama")
    }

    fn runs(&self) -> PathBuf {
        self.tmp.path().join("runs")
    }

    /// `benchgen` with the hub at `endpoint`, a clean HF environment plus `env`, killed after
    /// two minutes so a hung download fails the test instead of hanging it.
    fn run(&self, endpoint: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut cmd = benchgen_on_hub(endpoint, &self.hf_home());
        cmd.args(args).current_dir(self.tmp.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        output_within(&mut cmd, Duration::from_secs(120))
    }

    /// `eval --limit 5` of `model`; returns the run folder (runs are numbered from 1).
    fn eval(&self, endpoint: &str, env: &[(&str, &str)], model: &str, extra: &[&str]) -> Output {
        let runs = self.runs();
        let mut args =
            vec!["eval", "--model", model, "--limit", "5", "--runs-dir", runs.to_str().unwrap()];
        args.extend(extra);
        self.run(endpoint, env, &args)
    }

    fn run_json(&self, id: u32) -> serde_json::Value {
        read_json(&self.runs().join(id.to_string()).join("run.json"))
    }

    fn accuracy(&self, id: u32) -> f64 {
        read_json(&self.runs().join(id.to_string()).join("score_breakdown.json"))["accuracy"]
            .as_f64()
            .unwrap()
    }
}

fn fails(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected failure\nstdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
    let msg = stderr(o) + &stdout(o);
    eprintln!(
        "--- expected failure:\n{}",
        msg.lines().filter(|l| l.starts_with("error:")).collect::<Vec<_>>().join("\n")
    );
    msg
}

fn needed() -> Vec<&'static str> {
    vec![
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
}

fn fixture_file(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("fixtures/embedded/model").join(name)).unwrap()
}

/// No `.part` files, and every snapshot file resolves to a blob named by its content's sha256
/// holding exactly the fixture's bytes.
fn assert_cache_complete(repo_dir: &Path, files: &[&str]) {
    for f in files {
        let link = repo_dir.join("snapshots").join(COMMIT).join(f);
        assert!(
            link.symlink_metadata().unwrap().file_type().is_symlink(),
            "{f} is not a link into blobs/"
        );
        let target = std::fs::canonicalize(&link).unwrap();
        assert_eq!(
            target.parent().unwrap(),
            std::fs::canonicalize(repo_dir.join("blobs")).unwrap()
        );
        let bytes = std::fs::read(&target).unwrap();
        assert_eq!(bytes, fixture_file(f), "{f} differs from the served file");
        assert_eq!(target.file_name().unwrap().to_str().unwrap(), sha256_hex(&bytes));
    }
    let parts: Vec<_> = std::fs::read_dir(repo_dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(parts.is_empty(), "partial downloads left: {parts:?}");
}

#[test]
fn downloads_only_needed_files_then_runs_offline_from_the_cache() {
    let home = Home::new();
    let server = HubServer::start(tiny_llama());
    let url = server.url();
    ok(&home.eval(&url, &[], SPEC, &[]));

    let run = home.run_json(1);
    assert_eq!(run["model"]["revision"], COMMIT, "{run}");
    assert_eq!(run["model"]["origin"], format!("{SPEC}@{COMMIT}"));
    assert_eq!(run["status"], "Completed");

    // The standard layout: a branch ref holding the commit, snapshot links into blobs/.
    let repo_dir = home.repo_dir();
    assert_eq!(std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(), COMMIT);
    assert!(!repo_dir.join("refs").join(COMMIT).exists(), "a commit must not be recorded as a ref");
    assert_cache_complete(&repo_dir, &needed());

    // One file list, then only the needed files: README.md and pytorch_model.bin untouched.
    let reqs = server.requests();
    assert_eq!(reqs.iter().filter(|r| r.path.starts_with("/api/models/")).count(), 1, "{reqs:#?}");
    assert_eq!(server.fetched(), needed().into_iter().map(String::from).collect());
    assert_eq!(server.touched(), needed().into_iter().map(String::from).collect());
    let acc = home.accuracy(1);

    // Online again: the cache is current, so nothing is downloaded twice.
    server.clear_log();
    ok(&home.eval(&url, &[], SPEC, &[]));
    assert!(server.fetched().is_empty(), "downloaded again: {:?}", server.fetched());

    // With the hub gone: offline works from the cache, online says where it tried and why.
    server.stop();
    ok(&home.eval(&url, &[], SPEC, &["--offline"]));
    ok(&home.eval(&url, &[("HF_HUB_OFFLINE", "1")], SPEC, &[]));
    for id in [3, 4] {
        assert_eq!(home.accuracy(id), acc);
        assert_eq!(home.run_json(id)["model"]["revision"], COMMIT);
    }
    let msg = fails(&home.eval(&url, &[], SPEC, &[]));
    assert!(
        msg.contains(&url) && msg.contains("HF_ENDPOINT") && msg.contains("--offline"),
        "{msg}"
    );

    // `models list` sees the download under the HF tab.
    let list = ok(&home.run(&url, &[], &["models", "list"]));
    assert!(list.contains(SPEC), "{list}");
}

#[test]
fn offline_with_an_empty_cache_names_the_missing_files_and_the_cache() {
    let home = Home::new();
    let msg = fails(&home.eval("http://127.0.0.1:9", &[], SPEC, &["--offline"]));
    for needle in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "without --offline",
        "HF_HUB_OFFLINE",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
    assert!(msg.contains(&home.repo_dir().display().to_string()), "{msg}");

    // A half-filled snapshot names just what is missing.
    let snap = home.repo_dir().join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(home.repo_dir().join("refs")).unwrap();
    std::fs::write(home.repo_dir().join("refs/main"), COMMIT).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::write(snap.join(f), fixture_file(f)).unwrap();
    }
    let msg = fails(&home.eval("http://127.0.0.1:9", &[("HF_HUB_OFFLINE", "1")], SPEC, &[]));
    assert!(
        msg.contains("missing tokenizer.json in") && msg.contains(&snap.display().to_string()),
        "{msg}"
    );
}

#[test]
fn missing_files_are_named() {
    let mut fx = tiny_llama();
    fx.files.remove("tokenizer.json");
    let server = HubServer::start(fx);
    let home = Home::new();
    let msg = fails(&home.eval(&server.url(), &[], SPEC, &[]));
    assert!(msg.contains("has no tokenizer.json"), "{msg}");
    assert!(server.fetched().is_empty(), "nothing is downloaded for a repo that cannot load");

    // Listed but not served: the download's 404 names the file.
    server.update(|fx| {
        fx.files.insert("tokenizer.json".into(), fixture_file("tokenizer.json"));
        fx.listed_only.insert("generation_config.json".into());
    });
    let msg = fails(&home.eval(&server.url(), &[], SPEC, &[]));
    assert!(
        msg.contains(&format!(
            "generation_config.json not found in the repository at commit {COMMIT}"
        )),
        "{msg}"
    );

    let msg = fails(&home.eval(&server.url(), &[], "hf:test-org/no-such-model", &[]));
    assert!(msg.contains("repository not found"), "{msg}");
}

#[test]
fn a_token_is_sent_from_hf_token_or_the_login_file() {
    let mut fx = tiny_llama();
    fx.token = Some("hf_right".into());
    let server = HubServer::start(fx);
    let url = server.url();

    let home = Home::new();
    let msg = fails(&home.eval(&url, &[], SPEC, &[]));
    assert!(
        msg.contains("401") && msg.contains("HF_TOKEN") && msg.contains("huggingface-cli login"),
        "{msg}"
    );
    assert!(msg.contains("no token was sent") && msg.contains("terms"), "{msg}");
    let msg = fails(&home.eval(&url, &[("HF_TOKEN", "hf_wrong")], SPEC, &[]));
    assert!(msg.contains("a token was sent"), "{msg}");
    assert!(!home.repo_dir().join("snapshots").exists(), "nothing is cached when access is denied");

    ok(&home.eval(&url, &[("HF_TOKEN", "hf_right")], SPEC, &[]));
    assert_cache_complete(&home.repo_dir(), &needed());
    assert!(server
        .requests()
        .iter()
        .filter(|r| r.is_body())
        .all(|r| r.authorization.as_deref() == Some("Bearer hf_right")));

    // The file `huggingface-cli login` writes, in a fresh cache.
    let home = Home::new();
    std::fs::create_dir_all(home.hf_home()).unwrap();
    std::fs::write(home.hf_home().join("token"), "hf_right\n").unwrap();
    ok(&home.eval(&url, &[], SPEC, &[]));
    assert_cache_complete(&home.repo_dir(), &needed());
}

#[test]
fn a_dropped_connection_is_resumed_within_the_same_run() {
    let mut fx = tiny_llama();
    fx.drop_file = Some(("model.safetensors".into(), 1));
    let server = HubServer::start(fx);
    let home = Home::new();
    ok(&home.eval(&server.url(), &[], SPEC, &[]));
    assert_cache_complete(&home.repo_dir(), &needed());

    // The second body request starts where the first was cut off, not from zero.
    let total = fixture_file("model.safetensors").len();
    let gets = body_ranges(&server, "model.safetensors");
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0], "bytes=0-");
    assert_eq!(gets[1], format!("bytes={}-", total / 2), "{gets:?}");
}

#[test]
fn a_download_that_keeps_failing_leaves_only_a_part_file_which_the_next_run_resumes() {
    let mut fx = tiny_llama();
    fx.drop_file = Some(("model.safetensors".into(), usize::MAX));
    let server = HubServer::start(fx);
    let home = Home::new();
    let msg = fails(&home.eval(&server.url(), &[], SPEC, &[]));
    assert!(msg.contains("downloading model.safetensors") && msg.contains("resumes"), "{msg}");

    // Nothing truncated at a final path: no snapshot link, no blob, only the .part.
    let bytes = fixture_file("model.safetensors");
    let blobs = home.repo_dir().join("blobs");
    let sha = sha256_hex(&bytes);
    assert!(!home.repo_dir().join("snapshots").join(COMMIT).join("model.safetensors").exists());
    assert!(!blobs.join(&sha).exists());
    assert!(
        !home.repo_dir().join("refs").join(COMMIT).exists(),
        "a failed download leaves no ref named by the commit"
    );
    assert!(
        !home.repo_dir().join("refs/main").exists(),
        "nor a branch ref to an incomplete snapshot"
    );
    let part = std::fs::metadata(blobs.join(format!("{sha}.part"))).unwrap().len() as usize;
    assert!(part > 0 && part < bytes.len(), "part file holds {part} of {} bytes", bytes.len());

    server.update(|fx| fx.drop_file = None);
    server.clear_log();
    ok(&home.eval(&server.url(), &[], SPEC, &[]));
    assert_cache_complete(&home.repo_dir(), &needed());
    let ranges: Vec<_> =
        server.requests().into_iter().filter(|r| r.is_body()).filter_map(|r| r.range).collect();
    assert!(ranges.contains(&format!("bytes={part}-")), "not resumed from {part}: {ranges:?}");
    // Files completed before the failure are not fetched again; those after it are.
    let again: Vec<String> =
        ["generation_config.json", "model.safetensors", "tokenizer_config.json"]
            .map(String::from)
            .into();
    assert_eq!(server.fetched(), again.into_iter().collect());
}

#[test]
fn revisions_pin_commits_and_unknown_ones_are_refused() {
    let server = HubServer::start(tiny_llama());
    let url = server.url();
    let home = Home::new();

    let pinned = format!("{SPEC}@{COMMIT}");
    ok(&home.eval(&url, &[], &pinned, &[]));
    assert_eq!(home.run_json(1)["model"]["revision"], COMMIT);
    assert_cache_complete(&home.repo_dir(), &needed());
    let refs = home.repo_dir().join("refs");
    assert!(
        !refs.exists() || std::fs::read_dir(&refs).unwrap().next().is_none(),
        "a pinned commit writes no ref"
    );

    // A tag is resolved through the hub and recorded as a ref of its own.
    ok(&home.eval(&url, &[], &format!("{SPEC}@{TAG}"), &[]));
    assert_eq!(std::fs::read_to_string(refs.join(TAG)).unwrap(), COMMIT);

    let msg = fails(&home.eval(&url, &[], &format!("{SPEC}@no-such-branch"), &[]));
    assert!(msg.contains("revision no-such-branch not found"), "{msg}");

    // A pinned commit that is fully cached needs no hub at all.
    server.stop();
    let out = ok(&home.eval(&url, &[], &pinned, &[]));
    let id: u32 =
        out.lines().find_map(|l| l.strip_prefix("Run ID: ")).unwrap().trim().parse().unwrap();
    assert_eq!(home.run_json(id)["model"]["revision"], COMMIT);
}

#[test]
fn an_adapter_repo_fetches_only_the_adapter_files_and_runs_on_its_base() {
    // The peft adapter fixture, its base named by absolute path (the fake hub serves one repo).
    let local = repo().join("fixtures/models/lora-llama-gqa-untied");
    let base = repo().join("fixtures/models/llama-gqa-untied");
    let mut config: serde_json::Value = read_json(&local.join("adapter_config.json"));
    config["base_model_name_or_path"] = base.display().to_string().into();
    let mut fx = tiny_llama();
    fx.repo = "test-org/tiny-lora".into();
    fx.files.clear();
    fx.files.insert("adapter_config.json".into(), serde_json::to_vec_pretty(&config).unwrap());
    fx.files.insert(
        "adapter_model.safetensors".into(),
        std::fs::read(local.join("adapter_model.safetensors")).unwrap(),
    );
    fx.files.insert("README.md".into(), b"# adapter\n".to_vec());
    let server = HubServer::start(fx);
    let home = Home::new();
    let generate = |model: &str| {
        let out = ok(&home.run(
            &server.url(),
            &[],
            &[
                "generate",
                "--model",
                model,
                "--prompt",
                "12+34=",
                "--max-new-tokens",
                "12",
                "--json",
            ],
        ));
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v["token_ids"].clone()
    };
    let from_hub = generate("hf:test-org/tiny-lora");
    assert_eq!(
        from_hub,
        generate(&format!("trained:{}", local.display())),
        "the hub copy of the adapter decodes like the local one"
    );
    assert_ne!(
        from_hub,
        generate(&format!("trained:{}", base.display())),
        "and the adapter changes the base's output"
    );

    let ours: std::collections::BTreeSet<String> = server
        .requests()
        .iter()
        .filter(|r| r.is_body() && r.path.starts_with("/test-org/tiny-lora/"))
        .filter_map(|r| r.file().map(str::to_string))
        .collect();
    assert_eq!(ours, ["adapter_config.json", "adapter_model.safetensors"].map(String::from).into());
    let repo_dir = home.hf_home().join("hub/models--test-org--tiny-lora");
    assert_eq!(std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(), COMMIT);
    assert!(!repo_dir.join("snapshots").join(COMMIT).join("README.md").exists());

    let out = ok(&home.eval(&server.url(), &[], "hf:test-org/tiny-lora", &[]));
    let id: u32 =
        out.lines().find_map(|l| l.strip_prefix("Run ID: ")).unwrap().trim().parse().unwrap();
    let record = home.run_json(id);
    assert_eq!(record["model"]["revision"], COMMIT);
    let origin = record["model"]["origin"].as_str().unwrap();
    assert!(
        origin.starts_with(&format!("hf:test-org/tiny-lora@{COMMIT} (LoRA r=4 on ")),
        "{origin}"
    );
    assert!(record["model"]["files"]["adapter_model.safetensors"].is_string(), "{record}");

    // An adapter repo has no tokenizer.json: tokenize falls back to the adapter on its base.
    let tokens = ok(&home.run(
        &server.url(),
        &[],
        &["tokenize", "--model", "hf:test-org/tiny-lora", "--text", "12"],
    ));
    let base_tokens = ok(&home.run(
        &server.url(),
        &[],
        &["tokenize", "--model", base.to_str().unwrap(), "--text", "12"],
    ));
    assert_eq!(tokens, base_tokens);
}

#[test]
fn tokenize_fetches_only_the_tokenizer() {
    let home = Home::new();
    let server = HubServer::start(tiny_llama());
    let url = server.url();
    let tokenize = |extra: &[&str]| {
        let mut args = vec!["tokenize", "--model", SPEC, "--json", "--text", "Hello <s>"];
        args.extend(extra);
        ok(&home.run(&url, &[], &args))
    };
    let online = tokenize(&[]);
    assert_eq!(server.fetched(), ["tokenizer.json".to_string()].into());
    let local = repo().join("fixtures/embedded/model");
    let from_folder = ok(&benchgen(
        &local,
        &["tokenize", "--model", local.to_str().unwrap(), "--json", "--text", "Hello <s>"],
    ));
    assert_eq!(online, from_folder);
    server.stop();
    assert_eq!(tokenize(&["--offline"]), online);
}

/// Splits a safetensors file into two shards and their index, as `save_pretrained` would.
fn shard(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let names: Vec<&String> = header.keys().filter(|k| *k != "__metadata__").collect();
    let (a, b) = names.split_at(names.len() / 2);
    let mut out = Vec::new();
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [a, b].iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let (mut head, mut body) = (serde_json::Map::new(), Vec::new());
        for name in part.iter() {
            let mut t = header[*name].clone();
            let offs: Vec<usize> = t["data_offsets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            t["data_offsets"] = serde_json::json!([body.len(), body.len() + offs[1] - offs[0]]);
            body.extend_from_slice(&data[offs[0]..offs[1]]);
            head.insert((*name).clone(), t);
            weight_map.insert((*name).clone(), file.clone().into());
        }
        let mut h = serde_json::Value::Object(head).to_string().into_bytes();
        h.resize(h.len().div_ceil(8) * 8, b' ');
        let mut f = (h.len() as u64).to_le_bytes().to_vec();
        f.extend(h);
        f.extend(body);
        out.push((file, f));
    }
    let index =
        serde_json::json!({ "metadata": { "total_size": data.len() }, "weight_map": weight_map });
    out.push(("model.safetensors.index.json".into(), index.to_string().into_bytes()));
    out
}

#[test]
fn a_sharded_checkpoint_fetches_the_index_and_only_the_shards_it_lists() {
    let mut fx = tiny_llama();
    let single = fx.files.remove("model.safetensors").unwrap();
    let shards = shard(&single);
    fx.files.extend(shards.iter().cloned());
    fx.files.insert("model-00099-of-00099.safetensors".into(), vec![0u8; 64]);
    let server = HubServer::start(fx);
    let home = Home::new();
    ok(&home.eval(&server.url(), &[], SPEC, &[]));

    let mut want: std::collections::BTreeSet<String> =
        shards.iter().map(|(f, _)| f.clone()).collect();
    want.extend(
        ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
            .map(String::from),
    );
    assert_eq!(server.fetched(), want);
    let snap = home.repo_dir().join("snapshots").join(COMMIT);
    for (f, bytes) in &shards {
        assert_eq!(&std::fs::read(snap.join(f)).unwrap(), bytes, "{f}");
    }

    // The same weights, so the same predictions as the single-file checkpoint.
    let model = repo().join("fixtures/embedded/model");
    ok(&home.eval(&server.url(), &[], model.to_str().unwrap(), &[]));
    let preds = |id: u32| {
        let mut p: Vec<(String, String)> =
            read_jsonl(&home.runs().join(id.to_string()).join("predictions.jsonl"))
                .iter()
                .map(|r| (r["id"].to_string(), r["prediction"].to_string()))
                .collect();
        p.sort();
        p
    };
    assert_eq!(preds(1).len(), 5);
    assert_eq!(preds(1), preds(2));
}

#[test]
fn a_complete_or_oversized_part_file_does_not_block_the_download() {
    let server = HubServer::start(tiny_llama());
    let home = Home::new();
    let bytes = fixture_file("model.safetensors");
    let blobs = home.repo_dir().join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let part = blobs.join(format!("{}.part", sha256_hex(&bytes)));

    // Killed after the last byte but before the rename: resuming asks for bytes past the end.
    std::fs::write(&part, &bytes).unwrap();
    ok(&home.eval(&server.url(), &[], SPEC, &[]));
    assert_cache_complete(&home.repo_dir(), &needed());

    let home = Home::new();
    let blobs = home.repo_dir().join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"garbage");
    std::fs::write(blobs.join(format!("{}.part", sha256_hex(&bytes))), &longer).unwrap();
    ok(&home.eval(&server.url(), &[], SPEC, &[]));
    assert_cache_complete(&home.repo_dir(), &needed());
}

#[test]
fn a_resume_answered_with_the_whole_file_is_caught_by_its_sha256_and_redone() {
    let mut fx = tiny_llama();
    fx.drop_file = Some(("model.safetensors".into(), 1));
    fx.ignore_resume_ranges = true;
    let server = HubServer::start(fx);
    let home = Home::new();
    ok(&home.eval(&server.url(), &[], SPEC, &[]));
    assert_cache_complete(&home.repo_dir(), &needed());

    // Cut off, resumed into a corrupt blob (half + whole), detected, downloaded afresh.
    let total = fixture_file("model.safetensors").len();
    let gets = body_ranges(&server, "model.safetensors");
    assert_eq!(
        gets,
        ["bytes=0-".to_string(), format!("bytes={}-", total / 2), "bytes=0-".to_string()]
    );
}

/// The Range header of each request for `file`'s body, in order ("" when none).
fn body_ranges(server: &HubServer, file: &str) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.is_body() && r.file() == Some(file))
        .map(|r| r.range.unwrap_or_default())
        .collect()
}
