//! `config.json` of a checkpoint, read straight from the HF file ([`ModelConfig::from_json`]
//! first renames the keys of families that spell them differently, GPT-2's `n_embd` and the
//! like). The families share one decoder; [`Architecture`] names them and
//! [`super::family::Layout`] says how each one's blocks are built.

use serde::{Deserialize, Serialize};

/// `eos_token_id` / `bos_token_id` may be one id or a list in HF files.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// The architectures this build runs, and what sets each apart from plain Llama.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama 1–3, SmolLM/SmolLM2, TinyLlama.
    Llama,
    /// Llama plus a sliding attention window.
    Mistral,
    /// Bias on the q/k/v projections (not on o).
    Qwen2,
    /// RMSNorm over each query/key head before RoPE.
    Qwen3,
    /// Gemma 2: (1 + w) norms around both sublayers, GeGLU, scaled embeddings, soft-capped
    /// attention scores and logits, sliding-window layers alternating with global ones.
    Gemma2,
    /// Gemma 3's text model: Gemma 2 with per-head q/k norms instead of score capping, and its
    /// own rope base on the sliding layers.
    Gemma3,
    /// Phi-3/3.5/4-mini: fused qkv and gate/up projections, longrope scaling, partial rotary.
    Phi3,
    /// OLMo 2: norms after each sublayer only, q/k norms over the whole projection.
    Olmo2,
    /// GPT-NeoX / Pythia: LayerNorm with bias, parallel residual, partial rotary, plain GELU MLP.
    GptNeox,
    /// GPT-2: learned positions, LayerNorm, plain GELU MLP.
    Gpt2,
    /// Mixtral: Mistral with a mixture of SwiGLU experts, top-k weights renormalised.
    Mixtral,
    /// Qwen2-MoE: Qwen2 with experts and a gated shared expert.
    Qwen2Moe,
    /// Qwen3-MoE: Qwen3 with experts.
    Qwen3Moe,
    /// OLMoE: OLMo's whole-projection q/k norms, pre-norm blocks, experts.
    Olmoe,
}

/// `model_type` values accepted, for the error message.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &[
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma2",
    "gemma3_text",
    "gemma3",
    "phi3",
    "olmo2",
    "gpt_neox",
    "gpt2",
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
    "olmoe",
];

/// Rope settings as either `rope_scaling` (transformers 4) or `rope_parameters` (transformers 5)
/// write them. Fields that do not apply to a type are ignored.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct RopeParameters {
    #[serde(default, alias = "type")]
    pub rope_type: Option<String>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
    /// longrope (Phi-3): per-frequency divisors below and above the original context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_factor: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_factor: Option<Vec<f64>>,
    /// longrope: the factor cos and sin are scaled by (derived from the context growth if unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_factor: Option<f64>,
    /// transformers 5 may write the fraction of each head that rotates here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_rotary_factor: Option<f64>,
}

