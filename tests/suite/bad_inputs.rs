//! The bad-input corpus (`fixtures/bad/cases.toml`): every case must fail with a non-zero exit,
//! a message naming the offending file (and line or tensor), and no Completed run.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::common::*;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    kind: String,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    env: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    mutate: Option<toml::Table>,
    #[serde(default)]
    zip: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    file: String,
    expect: Vec<String>,
}

fn bad_dir() -> PathBuf {
    repo().join("fixtures/bad")
}

/// Rewrites model.safetensors' JSON header with `edit`, keeping the data bytes.
fn rewrite_header(path: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let text = serde_json::to_vec(&Value::Object(header)).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

fn gguf_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A GGUF v3 file with one tensor of ggml type 99 (no such type).
/// A GGUF header with `general.architecture = llama` and one tensor, `token_embd.weight`, of
/// the given dimensions and ggml type.
fn gguf_one_tensor(dims: &[u64], ggml_type: u32) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes()); // tensors
    out.extend_from_slice(&1u64.to_le_bytes()); // metadata entries
    gguf_string(&mut out, "general.architecture");
    out.extend_from_slice(&8u32.to_le_bytes()); // string
    gguf_string(&mut out, "llama");
    gguf_string(&mut out, "token_embd.weight");
    out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&ggml_type.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.resize(out.len().div_ceil(32) * 32 + 64, 0);
    out
}

/// Builds the model the case names, broken as it says; returns the `--model` argument.
fn build_model(case: &Case, work: &Path) -> Option<PathBuf> {
    let op = case.mutate.as_ref().map(|m| m["op"].as_str().unwrap().to_string());
    if let Some(op @ ("gguf_unknown_type" | "gguf_garbage" | "gguf_huge_shape")) = op.as_deref() {
        let path = work.join("model.gguf");
        let bytes = match op {
            "gguf_garbage" => b"GGUF but not really a model".to_vec(),
            "gguf_unknown_type" => gguf_one_tensor(&[4], 99),
            // Dimensions whose product overflows (the gguf fuzz target's find).
            _ => gguf_one_tensor(&[1 << 63, 64], 0),
        };
        std::fs::write(&path, bytes).unwrap();
        return Some(path);
    }
    let name = case.model.as_deref()?;
    assert_eq!(name, "embedded", "{}: unknown model {name}", case.name);
    let dir = work.join("model");
    copy_dir(&repo().join("fixtures/embedded/model"), &dir);
    let Some(m) = &case.mutate else { return Some(dir) };
    let file = || dir.join(m["file"].as_str().unwrap());
    let st = dir.join("model.safetensors");
    match op.as_deref().unwrap() {
        "remove" => std::fs::remove_file(file()).unwrap(),
        "write" => std::fs::write(file(), m["text"].as_str().unwrap()).unwrap(),
        "truncate" => {
            let bytes = std::fs::read(file()).unwrap();
            std::fs::write(file(), &bytes[..m["bytes"].as_integer().unwrap() as usize]).unwrap();
        }
        "header_len" => {
            let mut bytes = std::fs::read(&st).unwrap();
            bytes[..8].copy_from_slice(&(m["value"].as_integer().unwrap() as u64).to_le_bytes());
            std::fs::write(&st, bytes).unwrap();
        }
        "header_garbage" => {
            let mut bytes = std::fs::read(&st).unwrap();
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            bytes[8..8 + n].fill(b'x');
            std::fs::write(&st, bytes).unwrap();
        }
        "tensor" => rewrite_header(&st, |h| {
            let name = m["tensor"].as_str().unwrap();
            if m.get("drop").and_then(|d| d.as_bool()) == Some(true) {
                h.remove(name).unwrap();
                return;
            }
            if let Some(to) = m.get("rename").and_then(|r| r.as_str()) {
                let entry = h.remove(name).unwrap();
                h.insert(to.to_string(), entry);
                return;
            }
            let entry = h.get_mut(name).unwrap().as_object_mut().unwrap();
            for key in ["dtype", "shape"] {
                if let Some(v) = m.get(key) {
                    entry.insert(key.into(), serde_json::to_value(v).unwrap());
                }
            }
            if let Some(v) = m.get("offsets") {
                entry.insert("data_offsets".into(), serde_json::to_value(v).unwrap());
            }
        }),
        "tokenizer_extra" => {
            let path = dir.join("tokenizer.json");
            let mut tok: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let vocab = tok["model"]["vocab"].as_object_mut().unwrap();
            let base = vocab.len() + 10;
            for i in 0..m["count"].as_integer().unwrap() as usize {
                vocab.insert(format!("<extra_{i}>"), Value::from(base + i));
            }
            std::fs::write(&path, serde_json::to_vec(&tok).unwrap()).unwrap();
        }
        other => panic!("{}: unknown mutation {other}", case.name),
    }
    Some(dir)
}

