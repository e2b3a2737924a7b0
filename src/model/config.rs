//! `config.json` of a Llama-family checkpoint (Llama, Mistral, Qwen2, Qwen3), read straight from
//! the HF file. The families share one decoder; [`Architecture`] says how each one differs.

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
}

/// `model_type` values accepted, for the error message.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["llama", "mistral", "qwen2", "qwen3"];

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
}

/// How rotary frequencies are derived from the base ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor`.
    Linear {
        factor: f64,
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
    #[error("rope type \"{rope_type}\" is not supported; supported: default, linear, llama3")]
    UnsupportedRopeType { rope_type: String },
    #[error("hidden_act \"{activation}\" is not supported (only silu)")]
    UnsupportedActivation { activation: String },
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
}

impl ModelConfig {
    pub fn architecture(&self) -> Result<Architecture, ConfigError> {
        match self.model_type.as_deref().unwrap_or("llama") {
            "llama" => Ok(Architecture::Llama),
            "mistral" => Ok(Architecture::Mistral),
            "qwen2" => Ok(Architecture::Qwen2),
            "qwen3" => Ok(Architecture::Qwen3),
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
            Some(other) => Err(ConfigError::UnsupportedRopeType { rope_type: other.to_string() }),
        }
    }

    /// Keys older than this many positions are invisible (Mistral); `None` = full attention.
    pub fn attention_window(&self) -> Option<usize> {
        match self.architecture() {
            Ok(Architecture::Mistral) => self.sliding_window,
            _ => None,
        }
    }

    /// (q/k/v bias, o bias) as each family's HF implementation builds its projections.
    pub fn projection_bias(&self) -> (bool, bool) {
        match self.architecture() {
            Ok(Architecture::Qwen2) => (true, false),
            Ok(Architecture::Mistral) => (false, false),
            _ => (self.attention_bias, self.attention_bias),
        }
    }

    pub fn qk_norm(&self) -> bool {
        matches!(self.architecture(), Ok(Architecture::Qwen3))
    }

    /// Rejects configurations this implementation would silently compute wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let arch = self.architecture()?;
        if let Some(act) = self.hidden_act.as_deref() {
            if act != "silu" {
                return Err(ConfigError::UnsupportedActivation { activation: act.to_string() });
            }
        }
        let scaling = self.rope_scaling()?;
        if let Some(f) = &self.rope_freq_factors {
            if f.len() != self.head_dim() / 2 {
                return Err(ConfigError::RopeFreqsLength {
                    factors: f.len(),
                    head_dim: self.head_dim(),
                });
            }
            if scaling != RopeScaling::None {
                return Err(ConfigError::RopeFreqsWithScaling);
            }
        }
        if matches!(arch, Architecture::Qwen2 | Architecture::Qwen3)
            && self.use_sliding_window == Some(true)
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
        Ok(())
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
        let q2 = cfg(serde_json::json!({"model_type": "qwen2", "attention_bias": false}));
        assert_eq!(q2.projection_bias(), (true, false));
        let m = cfg(serde_json::json!({"model_type": "mistral", "sliding_window": 4096}));
        assert_eq!(m.attention_window(), Some(4096));
        let l = cfg(serde_json::json!({"sliding_window": 4096}));
        assert_eq!(l.attention_window(), None);
        assert!(cfg(serde_json::json!({"model_type": "qwen3"})).qk_norm());
        let e = cfg(serde_json::json!({"model_type": "gpt2"})).validate().unwrap_err().to_string();
        assert!(e.contains("gpt2") && e.contains("llama, mistral, qwen2, qwen3"), "{e}");
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