/// How rotary frequencies are derived from the base ones.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor`.
    Linear {
        factor: f64,
    },
    /// Phi-3's longrope with the short factors (sequences within the original context), cos
    /// and sin scaled by `attention_factor`.
    LongRope {
        short_factor: Vec<f64>,
        attention_factor: f64,
        /// Longer sequences would need the long factors, which change every earlier position's
        /// angles as a sequence grows past this: refused there rather than computed otherwise.
        original: usize,
    },
    /// Llama 3.1's frequency-dependent scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_positions: usize,
    },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ModelConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    #[serde(default)]
    pub rope_scaling: Option<RopeParameters>,
    /// Per-frequency divisors of the rotary angles (llama.cpp's `rope_freqs.weight`, which its
    /// converter writes for Llama 3's rope scaling): set only for GGUF files, which carry these
    /// instead of `rope_scaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_freq_factors: Option<Vec<f32>>,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    #[serde(default)]
    pub bos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub hidden_act: Option<String>,
    /// Gemma's name for `hidden_act`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_activation: Option<String>,
    /// Gemma: attention scores are scaled by `query_pre_attn_scalar^-0.5`, not `head_dim^-0.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_pre_attn_scalar: Option<f64>,
    /// Gemma 2: scores and logits pass through `cap · tanh(x / cap)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attn_logit_softcapping: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_logit_softcapping: Option<f64>,
    /// Per layer, "sliding_attention" or "full_attention" (transformers 5; older Gemma files
    /// leave it to the family's rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_types: Option<Vec<String>>,
    /// Gemma 3 before transformers 4.53: every n-th layer is global.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window_pattern: Option<usize>,
    /// Gemma 3: the rope base of the sliding layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_local_base_freq: Option<f64>,
    /// Fraction of each head that rotates (Phi-3, GPT-NeoX's `rotary_pct`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_rotary_factor: Option<f64>,
    /// Phi-3 writes its longrope base context at top level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max_position_embeddings: Option<usize>,
    /// GPT-NeoX: attention and MLP both read the block's input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_parallel_residual: Option<bool>,
    /// Mixture of experts: experts per MoE layer, how many each token runs, whether their
    /// weights are renormalised to sum to 1, and each expert's width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_experts: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_experts_per_tok: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm_topk_prob: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moe_intermediate_size: Option<usize>,
    /// Qwen2-MoE: the always-on expert's width (0 or absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_expert_intermediate_size: Option<usize>,
    /// Qwen-MoE: every n-th layer is sparse, except those listed as plain MLPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_sparse_step: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_only_layers: Option<Vec<usize>>,
    /// Qwen2-MoE's switch for q/k/v biases (on unless set false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qkv_bias: Option<bool>,
    /// OLMoE: clamps q/k/v; refused when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_qkv: Option<f64>,
    /// Gemma from a GGUF file: llama.cpp's converter has added the 1 of `(1 + w)` to the norm
    /// weights already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm_weights_include_one: Option<bool>,
    /// GPT-2 options this implementation refuses when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_attn_by_inverse_layer_idx: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_attn_weights: Option<bool>,
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}

fn default_max_positions() -> usize {
    4096
}

