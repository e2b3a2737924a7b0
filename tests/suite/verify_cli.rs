//! `benchgen verify`: a fresh run reproduces; an edited prediction is reported.

use crate::common::*;

#[test]
fn fresh_runs_reproduce_and_edits_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    ok(&benchgen(dir.path(), &["eval", "--limit", "25"]));
    let choice = repo().join("fixtures/envs/choice");
    ok(&benchgen(dir.path(), &["eval", "--env", choice.to_str().unwrap(), "--batch-size", "3"]));
    for id in ["1", "2"] {
        let out = ok(&benchgen(dir.path(), &["verify", id]));
        assert!(
            out.contains("0 difference(s)") && out.contains(&format!("run {id} reproduces")),
            "{out}"
        );
    }
    // The scratch re-runs leave the user's runs directory alone.
    assert_eq!(std::fs::read_dir(dir.path().join("runs")).unwrap().count(), 2);

    // Edit one journaled prediction: verify names the item, the file and both values.
    let journal = dir.path().join("runs/1/predictions.jsonl");
    let mut lines = read_jsonl(&journal);
    let id = lines[3]["id"].as_str().unwrap().to_string();
    lines[3]["prediction"] = "edited".into();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&journal, text).unwrap();
    let o = benchgen(dir.path(), &["verify", "1"]);
    assert!(!o.status.success());
    let out = stdout(&o);
    assert!(out.contains(&format!("item {id} (predictions.jsonl): recorded \"edited\"")), "{out}");
    assert!(out.contains("1 difference(s)"), "{out}");
    assert!(stderr(&o).contains("does not reproduce"), "{}", stderr(&o));

    let o = benchgen(dir.path(), &["verify", "7"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("there is no run 7 to verify"), "{}", stderr(&o));
}

#[test]
fn run_json_records_content_hashes_and_verify_notices_changed_inputs() {
    use sha2::{Digest, Sha256};
    let hex = |b: &[u8]| Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect::<String>();
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env");
    copy_dir(&repo().join("fixtures/envs/mixed"), &env);
    let model = dir.path().join("model");
    copy_dir(&repo().join("fixtures/embedded/model"), &model);
    ok(&benchgen(
        dir.path(),
        &["eval", "--env", env.to_str().unwrap(), "--model", model.to_str().unwrap()],
    ));
    let rec = read_json(&dir.path().join("runs/1/run.json"));
    let weights = std::fs::read(model.join("model.safetensors")).unwrap();
    assert_eq!(rec["model"]["files"]["model.safetensors"], hex(&weights));
    assert_eq!(
        rec["model"]["files"]["config.json"],
        hex(&std::fs::read(model.join("config.json")).unwrap())
    );
    let content = rec["environment"]["content_sha256"].as_str().unwrap();
    assert_eq!(content.len(), 64);
    ok(&benchgen(dir.path(), &["verify", "1"]));

    // Same predictions are likely, but the data changed: verify must say so and fail.
    let data = env.join("data/dev.jsonl");
    let text =
        std::fs::read_to_string(&data).unwrap().replace("\"answer\": \"7\"", "\"answer\": \"8\"");
    std::fs::write(&data, text).unwrap();
    let o = benchgen(dir.path(), &["verify", "1"]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("changed since the run: environment"), "{}", stdout(&o));
}

#[test]
fn a_bf16_kv_cache_is_recorded_kept_by_resume_and_reproduced_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&benchgen(dir.path(), &["eval", "--limit", "12", "--kv-dtype", "bf16"]));
    assert!(out.contains("KV cache bf16"), "{out}");
    let run = read_json(&dir.path().join("runs/1/run.json"));
    assert_eq!(run["settings"]["kv_dtype"], "bf16", "{run}");
    let out = ok(&benchgen(dir.path(), &["verify", "1"]));
    assert!(out.contains("run 1 reproduces"), "{out}");
    // A different cache would not be the same run.
    let o = benchgen(dir.path(), &["eval", "--resume", "1", "--kv-dtype", "f32"]);
    assert!(!o.status.success());
    let msg = stderr(&o);
    assert!(msg.contains("--kv-dtype") && msg.contains("the run has bf16"), "{msg}");
    // f32 is the default and is not written into run.json.
    ok(&benchgen(dir.path(), &["eval", "--limit", "2"]));
    assert!(read_json(&dir.path().join("runs/2/run.json"))["settings"].get("kv_dtype").is_none());
}
