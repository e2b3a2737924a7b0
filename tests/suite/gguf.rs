//! GGUF files as models.
//!
//! - Always: GGUF files written here, as llama.cpp's converter would (q/k rows permuted for
//!   ggml's interleaved rope, llama metadata, the vocabulary embedded), from the fixture
//!   checkpoints; loaded through the GGUF path they must agree with the safetensors path on the
//!   same weights. For quantized types "the same weights" are the dequantized ones (the loading
//!   must then be exact); the distance to the unquantized model is measured and bounded too.
//! - With `BENCHGEN_DATA_DIR` (../shared/data): the real stories260K.gguf tells its story, and
//!   the tokenizers built from GGUF metadata encode like the reference tokenizer.json files.

use crate::common;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use benchgen::device::WeightType;
use benchgen::model::{
    gguf_tokenizer, spec, Checkpoint, LoadedModel, MatrixFormat, Segment, SeqCache, TextTokenizer,
};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use serde_json::Value as Json;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Json {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Writing a GGUF from an HF checkpoint directory, as convert_hf_to_gguf.py does.

/// HF name → GGUF name.
fn gguf_name(hf: &str) -> String {
    let top = [
        ("model.embed_tokens", "token_embd"),
        ("model.norm", "output_norm"),
        ("lm_head", "output"),
    ];
    for (h, g) in top {
        if let Some(kind) = hf.strip_prefix(h).and_then(|r| r.strip_prefix('.')) {
            return format!("{g}.{kind}");
        }
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (layer, rest) = rest.split_once('.').unwrap();
    let (part, kind) = rest.rsplit_once('.').unwrap();
    let g = match part {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "post_attention_layernorm" => "ffn_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        other => panic!("unmapped {other}"),
    };
    format!("blk.{layer}.{g}.{kind}")
}

/// convert_hf_to_gguf.py's `permute`: `w.reshape(n_head, 2, d/2, n_in).swapaxes(1, 2)`.
fn permute(w: &Tensor, heads: usize) -> Tensor {
    let (rows, cols) = w.dims2().unwrap();
    w.reshape((heads, 2, rows / heads / 2, cols))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((rows, cols))
        .unwrap()
}

/// All tensors of a checkpoint directory (single file or shards), as f32.
fn load_safetensors(dir: &Path) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "safetensors") {
            for (k, v) in candle_core::safetensors::load(&p, &Device::Cpu).unwrap() {
                out.insert(k, v.to_dtype(DType::F32).unwrap());
            }
        }
    }
    out
}

fn strings<S: AsRef<str>>(v: &[S]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.as_ref().to_string())).collect())
}

/// GGUF metadata for an HF checkpoint: llama.cpp's keys, and its byte-level tokenizer.json as a
/// `gpt2`-style vocabulary (tokens padded to the model's vocab size, as llama.cpp pads them).
fn metadata(dir: &Path) -> Vec<(String, Value)> {
    let cfg = read_json(&dir.join("config.json"));
    let arch = cfg["model_type"].as_str().unwrap().to_string();
    let n = |k: &str| cfg[k].as_u64().unwrap() as u32;
    let heads = n("num_attention_heads");
    let head_dim = cfg["head_dim"].as_u64().map_or(n("hidden_size") / heads, |d| d as u32);
    let theta = cfg["rope_theta"]
        .as_f64()
        .or(cfg["rope_parameters"]["rope_theta"].as_f64())
        .unwrap_or(10_000.0);
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.clone())),
        ("general.name".into(), Value::String(dir.file_name().unwrap().to_string_lossy().into())),
    ];
    let mut put = |k: &str, v: Value| md.push((format!("{arch}.{k}"), v));
    put("context_length", Value::U32(n("max_position_embeddings")));
    put("embedding_length", Value::U32(n("hidden_size")));
    put("block_count", Value::U32(n("num_hidden_layers")));
    put("feed_forward_length", Value::U32(n("intermediate_size")));
    put("attention.head_count", Value::U32(heads));
    put(
        "attention.head_count_kv",
        Value::U32(cfg["num_key_value_heads"].as_u64().map_or(heads, |k| k as u32)),
    );
    put("attention.key_length", Value::U32(head_dim));
    put("attention.value_length", Value::U32(head_dim));
    put("rope.dimension_count", Value::U32(head_dim));
    put("rope.freq_base", Value::F32(theta as f32));
    put(
        "attention.layer_norm_rms_epsilon",
        Value::F32(cfg["rms_norm_eps"].as_f64().unwrap() as f32),
    );

    let tok = read_json(&dir.join("tokenizer.json"));
    let vocab = n("vocab_size") as usize;
    let mut tokens: Vec<String> = (0..vocab).map(|i| format!("[PAD{i}]")).collect();
    let mut types = vec![5i32; vocab]; // unused
    for (t, id) in tok["model"]["vocab"].as_object().unwrap() {
        tokens[id.as_u64().unwrap() as usize] = t.clone();
        types[id.as_u64().unwrap() as usize] = 1;
    }
    for a in tok["added_tokens"].as_array().unwrap() {
        let id = a["id"].as_u64().unwrap() as usize;
        tokens[id] = a["content"].as_str().unwrap().to_string();
        types[id] = if a["special"].as_bool().unwrap() { 3 } else { 4 };
    }
    let merges: Vec<String> = tok["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{} {}", m[0].as_str().unwrap(), m[1].as_str().unwrap()))
        })
        .collect();
    let adds_bos = tok["post_processor"]["single"]
        .as_array()
        .is_some_and(|s| s.iter().any(|p| p.get("SpecialToken").is_some()));
    md.extend([
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens".into(), strings(&tokens)),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        ("tokenizer.ggml.merges".into(), strings(&merges)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(n("bos_token_id"))),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(n("eos_token_id"))),
        ("tokenizer.ggml.padding_token_id".into(), Value::U32(u32::MAX)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(adds_bos)),
    ]);
    md
}

/// What was written: per HF name, the weights the GGUF holds (dequantized), and how many
/// matrices fell back to F32 because their rows are not whole quantization blocks.
struct Written {
    weights: HashMap<String, Tensor>,
    fallbacks: usize,
    /// Every tensor's bytes in the file.
    bytes: usize,
}