/// Zips the case's environment, broken as `how` says.
fn build_zip(env: &Path, how: &str, dest: &Path) {
    if how == "garbage" {
        std::fs::write(dest, b"PK\x03\x04 this is not an archive").unwrap();
        return;
    }
    let mut zip = zip::ZipWriter::new(std::fs::File::create(dest).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    for rel in ["environment.toml", "data/test.jsonl"] {
        if how == "no_manifest" && rel == "environment.toml" {
            continue;
        }
        zip.start_file(rel, opts).unwrap();
        zip.write_all(&std::fs::read(env.join(rel)).unwrap()).unwrap();
    }
    match how {
        "dotdot" | "absolute" => {
            let name = if how == "dotdot" { "../evil.txt" } else { "/etc/evil.txt" };
            zip.start_file(name, opts).unwrap();
            zip.write_all(b"evil").unwrap();
        }
        "symlink" => zip.add_symlink("data/link", "/etc/passwd", opts).unwrap(),
        "plain" | "no_manifest" => {}
        other => panic!("unknown zip mutation {other}"),
    }
    zip.finish().unwrap();
}

fn completed_runs(runs: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(runs) else { return Vec::new() };
    rd.filter_map(|e| {
        let p = e.unwrap().path().join("run.json");
        (p.is_file() && read_json(&p)["status"] == "Completed").then(|| p.display().to_string())
    })
    .collect()
}

/// Runs one case; returns what went wrong, if anything.
fn run_case(case: &Case) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let runs = work.join("runs");
    let mut env = case.env.as_ref().map(|e| {
        let dest = work.join("env");
        copy_dir(&bad_dir().join("envs").join(e), &dest);
        dest
    });
    if let Some(how) = &case.zip {
        let dest = work.join("env.zip");
        build_zip(env.as_ref().expect("a zip case names its env"), how, &dest);
        env = Some(dest);
    }
    let model = build_model(case, work);
    let mut args: Vec<String> = match case.command.as_deref().unwrap_or("eval") {
        "eval" => {
            let mut a = vec!["eval".to_string(), "--runs-dir".into(), runs.display().to_string()];
            if let Some(e) = &env {
                a.extend(["--env".into(), e.display().to_string()]);
            }
            if let Some(m) = &model {
                a.extend(["--model".into(), m.display().to_string()]);
            }
            a
        }
        "validate" => {
            vec!["env".into(), "validate".into(), env.as_ref().unwrap().display().to_string()]
        }
        other => panic!("unknown command {other}"),
    };
    args.extend(case.args.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = benchgen(work, &refs);
    // `env validate` lists the problems on stdout and sums them up on stderr.
    let err = format!("{}{}", stdout(&out), stderr(&out));
    let mut problems = Vec::new();
    if out.status.success() {
        problems.push(format!("exit status {:?}, expected a failure", out.status));
    }
    if out.status.code().is_none() {
        problems.push(format!("killed by a signal: {:?}", out.status));
    }
    if err.contains("panicked") {
        problems.push("panicked".into());
    }
    for want in case.expect.iter().chain([&case.file]) {
        if !err.contains(want.as_str()) {
            problems.push(format!("stderr lacks {want:?}"));
        }
    }
    let done = completed_runs(&runs);
    if !done.is_empty() {
        problems.push(format!("Completed runs: {done:?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "[{} / {}] {}\n  command: benchgen {}\n  stderr: {}",
            case.kind,
            case.name,
            problems.join("; "),
            args.join(" "),
            err.trim()
        ))
    }
}

#[test]
fn every_bad_input_fails_clearly_without_a_completed_run() {
    let text = std::fs::read_to_string(bad_dir().join("cases.toml")).unwrap();
    let corpus: Corpus = toml::from_str(&text).unwrap();
    assert!(corpus.case.len() >= 25, "the corpus has {} cases", corpus.case.len());
    for kind in ["environment", "dataset", "checkpoint", "tokenizer", "archive"] {
        assert!(corpus.case.iter().any(|c| c.kind == kind), "no {kind} case");
    }
    let failures: Vec<String> = corpus.case.iter().filter_map(|c| run_case(c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        corpus.case.len(),
        failures.join("\n")
    );
}

#[test]
fn truncate_left_keeps_the_last_tokens_that_fit_and_records_the_drop() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env");
    copy_dir(&bad_dir().join("envs/long-prompt"), &env);
    let runs = dir.path().join("runs");
    let args = [
        "eval",
        "--env",
        env.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--truncate",
        "left",
    ];
    ok(&benchgen(dir.path(), &args));
    let run = read_json(&runs.join("1/run.json"));
    assert_eq!(run["status"], "Completed");
    assert_eq!(run["settings"]["truncate"], "left");
    let preds = read_jsonl(&runs.join("1/predictions.jsonl"));
    let long = preds.iter().find(|p| p["id"] == "long").unwrap();
    let short = preds.iter().find(|p| p["id"] == "short").unwrap();
    // The embedded model's context is 512 and the environment asks for 4 new tokens.
    assert_eq!(long["tokens_in"], 508, "{long}");
    let dropped = long["tokens_dropped"].as_u64().unwrap();
    assert!(dropped > 0, "{long}");
    assert!(short.get("tokens_dropped").is_none(), "nothing dropped, no field: {short}");
    // The prompt as journaled is the whole prompt; tokens_in + tokens_dropped is its length.
    assert!(long["prompt"].as_str().unwrap().starts_with("1+2+3"));

    // --truncate is part of the run: a resume that gives another value is refused.
    let o = benchgen(
        dir.path(),
        &["eval", "--resume", "1", "--runs-dir", runs.to_str().unwrap(), "--truncate", "error"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--truncate"), "{}", stderr(&o));
}
