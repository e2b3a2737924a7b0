//! `benchgen generate`, run as a user would, checked against transformers' greedy tokens.

use crate::common::*;
use serde_json::Value;

fn lines(out: &str) -> Vec<Value> {
    out.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect()
}

#[test]
fn greedy_tokens_match_transformers_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let golden: Value = read_json(&repo().join("fixtures/goldens/llama-gqa-untied.json"));
    let cases = golden["cases"].as_array().unwrap();
    let file = dir.path().join("prompts.jsonl");
    let text: String = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!("{}\n", serde_json::json!({"id": format!("p{i}"), "prompt": c["prompt"]}))
        })
        .collect();
    std::fs::write(&file, text).unwrap();
    let model = repo().join("fixtures/models/llama-gqa-untied");
    let out = ok(&benchgen(
        dir.path(),
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompts",
            file.to_str().unwrap(),
            "--max-new-tokens",
            "32",
            "--batch-size",
            "2",
            "--json",
        ],
    ));
    let got = lines(&out);
    assert_eq!(got.len(), cases.len());
    for (i, (g, c)) in got.iter().zip(cases).enumerate() {
        assert_eq!(g["id"], format!("p{i}"));
        assert_eq!(g["prompt"], c["prompt"]);
        // transformers' 32 greedy tokens, up to and excluding the first EOS (257), where we stop.
        let want: Vec<u64> =
            c["greedy_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let (want, reason) = match want.iter().position(|&t| t == 257) {
            Some(p) => (want[..p].to_vec(), "eos"),
            None => (want, "length"),
        };
        let ids: Vec<u64> =
            g["token_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(ids, want, "prompt {i}");
        assert_eq!(g["finish_reason"], reason, "prompt {i}");
    }
}

#[test]
fn single_prompt_stop_strings_and_plain_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = lines(&ok(&benchgen(dir.path(), &["generate", "--prompt", "12+34=", "--json"])));
    assert_eq!(out.len(), 1);
    let g = &out[0];
    assert_eq!(g["finish_reason"], "eos");
    // Byte-level tokens: the text is exactly the bytes of the ids.
    let bytes: Vec<u8> =
        g["token_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
    assert_eq!(g["text"].as_str().unwrap().as_bytes(), bytes.as_slice());
    assert!(g["text"].as_str().unwrap().chars().all(|c| c.is_ascii_digit()), "{g}");

    let text = g["text"].as_str().unwrap().to_string();
    let first = &text[..1];
    let stopped = lines(&ok(&benchgen(
        dir.path(),
        &["generate", "--prompt", "12+34=", "--stop", first, "--json"],
    )));
    assert_eq!(stopped[0]["text"], "");
    assert_eq!(stopped[0]["finish_reason"], "stop");

    let plain = ok(&benchgen(dir.path(), &["generate", "--prompt", "12+34="]));
    assert_eq!(plain.trim_end(), format!("12+34={text}"));

    let bad = benchgen(dir.path(), &["generate"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("--prompt"), "{}", stderr(&bad));
}

#[test]
fn chat_flag_uses_the_models_template() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("chat-model");
    copy_dir(&repo().join("fixtures/embedded/model"), &model);
    let mut cfg: Value = read_json(&model.join("tokenizer_config.json"));
    cfg["chat_template"] = Value::String(
        "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}".into(),
    );
    std::fs::write(model.join("tokenizer_config.json"), cfg.to_string()).unwrap();
    let out = lines(&ok(&benchgen(
        dir.path(),
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "1+1=",
            "--chat",
            "--json",
            "--max-new-tokens",
            "3",
        ],
    )));
    assert_eq!(out[0]["prompt"], "[user] 1+1=\n[assistant] ");

    let no_template = benchgen(dir.path(), &["generate", "--prompt", "1+1=", "--chat"]);
    assert!(!no_template.status.success());
    assert!(stderr(&no_template).contains("no chat template"), "{}", stderr(&no_template));
}

#[test]
fn seeded_sampling_depends_on_the_item_not_on_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prompts.jsonl");
    let text: String = (0..12)
        .map(|i| {
            format!("{}\n", serde_json::json!({"id": i, "prompt": format!("{}+{}=", i * 7, i + 3)}))
        })
        .collect();
    std::fs::write(&file, text).unwrap();
    let run = |batch: &str, seed: &str| {
        let out = ok(&benchgen(
            dir.path(),
            &[
                "generate",
                "--prompts",
                file.to_str().unwrap(),
                "--temperature",
                "1.5",
                "--seed",
                seed,
                "--max-new-tokens",
                "12",
                "--batch-size",
                batch,
                "--json",
            ],
        ));
        lines(&out).iter().map(|l| l["token_ids"].clone()).collect::<Vec<_>>()
    };
    let (one, eight) = (run("1", "5"), run("8", "5"));
    assert_eq!(one, eight, "same seed, different batch sizes");
    let other = run("8", "6");
    assert_ne!(one, other, "another seed should sample something else");
}

#[test]
fn kv_dtype_reaches_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo().join("fixtures/models/llama-gqa-untied");
    let m = model.to_str().unwrap();
    let out = lines(&ok(&benchgen(
        dir.path(),
        &[
            "generate",
            "--model",
            m,
            "--prompt",
            "hello",
            "--kv-dtype",
            "bf16",
            "--max-new-tokens",
            "8",
            "--json",
        ],
    )));
    assert_eq!(out.len(), 1);
    // f16 weights run on the host kernels too now, whose caches take bf16 (that the flag
    // reaches the cache is checked by tests/eval_memory.rs: a bf16 cache halves its bytes).
    let f16 = lines(&ok(&benchgen(
        dir.path(),
        &[
            "generate",
            "--model",
            m,
            "--prompt",
            "hello",
            "--dtype",
            "f16",
            "--kv-dtype",
            "bf16",
            "--max-new-tokens",
            "8",
            "--json",
        ],
    )));
    assert_eq!(f16.len(), 1);
    let typo =
        benchgen(dir.path(), &["generate", "--model", m, "--prompt", "hello", "--kv-dtype", "f8"]);
    assert!(!typo.status.success());
}