/// Writes `dir`'s weights as `dtype` (1-D tensors stay F32, as llama.cpp keeps them; matrices
/// whose row length is not a multiple of the block size fall back to F32, as llama.cpp does).
fn write_gguf(
    dir: &Path,
    out: &Path,
    dtype: GgmlDType,
    edit: impl FnOnce(&mut Vec<(String, Value)>),
) -> Written {
    write_gguf_typed(dir, out, |_| dtype, edit)
}

/// As [`write_gguf`] with each matrix's type chosen by its HF name (a Q4_K_M file's mix).
fn write_gguf_typed(
    dir: &Path,
    out: &Path,
    type_of: impl Fn(&str) -> GgmlDType,
    edit: impl FnOnce(&mut Vec<(String, Value)>),
) -> Written {
    let cfg = read_json(&dir.join("config.json"));
    let llama = cfg["model_type"] == "llama";
    let heads = cfg["num_attention_heads"].as_u64().unwrap() as usize;
    let kv_heads = cfg["num_key_value_heads"].as_u64().map_or(heads, |k| k as usize);
    let mut md = metadata(dir);
    edit(&mut md);
    let mut names: Vec<(String, Tensor)> = load_safetensors(dir).into_iter().collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut tensors, mut weights, mut fallbacks, mut bytes) = (Vec::new(), HashMap::new(), 0, 0);
    for (hf, w) in names {
        let dtype = type_of(&hf);
        let t = if w.rank() == 1 || !w.dim(1).unwrap().is_multiple_of(dtype.block_size()) {
            fallbacks += usize::from(w.rank() == 2);
            GgmlDType::F32
        } else {
            dtype
        };
        // Quantization blocks lie within a row, so the row permutation does not change values.
        let q = QTensor::quantize(&w, t).unwrap();
        weights.insert(hf.clone(), q.dequantize(&Device::Cpu).unwrap());
        let stored = match hf.rsplit('.').nth(1) {
            Some("q_proj") if llama => QTensor::quantize(&permute(&w, heads), t).unwrap(),
            Some("k_proj") if llama => QTensor::quantize(&permute(&w, kv_heads), t).unwrap(),
            _ => q,
        };
        bytes += stored.storage_size_in_bytes();
        tensors.push((gguf_name(&hf), stored));
    }
    if let Some(factors) = llama3_rope_factors(&cfg) {
        let t = Tensor::from_vec(factors.clone(), factors.len(), &Device::Cpu).unwrap();
        tensors.push(("rope_freqs.weight".into(), QTensor::quantize(&t, GgmlDType::F32).unwrap()));
    }
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(out).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
    Written { weights, fallbacks, bytes }
}

/// The `rope_freqs.weight` llama.cpp's converter writes for Llama 3 rope scaling (its
/// `LlamaModel.generate_extra_tensors`, in f32 as its torch tensors are): per frequency, the
/// divisor of the rotary angle.
fn llama3_rope_factors(cfg: &Json) -> Option<Vec<f32>> {
    let rope = if cfg["rope_parameters"].is_object() {
        &cfg["rope_parameters"]
    } else {
        &cfg["rope_scaling"]
    };
    if rope["rope_type"] != "llama3" {
        return None;
    }
    let f = |k: &str| rope[k].as_f64().unwrap() as f32;
    let (factor, low, high, old) = (
        f("factor"),
        f("low_freq_factor"),
        f("high_freq_factor"),
        f("original_max_position_embeddings"),
    );
    let base = cfg["rope_theta"].as_f64().or(rope["rope_theta"].as_f64()).unwrap() as f32;
    let dim = cfg["head_dim"].as_u64().unwrap() as usize;
    let (low_wavelen, high_wavelen) = (old / low, old / high);
    Some(
        (0..dim)
            .step_by(2)
            .map(|i| {
                let freq = 1.0 / base.powf(i as f32 / dim as f32);
                let wavelen = 2.0 * std::f32::consts::PI / freq;
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor
                } else {
                    let smooth = (old / wavelen - low) / (high - low);
                    1.0 / ((1.0 - smooth) / factor + smooth)
                }
            })
            .collect(),
    )
}

/// A copy of checkpoint `dir` whose weights are replaced by `weights` (f32 safetensors).
fn checkpoint_with(dir: &Path, weights: &HashMap<String, Tensor>, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        std::fs::copy(dir.join(f), out.join(f)).unwrap();
    }
    candle_core::safetensors::save(weights, out.join("model.safetensors")).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Running a model.

fn load(spec_or_dir: &Path) -> LoadedModel {
    let ckpt = match spec::resolve(Some(spec_or_dir.to_str().unwrap()), &common::sources()) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    LoadedModel::load(&ckpt, &common::test_device(), DType::F32).unwrap_or_else(|e| panic!("{e}"))
}

