//! PEFT LoRA adapters merged at load, against peft's own merge. `tools/make_lora.py` made the
//! adapters in `fixtures/models/lora-*` with PyPI peft and recorded the logits and greedy tokens
//! of `merge_and_unload()` in transformers; benchgen must reproduce them from the adapter
//! directory alone (its base found through `base_model_name_or_path`).

use std::path::Path;

use crate::common::decode::{max_diff, packed_greedy, Logits};
use crate::common::*;
use benchgen::model::{spec, LoadedModel};
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Golden {
    base: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    input_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
}

fn golden(name: &str) -> (Golden, Vec<Logits>) {
    let dir = repo().join("fixtures/goldens");
    let g: Golden =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap())
            .unwrap();
    (g, logits_of(&dir.join(format!("{name}.safetensors"))))
}

/// `case{i}.logits` of a golden file, in case order.
fn logits_of(path: &Path) -> Vec<Logits> {
    let tensors = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    (0..)
        .map_while(|i| tensors.get(&format!("case{i}.logits")).map(|t| t.to_vec2::<f32>().unwrap()))
        .collect()
}

fn load(spec_text: &str) -> LoadedModel {
    let ckpt = spec::resolve(Some(spec_text), &sources()).unwrap();
    LoadedModel::load(&ckpt, &Device::Cpu, DType::F32).unwrap()
}

/// benchgen's merge against peft's; returns (largest difference from the merged model's logits,
/// smallest per-prompt largest difference from the base model's).
fn check(name: &str) -> (f32, f32) {
    let (g, hf) = golden(name);
    let adapter = repo().join("fixtures/models").join(name);
    let m = load(&format!("trained:{}", adapter.display()));
    let base_dir = repo().join(&g.base);
    assert!(
        m.origin.starts_with(&adapter.display().to_string())
            && m.origin.contains("(LoRA r=4 on ")
            && m.origin.contains(&base_dir.file_name().unwrap().to_string_lossy().into_owned()),
        "{}",
        m.origin
    );
    let base_golden = logits_of(
        &repo()
            .join("fixtures/goldens")
            .join(format!("{}.safetensors", base_dir.file_name().unwrap().to_string_lossy())),
    );
    let prompts: Vec<Vec<u32>> = g.cases.iter().map(|c| c.input_ids.clone()).collect();
    for c in &g.cases {
        assert_eq!(
            m.tokenizer.encode(&c.prompt, true).unwrap(),
            c.input_ids,
            "{name}: tokenizer on {:?}",
            c.prompt
        );
    }
    let steps = g.cases[0].greedy_ids.len();
    let (mut worst, mut least_change) = (0f32, f32::INFINITY);
    for (i, case) in g.cases.iter().enumerate() {
        let (logits, ids) = packed_greedy(&m, &prompts[i..=i], steps);
        let d = max_diff(&logits[0], &hf[i]);
        worst = worst.max(d);
        assert!(
            d < TOLERANCE,
            "{name} {:?}: logits differ from peft's merged model by {d}",
            case.prompt
        );
        assert_eq!(ids[0], case.greedy_ids, "{name} {:?}: greedy tokens", case.prompt);
        // A merge that did nothing (or merged the wrong scale) must fail: the base is far off.
        let change = max_diff(&logits[0], &base_golden[i]);
        least_change = least_change.min(change);
        assert!(
            change > 0.1,
            "{name} {:?}: the adapter moved the logits by only {change}",
            case.prompt
        );
    }
    let (logits, ids) = packed_greedy(&m, &prompts, steps);
    for (i, case) in g.cases.iter().enumerate() {
        let d = max_diff(&logits[i], &hf[i]);
        worst = worst.max(d);
        assert!(d < TOLERANCE, "{name} {:?} in a packed batch: logits differ by {d}", case.prompt);
        assert_eq!(
            ids[i], case.greedy_ids,
            "{name} {:?} in a packed batch: greedy tokens",
            case.prompt
        );
    }
    eprintln!("{name}: largest logit difference vs peft merge_and_unload {worst:.2e}; smallest change from the base {least_change:.2}");
    (worst, least_change)
}

#[test]
fn lora_on_llama_matches_peft_merge() {
    check("lora-llama-gqa-untied");
}

#[test]
fn rslora_with_rank_and_alpha_patterns_on_a_bf16_base_matches_peft_merge() {
    check("lora-qwen2-rslora");
}

#[test]
fn the_run_record_hashes_the_adapter_files_and_the_base() {
    let adapter = repo().join("fixtures/models/lora-llama-gqa-untied");
    let ckpt = spec::resolve(Some(adapter.to_str().unwrap()), &sources()).unwrap();
    let hashes = ckpt.file_hashes().unwrap();
    let sha = |p: &Path| {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(std::fs::read(p).unwrap()))
    };
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        assert_eq!(hashes.get(f), Some(&sha(&adapter.join(f))), "{f}: {hashes:?}");
    }
    let base = repo().join("fixtures/models/llama-gqa-untied");
    for f in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert_eq!(hashes.get(f), Some(&sha(&base.join(f))), "{f}: {hashes:?}");
    }
}

