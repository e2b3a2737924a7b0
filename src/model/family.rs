//! What sets each architecture apart, in one place: [`Layout`] is read from a config once, and
//! both decoders build their blocks from it rather than asking which family they run.
//! [`normalise_config`] brings every family's `config.json` to the keys [`ModelConfig`] reads,
//! and [`super::names`] maps every family's tensor names to the Llama ones the decoders load.

use serde_json::{Map, Value};

use super::config::{Architecture, ConfigError, ModelConfig, RopeScaling};

/// How a norm computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// `x / rms(x) · w`.
    Rms,
    /// `x / rms(x) · (1 + w)` (Gemma): the decoders add the 1 to the weights, in f32, at load.
    RmsPlusOne,
    /// `(x − mean) / std · w + b` (GPT-2, GPT-NeoX).
    Layer,
}

/// The MLP's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`, `gelu_new`).
    GeluTanh,
    /// GELU with the exact erf.
    GeluErf,
}

/// The feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mlp {
    /// `down(act(gate(x)) · up(x))`.
    Gated(Activation),
    /// `down(act(up(x)))`.
    Plain(Activation),
}

/// Where q/k norms sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNorm {
    None,
    /// One norm of `head_dim` over each head (Qwen3, Gemma 3).
    PerHead,
    /// One norm over all heads of the projection (OLMo 2).
    Whole,
}

/// The norms of a block, by the (Llama-style) names [`super::names`] gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Norms {
    /// `input_layernorm` before attention (all but OLMo 2).
    pub before_attention: bool,
    /// `post_attention_layernorm` on attention's output, before the residual add (Gemma, OLMo 2).
    pub after_attention: bool,
    /// The norm before the MLP: `post_attention_layernorm` in Llama, `pre_feedforward_layernorm`
    /// in Gemma, none in OLMo 2.
    pub before_mlp: Option<&'static str>,
    /// `post_feedforward_layernorm` on the MLP's output (Gemma, OLMo 2).
    pub after_mlp: bool,
}

/// One set of rotary frequencies, and which layers use it.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeTable {
    pub theta: f64,
    pub scaling: RopeScaling,
}

/// One layer's attention (its window and its rope table) and whether its MLP is the mixture of
/// experts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerAttention {
    /// Keys older than this many positions are invisible.
    pub window: Option<usize>,
    /// Index into [`Layout::ropes`].
    pub rope: usize,
    /// The MLP is [`Layout::moe`] (`mlp.gate`, `mlp.experts.N.*`), not a dense one.
    pub sparse: bool,
}

/// A mixture-of-experts MLP: a router `mlp.gate` (`[experts, hidden]`), SwiGLU experts
/// `mlp.experts.N.{gate,up,down}_proj` of width `inter`, of which each token runs the `top_k`
/// with the highest softmax probability (all families take the softmax first), weighted by those
/// probabilities, renormalised to sum to 1 if `renormalise`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moe {
    pub experts: usize,
    pub top_k: usize,
    pub renormalise: bool,
    pub inter: usize,
    /// Qwen2-MoE: an always-on expert `mlp.shared_expert.*` of this width, scaled by
    /// `sigmoid(mlp.shared_expert_gate · x)`.
    pub shared: Option<usize>,
}

impl Moe {
    /// The `k` experts with the highest probabilities of one token (softmax in f32 first, as every
    /// family computes it), with their weights, in ascending expert order.
    pub fn route(&self, logits: &[f32]) -> Vec<(usize, f32)> {
        let (k, renormalise) = (self.top_k, self.renormalise);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f32 = exps.iter().sum();
        let probs: Vec<f32> = exps.iter().map(|e| e / sum).collect();
        // torch.topk's order: highest first, the lower index first among equals.
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        order.truncate(k);
        let total: f32 = order.iter().map(|&e| probs[e]).sum();
        let mut picked: Vec<(usize, f32)> = order
            .into_iter()
            .map(|e| (e, if renormalise { probs[e] / total } else { probs[e] }))
            .collect();
        picked.sort_by_key(|&(e, _)| e);
        picked
    }
}