/// Prefill logits of every prompt position, then `steps` greedy tokens through the KV cache.
fn run(m: &LoadedModel, prompt: &[u32], steps: usize) -> (Vec<Vec<f32>>, Vec<u32>) {
    let mut cache: SeqCache = m.decoder.new_cache(prompt.len() + steps);
    let mut pending = prompt.to_vec();
    let (mut prefill, mut out) = (Vec::new(), Vec::new());
    for step in 0..steps {
        let seg = Segment { len: pending.len(), offset: cache.len() };
        let tokens = Tensor::new(pending.as_slice(), m.decoder.device()).unwrap();
        let hidden = m.decoder.forward(&tokens, &[seg], Some(&mut [&mut cache])).unwrap();
        let logits = m.decoder.logits(&hidden).unwrap().to_vec2::<f32>().unwrap();
        if step == 0 {
            prefill = logits.clone();
        }
        let next = benchgen::engine::sampling::argmax(&logits[logits.len() - 1]);
        out.push(next);
        pending = vec![next];
    }
    (prefill, out)
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

fn max_abs(a: &[Vec<f32>]) -> f32 {
    a.iter().flatten().fold(0.0, |m, x| m.max(x.abs()))
}

/// The golden prompts of a fixture, as transformers tokenized them.
fn golden_prompts(name: &str) -> Vec<(String, Vec<u32>)> {
    let g = read_json(&repo().join(format!("fixtures/goldens/{name}.json")));
    g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ids = c["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            (c["prompt"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

/// Compares two models on the golden prompts: largest prefill logit difference, the largest
/// logit seen (for scale), and whether all 24 greedy tokens agree.
fn compare(a: &LoadedModel, b: &LoadedModel, prompts: &[(String, Vec<u32>)]) -> (f32, f32, bool) {
    let (mut worst, mut scale, mut same) = (0f32, 0f32, true);
    for (_, ids) in prompts {
        let (la, ga) = run(a, ids, 24);
        let (lb, gb) = run(b, ids, 24);
        worst = worst.max(max_diff(&la, &lb));
        scale = scale.max(max_abs(&la));
        same &= ga == gb;
    }
    (worst, scale, same)
}

/// A checkpoint written as GGUF `dtype`, against (1) the same dequantized weights through the
/// safetensors path, which must agree to float rounding with identical greedy tokens, and (2)
/// the original checkpoint, on the prompts of golden `golden`. Returns the largest logit
/// difference to the original and whether greedy tokens agreed, for the caller to bound.
fn gguf_against_safetensors(fixture: &Path, golden: &str, dtype: GgmlDType) -> (f32, bool) {
    let name = fixture.file_name().unwrap().to_string_lossy().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(format!("{name}-{dtype:?}.gguf"));
    let written = write_gguf(fixture, &path, dtype, |_| {});
    checkpoint_with(fixture, &written.weights, &tmp.path().join("same"));
    let gguf = load(&path);
    let same = load(&tmp.path().join("same"));
    let original = load(fixture);
    let prompts = golden_prompts(golden);

    for (text, ids) in &prompts {
        assert_eq!(
            &gguf.tokenizer.encode(text, true).unwrap(),
            ids,
            "{name} {dtype:?}: GGUF tokenizer on {text:?}"
        );
        let body = &ids[1..];
        assert_eq!(gguf.tokenizer.decode(body).unwrap(), original.tokenizer.decode(body).unwrap());
    }
    assert_eq!(gguf.tokenizer.eos_ids(), original.tokenizer.eos_ids());
    assert_eq!(gguf.num_parameters, original.num_parameters);
    assert_eq!(
        gguf.decoder.config().tie_word_embeddings,
        original.decoder.config().tie_word_embeddings
    );

    let (exact, _, exact_greedy) = compare(&gguf, &same, &prompts);
    assert!(
        exact < 1e-5,
        "{name} {dtype:?}: GGUF vs safetensors of the same weights differ by {exact}"
    );
    assert!(
        exact_greedy,
        "{name} {dtype:?}: greedy tokens differ from safetensors of the same weights"
    );
    let (d, scale, greedy) = compare(&gguf, &original, &prompts);
    eprintln!(
        "{name} {dtype:?}: max logit diff vs same weights {exact:.1e}; vs original {d:.2e} (logits up to {scale:.1}), \
         greedy {}; {} matrices kept F32",
        if greedy { "identical" } else { "differs" },
        written.fallbacks
    );
    (d, greedy)
}

fn fixture(name: &str) -> PathBuf {
    repo().join("fixtures/models").join(name)
}

#[test]
fn f32_gguf_equals_the_checkpoint() {
    for name in ["llama-gqa-untied", "llama-9heads-tied", "qwen2-bias-bf16", "qwen3-qknorm-sharded"]
    {
        let (d, greedy) = gguf_against_safetensors(&fixture(name), name, GgmlDType::F32);
        assert!(d < 1e-5, "{name}: F32 GGUF logits differ by {d}");
        assert!(greedy, "{name}: F32 GGUF greedy tokens differ");
    }
}

/// Rounding the weights to f16 (relative error ~2e-4) moves these random models' logits (up to
/// ~5) by about 1e-2: measured 9.2e-3 (llama-gqa-untied) and 1.07e-2 (llama-9heads-tied).
const F16_TOLERANCE: f32 = 2e-2;

#[test]
fn f16_gguf_is_close_to_the_checkpoint() {
    for name in ["llama-gqa-untied", "llama-9heads-tied"] {
        let (d, greedy) = gguf_against_safetensors(&fixture(name), name, GgmlDType::F16);
        assert!(d < F16_TOLERANCE, "{name}: F16 GGUF logits differ by {d}");
        assert!(greedy, "{name}: F16 GGUF greedy tokens differ");
    }
}

/// A GGUF's 16-bit matrices are held as stored, half of f32's bytes: f16 as f16 (f32 products
/// on the f16 weights, bit for bit f32 on them, with `stored` and `stored-exact` alike); bf16 as
/// bf16 with `stored` (bf16-rounded activations, as llama.cpp computes bf16 weights), as f32 with
/// `stored-exact` (which promises f32 products).
#[test]
fn half_precision_gguf_matrices_are_held_as_stored() {
    let name = "llama-gqa-untied";
    let tmp = tempfile::tempdir().unwrap();
    let prompts = golden_prompts(name);
    for dtype in [GgmlDType::F16, GgmlDType::BF16] {
        let path = tmp.path().join(format!("{name}-{dtype:?}.gguf"));
        write_gguf(&fixture(name), &path, dtype, |_| {});
        let ckpt = spec::resolve(Some(path.to_str().unwrap()), &common::sources()).unwrap();
        let load = |w: WeightType| LoadedModel::load(&ckpt, &Device::Cpu, w).unwrap();
        let f32m = load(WeightType::Float(DType::F32));
        let (stored, exact) = (load(WeightType::Stored), load(WeightType::StoredExact));
        let bytes = |m: &LoadedModel| m.decoder.weights_bytes().unwrap() as f64;
        let (held, held_exact) = (bytes(&stored) / bytes(&f32m), bytes(&exact) / bytes(&f32m));
        eprintln!("{dtype:?}: stored holds {held:.3} of f32's bytes, stored-exact {held_exact:.3}");
        assert!(held < 0.6, "{dtype:?}: stored holds {held:.3} of f32's bytes");
        let (d_exact, _, greedy_exact) = compare(&exact, &f32m, &prompts);
        assert_eq!(d_exact, 0.0, "{dtype:?}: stored-exact is f32 on the same weights, bit for bit");
        assert!(greedy_exact);
        // (Greedy tokens: equal where the logits are; the random fixture's near ties may flip
        // under bf16 activations.)
        let (d, scale, _) = compare(&stored, &f32m, &prompts);
        eprintln!(
            "{dtype:?}: stored vs f32 on the same weights: {d:.2e} (logits up to {scale:.1})"
        );
        match dtype {
            GgmlDType::F16 => {
                assert!(held_exact < 0.6, "f16 is held as f16 by stored-exact too");
                assert_eq!(d, 0.0, "f16 weights on f32 activations are f32 on them, bit for bit");
            }
            _ => {
                assert!(held_exact > 0.9, "stored-exact widens bf16 to f32");
                assert!(d < BF16_ACTIVATION_TOLERANCE, "bf16 activations moved logits by {d}");
            }
        }
    }
}

/// Rounding activations to bf16 (relative error up to 2^-9) moves this random model's logits
/// (up to ~5) by a measured 0.053.
const BF16_ACTIVATION_TOLERANCE: f32 = 0.1;

/// Q8_0 stores each weight to 1/127 of its 32-block's largest magnitude: relative RMS error
/// ~0.53% on these fixtures' weights, 25x f16's. The random fixture (weights of std 0.15, chosen
/// so that logits are not flat) amplifies that to a measured 0.32 on logits up to 5.3, and its
/// near-tied greedy path changes; the trained embedded model's peaked logits (up to 27) move by a
/// measured 1.14 with identical greedy tokens. (The loading itself is exact: see "same weights".)
const Q8_0_TOLERANCE_RANDOM: f32 = 0.5;
const Q8_0_TOLERANCE_TRAINED: f32 = 2.0;

#[test]
fn q8_0_gguf_is_close_to_the_checkpoint() {
    // Every matrix of these models has rows of 64, 96, 128 or 384: whole 32-blocks, all quantized.
    let (d, _) =
        gguf_against_safetensors(&fixture("llama-gqa-untied"), "llama-gqa-untied", GgmlDType::Q8_0);
    assert!(d < Q8_0_TOLERANCE_RANDOM, "llama-gqa-untied: Q8_0 GGUF logits differ by {d}");
    let (d, greedy) = gguf_against_safetensors(
        &repo().join("fixtures/embedded/model"),
        "embedded",
        GgmlDType::Q8_0,
    );
    assert!(d < Q8_0_TOLERANCE_TRAINED, "embedded: Q8_0 GGUF logits differ by {d}");
    assert!(greedy, "embedded: Q8_0 GGUF greedy tokens differ");
}

/// `--dtype q8_0` quantises as llama.cpp (and candle's Q8_0 `QTensor`) do, and its kernels
/// compute exactly on the dequantised weights: a tied checkpoint (embeddings quantised with the
/// head on both sides) with q8_0 gives the bits of f32 on the weights a Q8_0 GGUF file holds.
/// And that file itself with q8_0 quantises back to its own values (d = amax/127 recovers d).
#[test]
fn q8_0_dtype_equals_f32_on_q8_0_dequantized_weights() {
    for (dir, golden) in [
        (repo().join("fixtures/embedded/model"), "embedded"),
        (fixture("qwen2-bias-bf16"), "qwen2-bias-bf16"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let written = write_gguf(&dir, &tmp.path().join("m.gguf"), GgmlDType::Q8_0, |_| {});
        assert_eq!(
            written.fallbacks, 0,
            "{golden}: every matrix must be quantised for the comparison"
        );
        checkpoint_with(&dir, &written.weights, &tmp.path().join("same"));
        let same = LoadedModel::load(
            &Checkpoint::from_dir(&tmp.path().join("same")).unwrap(),
            &Device::Cpu,
            DType::F32,
        )
        .unwrap();
        let q8 =
            LoadedModel::load(&Checkpoint::from_dir(&dir).unwrap(), &Device::Cpu, WeightType::Q8_0)
                .unwrap();
        assert!(q8.decoder.config().tie_word_embeddings, "{golden}");
        let gguf_spec = tmp.path().join("m.gguf").display().to_string();
        let gguf_q8 = LoadedModel::load(
            &spec::resolve(Some(&gguf_spec), &common::sources()).unwrap(),
            &Device::Cpu,
            WeightType::Q8_0,
        )
        .unwrap();
        let bits = |l: &[Vec<f32>]| l.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>();
        for (_, ids) in golden_prompts(golden) {
            let (lb, gb) = run(&same, &ids, 8);
            for (what, m) in [("q8_0", &q8), ("the Q8_0 GGUF with q8_0", &gguf_q8)] {
                let (la, ga) = run(m, &ids, 8);
                assert!(
                    bits(&la) == bits(&lb),
                    "{golden}: {what} logits differ from f32 on the dequantised weights by {}",
                    max_diff(&la, &lb)
                );
                assert_eq!(ga, gb, "{golden}: {what}");
            }
        }
    }
}

/// Deterministic weights, uniform with standard deviation `std` (xorshift64).
fn uniform(shape: &[usize], seed: u64, std: f32) -> Tensor {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * std * 3f32.sqrt()
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// A random Llama with 256-wide rows (GQA, untied; 1 layer unless `layers`), wide enough for
/// the k-quants' 256-element super-blocks, written as an f32 checkpoint in `dir`.
fn llama_256(dir: &Path, layers: usize, tied: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let base = fixture("llama-gqa-untied");
    let mut cfg = read_json(&base.join("config.json"));
    for (k, v) in [
        ("hidden_size", 256),
        ("intermediate_size", 512),
        ("head_dim", 64),
        ("num_hidden_layers", layers),
    ] {
        cfg[k] = v.into();
    }
    cfg["tie_word_embeddings"] = tied.into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        std::fs::copy(base.join(f), dir.join(f)).unwrap();
    }
    let (h, i, v, kv) = (256, 512, 260, 128);
    let mut shapes = vec![
        ("model.embed_tokens.weight".to_string(), vec![v, h]),
        ("model.norm.weight".into(), vec![h]),
    ];
    if !tied {
        shapes.push(("lm_head.weight".into(), vec![v, h]));
    }
    for l in 0..layers {
        for (n, s) in [
            ("input_layernorm.weight", vec![h]),
            ("post_attention_layernorm.weight", vec![h]),
            ("self_attn.q_proj.weight", vec![h, h]),
            ("self_attn.k_proj.weight", vec![kv, h]),
            ("self_attn.v_proj.weight", vec![kv, h]),
            ("self_attn.o_proj.weight", vec![h, h]),
            ("mlp.gate_proj.weight", vec![i, h]),
            ("mlp.up_proj.weight", vec![i, h]),
            ("mlp.down_proj.weight", vec![h, i]),
        ] {
            shapes.push((format!("model.layers.{l}.{n}"), s));
        }
    }
    let mut weights = HashMap::new();
    for (seed, (n, s)) in shapes.into_iter().enumerate() {
        let t = uniform(&s, seed as u64 + 1, 0.1);
        let t = if s.len() == 1 { (t + 1.0).unwrap() } else { t };
        weights.insert(n, t);
    }
    candle_core::safetensors::save(&weights, dir.join("model.safetensors")).unwrap();
}

/// Q4_K works on 256-element super-blocks, wider than any fixture row, so this writes a random
/// Llama with 256-wide rows (GQA, untied) and checks it the same way.
#[test]
fn q4_k_gguf_loads_exactly_what_it_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("llama-256");
    llama_256(&dir, 1, false);
    let (d, _) = gguf_against_safetensors(&dir, "llama-gqa-untied", GgmlDType::Q4K);
    // 4-bit weights have ~6-7% relative RMS error on random weights; measured 2.72 on logits up
    // to 6.0. The exact check against the same (dequantized) weights is the one that matters.
    assert!(d < 4.0, "Q4_K GGUF logits differ by {d}");
}

/// Llama 3 rope scaling reaches a GGUF as llama.cpp's `rope_freqs.weight` (no `rope_scaling`
/// metadata): benchgen divides its angles by those factors as llama.cpp does, so the file agrees
/// with the checkpoint (and with transformers' goldens) as an f32 GGUF does.
#[test]
fn llama3_rope_scaling_comes_from_rope_freqs() {
    let (d, greedy) =
        gguf_against_safetensors(&fixture("llama3-rope-mqa"), "llama3-rope-mqa", GgmlDType::F32);
    assert!(d < 1e-5, "llama3-rope-mqa: f32 GGUF with rope_freqs differs by {d}");
    assert!(greedy);
    // Without the factors the model is another one: the test would notice a dropped tensor.
    let tmp = tempfile::tempdir().unwrap();
    let base = fixture("llama3-rope-mqa");
    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    for f in
        ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "model.safetensors"]
    {
        std::fs::copy(base.join(f), plain.join(f)).unwrap();
    }
    let mut cfg = read_json(&base.join("config.json"));
    cfg["rope_parameters"]["rope_type"] = "default".into();
    std::fs::write(plain.join("config.json"), cfg.to_string()).unwrap();
    let (with, without) = (tmp.path().join("with.gguf"), tmp.path().join("without.gguf"));
    write_gguf(&base, &with, GgmlDType::F32, |_| {});
    write_gguf(&plain, &without, GgmlDType::F32, |_| {});
    let (d, _, _) = compare(&load(&with), &load(&without), &golden_prompts("llama3-rope-mqa"));
    assert!(d > 1e-3, "rope_freqs changed nothing ({d})");
}

/// The GGUF types real files use, held as stored. With `--dtype stored-exact` logits and greedy
/// tokens are bit for bit those of f32 on the same file's dequantized weights, and the weights
/// take the file's tensor bytes (within the 3.6% Q3_K's unpacked sub-block scales add, and
/// the padding of this 260-token vocabulary to whole 32-row panels; Q8_0 keeps
/// its block scales as f32, 36 bytes a block for the file's 34). With `--dtype stored` (what
/// `auto` picks) every type takes int8 activations: logits stay within [`INT8_LOGIT_BOUND`] of
/// f32's (relative to the largest logit), and the weights take the file's bytes within 5%.
#[test]
fn quantized_gguf_runs_as_stored_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("llama-256");
    llama_256(&dir, 2, false);
    let tied = tmp.path().join("llama-256-tied");
    llama_256(&tied, 1, true);
    let all = [
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q5_1,
        GgmlDType::Q8_0,
        GgmlDType::Q2K,
        GgmlDType::Q3K,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
    ];
    // Q4_K_M's mix: v and down in Q6_K on the first layer, the rest Q4_K, the head Q6_K;
    // q/k/v then differ, so they are held as one matrix per type.
    let q4_k_m = |hf: &str| {
        if hf == "lm_head.weight"
            || (hf.starts_with("model.layers.0.")
                && (hf.contains("v_proj") || hf.contains("down_proj")))
        {
            GgmlDType::Q6K
        } else {
            GgmlDType::Q4K
        }
    };
    type TypeOf = Box<dyn Fn(&str) -> GgmlDType>;
    let mut cases: Vec<(String, &Path, TypeOf)> = all
        .iter()
        .map(|&t| (format!("{t:?}"), dir.as_path(), Box::new(move |_: &str| t) as TypeOf))
        .collect();
    cases.push(("Q4_K_M mix".into(), dir.as_path(), Box::new(q4_k_m)));
    cases.push(("Q4_K tied".into(), tied.as_path(), Box::new(|_: &str| GgmlDType::Q4K)));
    let prompts = golden_prompts("llama-gqa-untied");
    for (name, model, type_of) in cases {
        let path = tmp.path().join(format!("{}.gguf", name.replace(' ', "-")));
        let written = write_gguf_typed(model, &path, type_of, |_| {});
        assert_eq!(written.fallbacks, 0, "{name}: every matrix is quantized");
        let ckpt = spec::resolve(Some(path.to_str().unwrap()), &common::sources()).unwrap();
        let stored = LoadedModel::load(&ckpt, &Device::Cpu, WeightType::StoredExact)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            stored.decoder.host_format(),
            Some(MatrixFormat::Gguf { int8: false }),
            "{name}"
        );
        let int8 = LoadedModel::load(&ckpt, &Device::Cpu, WeightType::Stored)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(int8.decoder.host_format(), Some(MatrixFormat::Gguf { int8: true }), "{name}");
        let f32 = LoadedModel::load(&ckpt, &Device::Cpu, DType::F32).unwrap();
        let mut worst = 0f32;
        for (text, ids) in &prompts {
            let (ls, gs) = run(&stored, ids, 8);
            let (lf, gf) = run(&f32, ids, 8);
            let same = ls
                .iter()
                .flatten()
                .zip(lf.iter().flatten())
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{name} on {text:?}: logits differ from f32 on the dequantized weights by {}",
                max_diff(&ls, &lf)
            );
            assert_eq!(gs, gf, "{name} on {text:?}: greedy tokens");
            let (li, _) = run(&int8, ids, 1);
            let (d, scale) = (max_diff(&li, &lf), max_abs(&lf));
            worst = worst.max(d / scale);
            assert!(
                d > 0.0,
                "{name} on {text:?}: int8 activations give f32's logits exactly: do they run?"
            );
            assert!(
                d <= INT8_LOGIT_BOUND * scale,
                "{name} on {text:?}: int8 logits {d} from f32's (largest {scale})"
            );
        }
        eprintln!("{name}: int8 activations: largest logit difference from f32 {worst:.2e} of the largest logit");
        let int8_held = int8.decoder.weights_bytes().unwrap() as f64 / written.bytes as f64;
        assert!(
            (0.99..1.05).contains(&int8_held),
            "{name}: int8 packing holds {int8_held:.3} × the file's bytes"
        );
        let held = stored.decoder.weights_bytes().unwrap();
        let ratio = held as f64 / written.bytes as f64;
        eprintln!("{name}: {held} bytes held for {} in the file ({ratio:.3})", written.bytes);
        let most = if name == "Q8_0" { 1.08 } else { 1.05 };
        assert!(
            (0.99..most).contains(&ratio),
            "{name}: {held} bytes held for {} in the file",
            written.bytes
        );
    }
}

