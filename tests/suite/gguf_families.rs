//! GGUF files of every family as llama.cpp's own converter writes them
//! (`tools/make_gguf_fixtures.py`, from the fixture checkpoints): fused and 3-D expert tensors,
//! Gemma's norms with their 1 added, GPT-NeoX's reordered q/k/v, Phi-3's rope-factor tensors.
//! Loaded through benchgen's GGUF path, each must give transformers' logits and greedy tokens for
//! the same checkpoint (`fixtures/goldens/`), on the host kernels and on candle's path.
//!
//! Two things a GGUF file does not carry, llama.cpp assumes, and so does benchgen: Gemma's query
//! scale (`query_pre_attn_scalar`; llama.cpp uses head_dim^-0.5 but for the 27B models) and Gemma
//! 3's layer pattern (every sixth layer global). The Gemma fixtures were made with other values,
//! so their GGUFs are held to the safetensors path with those two settings as llama.cpp reads
//! them (a path that is itself held to transformers in `model_goldens`).

use crate::common;
use crate::common::decode::{max_diff, packed_greedy, Logits};
use benchgen::device::WeightType;
use benchgen::model::{spec, Backend, Checkpoint, LoadedModel};
use candle_core::DType;
use std::path::{Path, PathBuf};

const TOLERANCE: f32 = 1e-4;

fn gguf_path(name: &str, kind: &str) -> PathBuf {
    common::repo().join(format!("fixtures/gguf/{name}.{kind}.gguf"))
}

fn load_gguf(path: &Path, weights: WeightType, backend: Backend) -> LoadedModel {
    let ckpt = spec::resolve(Some(path.to_str().unwrap()), &common::sources())
        .unwrap_or_else(|e| panic!("{e}"));
    LoadedModel::load_with(&ckpt, &common::test_device(), weights, backend)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The golden's prompts and transformers' greedy ids.
fn golden(name: &str) -> Vec<(Vec<u32>, Vec<u32>)> {
    let path = common::repo().join(format!("fixtures/goldens/{name}.json"));
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
    };
    g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (ids(&c["input_ids"]), ids(&c["greedy_ids"])))
        .collect()
}

fn golden_logits(name: &str) -> Vec<Logits> {
    let path = common::repo().join(format!("fixtures/goldens/{name}.safetensors"));
    let t = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    (0..t.len() / 2).map(|i| t[&format!("case{i}.logits")].to_vec2::<f32>().unwrap()).collect()
}

/// The fixture checkpoint with `edit` applied to its config.json, in `dir`.
fn edited_checkpoint(name: &str, dir: &Path, edit: impl Fn(&mut serde_json::Value)) -> Checkpoint {
    common::copy_dir(&common::repo().join("fixtures/models").join(name), dir);
    let path = dir.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&path, cfg.to_string()).unwrap();
    Checkpoint::from_dir(dir).unwrap()
}

/// Logits of the columns both have (Gemma 3's converter drops embedding rows past the
/// tokenizer's last token).
fn common_columns(a: &Logits, b: &Logits) -> (Logits, Logits) {
    let n = a[0].len().min(b[0].len());
    let cut = |l: &Logits| l.iter().map(|r| r[..n].to_vec()).collect();
    (cut(a), cut(b))
}