/// Everything about a model's blocks that differs between families.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub arch: Architecture,
    pub norm: NormKind,
    pub norms: Norms,
    /// GPT-NeoX: `x + attn(ln1(x)) + mlp(ln2(x))` instead of two residual steps.
    pub parallel_residual: bool,
    pub mlp: Mlp,
    pub mlp_bias: bool,
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub qk_norm: QkNorm,
    /// Dimensions of each head that rotate (0: no rope, GPT-2's learned positions instead).
    pub rotary_dim: usize,
    /// `model.embed_positions` added to the token embeddings (GPT-2).
    pub learned_positions: bool,
    /// Token embeddings multiplied by this (Gemma: √hidden, rounded to the weights' dtype).
    pub embed_scale: Option<f64>,
    /// Scores are `q·k · attn_scale`.
    pub attn_scale: f64,
    /// Scores pass through `cap · tanh(s / cap)` before the mask (Gemma 2).
    pub attn_softcap: Option<f64>,
    /// Logits likewise (Gemma 2).
    pub final_softcap: Option<f64>,
    pub ropes: Vec<RopeTable>,
    pub layers: Vec<LayerAttention>,
    /// The experts of the layers marked `sparse`.
    pub moe: Option<Moe>,
    /// Positions a sequence may reach.
    pub context: usize,
}

fn activation(
    cfg: &ModelConfig,
    family: &'static str,
    default: &str,
    allowed: &[(&str, Activation)],
    supported: &'static str,
) -> Result<Activation, ConfigError> {
    // Gemma files carry both keys; `hidden_activation` is the one its code reads.
    let (key, name) = match (&cfg.hidden_activation, &cfg.hidden_act) {
        (Some(a), _) => ("hidden_activation", a.as_str()),
        (None, Some(a)) => ("hidden_act", a.as_str()),
        (None, None) => ("hidden_act", default),
    };
    allowed.iter().find(|(n, _)| *n == name).map(|(_, a)| *a).ok_or_else(|| {
        ConfigError::UnsupportedActivation { key, activation: name.to_string(), family, supported }
    })
}

/// The experts `cfg` describes; Mixtral always renormalises its top-k weights, the others when
/// `norm_topk_prob` says so.
fn moe(
    cfg: &ModelConfig,
    family: &'static str,
    always_renormalise: bool,
) -> Result<Moe, ConfigError> {
    let need = |v: Option<usize>, key: &'static str| {
        v.filter(|&n| n > 0).ok_or(ConfigError::Unsupported {
            key,
            value: format!("{v:?}"),
            family,
            why: "a mixture of experts needs a positive value",
        })
    };
    let experts = need(cfg.num_experts, "num_experts")?;
    let top_k = need(cfg.num_experts_per_tok, "num_experts_per_tok")?;
    if top_k > experts {
        return Err(ConfigError::Unsupported {
            key: "num_experts_per_tok",
            value: top_k.to_string(),
            family,
            why: "more experts per token than experts",
        });
    }
    Ok(Moe {
        experts,
        top_k,
        renormalise: always_renormalise || cfg.norm_topk_prob.unwrap_or(false),
        // Mixtral's experts are `intermediate_size` wide.
        inter: cfg.moe_intermediate_size.unwrap_or(cfg.intermediate_size),
        shared: cfg.shared_expert_intermediate_size.filter(|&n| n > 0),
    })
}

/// Which layers slide: `layer_types` when the file has it, else the family's own rule.
fn sliding_layers(
    cfg: &ModelConfig,
    rule: impl Fn(usize) -> bool,
) -> Result<Vec<bool>, ConfigError> {
    let layers = cfg.num_hidden_layers;
    match &cfg.layer_types {
        Some(types) if types.len() != layers => {
            Err(ConfigError::LayerTypesLength { found: types.len(), layers })
        }
        Some(types) => types
            .iter()
            .map(|t| match t.as_str() {
                "sliding_attention" => Ok(true),
                "full_attention" => Ok(false),
                other => Err(ConfigError::LayerType { found: other.to_string() }),
            })
            .collect(),
        None => Ok((0..layers).map(rule).collect()),
    }
}