/// How far int8 activations may move a logit from f32's on the same dequantized weights,
/// relative to the largest logit. Measured on these random 2-layer models: 2.8–4.7% (Q8_0 the
/// most: its weights keep the most detail for x's rounding to spoil); real models' smoother
/// activations lose less (README, "GGUF as stored").
const INT8_LOGIT_BOUND: f32 = 0.08;

/// A Q4_K_M-like file as stored, on int8 and on f32 activations: log-likelihoods are bit for bit
/// the same at batch sizes 1, 3, 8 and 32 (continuous batching, mixed lengths), as for f32
/// weights.
#[test]
fn quantized_gguf_is_batch_invariant() {
    use benchgen::engine::{Generator, LocalEngine, LoglikOutput, LoglikRequest};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("llama-256");
    llama_256(&dir, 2, false);
    let path = tmp.path().join("mix.gguf");
    write_gguf_typed(
        &dir,
        &path,
        |hf| {
            if hf.contains("v_proj") || hf.contains("down_proj") {
                GgmlDType::Q6K
            } else {
                GgmlDType::Q4K
            }
        },
        |_| {},
    );
    let ckpt = spec::resolve(Some(path.to_str().unwrap()), &common::sources()).unwrap();
    let words = ["alpha", "be", "sea", "delta", "echo", "fox", "golf", "hotel"];
    let text = |i: usize, n: usize| {
        (0..n).map(|j| words[(i * 7 + j * 5 + j * j) % 8]).collect::<Vec<_>>().join(" ")
    };
    let requests: Vec<LoglikRequest> = (0..24)
        .map(|i| LoglikRequest {
            index: i,
            context: text(i, 2 + (i * 7) % 25),
            continuation: format!(" {}", text(i + 3, 1 + i % 6)),
            ..Default::default()
        })
        .collect();
    let run = |batch: usize, dtype: WeightType| {
        let model = LoadedModel::load(&ckpt, &Device::Cpu, dtype).unwrap();
        let mut out = std::collections::BTreeMap::new();
        LocalEngine::new(model, batch)
            .loglikelihood(requests.clone(), &mut |o: LoglikOutput| {
                out.insert(o.index, o.logprob.to_bits());
                Ok(())
            })
            .unwrap();
        out
    };
    for dtype in [WeightType::Stored, WeightType::StoredExact] {
        let one = run(1, dtype);
        assert_eq!(one.len(), requests.len());
        for batch in [3, 8, 32] {
            assert_eq!(
                run(batch, dtype),
                one,
                "{}: log-likelihoods at batch {batch} differ from batch 1",
                dtype.name()
            );
        }
    }
}