/// A config.json (or GGUF metadata) this implementation would refuse or compute wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("model_type \"{model_type}\" is not supported; supported: {}", SUPPORTED_MODEL_TYPES.join(", "))]
    UnsupportedModelType { model_type: String },
    #[error("rope scaling lacks {field}")]
    RopeScalingLacks { field: &'static str },
    #[error(
        "rope type \"{rope_type}\" is not supported; supported: default, linear, llama3, longrope"
    )]
    UnsupportedRopeType { rope_type: String },
    #[error("{key} \"{activation}\" is not supported for {family} (supported: {supported})")]
    UnsupportedActivation {
        key: &'static str,
        activation: String,
        family: &'static str,
        supported: &'static str,
    },
    #[error(
        "rope_freqs has {factors} factors for heads of {head_dim} dimensions (expected {})",
        .head_dim / 2
    )]
    RopeFreqsLength { factors: usize, head_dim: usize },
    #[error("rope_freqs factors and rope_scaling together are not supported")]
    RopeFreqsWithScaling,
    #[error("use_sliding_window = true is not supported yet for Qwen models")]
    QwenSlidingWindow,
    #[error("num_attention_heads and num_key_value_heads must be positive")]
    NoHeads,
    #[error("num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kv_heads})")]
    HeadsNotMultiple { heads: usize, kv_heads: usize },
    #[error("head_dim {head_dim} must be even for rotary embeddings")]
    OddHeadDim { head_dim: usize },
    #[error(
        "partial_rotary_factor {factor} rotates {rotary} of {head_dim} dimensions per head; it \
         must be an even number from 2 to head_dim"
    )]
    RotaryDim { factor: f64, rotary: f64, head_dim: usize },
    #[error(
        "longrope {field} has {found} factors for {rotary} rotary dimensions (expected {})",
        .rotary / 2
    )]
    LongRopeFactors { field: &'static str, found: usize, rotary: usize },
    #[error("layer_types has {found} entries for {layers} layers")]
    LayerTypesLength { found: usize, layers: usize },
    #[error("layer_types entry \"{found}\" is not supported (sliding_attention, full_attention)")]
    LayerType { found: String },
    #[error("{family} has sliding-window layers but no sliding_window")]
    NoWindow { family: &'static str },
    #[error("{key} = {value} is not supported for {family}: {why}")]
    Unsupported { key: &'static str, value: String, family: &'static str, why: &'static str },
}

impl ModelConfig {
    /// Reads a `config.json`, with the keys of families that name them differently (GPT-2's
    /// `n_embd`, GPT-NeoX's `rotary_pct`, a Gemma 3 checkpoint's nested `text_config`) renamed
    /// to the ones this struct reads, and each family's defaults where the file leaves a key out.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        serde_json::from_value(super::family::normalise_config(value))
    }

    pub fn architecture(&self) -> Result<Architecture, ConfigError> {
        match self.model_type.as_deref().unwrap_or("llama") {
            "llama" => Ok(Architecture::Llama),
            "mistral" => Ok(Architecture::Mistral),
            "qwen2" => Ok(Architecture::Qwen2),
            "qwen3" => Ok(Architecture::Qwen3),
            "gemma2" => Ok(Architecture::Gemma2),
            "gemma3_text" => Ok(Architecture::Gemma3),
            "phi3" => Ok(Architecture::Phi3),
            "olmo2" => Ok(Architecture::Olmo2),
            "gpt_neox" => Ok(Architecture::GptNeox),
            "gpt2" => Ok(Architecture::Gpt2),
            "mixtral" => Ok(Architecture::Mixtral),
            "qwen2_moe" => Ok(Architecture::Qwen2Moe),
            "qwen3_moe" => Ok(Architecture::Qwen3Moe),
            "olmoe" => Ok(Architecture::Olmoe),
            other => Err(ConfigError::UnsupportedModelType { model_type: other.to_string() }),
        }
    }

    pub fn num_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// transformers 5 writes rope settings only inside `rope_parameters`; older files use
    /// `rope_theta` and `rope_scaling` at top level.
    fn rope(&self) -> RopeParameters {
        self.rope_parameters.clone().or_else(|| self.rope_scaling.clone()).unwrap_or_default()
    }

    pub fn rope_theta(&self) -> f64 {
        self.rope_theta.or_else(|| self.rope().rope_theta).unwrap_or(10_000.0)
    }

    /// Dimensions of each head that rotate (the first ones; the rest pass through).
    pub fn rotary_dim(&self) -> Result<usize, ConfigError> {
        let hd = self.head_dim();
        let Some(factor) = self.partial_rotary_factor.or(self.rope().partial_rotary_factor) else {
            return Ok(hd);
        };
        let rotary = hd as f64 * factor;
        // transformers truncates, int(head_dim * factor); a product a rounding error below a whole
        // number is that number (a GGUF's rotary width 30 of 88 comes back as 29.999…).
        let dim =
            if (rotary - rotary.round()).abs() < 1e-9 { rotary.round() } else { rotary } as usize;
        if dim < 2 || dim > hd || !dim.is_multiple_of(2) {
            return Err(ConfigError::RotaryDim { factor, rotary, head_dim: hd });
        }
        Ok(dim)
    }

    pub fn rope_scaling(&self) -> Result<RopeScaling, ConfigError> {
        let p = self.rope();
        let need =
            |v: Option<f64>, field: &'static str| v.ok_or(ConfigError::RopeScalingLacks { field });
        match p.rope_type.as_deref() {
            None | Some("default") => Ok(RopeScaling::None),
            Some("linear") => Ok(RopeScaling::Linear { factor: need(p.factor, "factor")? }),
            Some("llama3") => Ok(RopeScaling::Llama3 {
                factor: need(p.factor, "factor")?,
                low_freq_factor: need(p.low_freq_factor, "low_freq_factor")?,
                high_freq_factor: need(p.high_freq_factor, "high_freq_factor")?,
                original_max_positions: p.original_max_position_embeddings.ok_or(
                    ConfigError::RopeScalingLacks { field: "original_max_position_embeddings" },
                )?,
            }),
            Some("longrope" | "su") => {
                let short = p
                    .short_factor
                    .clone()
                    .ok_or(ConfigError::RopeScalingLacks { field: "short_factor" })?;
                let rotary = self.rotary_dim()?;
                for (field, f) in
                    [("short_factor", Some(&short)), ("long_factor", p.long_factor.as_ref())]
                {
                    if let Some(f) = f.filter(|f| f.len() != rotary / 2) {
                        return Err(ConfigError::LongRopeFactors { field, found: f.len(), rotary });
                    }
                }
                let original = self
                    .original_max_position_embeddings
                    .or(p.original_max_position_embeddings)
                    .ok_or(ConfigError::RopeScalingLacks {
                        field: "original_max_position_embeddings",
                    })?;
                // transformers: sqrt(1 + ln(factor) / ln(original)) with factor the context's
                // growth, unless the file sets it.
                let growth = self.max_position_embeddings as f64 / original as f64;
                let attention_factor = p.attention_factor.unwrap_or(if growth <= 1.0 {
                    1.0
                } else {
                    (1.0 + growth.ln() / (original as f64).ln()).sqrt()
                });
                Ok(RopeScaling::LongRope { short_factor: short, attention_factor, original })
            }
            Some(other) => Err(ConfigError::UnsupportedRopeType { rope_type: other.to_string() }),
        }
    }

    /// Rejects configurations this implementation would silently compute wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let arch = self.architecture()?;
        if let Some(f) = &self.rope_freq_factors {
            if f.len() != self.head_dim() / 2 {
                return Err(ConfigError::RopeFreqsLength {
                    factors: f.len(),
                    head_dim: self.head_dim(),
                });
            }
            if self.rope_scaling()? != RopeScaling::None {
                return Err(ConfigError::RopeFreqsWithScaling);
            }
        }
        if matches!(
            arch,
            Architecture::Qwen2
                | Architecture::Qwen3
                | Architecture::Qwen2Moe
                | Architecture::Qwen3Moe
        ) && self.use_sliding_window == Some(true)
        {
            return Err(ConfigError::QwenSlidingWindow);
        }
        if self.num_attention_heads == 0 || self.num_kv_heads() == 0 {
            return Err(ConfigError::NoHeads);
        }
        if !self.num_attention_heads.is_multiple_of(self.num_kv_heads()) {
            return Err(ConfigError::HeadsNotMultiple {
                heads: self.num_attention_heads,
                kv_heads: self.num_kv_heads(),
            });
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(ConfigError::OddHeadDim { head_dim: self.head_dim() });
        }
        // Everything a family reads from the file: activation, norms, windows, rope.
        super::family::Layout::of(self).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: serde_json::Value) -> ModelConfig {
        let mut base = serde_json::json!({"hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100});
        base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn rope_settings_are_read_from_either_place() {
        let old = cfg(
            serde_json::json!({"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3",
            "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}),
        );
        let new = cfg(
            serde_json::json!({"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0,
            "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}),
        );
        for c in [&old, &new] {
            assert_eq!(c.rope_theta(), 500000.0);
            assert!(matches!(
                c.rope_scaling(),
                Ok(RopeScaling::Llama3 { original_max_positions: 8192, .. })
            ));
        }
        let e = cfg(serde_json::json!({"rope_scaling": {"type": "yarn", "factor": 4.0}}))
            .validate()
            .unwrap_err();
        assert_eq!(e, ConfigError::UnsupportedRopeType { rope_type: "yarn".into() });
        let e = e.to_string();
        assert!(e.contains("yarn") && e.contains("llama3"), "{e}");
        let e = cfg(serde_json::json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}))
            .rope_scaling()
            .unwrap_err();
        assert_eq!(e, ConfigError::RopeScalingLacks { field: "low_freq_factor" });
        assert_eq!(e.to_string(), "rope scaling lacks low_freq_factor");
    }

    #[test]
    fn families_differ_where_hf_differs() {
        use super::super::family::{Layout, QkNorm};
        let layout = |v| Layout::of(&cfg(v)).unwrap();
        let q2 = layout(serde_json::json!({"model_type": "qwen2", "attention_bias": false}));
        assert_eq!((q2.qkv_bias, q2.o_bias), (true, false));
        let m = layout(serde_json::json!({"model_type": "mistral", "sliding_window": 4096}));
        assert_eq!(m.layers[0].window, Some(4096));
        let l = layout(serde_json::json!({"sliding_window": 4096}));
        assert_eq!(l.layers[0].window, None);
        assert_eq!(layout(serde_json::json!({"model_type": "qwen3"})).qk_norm, QkNorm::PerHead);
        let e = cfg(serde_json::json!({"model_type": "mamba"})).validate().unwrap_err().to_string();
        assert!(e.contains("mamba") && e.contains("llama, mistral, qwen2, qwen3"), "{e}");
        let e = cfg(serde_json::json!({"num_key_value_heads": 3})).validate().unwrap_err();
        assert_eq!(e, ConfigError::HeadsNotMultiple { heads: 4, kv_heads: 3 });
        assert_eq!(
            e.to_string(),
            "num_attention_heads (4) is not a multiple of num_key_value_heads (3)"
        );
        let e = cfg(serde_json::json!({"rope_freq_factors": [1.0]})).validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "rope_freqs has 1 factors for heads of 16 dimensions (expected 8)"
        );
    }
}