const LLAMA_NORMS: Norms = Norms {
    before_attention: true,
    after_attention: false,
    before_mlp: Some("post_attention_layernorm"),
    after_mlp: false,
};

const GEMMA_NORMS: Norms = Norms {
    before_attention: true,
    after_attention: true,
    before_mlp: Some("pre_feedforward_layernorm"),
    after_mlp: true,
};

impl Layout {
    /// The layout `cfg` describes, or why it cannot be run as its family's HF code runs it.
    pub fn of(cfg: &ModelConfig) -> Result<Self, ConfigError> {
        use Activation::*;
        use Architecture as A;
        let arch = cfg.architecture()?;
        let hd = cfg.head_dim();
        let layers = cfg.num_hidden_layers;
        let silu = |family| activation(cfg, family, "silu", &[("silu", Silu)], "silu");
        let gelu_tanh = [("gelu_pytorch_tanh", GeluTanh), ("gelu_new", GeluTanh)];
        let global = RopeTable { theta: cfg.rope_theta(), scaling: cfg.rope_scaling()? };
        let mut layout = Layout {
            arch,
            norm: NormKind::Rms,
            norms: LLAMA_NORMS,
            parallel_residual: false,
            mlp: Mlp::Gated(Silu),
            mlp_bias: cfg.mlp_bias,
            qkv_bias: cfg.attention_bias,
            o_bias: cfg.attention_bias,
            qk_norm: QkNorm::None,
            rotary_dim: cfg.rotary_dim()?,
            learned_positions: false,
            embed_scale: None,
            attn_scale: 1.0 / (hd as f64).sqrt(),
            attn_softcap: None,
            final_softcap: None,
            ropes: vec![global],
            layers: vec![LayerAttention { window: None, rope: 0, sparse: false }; layers],
            moe: None,
            context: cfg.max_position_embeddings,
        };
        let window = |family| cfg.sliding_window.ok_or(ConfigError::NoWindow { family });
        match arch {
            A::Llama => layout.mlp = Mlp::Gated(silu("llama")?),
            A::Mistral | A::Mixtral => {
                layout.mlp = Mlp::Gated(silu("mistral")?);
                if arch == A::Mixtral {
                    layout.moe = Some(moe(cfg, "mixtral", true)?);
                }
                (layout.qkv_bias, layout.o_bias) = (false, false);
                for l in &mut layout.layers {
                    l.window = cfg.sliding_window;
                }
            }
            A::Qwen2 | A::Qwen3 | A::Qwen2Moe | A::Qwen3Moe => {
                layout.mlp = Mlp::Gated(silu("qwen")?);
                match arch {
                    A::Qwen2 => (layout.qkv_bias, layout.o_bias) = (true, false),
                    A::Qwen2Moe => {
                        (layout.qkv_bias, layout.o_bias) = (cfg.qkv_bias.unwrap_or(true), false)
                    }
                    _ => layout.qk_norm = QkNorm::PerHead,
                }
                if matches!(arch, A::Qwen2Moe | A::Qwen3Moe) {
                    let family = if arch == A::Qwen2Moe { "qwen2_moe" } else { "qwen3_moe" };
                    layout.moe = Some(moe(cfg, family, false)?);
                }
            }
            A::Gemma2 | A::Gemma3 => {
                let family = if arch == A::Gemma2 { "gemma2" } else { "gemma3" };
                layout.mlp = Mlp::Gated(activation(
                    cfg,
                    family,
                    "gelu_pytorch_tanh",
                    &gelu_tanh,
                    "gelu_pytorch_tanh",
                )?);
                layout.norm = if cfg.norm_weights_include_one == Some(true) {
                    NormKind::Rms
                } else {
                    NormKind::RmsPlusOne
                };
                layout.norms = GEMMA_NORMS;
                layout.embed_scale = Some((cfg.hidden_size as f64).sqrt());
                if let Some(s) = cfg.query_pre_attn_scalar {
                    layout.attn_scale = 1.0 / s.sqrt();
                }
                let sliding = if arch == A::Gemma2 {
                    layout.attn_softcap = cfg.attn_logit_softcapping;
                    layout.final_softcap = cfg.final_logit_softcapping;
                    sliding_layers(cfg, |i| i % 2 == 0)?
                } else {
                    layout.qk_norm = QkNorm::PerHead;
                    layout.final_softcap = cfg.final_logit_softcapping;
                    if cfg.attn_logit_softcapping.is_some() {
                        return Err(ConfigError::Unsupported {
                            key: "attn_logit_softcapping",
                            value: format!("{:?}", cfg.attn_logit_softcapping),
                            family,
                            why: "Gemma 3's attention does not cap its scores",
                        });
                    }
                    let pattern = cfg.sliding_window_pattern.unwrap_or(6).max(1);
                    let local = RopeTable {
                        theta: cfg.rope_local_base_freq.unwrap_or(10_000.0),
                        scaling: RopeScaling::None,
                    };
                    layout.ropes.push(local);
                    sliding_layers(cfg, |i| (i + 1) % pattern != 0)?
                };
                for (l, slides) in layout.layers.iter_mut().zip(sliding) {
                    if slides {
                        l.window = Some(window(family)?);
                        l.rope = layout.ropes.len() - 1;
                    }
                }
            }
            A::Phi3 => {
                layout.mlp = Mlp::Gated(silu("phi3")?);
                layout.qkv_bias = false;
                layout.o_bias = false;
                // Phi-3-mini-4k names a 2047-token window; transformers 5 masks with it.
                for l in &mut layout.layers {
                    l.window = cfg.sliding_window;
                }
            }
            A::Olmoe => {
                layout.mlp = Mlp::Gated(silu("olmoe")?);
                layout.qk_norm = QkNorm::Whole;
                layout.moe = Some(moe(cfg, "olmoe", false)?);
                if let Some(c) = cfg.clip_qkv {
                    return Err(ConfigError::Unsupported {
                        key: "clip_qkv",
                        value: c.to_string(),
                        family: "olmoe",
                        why: "clamping q/k/v is not implemented",
                    });
                }
            }
            A::Olmo2 => {
                layout.mlp = Mlp::Gated(silu("olmo2")?);
                layout.qk_norm = QkNorm::Whole;
                layout.norms = Norms {
                    before_attention: false,
                    after_attention: true,
                    before_mlp: None,
                    after_mlp: true,
                };
            }
            A::GptNeox => {
                layout.mlp = Mlp::Plain(activation(
                    cfg,
                    "gpt_neox",
                    "gelu",
                    &[("gelu", GeluErf), ("gelu_new", GeluTanh), ("gelu_pytorch_tanh", GeluTanh)],
                    "gelu, gelu_new, gelu_pytorch_tanh",
                )?);
                layout.norm = NormKind::Layer;
                layout.parallel_residual = cfg.use_parallel_residual.unwrap_or(true);
                (layout.qkv_bias, layout.o_bias, layout.mlp_bias) =
                    (cfg.attention_bias, cfg.attention_bias, true);
            }
            A::Gpt2 => {
                layout.mlp = Mlp::Plain(activation(
                    cfg,
                    "gpt2",
                    "gelu_new",
                    &[("gelu_new", GeluTanh), ("gelu_pytorch_tanh", GeluTanh), ("gelu", GeluErf)],
                    "gelu_new, gelu_pytorch_tanh, gelu",
                )?);
                layout.norm = NormKind::Layer;
                (layout.qkv_bias, layout.o_bias, layout.mlp_bias) = (true, true, true);
                layout.learned_positions = true;
                layout.rotary_dim = 0;
                if cfg.scale_attn_by_inverse_layer_idx == Some(true) {
                    return Err(ConfigError::Unsupported {
                        key: "scale_attn_by_inverse_layer_idx",
                        value: "true".into(),
                        family: "gpt2",
                        why: "not implemented",
                    });
                }
                if cfg.scale_attn_weights == Some(false) {
                    layout.attn_scale = 1.0;
                }
            }
        }
        if layout.moe.is_some() {
            // Qwen-MoE: every `decoder_sparse_step`-th layer, except `mlp_only_layers`.
            let step = cfg.decoder_sparse_step.unwrap_or(1).max(1);
            let dense = cfg.mlp_only_layers.as_deref().unwrap_or(&[]);
            for (i, l) in layout.layers.iter_mut().enumerate() {
                l.sparse = (i + 1).is_multiple_of(step) && !dense.contains(&i);
            }
        }
        if let RopeScaling::LongRope { original, .. } = &layout.ropes[0].scaling {
            layout.context = layout.context.min(*original);
        }
        Ok(layout)
    }

