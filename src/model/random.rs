//! Random-weight checkpoints of a given shape, for speed measurements that must not download
//! anything (benches, comparison scripts). Seeded, so every run measures the same model.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;

use super::config::ModelConfig;
use super::decoder::{Backend, Decoder};
use crate::device::WeightType;
use crate::error::{Result, TensorContext};
use crate::rng::SplitMix64;

/// The exact SmolLM2-135M architecture (hidden 576, 30 layers, 9 heads / 3 KV heads, vocab 49152,
/// tied embeddings), the reference shape of the project's speed targets.
pub fn smollm2_135m_config() -> ModelConfig {
    let json = serde_json::json!({
        "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "vocab_size": 49152, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
        "max_position_embeddings": 8192, "tie_word_embeddings": true, "hidden_act": "silu"
    });
    serde_json::from_value(json).expect("constant config is valid")
}

/// Every parameter in HF names with seeded initial values: norms 1, everything else
/// N(0, 0.02), drawn from `rng` in this fixed order (callers may keep drawing from it after).
/// Shared by the speed benches and fixture training.
pub fn initial_weights(cfg: &ModelConfig, rng: &mut SplitMix64) -> Result<Vec<(String, Tensor)>> {
    let (hs, is, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim());
    let (h, kv) = (cfg.num_attention_heads, cfg.num_kv_heads());
    let mut shapes: Vec<(String, Vec<usize>)> =
        vec![("model.embed_tokens.weight".into(), vec![cfg.vocab_size, hs])];
    for l in 0..cfg.num_hidden_layers {
        let n = |s: &str| format!("model.layers.{l}.{s}");
        shapes.extend([
            (n("input_layernorm.weight"), vec![hs]),
            (n("post_attention_layernorm.weight"), vec![hs]),
            (n("self_attn.q_proj.weight"), vec![h * hd, hs]),
            (n("self_attn.k_proj.weight"), vec![kv * hd, hs]),
            (n("self_attn.v_proj.weight"), vec![kv * hd, hs]),
            (n("self_attn.o_proj.weight"), vec![hs, h * hd]),
            (n("mlp.gate_proj.weight"), vec![is, hs]),
            (n("mlp.up_proj.weight"), vec![is, hs]),
            (n("mlp.down_proj.weight"), vec![hs, is]),
        ]);
    }
    shapes.push(("model.norm.weight".into(), vec![hs]));
    if !cfg.tie_word_embeddings {
        shapes.push(("lm_head.weight".into(), vec![cfg.vocab_size, hs]));
    }
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if name.ends_with("norm.weight") {
                vec![1.0; n]
            } else {
                (0..n).map(|_| (rng.normal() * 0.02) as f32).collect()
            };
            let t =
                Tensor::from_vec(values, shape, &Device::Cpu).ctx("building initial weights")?;
            Ok((name, t))
        })
        .collect()
}

/// A decoder with [`initial_weights`] held as `weights` (a `DType` or Q8_0), for speed
/// measurements.
pub fn random_decoder(
    cfg: &ModelConfig,
    weights: impl Into<WeightType>,
    device: &Device,
    seed: u64,
) -> Result<Decoder> {
    let weights = weights.into();
    let dtype = weights.load_dtype();
    let mut tensors = HashMap::new();
    for (name, t) in initial_weights(cfg, &mut SplitMix64::new(seed))? {
        let t =
            t.to_device(device).and_then(|t| t.to_dtype(dtype)).ctx("placing initial weights")?;
        tensors.insert(name, t);
    }
    let vb = VarBuilder::from_tensors(tensors, dtype, device);
    Decoder::load_with(vb, cfg, Backend::Auto, weights).ctx("loading random weights")
}