/// The reference for `name`: transformers' logits and greedy ids, or (Gemma) the safetensors
/// path's with llama.cpp's reading of the settings a GGUF lacks.
fn reference(name: &str, tmp: &Path) -> Vec<(Vec<u32>, Logits, Vec<u32>)> {
    let cases = golden(name);
    let edit: Option<fn(&mut serde_json::Value)> = match name {
        "gemma2-softcap-window" => Some(|c| c["query_pre_attn_scalar"] = c["head_dim"].clone()),
        "gemma3-local-global" => Some(|c| {
            let layers = c["num_hidden_layers"].as_u64().unwrap();
            let types: Vec<&str> = (0..layers)
                .map(|i| if i % 6 < 5 { "sliding_attention" } else { "full_attention" })
                .collect();
            c["layer_types"] = serde_json::json!(types);
        }),
        _ => None,
    };
    let Some(edit) = edit else {
        let logits = golden_logits(name);
        return cases.into_iter().zip(logits).map(|((p, g), l)| (p, l, g)).collect();
    };
    let ckpt = edited_checkpoint(name, &tmp.join(name), edit);
    let m = LoadedModel::load(&ckpt, &common::test_device(), DType::F32).unwrap();
    cases
        .into_iter()
        .map(|(prompt, _)| {
            let (logits, ids) = packed_greedy(&m, std::slice::from_ref(&prompt), 32);
            (prompt, logits.into_iter().next().unwrap(), ids.into_iter().next().unwrap())
        })
        .collect()
}

#[test]
fn every_family_runs_from_llama_cpps_gguf_as_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    for name in common::FAMILY_FIXTURES {
        let reference = reference(name, tmp.path());
        for (backend, weights) in
            [(Backend::Auto, WeightType::Stored), (Backend::Candle, WeightType::Float(DType::F32))]
        {
            let m = load_gguf(&gguf_path(name, "f32"), weights, backend);
            let what = format!("{name} GGUF [{}]", m.decoder.backend_name());
            let mut worst = 0f32;
            for (prompt, want, want_ids) in &reference {
                let (logits, ids) = packed_greedy(&m, std::slice::from_ref(prompt), want_ids.len());
                let (ours, theirs) = common_columns(&logits[0], want);
                let d = max_diff(&ours, &theirs);
                worst = worst.max(d);
                assert!(d < TOLERANCE, "{what}: logits differ by {d} on {prompt:?}");
                let vocab = logits[0][0].len() as u32;
                if want_ids.iter().all(|&t| t < vocab) {
                    assert_eq!(&ids[0], want_ids, "{what}: greedy tokens on {prompt:?}");
                }
            }
            eprintln!("{what}: largest logit difference {worst:.2e}");
        }
    }
}

/// A quantized mixture of experts kept as stored: Q8_0 expert matrices (and the F16 ones the
/// converter falls back to for 48-wide rows) are cut into experts in their own bytes and give the
/// logits of the same file dequantized to f32; with int8 activations (the default) a token's
/// logits are the same bits alone and in a batch. (int8 rounding may route a token to other
/// experts than f32 does, so those logits are not held to f32's.)
#[test]
fn quantized_experts_are_read_as_stored() {
    let path = gguf_path("qwen2moe-shared", "q8_0");
    let dequantized = load_gguf(&path, WeightType::Float(DType::F32), Backend::Auto);
    let stored = load_gguf(&path, WeightType::StoredExact, Backend::Auto);
    let int8 = load_gguf(&path, WeightType::Stored, Backend::Auto);
    assert!(
        stored.decoder.weights_bytes().unwrap() * 2 < dequantized.decoder.weights_bytes().unwrap()
    );
    let prompts: Vec<Vec<u32>> = golden("qwen2moe-shared").into_iter().map(|c| c.0).collect();
    for prompt in &prompts {
        let (want, want_ids) = packed_greedy(&dequantized, std::slice::from_ref(prompt), 8);
        let (got, ids) = packed_greedy(&stored, std::slice::from_ref(prompt), 8);
        let d = max_diff(&got[0], &want[0]);
        assert!(d < 1e-4, "stored-exact differs from dequantized by {d}");
        assert_eq!(ids, want_ids);
    }
    let bits = |l: &Logits| l.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>();
    let (batched, batched_ids) = packed_greedy(&int8, &prompts, 8);
    for (i, prompt) in prompts.iter().enumerate() {
        let (alone, alone_ids) = packed_greedy(&int8, std::slice::from_ref(prompt), 8);
        assert!(
            bits(&alone[0]) == bits(&batched[i]),
            "prompt {i}: int8 logits depend on the batch"
        );
        assert_eq!(alone_ids[0], batched_ids[i]);
    }
}