    /// Where in the block a norm runs, with its (Llama-style) name, in loading order.
    pub fn block_norms(&self) -> Vec<&'static str> {
        let n = &self.norms;
        let mut out = Vec::new();
        if n.before_attention {
            out.push("input_layernorm");
        }
        if n.after_attention {
            out.push("post_attention_layernorm");
        }
        out.extend(n.before_mlp);
        if n.after_mlp {
            out.push("post_feedforward_layernorm");
        }
        out
    }

    /// Parameters the model holds (tied embeddings counted once), as transformers'
    /// `num_parameters()` counts them.
    pub fn parameters(&self, cfg: &ModelConfig) -> usize {
        let (h, kv, hd, hs, is) = (
            cfg.num_attention_heads,
            cfg.num_kv_heads(),
            cfg.head_dim(),
            cfg.hidden_size,
            cfg.intermediate_size,
        );
        let norm = if self.norm_bias() { 2 * hs } else { hs };
        let bias = |on: bool, n: usize| if on { n } else { 0 };
        let qk_norm = match self.qk_norm {
            QkNorm::None => 0,
            QkNorm::PerHead => 2 * hd,
            QkNorm::Whole => (h + kv) * hd,
        };
        let attention = hs * (h + 2 * kv) * hd
            + h * hd * hs
            + bias(self.qkv_bias, (h + 2 * kv) * hd)
            + bias(self.o_bias, hs)
            + qk_norm;
        let parts = self.mlp_parts().len();
        let dense = parts * hs * is + is * hs + bias(self.mlp_bias, parts * is + hs);
        let swiglu = |width: usize| 3 * hs * width;
        let sparse = self.moe.map_or(0, |m| {
            m.experts * (swiglu(m.inter) + hs) + m.shared.map_or(0, |w| swiglu(w) + hs)
        });
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                attention + self.block_norms().len() * norm + if l.sparse { sparse } else { dense }
            })
            .sum();
        let embed = cfg.vocab_size * hs;
        let head = if cfg.tie_word_embeddings { 0 } else { embed };
        let positions = if self.learned_positions { cfg.max_position_embeddings * hs } else { 0 };
        embed + positions + head + norm + layers
    }

    /// Whether norms carry a bias.
    pub fn norm_bias(&self) -> bool {
        self.norm == NormKind::Layer
    }

    /// Output rows of the MLP's first product: `[gate | up]`, or `up` alone.
    pub fn mlp_parts(&self) -> &'static [&'static str] {
        match self.mlp {
            Mlp::Gated(_) => &["gate_proj", "up_proj"],
            Mlp::Plain(_) => &["up_proj"],
        }
    }
}