/// `--dtype auto` keeps a GGUF as stored on the CPU, on int8 activations (`stored`), and
/// `--dtype stored-exact` gives `--dtype f32`'s tokens (which dequantizes it), through the
/// binary.
#[test]
fn auto_dtype_keeps_a_gguf_as_stored_through_generate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("llama-256");
    llama_256(&dir, 1, false);
    let path = tmp.path().join("m.gguf");
    write_gguf(&dir, &path, GgmlDType::Q4K, |_| {});
    let gen = |dtype: &str| {
        let out = common::benchgen_command()
            .args([
                "generate",
                "--model",
                path.to_str().unwrap(),
                "--prompt",
                "Hello",
                "--max-new-tokens",
                "6",
                "--json",
                "--dtype",
                dtype,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        read_json_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap())["token_ids"]
            .clone()
    };
    assert_eq!(
        gen("stored-exact"),
        gen("f32"),
        "as stored on f32 activations gives f32's tokens on the dequantized weights"
    );
    assert_eq!(gen("stored"), gen("auto"));
}

#[test]
fn chat_template_and_eos_come_from_the_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("chat.gguf");
    let template =
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{{ eos_token }}{% endfor %}\
                    {% if add_generation_prompt %}<assistant>{% endif %}";
    write_gguf(&fixture("llama-gqa-untied"), &path, GgmlDType::F32, |md| {
        md.push(("tokenizer.chat_template".into(), Value::String(template.into())));
        md.push(("tokenizer.ggml.eot_token_id".into(), Value::U32(258)));
    });
    let m = load(&path);
    assert_eq!(m.tokenizer.eos_ids(), &[257, 258]);
    let chat = m.chat_template.expect("chat template from tokenizer.chat_template");
    let msg = benchgen::model::chat::Message { role: "user".into(), content: "hi".into() };
    assert_eq!(chat.render(&[msg], true).unwrap(), "<user>hi</s><assistant>");
}

