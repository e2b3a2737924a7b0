//! llama.cpp's tensor names (`blk.3.attn_q.weight`) as the Llama names the decoders load
//! (`model.layers.3.self_attn.q_proj.weight`), for every family: a fused tensor (`attn_qkv`,
//! Phi-3's `[gate | up]` `ffn_up`, the 3-D `ffn_*_exps` of a mixture of experts) becomes several
//! names, each a range of its rows. llama.cpp's converter already puts GPT-NeoX's per-head
//! `query_key_value` in `[q | k | v]` order and GPT-2's Conv1D weights in `[out, in]`.

use super::config::{Architecture, ModelConfig};

/// One Llama-named tensor a GGUF tensor holds: all of it, or `rows` (`(start, len)`) of its rows
/// (a 3-D tensor's rows are its experts' rows, one expert after another).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub hf: String,
    pub rows: Option<(usize, usize)>,
}

/// Tensors that are not weights of a layer: read into the config, not loaded by name.
pub(crate) const CONFIG_TENSORS: [&str; 3] =
    ["rope_freqs.weight", "rope_factors_short.weight", "rope_factors_long.weight"];

/// The Llama-named tensors GGUF tensor `name` holds in a model of config `cfg`; `None` for a
/// name no family this build runs has.
pub(crate) fn targets(name: &str, cfg: &ModelConfig) -> Option<Vec<Target>> {
    let arch = cfg.architecture().ok()?;
    let (stem, kind) = name.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let whole = |hf: &str| Some(vec![Target { hf: format!("{hf}.{kind}"), rows: None }]);
    match stem {
        "token_embd" => return whole("model.embed_tokens"),
        "position_embd" => return whole("model.embed_positions"),
        "output_norm" => return whole("model.norm"),
        "output" => return whole("lm_head"),
        _ => {}
    }
    let rest = stem.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let l = |hf: &str| format!("model.layers.{layer}.{hf}.{kind}");
    let one = |hf: &str| Some(vec![Target { hf: l(hf), rows: None }]);
    let split = |parts: &[(&str, usize)]| {
        let mut start = 0;
        let out = parts
            .iter()
            .map(|&(hf, len)| {
                let t = Target { hf: l(hf), rows: Some((start, len)) };
                start += len;
                t
            })
            .collect();
        Some(out)
    };
    let (h, kv, hd, hs) =
        (cfg.num_attention_heads, cfg.num_kv_heads(), cfg.head_dim(), cfg.hidden_size);
    let gemma = matches!(arch, Architecture::Gemma2 | Architecture::Gemma3);
    let experts = cfg.num_experts.unwrap_or(0);
    let expert_width = cfg.moe_intermediate_size.unwrap_or(cfg.intermediate_size);
    let per_expert = |module: &str, len: usize| {
        let out = (0..experts)
            .map(|e| Target {
                hf: l(&format!("mlp.experts.{e}.{module}")),
                rows: Some((e * len, len)),
            })
            .collect();
        Some(out)
    };
    match part {
        "attn_norm" => one("input_layernorm"),
        "attn_q" => one("self_attn.q_proj"),
        "attn_k" => one("self_attn.k_proj"),
        "attn_v" => one("self_attn.v_proj"),
        "attn_qkv" => split(&[
            ("self_attn.q_proj", h * hd),
            ("self_attn.k_proj", kv * hd),
            ("self_attn.v_proj", kv * hd),
        ]),
        "attn_output" => one("self_attn.o_proj"),
        "attn_q_norm" => one("self_attn.q_norm"),
        "attn_k_norm" => one("self_attn.k_norm"),
        "post_attention_norm" => one("post_attention_layernorm"),
        "ffn_norm" if gemma => one("pre_feedforward_layernorm"),
        "ffn_norm" => one("post_attention_layernorm"),
        "post_ffw_norm" => one("post_feedforward_layernorm"),
        "ffn_gate" => one("mlp.gate_proj"),
        "ffn_up" if arch == Architecture::Phi3 => {
            let is = cfg.intermediate_size;
            split(&[("mlp.gate_proj", is), ("mlp.up_proj", is)])
        }
        "ffn_up" => one("mlp.up_proj"),
        "ffn_down" => one("mlp.down_proj"),
        "ffn_gate_inp" => one("mlp.gate"),
        "ffn_gate_exps" if experts > 0 => per_expert("gate_proj", expert_width),
        "ffn_up_exps" if experts > 0 => per_expert("up_proj", expert_width),
        "ffn_down_exps" if experts > 0 => per_expert("down_proj", hs),
        "ffn_gate_shexp" => one("mlp.shared_expert.gate_proj"),
        "ffn_up_shexp" => one("mlp.shared_expert.up_proj"),
        "ffn_down_shexp" => one("mlp.shared_expert.down_proj"),
        "ffn_gate_inp_shexp" => one("mlp.shared_expert_gate"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: serde_json::Value) -> ModelConfig {
        let mut base = serde_json::json!({"hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 100});
        base.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn names(t: Option<Vec<Target>>) -> Vec<(String, Option<(usize, usize)>)> {
        t.unwrap().into_iter().map(|t| (t.hf, t.rows)).collect()
    }

    #[test]
    fn tensor_names_map_to_llama_names_and_row_ranges() {
        let llama = cfg(serde_json::json!({}));
        assert_eq!(
            names(targets("blk.12.attn_output.weight", &llama)),
            [("model.layers.12.self_attn.o_proj.weight".into(), None)]
        );
        assert_eq!(
            names(targets("blk.1.ffn_norm.weight", &llama))[0].0,
            "model.layers.1.post_attention_layernorm.weight"
        );
        assert_eq!(targets("blk.x.ffn_up.weight", &llama), None);
        assert_eq!(targets("blk.0.ffn_gate_exps.weight", &llama), None, "no experts");
        let gemma = cfg(serde_json::json!({"model_type": "gemma2"}));
        assert_eq!(
            names(targets("blk.0.ffn_norm.weight", &gemma))[0].0,
            "model.layers.0.pre_feedforward_layernorm.weight"
        );
        // heads 4 × 16 and 2 kv heads: [q 64 | k 32 | v 32].
        let phi = cfg(serde_json::json!({"model_type": "phi3"}));
        assert_eq!(
            names(targets("blk.0.attn_qkv.bias", &phi)),
            [
                ("model.layers.0.self_attn.q_proj.bias".into(), Some((0, 64))),
                ("model.layers.0.self_attn.k_proj.bias".into(), Some((64, 32))),
                ("model.layers.0.self_attn.v_proj.bias".into(), Some((96, 32))),
            ]
        );
        assert_eq!(names(targets("blk.0.ffn_up.weight", &phi))[1].1, Some((96, 96)));
        let moe = cfg(serde_json::json!({"model_type": "qwen2_moe", "num_experts": 3,
            "moe_intermediate_size": 8}));
        let down = names(targets("blk.1.ffn_down_exps.weight", &moe));
        assert_eq!(
            down[2],
            ("model.layers.1.mlp.experts.2.down_proj.weight".into(), Some((128, 64)))
        );
        assert_eq!(names(targets("blk.1.ffn_up_exps.weight", &moe))[1].1, Some((8, 8)));
        assert_eq!(
            names(targets("blk.0.ffn_gate_inp_shexp.weight", &moe))[0].0,
            "model.layers.0.mlp.shared_expert_gate.weight"
        );
    }
}