/// `value` (a parsed `config.json`) with keys renamed to the ones [`ModelConfig`] reads, and the
/// family's defaults where the file leaves them out (transformers' config classes hold them).
pub fn normalise_config(value: Value) -> Value {
    let Value::Object(mut m) = value else { return value };
    // A Gemma 3 checkpoint with its vision tower: the text model's settings are nested.
    if m.get("model_type").and_then(Value::as_str) == Some("gemma3") {
        if let Some(Value::Object(text)) = m.remove("text_config") {
            let mut text = text;
            for key in ["bos_token_id", "eos_token_id", "pad_token_id"] {
                if let Some(v) = m.get(key) {
                    text.entry(key).or_insert_with(|| v.clone());
                }
            }
            text.insert("model_type".into(), "gemma3_text".into());
            m = text;
        }
    }
    // Phi-3 files write the rope type under both its names, which serde would take as the
    // same field twice.
    for key in ["rope_parameters", "rope_scaling"] {
        if let Some(Value::Object(p)) = m.get_mut(key) {
            if p.contains_key("rope_type") {
                p.remove("type");
            }
        }
    }
    let model_type = m.get("model_type").and_then(Value::as_str).unwrap_or("llama").to_string();
    let rename = |m: &mut Map<String, Value>, from: &str, to: &str| {
        if let Some(v) = m.remove(from) {
            m.entry(to).or_insert(v);
        }
    };
    let default = |m: &mut Map<String, Value>, key: &str, v: Value| {
        if m.get(key).is_none_or(Value::is_null) {
            m.insert(key.into(), v);
        }
    };
    match model_type.as_str() {
        "gpt2" => {
            for (from, to) in [
                ("n_embd", "hidden_size"),
                ("n_layer", "num_hidden_layers"),
                ("n_head", "num_attention_heads"),
                ("n_positions", "max_position_embeddings"),
                ("n_inner", "intermediate_size"),
                ("layer_norm_epsilon", "rms_norm_eps"),
                ("activation_function", "hidden_act"),
            ] {
                rename(&mut m, from, to);
            }
            let hidden = m.get("hidden_size").and_then(Value::as_u64).unwrap_or(768);
            default(&mut m, "intermediate_size", (4 * hidden).into());
            default(&mut m, "rms_norm_eps", 1e-5.into());
            default(&mut m, "max_position_embeddings", 1024.into());
            default(&mut m, "tie_word_embeddings", true.into());
        }
        "gpt_neox" => {
            rename(&mut m, "layer_norm_eps", "rms_norm_eps");
            rename(&mut m, "rotary_pct", "partial_rotary_factor");
            rename(&mut m, "rotary_emb_base", "rope_theta");
            default(&mut m, "rms_norm_eps", 1e-5.into());
            default(&mut m, "attention_bias", true.into());
            let in_rope =
                m.get("rope_parameters").is_some_and(|p| p.get("partial_rotary_factor").is_some());
            if !in_rope {
                default(&mut m, "partial_rotary_factor", 0.25.into());
            }
            default(&mut m, "max_position_embeddings", 2048.into());
        }
        // transformers 5 writes Mixtral's and Qwen3-MoE's count under this name.
        "mixtral" | "qwen2_moe" | "qwen3_moe" | "olmoe" => {
            rename(&mut m, "num_local_experts", "num_experts");
        }
        "gemma2" | "gemma3_text" => {
            default(&mut m, "tie_word_embeddings", true.into());
            split_layer_type_ropes(&mut m);
        }
        _ => {}
    }
    Value::Object(m)
}