// ---------------------------------------------------------------------------------------------
// Bad input.

fn resolve_err(path: &Path) -> String {
    match spec::resolve(Some(path.to_str().unwrap()), &common::sources())
        .and_then(|c| LoadedModel::load(&c, &Device::Cpu, DType::F32))
    {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_files_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("model.gguf");
    write_gguf(&fixture("llama-gqa-untied"), &path, GgmlDType::Q8_0, |_| {});
    let bytes = std::fs::read(&path).unwrap();
    for keep in [3, 100, bytes.len() / 2, bytes.len() - 1] {
        let cut = tmp.path().join(format!("cut-{keep}.gguf"));
        std::fs::write(&cut, &bytes[..keep]).unwrap();
        let e = resolve_err(&cut);
        assert!(
            e.contains(&cut.display().to_string()) && e.contains("the file is truncated"),
            "cut at {keep}: {e}"
        );
        if keep > 1000 {
            assert!(
                e.contains("tensor ") && e.contains(&format!("the file has {keep} bytes")),
                "{e}"
            );
        }
    }
}

#[test]
fn unsupported_or_incomplete_metadata_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let set = |key: &'static str, value: Option<Value>| {
        move |md: &mut Vec<(String, Value)>| {
            md.retain(|(k, _)| k != key);
            if let Some(v) = value {
                md.push((key.to_string(), v));
            }
        }
    };
    type Edit = Box<dyn FnOnce(&mut Vec<(String, Value)>)>;
    let cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        (
            "arch",
            Box::new(set("general.architecture", Some(Value::String("gpt_neox".into())))),
            vec!["general.architecture \"gpt_neox\" is not supported", "llama, qwen2, qwen3"],
        ),
        (
            "layers",
            Box::new(set("llama.block_count", None)),
            vec!["missing metadata key llama.block_count"],
        ),
        (
            "tok",
            Box::new(set("tokenizer.ggml.model", Some(Value::String("rwkv".into())))),
            vec!["tokenizer.ggml.model \"rwkv\" is not supported", "llama, gpt2"],
        ),
        (
            "pre",
            Box::new(set("tokenizer.ggml.pre", Some(Value::String("not-a-pre".into())))),
            vec!["tokenizer.ggml.pre \"not-a-pre\" is not supported", "starcoder", "gpt-2"],
        ),
        (
            "eps",
            Box::new(set(
                "llama.attention.layer_norm_rms_epsilon",
                Some(Value::String("1e-5".into())),
            )),
            vec!["llama.attention.layer_norm_rms_epsilon is string, expected a float"],
        ),
        (
            "rope",
            Box::new(set("llama.rope.scaling.type", Some(Value::String("yarn".into())))),
            vec!["llama.rope.scaling.type \"yarn\" is not supported"],
        ),
    ];
    for (name, edit, wanted) in cases {
        let path = tmp.path().join(format!("{name}.gguf"));
        write_gguf(&fixture("llama-gqa-untied"), &path, GgmlDType::F32, edit);
        let e = resolve_err(&path);
        assert!(e.starts_with(&format!("model {}: ", path.display())), "{e}");
        for w in wanted {
            assert!(e.contains(w), "{name}: {e:?} lacks {w:?}");
        }
    }
}