#[test]
fn generate_through_the_cli_gives_peft_greedy_tokens() {
    let (g, _) = golden("lora-llama-gqa-untied");
    let dir = tempfile::tempdir().unwrap();
    // From another working directory: the relative base is found beside the adapter.
    let model =
        format!("trained:{}", repo().join("fixtures/models/lora-llama-gqa-untied").display());
    for case in &g.cases[..2] {
        let out = ok(&benchgen(
            dir.path(),
            &[
                "generate",
                "--model",
                &model,
                "--prompt",
                &case.prompt,
                "--max-new-tokens",
                "32",
                "--json",
            ],
        ));
        let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        // peft's 32 greedy tokens up to and excluding the first EOS (257), where benchgen stops.
        let want: Vec<u32> = match case.greedy_ids.iter().position(|&t| t == 257) {
            Some(p) => case.greedy_ids[..p].to_vec(),
            None => case.greedy_ids.clone(),
        };
        let ids: Vec<u32> = got["token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids, want, "{:?}: {got}", case.prompt);
        // Byte-level tokens: the text is the ids' bytes, invalid UTF-8 replaced.
        let bytes: Vec<u8> = want.iter().map(|&t| t as u8).collect();
        assert_eq!(got["text"].as_str().unwrap(), String::from_utf8_lossy(&bytes), "{got}");
    }
}

#[test]
fn tokenizer_files_beside_the_adapter_replace_the_base_ones() {
    let dir = tempfile::tempdir().unwrap();
    let a = broken_adapter(dir.path(), |_, _| {});
    let ckpt = spec::resolve(Some(&a), &sources()).unwrap();
    assert_eq!(ckpt.chat_template_jinja, None, "the base has no chat template");
    let template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}";
    std::fs::write(Path::new(&a).join("chat_template.jinja"), template).unwrap();
    let ckpt = spec::resolve(Some(&a), &sources()).unwrap();
    assert_eq!(ckpt.chat_template_jinja.as_deref(), Some(template));
    assert!(LoadedModel::load(&ckpt, &Device::Cpu, DType::F32).unwrap().chat_template.is_some());
}

/// A copy of the llama adapter in a temp dir, with its base as an absolute path, after `edit`.
fn broken_adapter(dir: &Path, edit: impl FnOnce(&Path, &mut serde_json::Value)) -> String {
    let adapter = dir.join("adapter");
    copy_dir(&repo().join("fixtures/models/lora-llama-gqa-untied"), &adapter);
    let mut cfg = read_json(&adapter.join("adapter_config.json"));
    cfg["base_model_name_or_path"] =
        repo().join("fixtures/models/llama-gqa-untied").display().to_string().into();
    edit(&adapter, &mut cfg);
    std::fs::write(adapter.join("adapter_config.json"), cfg.to_string()).unwrap();
    adapter.display().to_string()
}

fn edit_weights(adapter: &Path, edit: impl FnOnce(&mut std::collections::HashMap<String, Tensor>)) {
    let path = adapter.join("adapter_model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, &path).unwrap();
}

/// Runs `generate` on the adapter; it must fail cleanly with all of `says` in its message.
fn refused(adapter: &str, says: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let o = benchgen(
        dir.path(),
        &["generate", "--model", &format!("trained:{adapter}"), "--prompt", "1+1=", "--json"],
    );
    let err = stderr(&o);
    assert!(!o.status.success(), "should be refused: {adapter}\n{}", stdout(&o));
    assert!(!err.contains("panicked"), "{err}");
    for s in says {
        assert!(err.contains(s), "expected {s:?} in:\n{err}");
    }
}

#[test]
fn dora_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = broken_adapter(dir.path(), |_, cfg| cfg["use_dora"] = true.into());
    refused(&a, &["use_dora", "DoRA", "merge_and_unload"]);
}

#[test]
fn a_missing_base_names_the_adapter_and_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let a = broken_adapter(dir.path(), |_, cfg| {
        cfg["base_model_name_or_path"] = "../no-such-base".into()
    });
    refused(&a, &[&a, "../no-such-base", "base_model_name_or_path"]);
}

#[test]
fn a_lora_for_a_weight_the_base_lacks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = broken_adapter(dir.path(), |adapter, _| {
        edit_weights(adapter, |t| {
            // Layer 7 of a 2-layer model.
            for part in ["A", "B"] {
                let from =
                    format!("base_model.model.model.layers.1.self_attn.q_proj.lora_{part}.weight");
                let v = t[&from].clone();
                t.insert(
                    format!("base_model.model.model.layers.7.self_attn.q_proj.lora_{part}.weight"),
                    v,
                );
            }
        })
    });
    refused(
        &a,
        &["model.layers.7.self_attn.q_proj.weight", "does not have", "base_model_name_or_path"],
    );
}

#[test]
fn an_adapter_for_another_base_is_a_shape_error() {
    // Same module names, hidden size 72 instead of 64.
    let dir = tempfile::tempdir().unwrap();
    let a = broken_adapter(dir.path(), |_, cfg| {
        cfg["base_model_name_or_path"] =
            repo().join("fixtures/models/llama-9heads-tied").display().to_string().into()
    });
    refused(&a, &["does not fit the base weight", "base_model_name_or_path"]);
}

#[test]
fn a_rank_other_than_the_config_says_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = broken_adapter(dir.path(), |adapter, _| {
        edit_weights(adapter, |t| {
            let k = "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight";
            let v = t[k].narrow(0, 0, 3).unwrap().contiguous().unwrap();
            t.insert(k.into(), v);
        })
    });
    refused(&a, &["model.layers.0.mlp.up_proj", "rank 4", "[3, 64]"]);
}

#[test]
fn a_pickled_adapter_is_refused_with_how_to_convert_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = broken_adapter(dir.path(), |adapter, _| {
        std::fs::rename(
            adapter.join("adapter_model.safetensors"),
            adapter.join("adapter_model.bin"),
        )
        .unwrap();
    });
    refused(&a, &["missing adapter_model.safetensors", "adapter_model.bin", "safetensors"]);
}