/// transformers 5 writes Gemma 3's two rope settings keyed by layer type; the sliding layers'
/// base becomes `rope_local_base_freq`, the full layers' settings `rope_parameters`.
fn split_layer_type_ropes(m: &mut Map<String, Value>) {
    let Some(Value::Object(p)) = m.get("rope_parameters") else { return };
    if !p.contains_key("full_attention") && !p.contains_key("sliding_attention") {
        return;
    }
    let (full, sliding) = (p.get("full_attention").cloned(), p.get("sliding_attention").cloned());
    if let Some(theta) = sliding.as_ref().and_then(|s| s.get("rope_theta")).cloned() {
        m.entry("rope_local_base_freq").or_insert(theta);
    }
    match full {
        Some(full) => m.insert("rope_parameters".into(), full),
        None => m.remove("rope_parameters"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: Value) -> ModelConfig {
        ModelConfig::from_json(&v.to_string()).unwrap()
    }

    #[test]
    fn gpt2_keys_are_read_under_their_own_names() {
        let c = cfg(serde_json::json!({"model_type": "gpt2", "n_embd": 64, "n_layer": 2,
            "n_head": 4, "n_positions": 128, "vocab_size": 100, "layer_norm_epsilon": 1e-5,
            "activation_function": "gelu_new", "n_inner": null}));
        assert_eq!((c.hidden_size, c.intermediate_size, c.num_hidden_layers), (64, 256, 2));
        assert_eq!((c.max_position_embeddings, c.tie_word_embeddings), (128, true));
        let l = Layout::of(&c).unwrap();
        assert_eq!(
            (l.norm, l.mlp, l.rotary_dim),
            (NormKind::Layer, Mlp::Plain(Activation::GeluTanh), 0)
        );
        assert!(l.learned_positions && l.qkv_bias && l.o_bias && l.mlp_bias);
    }

    #[test]
    fn gemma_layers_alternate_and_gemma3_slides_on_its_own_rope_base() {
        let base = serde_json::json!({"hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 6, "num_attention_heads": 4, "vocab_size": 100, "head_dim": 32,
            "sliding_window": 8, "query_pre_attn_scalar": 24});
        let mut g2 = base.clone();
        g2["model_type"] = "gemma2".into();
        g2["attn_logit_softcapping"] = 50.0.into();
        let l = Layout::of(&cfg(g2)).unwrap();
        let windows: Vec<_> = l.layers.iter().map(|l| l.window).collect();
        assert_eq!(windows, [Some(8), None, Some(8), None, Some(8), None]);
        assert_eq!(
            (l.norm, l.norms, l.attn_softcap),
            (NormKind::RmsPlusOne, GEMMA_NORMS, Some(50.0))
        );
        assert_eq!(l.attn_scale, 1.0 / 24f64.sqrt());
        assert_eq!(l.embed_scale, Some(8.0));
        let mut g3 = base;
        g3["model_type"] = "gemma3_text".into();
        g3["rope_parameters"] = serde_json::json!({
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}});
        g3["sliding_window_pattern"] = 3.into();
        let l = Layout::of(&cfg(g3)).unwrap();
        let ropes: Vec<_> = l.layers.iter().map(|l| (l.window, l.rope)).collect();
        assert_eq!(
            ropes,
            [(Some(8), 1), (Some(8), 1), (None, 0), (Some(8), 1), (Some(8), 1), (None, 0)]
        );
        assert_eq!(
            l.ropes[0],
            RopeTable { theta: 1e6, scaling: RopeScaling::Linear { factor: 8.0 } }
        );
        assert_eq!(l.ropes[1], RopeTable { theta: 1e4, scaling: RopeScaling::None });
        assert_eq!(l.qk_norm, QkNorm::PerHead);
    }

    /// Hub files written by transformers 4 spell rope settings their own way; they must give
    /// the layouts transformers 5 reads from them.
    #[test]
    fn transformers_4_config_keys_give_the_same_layouts() {
        let base = serde_json::json!({"hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 6, "num_attention_heads": 4, "vocab_size": 100, "head_dim": 32});
        let with = |extra: Value| {
            let mut v = base.clone();
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            Layout::of(&cfg(v)).unwrap()
        };
        // Gemma 3 (google/gemma-3-*): rope_theta, rope_scaling, rope_local_base_freq.
        let old = with(serde_json::json!({"model_type": "gemma3_text", "sliding_window": 8,
            "rope_theta": 1e6, "rope_local_base_freq": 1e4, "sliding_window_pattern": 6,
            "rope_scaling": {"rope_type": "linear", "factor": 8.0}}));
        let new = with(serde_json::json!({"model_type": "gemma3_text", "sliding_window": 8,
            "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention",
                "sliding_attention", "sliding_attention", "full_attention"],
            "rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}));
        assert_eq!(old, new);
        // A Gemma 3 checkpoint with its vision tower nests the text model's settings.
        let nested = cfg(serde_json::json!({"model_type": "gemma3", "eos_token_id": [1, 106],
            "text_config": {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 6,
                "num_attention_heads": 4, "vocab_size": 100, "head_dim": 32, "sliding_window": 8,
                "rope_theta": 1e6, "rope_local_base_freq": 1e4,
                "rope_scaling": {"rope_type": "linear", "factor": 8.0}}}));
        assert_eq!(Layout::of(&nested).unwrap(), old);
        assert_eq!(nested.eos_token_id.map(|e| e.to_vec()), Some(vec![1, 106]));
        // Pythia: rotary_pct and rotary_emb_base.
        let old = with(serde_json::json!({"model_type": "gpt_neox", "rotary_pct": 0.5,
            "rotary_emb_base": 10000}));
        let new = with(serde_json::json!({"model_type": "gpt_neox", "rope_parameters":
            {"rope_type": "default", "rope_theta": 10000, "partial_rotary_factor": 0.5}}));
        assert_eq!((old.rotary_dim, &old), (16, &new));
        // Phi-3.5: rope_scaling with "type" and the original context at top level.
        let factors: Vec<f64> = (0..16).map(|i| 1.0 + i as f64).collect();
        let phi = with(serde_json::json!({"model_type": "phi3", "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096, "rope_scaling": {"type": "longrope",
            "short_factor": factors, "long_factor": factors}}));
        let RopeScaling::LongRope { attention_factor, original, .. } = &phi.ropes[0].scaling else {
            panic!("{phi:?}")
        };
        assert_eq!((*original, phi.context), (4096, 4096));
        let mini = with(serde_json::json!({"model_type": "phi3", "sliding_window": 2047}));
        assert!(mini.layers.iter().all(|l| l.window == Some(2047)));
        assert!((attention_factor - (1.0 + 32f64.ln() / 4096f64.ln()).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn refusals_name_the_key_and_the_family() {
        let e = ModelConfig::from_json(
            &serde_json::json!({"model_type": "gpt_neox", "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 100, "hidden_act": "relu"})
            .to_string(),
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert_eq!(e, "hidden_act \"relu\" is not supported for gpt_neox (supported: gelu, gelu_new, gelu_pytorch_tanh)");
        let e = cfg(
            serde_json::json!({"model_type": "gemma2", "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
            "layer_types": ["sliding_attention"]}),
        )
        .validate()
        .unwrap_err();
        assert_eq!(e, ConfigError::LayerTypesLength { found: 1, layers: 2 });
        let e = cfg(serde_json::json!({"model_type": "gpt_neox", "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 100, "rotary_pct": 0.1}))
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("rotates 1.6 of 16"), "{e}");
    }

    /// A GGUF gives its rotary width as a count of dimensions, turned into a fraction of the
    /// head: the fraction must give the count back, also where the product falls just short.
    #[test]
    fn a_rotary_width_survives_the_round_trip_through_a_fraction() {
        for (rotary, head_dim) in [(30usize, 88usize), (26, 46), (32, 80), (96, 128), (4, 16)] {
            let c = cfg(serde_json::json!({"model_type": "gpt_neox", "hidden_size": head_dim * 2,
                "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 2,
                "vocab_size": 100, "partial_rotary_factor": rotary as f64 / head_dim as f64}));
            assert_eq!(c.rotary_dim(), Ok(rotary), "{rotary} of {head_dim}");
        }
        // transformers truncates a fraction that is not a whole count: int(16 · 0.3) = 4.
        let c = cfg(serde_json::json!({"model_type": "gpt_neox", "hidden_size": 64,
            "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 4,
            "vocab_size": 100, "partial_rotary_factor": 0.3}));
        assert_eq!(c.rotary_dim(), Ok(4));
    }

    fn moe(logits: &[f32], top_k: usize, renormalise: bool) -> Vec<(usize, f32)> {
        Moe { experts: logits.len(), top_k, renormalise, inter: 1, shared: None }.route(logits)
    }

    #[test]
    fn moe_routing_takes_the_softmax_top_k_in_expert_order() {
        let logits = [0.0f32, 2.0, 1.0, 2.0];
        let picked = moe(&logits, 2, false);
        let z: f32 = logits.iter().map(|l| (l - 2.0).exp()).sum();
        // A tie between experts 1 and 3 at the top: both taken, the order by index.
        assert_eq!(picked.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 3]);
        assert!((picked[0].1 - 1.0 / z).abs() < 1e-7);
        let renormalised = moe(&logits, 2, true);
        assert!(renormalised.iter().all(|p| (p.1 - 0.5).abs() < 1e-7));
        // The tie broken towards the lower index when only one is taken.
        assert_eq!(moe(&logits, 1, true), [(1, 1.0)]);
        let three = moe(&logits, 3, true);
        assert_eq!(three.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2, 3]);
        assert!((three.iter().map(|p| p.1).sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
