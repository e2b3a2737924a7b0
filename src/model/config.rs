//! `config.json` of a Llama-family checkpoint, read straight from the HF file.

use serde::{Deserialize, Serialize};

/// Architectures this build can run. Checked before any weight is touched so an unsupported
/// checkpoint fails fast with the list of what works.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["llama"];

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

/// transformers 5 writes `rope_theta` inside `rope_parameters`; older files put it at top level.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RopeParameters {
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LlamaConfig {
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
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
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

impl LlamaConfig {
    pub fn num_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    pub fn rope_theta(&self) -> f64 {
        self.rope_theta
            .or_else(|| self.rope_parameters.as_ref().and_then(|p| p.rope_theta))
            .unwrap_or(10_000.0)
    }

    /// Rejects configurations this implementation would silently compute wrong.
    pub fn validate(&self) -> Result<(), String> {
        let model_type = self.model_type.as_deref().unwrap_or("llama");
        if !SUPPORTED_MODEL_TYPES.contains(&model_type) {
            return Err(format!(
                "model_type \"{model_type}\" is not supported; supported: {}",
                SUPPORTED_MODEL_TYPES.join(", ")
            ));
        }
        if let Some(act) = self.hidden_act.as_deref() {
            if act != "silu" {
                return Err(format!("hidden_act \"{act}\" is not supported (only silu)"));
            }
        }
        if let Some(scaling) = &self.rope_scaling {
            if !scaling.is_null() {
                return Err(format!("rope_scaling {scaling} is not supported yet"));
            }
        }
        let rope_type = self.rope_parameters.as_ref().and_then(|p| p.rope_type.as_deref());
        if let Some(t) = rope_type {
            if t != "default" {
                return Err(format!("rope_parameters.rope_type \"{t}\" is not supported yet"));
            }
        }
        if self.num_attention_heads == 0 || self.num_kv_heads() == 0 {
            return Err("num_attention_heads and num_key_value_heads must be positive".into());
        }
        if !self.num_attention_heads.is_multiple_of(self.num_kv_heads()) {
            return Err(format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                self.num_attention_heads,
                self.num_kv_heads()
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!("head_dim {} must be even for rotary embeddings", self.head_dim()));
        }
        Ok(())
    }
}
