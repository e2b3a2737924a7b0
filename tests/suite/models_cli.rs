//! Platform Models (`platform:ALIAS` through the models registry) and `benchgen models list`,
//! through the real binary. The registry is a TOML file the test writes.

use crate::common;
use std::path::Path;
use std::process::Output;

use crate::common::{ok, read_json, read_jsonl, repo, stderr};

/// `benchgen` with a clean model-source environment: nothing of the user's registry, HF cache
/// or trained folder leaks into the test.
fn run(cwd: &Path, home: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = crate::common::benchgen_command();
    cmd.args(args).current_dir(cwd);
    for k in ["BENCHGEN_MODELS", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "BENCHGEN_TRAINED_DIR"] {
        cmd.env_remove(k);
    }
    cmd.env("XDG_CONFIG_HOME", home.join("config"))
        .env("HF_HOME", home.join("hf"))
        .env("HOME", home);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("benchgen runs")
}

fn embedded_model() -> String {
    repo().join("fixtures/embedded/model").display().to_string()
}

fn write_registry(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn an_alias_runs_its_source_with_its_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = tmp.path().join("models.toml");
    // The chat template wraps the user turn so its use is visible in the recorded prompts.
    std::fs::write(
        tmp.path().join("wrap.jinja"),
        "{% for m in messages %}[{{ m.content }}]{% endfor %}",
    )
    .unwrap();
    write_registry(
        &registry,
        &format!(
            r#"
[models.tiny]
source = "{model}"
dtype = "f32"
description = "the embedded model"
[models.tiny.generation]
max_new_tokens = 2

[models.wrapped]
source = "platform:tiny"
chat_template = "wrap.jinja"
"#,
            model = embedded_model()
        ),
    );
    let reg = registry.display().to_string();
    ok(&run(
        tmp.path(),
        tmp.path(),
        &[],
        &["eval", "--model", "platform:tiny", "--models-file", &reg, "--limit", "12"],
    ));
    let record = read_json(&tmp.path().join("runs/1/run.json"));
    assert_eq!(record["model"]["spec"], "platform:tiny");
    assert_eq!(
        record["settings"]["generation"]["max_new_tokens"], 2,
        "the alias's generation default applies"
    );
    assert_eq!(record["settings"]["dtype"], "f32");
    let preds = read_jsonl(&tmp.path().join("runs/1/predictions.jsonl"));
    assert_eq!(preds.len(), 12);
    assert!(
        preds.iter().all(|p| p["tokens_out"].as_u64().unwrap() <= 2),
        "max_new_tokens = 2 caps every output"
    );
    assert!(preds.iter().any(|p| p["tokens_out"] == 2), "some outputs reach the cap");

    // An alias of an alias: settings inherited, its own chat template on top. BENCHGEN_MODELS
    // finds the registry this time.
    ok(&run(
        tmp.path(),
        tmp.path(),
        &[("BENCHGEN_MODELS", &reg)],
        &["eval", "--model", "platform:wrapped", "--limit", "3"],
    ));
    let record = read_json(&tmp.path().join("runs/2/run.json"));
    assert_eq!(record["settings"]["generation"]["max_new_tokens"], 2);
    let data =
        std::fs::read_to_string(repo().join("fixtures/embedded/env/data/test.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(data.lines().next().unwrap()).unwrap();
    let preds = read_jsonl(&tmp.path().join("runs/2/predictions.jsonl"));
    assert_eq!(preds[0]["prompt"], format!("[{}]", first["question"].as_str().unwrap()));
}

#[test]
fn the_default_registry_is_in_the_config_dir() {
    let tmp = tempfile::tempdir().unwrap();
    write_registry(
        &tmp.path().join("config/benchgen/models.toml"),
        &format!("[models.mine]\nsource = \"{}\"\n", embedded_model()),
    );
    ok(&run(tmp.path(), tmp.path(), &[], &["eval", "--model", "platform:mine", "--limit", "2"]));
    assert_eq!(read_json(&tmp.path().join("runs/1/run.json"))["status"], "Completed");
}

#[test]
fn an_unknown_alias_lists_the_known_ones_and_leaves_no_run() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = tmp.path().join("models.toml");
    write_registry(&registry, "[models.alpha]\nsource = \"./a\"\n[models.beta]\nsource = \"hf:org/beta\"\n[models.loop]\nsource = \"platform:loop\"\n");
    let reg = registry.display().to_string();
    let out = run(
        tmp.path(),
        tmp.path(),
        &[],
        &["eval", "--model", "platform:gamma", "--models-file", &reg],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("platform:gamma") && err.contains("alpha, beta, loop") && err.contains(&reg),
        "{err}"
    );
    assert!(!tmp.path().join("runs/1").exists(), "a typo must not leave a Failed run behind");

    let out = run(
        tmp.path(),
        tmp.path(),
        &[],
        &["eval", "--model", "platform:loop", "--models-file", &reg],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("loop"), "{}", stderr(&out));

    let out = run(
        tmp.path(),
        tmp.path(),
        &[],
        &["eval", "--model", "platform:alpha", "--models-file", "missing.toml"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("missing.toml") && stderr(&out).contains("does not exist"),
        "{}",
        stderr(&out)
    );

    write_registry(&registry, "[models.bad]\nsource = \"hf:org/x\"\ndtype = \"int3\"\n");
    let out = run(tmp.path(), tmp.path(), &[], &["models", "list", "--models-file", &reg]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("[models.bad] dtype"), "{}", stderr(&out));
}

#[test]
fn models_list_shows_all_four_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = tmp.path().join("models.toml");
    write_registry(
        &registry,
        "[models.small]\nsource = \"hf:org/small\"\nrevision = \"v1\"\ndtype = \"bf16\"\n\
         [models.server]\nsource = \"running:http://127.0.0.1:9/v1#served\"\n",
    );
    let trained = tmp.path().join("ckpts");
    common::copy_dir(&repo().join("fixtures/embedded/model"), &trained.join("full"));
    std::fs::create_dir_all(trained.join("adapter")).unwrap();
    std::fs::write(
        trained.join("adapter/adapter_config.json"),
        r#"{"base_model_name_or_path": "../full", "peft_type": "LORA"}"#,
    )
    .unwrap();
    std::fs::write(trained.join("q4.gguf"), b"GGUF").unwrap();
    // The hub cache as huggingface_hub lays it out.
    let hub = tmp.path().join("hf/hub/models--org--cached");
    std::fs::create_dir_all(hub.join("snapshots/0123456789abcdef0123456789abcdef01234567"))
        .unwrap();
    std::fs::create_dir_all(hub.join("refs")).unwrap();
    std::fs::create_dir_all(hub.join("blobs")).unwrap();
    std::fs::write(hub.join("refs/main"), "0123456789abcdef0123456789abcdef01234567").unwrap();
    std::fs::write(hub.join("blobs/aaaa"), vec![7u8; 2500]).unwrap();

    let reg = registry.display().to_string();
    let td = trained.display().to_string();
    let envs = [("BENCHGEN_TRAINED_DIR", td.as_str())];
    let text = ok(&run(tmp.path(), tmp.path(), &envs, &["models", "list", "--models-file", &reg]));
    let groups: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ') && !l.is_empty()).collect();
    assert_eq!(groups.len(), 4, "{text}");
    for (g, name) in groups.iter().zip(["Platform Models", "Running", "Trained", "HuggingFace"]) {
        assert!(g.starts_with(name), "{text}");
    }
    for needle in [
        "platform:small",
        "hf:org/small",
        "revision v1",
        "bf16",
        "http://127.0.0.1:9/v1",
        "model served",
        "full",
        "checkpoint",
        "adapter",
        "lora, base ../full",
        "q4.gguf",
        "gguf",
        "hf:org/cached",
        "2.5 KB",
        "0123456789ab (main)",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }

    let json: serde_json::Value = serde_json::from_str(&ok(&run(
        tmp.path(),
        tmp.path(),
        &envs,
        &["models", "list", "--models-file", &reg, "--json"],
    )))
    .unwrap();
    assert_eq!(json["platform"].as_array().unwrap().len(), 2);
    assert_eq!(json["running"][0]["model"], "served");
    let kinds: Vec<&str> =
        json["trained"].as_array().unwrap().iter().map(|t| t["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["lora", "checkpoint", "gguf"]);
    assert_eq!(json["huggingface"][0]["spec"], "hf:org/cached");
    assert_eq!(json["huggingface"][0]["revisions"][0]["refs"][0], "main");
    assert_eq!(json["huggingface"][0]["size_bytes"], 2500);
}

/// `dtype = "q8_0"` in the registry (and so `--dtype q8_0`) runs the 8-bit host kernels and is
/// recorded by that name; on a GPU it is refused with a clear message before anything loads.
#[test]
fn a_q8_0_alias_runs_and_records_its_dtype() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = tmp.path().join("models.toml");
    write_registry(
        &registry,
        &format!("[models.tiny8]\nsource = \"{}\"\ndtype = \"q8_0\"\n", embedded_model()),
    );
    let reg = registry.display().to_string();
    let out = ok(&run(
        tmp.path(),
        tmp.path(),
        &[],
        &["eval", "--model", "platform:tiny8", "--models-file", &reg, "--limit", "3"],
    ));
    let record = read_json(&tmp.path().join("runs/1/run.json"));
    assert_eq!(record["settings"]["dtype"], "q8_0", "{out}");
    assert_eq!(read_jsonl(&tmp.path().join("runs/1/predictions.jsonl")).len(), 3);
    let out = run(
        tmp.path(),
        tmp.path(),
        &[],
        &[
            "eval",
            "--model",
            &embedded_model(),
            "--dtype",
            "q8_0",
            "--device",
            "cuda",
            "--limit",
            "1",
        ],
    );
    assert!(!out.status.success());
    let msg = stderr(&out);
    if cfg!(feature = "cuda") {
        assert!(
            msg.contains("--dtype q8_0 runs on the CPU only; use bf16 or f16 on cuda"),
            "{msg}"
        );
    } else {
        assert!(msg.contains("--features cuda"), "{msg}");
    }
}