#[test]
fn unknown_tensor_types_and_names_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("model.gguf");
    write_gguf(&fixture("llama-gqa-untied"), &path, GgmlDType::F32, |_| {});
    // The type field follows the name, the rank and the dims of output_norm.weight (rank 1).
    let mut bytes = std::fs::read(&path).unwrap();
    let name = b"output_norm.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 4 + 8;
    assert_eq!(&bytes[at..at + 4], &0u32.to_le_bytes());
    bytes[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    let bad_type = tmp.path().join("bad-type.gguf");
    std::fs::write(&bad_type, &bytes).unwrap();
    let e = resolve_err(&bad_type);
    assert!(
        e.contains("tensor output_norm.weight has ggml type 99") && e.contains("does not read"),
        "{e}"
    );

    // A mixture-of-experts tensor this decoder has no place for.
    let extra = tmp.path().join("extra.gguf");
    let mut content = {
        let mut f = std::fs::File::open(&path).unwrap();
        gguf_file::Content::read(&mut f).unwrap()
    };
    let mut f = std::fs::File::open(&path).unwrap();
    let mut tensors: Vec<(String, QTensor)> = content
        .tensor_infos
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .into_iter()
        .map(|n| {
            let t = content.tensor(&mut f, &n, &Device::Cpu).unwrap();
            (n, t)
        })
        .collect();
    tensors.push((
        "blk.0.ffn_gate_exps.weight".into(),
        QTensor::quantize(
            &Tensor::zeros((2, 32), DType::F32, &Device::Cpu).unwrap(),
            GgmlDType::F32,
        )
        .unwrap(),
    ));
    let md: Vec<(String, Value)> = content.metadata.drain().collect();
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut std::fs::File::create(&extra).unwrap(), &md_refs, &t_refs).unwrap();
    let e = resolve_err(&extra);
    assert!(e.contains("unexpected tensor blk.0.ffn_gate_exps.weight"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// The real stories260K.gguf and reference tokenizers (shared data).

fn data_file(relative: &str) -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("BENCHGEN_DATA_DIR") else {
        eprintln!("SKIPPED: BENCHGEN_DATA_DIR not set; GGUF tests on real models and tokenizers need ../shared/data");
        return None;
    };
    let path = Path::new(&dir).join(relative);
    if !path.is_file() {
        eprintln!(
            "SKIPPED: {} not found; GGUF tests on real models and tokenizers need ../shared/data",
            path.display()
        );
        return None;
    }
    Some(path)
}

const STORY_START: &str = "Once upon a time, there was a little girl named Lily.";
const STORY_IDS: [u32; 10] = [403, 407, 261, 378, 432, 383, 286, 261, 376, 298];

#[test]
fn stories260k_tells_its_story_greedy_from_bos() {
    let Some(path) = data_file("models/stories260K/stories260K.gguf") else { return };
    let m = load(&path);
    let cfg = m.decoder.config();
    assert_eq!(
        (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_kv_heads()),
        (64, 5, 8, 4)
    );
    assert_eq!(
        m.num_parameters,
        260_032 + 32_768,
        "stories260K's GGUF stores output.weight separately"
    );
    let prompt = m.tokenizer.encode("", true).unwrap();
    assert_eq!(prompt, vec![1], "BOS only");
    let (_, ids) = run(&m, &prompt, 60);
    let text = m.tokenizer.decode(&ids).unwrap();
    eprintln!("stories260K: {text:?}");
    assert_eq!(ids[..10], STORY_IDS);
    assert!(text.starts_with(STORY_START), "{text:?}");
}

#[test]
fn stories260k_through_benchgen_generate() {
    let Some(path) = data_file("models/stories260K/stories260K.gguf") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = common::ok(&common::benchgen(
        tmp.path(),
        &[
            "generate",
            "--model",
            path.to_str().unwrap(),
            "--prompt",
            "",
            "--max-new-tokens",
            "40",
            "--json",
        ],
    ));
    let line: Json = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(line["text"].as_str().unwrap().starts_with(STORY_START), "{line}");
    let ids: Vec<u32> =
        line["token_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    assert_eq!(ids[..10], STORY_IDS);
    assert_eq!(ids.len(), 40);
    // Also under trained: (the spec form of a local model).
    let spec = format!("trained:{}", path.display());
    let out = common::ok(&common::benchgen(
        tmp.path(),
        &["generate", "--model", &spec, "--prompt", "", "--max-new-tokens", "12"],
    ));
    assert!(out.contains("Once upon a time"), "{out}");
}

/// stories260K re-quantized (matrices with 32-multiple rows: all but ffn_down, whose rows are
/// 172 long) still starts its story the same way.
#[test]
fn stories260k_requantized_keeps_its_story() {
    let Some(path) = data_file("models/stories260K/stories260K.gguf") else { return };
    let mut f = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for dtype in [GgmlDType::F16, GgmlDType::Q8_0] {
        let mut tensors = Vec::new();
        for name in content.tensor_infos.keys() {
            let w = content
                .tensor(&mut f, name, &Device::Cpu)
                .unwrap()
                .dequantize(&Device::Cpu)
                .unwrap();
            let t = if w.rank() == 2 && w.dim(1).unwrap().is_multiple_of(dtype.block_size()) {
                dtype
            } else {
                GgmlDType::F32
            };
            tensors.push((name.clone(), QTensor::quantize(&w, t).unwrap()));
        }
        let out = tmp.path().join(format!("stories260K-{dtype:?}.gguf"));
        let md: Vec<(&str, &Value)> =
            content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut std::fs::File::create(&out).unwrap(), &md, &ts).unwrap();
        let m = load(&out);
        let (_, ids) = run(&m, &[1], 40);
        let text = m.tokenizer.decode(&ids).unwrap();
        eprintln!("stories260K {dtype:?}: {text:?}");
        assert!(text.starts_with(STORY_START), "{dtype:?}: {text:?}");
    }
}

/// Texts for tokenizer comparisons: GSM8K questions plus unicode, emoji, spacing, specials.
fn texts(n_gsm8k: usize) -> Vec<String> {
    let mut texts: Vec<String> = [
        "",
        " ",
        "  ",
        "Hello world",
        " Hello  world ",
        "a\tb\nc\r\nd",
        "multiple     spaces   here",
        "Lily's cat didn't go to the park.",
        "東京タワー is in 東京!",
        "emoji: 😀🎉👍🏽 and ZWJ 👩‍👩‍👧",
        "naïve café résumé Ünïcödé",
        "x\u{a0}y\u{200a}z",
        "12345 + 678 = 7023",
        "<s>text</s> <unk>",
        "Once upon a time, there was a little girl named Lily.",
        "\n\n\nend",
        "ŀ ĳ ǅ",
        "mixed UPPER lower",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(path) = data_file("benchmarks/gsm8k/test.jsonl") {
        let text = std::fs::read_to_string(path).unwrap();
        texts.extend(
            text.lines()
                .take(n_gsm8k)
                .map(|l| read_json_str(l)["question"].as_str().unwrap().to_string()),
        );
    }
    texts
}

fn read_json_str(s: &str) -> Json {
    serde_json::from_str(s).unwrap()
}

#[test]
fn stories260k_tokenizer_encodes_like_the_reference_tokenizer_json() {
    let Some(gguf) = data_file("models/stories260K/stories260K.gguf") else { return };
    let Some(reference) = data_file("models/stories260K/tokenizer.json") else { return };
    let ckpt: Checkpoint = spec::resolve(Some(gguf.to_str().unwrap()), &common::sources())
        .unwrap_or_else(|e| panic!("{e}"));
    let ours = TextTokenizer::from_bytes(&ckpt.tokenizer_json, "gguf").unwrap();
    let theirs =
        TextTokenizer::from_bytes(&std::fs::read(reference).unwrap(), "reference").unwrap();
    let texts = texts(40);
    assert!(texts.len() >= 50);
    for t in &texts {
        let ids = theirs.encode(t, true).unwrap();
        assert_eq!(ours.encode(t, true).unwrap(), ids, "{t:?}");
        assert_eq!(ours.decode(&ids).unwrap(), theirs.decode(&ids).unwrap(), "{t:?}");
    }
}

/// The `gpt2` style against GPT-2's own tokenizer.json: its vocab.json and merges.txt as llama.cpp
/// embeds them.
#[test]
fn gpt2_style_tokenizer_encodes_like_gpt2() {
    let Some(vocab) = data_file("tokenizers/gpt2/vocab.json") else { return };
    let Some(merges) = data_file("tokenizers/gpt2/merges.txt") else { return };
    let Some(reference) = data_file("tokenizers/gpt2/tokenizer.json") else { return };
    let vocab: HashMap<String, usize> =
        serde_json::from_str(&std::fs::read_to_string(vocab).unwrap()).unwrap();
    let mut tokens = vec![String::new(); vocab.len()];
    for (t, i) in vocab {
        tokens[i] = t;
    }
    let types: Vec<Value> =
        tokens.iter().map(|t| Value::I32(if t == "<|endoftext|>" { 3 } else { 1 })).collect();
    let merges: Vec<String> =
        std::fs::read_to_string(merges).unwrap().lines().skip(1).map(str::to_string).collect();
    let md: HashMap<String, Value> = [
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", strings(&tokens)),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.merges", strings(&merges)),
        ("tokenizer.ggml.bos_token_id", Value::U32(50256)),
        ("tokenizer.ggml.eos_token_id", Value::U32(50256)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let built = gguf_tokenizer::from_metadata(&md).unwrap();
    assert_eq!(built.eos_ids, vec![50256]);
    let ours = TextTokenizer::from_bytes(built.json.to_string().as_bytes(), "gguf").unwrap();
    let theirs =
        TextTokenizer::from_bytes(&std::fs::read(reference).unwrap(), "reference").unwrap();
    for t in texts(40).iter().chain([&"<|endoftext|>Hi".to_string()]) {
        let ids = theirs.encode(t, true).unwrap();
        assert_eq!(ours.encode(t, true).unwrap(), ids, "{t:?}");
        assert_eq!(ours.decode(&ids).unwrap(), theirs.decode(&ids).unwrap(), "{t:?}");
    }
}
