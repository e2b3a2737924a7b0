//! Every family's tensor names as the Llama ones the decoders load (`model.layers.N.self_attn.
//! q_proj.weight`, …): a [`VarBuilder`] over the checkpoint's own names that renames, splits
//! fused projections (Phi-3's `qkv_proj`, GPT-NeoX's per-head `query_key_value`, GPT-2's
//! `c_attn`) and turns GPT-2's Conv1D `[in, out]` weights around, tensor by tensor as the
//! decoder asks for them.

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use super::config::{Architecture, ModelConfig};

/// Where one Llama-named tensor comes from.
#[derive(Debug, Clone, PartialEq)]
struct Origin {
    name: String,
    /// A Conv1D weight, stored `[in, out]`.
    transpose: bool,
    /// Rows (after any transpose) `(start, len)` taken in order; empty: the whole tensor.
    rows: Vec<(usize, usize)>,
}

impl Origin {
    fn whole(name: impl Into<String>) -> Self {
        Origin { name: name.into(), transpose: false, rows: Vec::new() }
    }
}

/// The checkpoint's names for one family.
#[derive(Debug, Clone)]
struct Scheme {
    arch: Architecture,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    hidden: usize,
    inter: usize,
}

impl Scheme {
    /// The candidates for Llama-named `name`, in the order they are tried.
    fn origins(&self, name: &str) -> Vec<Origin> {
        let Some((layer, rest)) = split_layer(name) else {
            return self.top_level(name);
        };
        let (h, kv, hd) = (self.heads, self.kv_heads, self.head_dim);
        let qkv_part = |rest: &str| {
            ["q_proj", "k_proj", "v_proj"]
                .iter()
                .position(|p| rest.starts_with(&format!("self_attn.{p}.")))
        };
        let suffix = rest.rsplit('.').next().unwrap_or("");
        match self.arch {
            Architecture::Phi3 => {
                let l = format!("model.layers.{layer}");
                if let Some(part) = qkv_part(rest) {
                    let rows = [(0, h * hd), (h * hd, kv * hd), (h * hd + kv * hd, kv * hd)][part];
                    return vec![Origin {
                        name: format!("{l}.self_attn.qkv_proj.{suffix}"),
                        transpose: false,
                        rows: vec![rows],
                    }];
                }
                let gate_up = [("mlp.gate_proj.", 0), ("mlp.up_proj.", 1)];
                if let Some((_, i)) = gate_up.iter().find(|(p, _)| rest.starts_with(p)) {
                    return vec![Origin {
                        name: format!("{l}.mlp.gate_up_proj.{suffix}"),
                        transpose: false,
                        rows: vec![(i * self.inter, self.inter)],
                    }];
                }
                vec![Origin::whole(name)]
            }
            Architecture::GptNeox => {
                let l = format!("gpt_neox.layers.{layer}");
                if let Some(part) = qkv_part(rest) {
                    // Per head: [q | k | v], head_dim rows each.
                    let rows = (0..h).map(|j| (j * 3 * hd + part * hd, hd)).collect();
                    return vec![Origin {
                        name: format!("{l}.attention.query_key_value.{suffix}"),
                        transpose: false,
                        rows,
                    }];
                }
                let renamed = [
                    ("self_attn.o_proj.", "attention.dense."),
                    ("mlp.up_proj.", "mlp.dense_h_to_4h."),
                    ("mlp.down_proj.", "mlp.dense_4h_to_h."),
                ]
                .iter()
                .find_map(|(from, to)| rest.strip_prefix(from).map(|s| format!("{to}{s}")));
                vec![Origin::whole(format!("{l}.{}", renamed.unwrap_or_else(|| rest.to_string())))]
            }
            Architecture::Gpt2 => {
                let weight = suffix == "weight";
                let conv = |module: &str, rows: Vec<(usize, usize)>| {
                    self.gpt2_prefixes(&format!("h.{layer}.{module}.{suffix}"), weight, rows)
                };
                if let Some(part) = qkv_part(rest) {
                    return conv("attn.c_attn", vec![(part * self.hidden, self.hidden)]);
                }
                for (from, to) in [
                    ("self_attn.o_proj.", "attn.c_proj"),
                    ("mlp.up_proj.", "mlp.c_fc"),
                    ("mlp.down_proj.", "mlp.c_proj"),
                ] {
                    if rest.starts_with(from) {
                        return conv(to, Vec::new());
                    }
                }
                for (from, to) in
                    [("input_layernorm.", "ln_1."), ("post_attention_layernorm.", "ln_2.")]
                {
                    if let Some(s) = rest.strip_prefix(from) {
                        return self.gpt2_prefixes(
                            &format!("h.{layer}.{to}{s}"),
                            false,
                            Vec::new(),
                        );
                    }
                }
                Vec::new()
            }
            Architecture::Gemma3 => gemma3_prefixes(name),
            Architecture::Mixtral => {
                let l = format!("model.layers.{layer}.block_sparse_moe");
                if let Some(s) = rest.strip_prefix("mlp.gate.") {
                    return vec![Origin::whole(format!("{l}.gate.{s}"))];
                }
                let expert = rest.strip_prefix("mlp.experts.").and_then(|r| r.split_once('.'));
                if let Some((e, part)) = expert {
                    let renamed =
                        [("gate_proj.", "w1."), ("up_proj.", "w3."), ("down_proj.", "w2.")]
                            .iter()
                            .find_map(|(from, to)| {
                                part.strip_prefix(from).map(|s| format!("{to}{s}"))
                            });
                    if let Some(p) = renamed {
                        return vec![Origin::whole(format!("{l}.experts.{e}.{p}"))];
                    }
                }
                vec![Origin::whole(name)]
            }
            _ => vec![Origin::whole(name)],
        }
    }

    fn top_level(&self, name: &str) -> Vec<Origin> {
        match self.arch {
            Architecture::GptNeox => {
                let renamed = match name {
                    "lm_head.weight" => "embed_out.weight".to_string(),
                    n => match n.strip_prefix("model.") {
                        Some(rest) => {
                            let rest = rest.replacen("embed_tokens.", "embed_in.", 1).replacen(
                                "norm.",
                                "final_layer_norm.",
                                1,
                            );
                            format!("gpt_neox.{rest}")
                        }
                        None => n.to_string(),
                    },
                };
                vec![Origin::whole(renamed)]
            }
            Architecture::Gpt2 => {
                let renamed = match name {
                    "model.embed_tokens.weight" | "lm_head.weight" => "wte.weight".to_string(),
                    "model.embed_positions.weight" => "wpe.weight".to_string(),
                    n => match n.strip_prefix("model.norm.") {
                        Some(s) => format!("ln_f.{s}"),
                        None => return Vec::new(),
                    },
                };
                self.gpt2_prefixes(&renamed, false, Vec::new())
            }
            Architecture::Gemma3 => gemma3_prefixes(name),
            _ => vec![Origin::whole(name)],
        }
    }

    /// GPT-2 files name tensors with `transformer.` (transformers' own saves) or without (the
    /// original checkpoints).
    fn gpt2_prefixes(&self, name: &str, transpose: bool, rows: Vec<(usize, usize)>) -> Vec<Origin> {
        ["transformer.", ""]
            .iter()
            .map(|p| Origin { name: format!("{p}{name}"), transpose, rows: rows.clone() })
            .collect()
    }
}

/// A Gemma 3 checkpoint with its vision tower keeps the text model under another prefix
/// (`model.language_model.` in transformers 5, `language_model.model.` before).
fn gemma3_prefixes(name: &str) -> Vec<Origin> {
    let mut out = vec![Origin::whole(name)];
    if let Some(rest) = name.strip_prefix("model.") {
        out.push(Origin::whole(format!("model.language_model.{rest}")));
        out.push(Origin::whole(format!("language_model.model.{rest}")));
    }
    out
}

/// `model.layers.N.rest` → (N, rest).
fn split_layer(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("model.layers.")?;
    let (n, rest) = rest.split_once('.')?;
    Some((n.parse().ok()?, rest))
}

/// The checkpoint's tensors under Llama names (see the module's comment).
struct Renamed<'a> {
    inner: VarBuilder<'a>,
    scheme: Scheme,
}

impl Renamed<'_> {
    fn origin(&self, name: &str) -> Option<Origin> {
        self.scheme.origins(name).into_iter().find(|o| self.inner.contains_tensor(&o.name))
    }

    fn read(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        let Some(o) = self.origin(name) else {
            let tried: Vec<String> =
                self.scheme.origins(name).into_iter().map(|o| o.name).collect();
            if tried.is_empty() {
                candle_core::bail!(
                    "{name} has no counterpart in a {:?} checkpoint",
                    self.scheme.arch
                );
            }
            candle_core::bail!(
                "cannot find tensor {} (read as {name} for {:?})",
                tried.join(" or "),
                self.scheme.arch
            );
        };
        let mut t = self.inner.get_unchecked_dtype(&o.name, dtype)?;
        if o.transpose {
            t = t.t()?.contiguous()?;
        }
        if !o.rows.is_empty() {
            let parts = o
                .rows
                .iter()
                .map(|&(start, len)| t.narrow(0, start, len))
                .collect::<Result<Vec<_>>>()?;
            t = Tensor::cat(&parts, 0)?;
        }
        t.to_device(dev)
    }
}

impl SimpleBackend for Renamed<'_> {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let t = self.read(name, dtype, dev)?;
        if t.shape() != &s {
            let from = self.origin(name).map(|o| o.name).unwrap_or_default();
            candle_core::bail!(
                "{from} gives {name} the shape {:?}, expected {:?}",
                t.shape().dims(),
                s.dims()
            );
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.read(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.origin(name).is_some()
    }
}

/// `vb` (the checkpoint's own names) read under Llama names; the Llama family's files already
/// use them and are returned as they are.
pub(crate) fn llama_names<'a>(vb: VarBuilder<'a>, cfg: &ModelConfig) -> Result<VarBuilder<'a>> {
    let arch = cfg.architecture().map_err(candle_core::Error::msg)?;
    if !matches!(
        arch,
        Architecture::Phi3
            | Architecture::GptNeox
            | Architecture::Gpt2
            | Architecture::Gemma3
            | Architecture::Mixtral
    ) {
        return Ok(vb);
    }
    let (dtype, device) = (vb.dtype(), vb.device().clone());
    let scheme = Scheme {
        arch,
        heads: cfg.num_attention_heads,
        kv_heads: cfg.num_kv_heads(),
        head_dim: cfg.head_dim(),
        hidden: cfg.hidden_size,
        inter: cfg.intermediate_size,
    };
    Ok(VarBuilder::from_backend(Box::new(Renamed { inner: vb, scheme }), dtype, device))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheme(arch: Architecture) -> Scheme {
        Scheme { arch, heads: 2, kv_heads: 1, head_dim: 3, hidden: 6, inter: 5 }
    }

    #[test]
    fn fused_projections_are_split_as_each_family_stacks_them() {
        let phi = scheme(Architecture::Phi3);
        let k = &phi.origins("model.layers.1.self_attn.k_proj.weight")[0];
        assert_eq!(
            (k.name.as_str(), &k.rows[..]),
            ("model.layers.1.self_attn.qkv_proj.weight", &[(6, 3)][..])
        );
        let up = &phi.origins("model.layers.0.mlp.up_proj.weight")[0];
        assert_eq!(
            (up.name.as_str(), &up.rows[..]),
            ("model.layers.0.mlp.gate_up_proj.weight", &[(5, 5)][..])
        );
        let neox = Scheme { kv_heads: 2, ..scheme(Architecture::GptNeox) };
        let v = &neox.origins("model.layers.0.self_attn.v_proj.bias")[0];
        assert_eq!(v.name, "gpt_neox.layers.0.attention.query_key_value.bias");
        assert_eq!(v.rows, [(6, 3), (15, 3)]);
        assert_eq!(neox.origins("model.norm.bias")[0].name, "gpt_neox.final_layer_norm.bias");
        assert_eq!(neox.origins("lm_head.weight")[0].name, "embed_out.weight");
        let gpt2 = scheme(Architecture::Gpt2);
        let q = gpt2.origins("model.layers.0.self_attn.q_proj.weight");
        assert_eq!(q[0].name, "transformer.h.0.attn.c_attn.weight");
        assert_eq!(q[1].name, "h.0.attn.c_attn.weight");
        assert!(q[0].transpose && q[0].rows == [(0, 6)]);
        let b = &gpt2.origins("model.layers.0.self_attn.v_proj.bias")[0];
        assert!(!b.transpose && b.rows == [(12, 6)]);
        assert_eq!(
            gpt2.origins("model.layers.0.post_attention_layernorm.weight")[0].name,
            "transformer.h.0.ln_2.weight"
        );
    }

    #[test]
    fn tensors_come_out_split_and_turned_with_their_shapes_checked() -> Result<()> {
        let dev = Device::Cpu;
        // GPT-2's c_attn: [in 2, out 3·2]; row r of q is column r of the stored matrix.
        let c_attn = Tensor::arange(0f32, 12.0, &dev)?.reshape((2, 6))?;
        let vb = VarBuilder::from_tensors(
            [("transformer.h.0.attn.c_attn.weight".to_string(), c_attn)].into(),
            DType::F32,
            &dev,
        );
        let cfg = ModelConfig::from_json(
            &serde_json::json!({"model_type": "gpt2", "n_embd": 2, "n_layer": 1, "n_head": 1,
                "vocab_size": 4})
            .to_string(),
        )
        .unwrap();
        let vb = llama_names(vb, &cfg)?;
        let k = vb.get((2, 2), "model.layers.0.self_attn.k_proj.weight")?;
        assert_eq!(k.to_vec2::<f32>()?, [[2.0, 8.0], [3.0, 9.0]]);
        let e = vb.get((3, 2), "model.layers.0.self_attn.k_proj.weight").unwrap_err().to_string();
        assert!(e.contains("c_attn.weight gives") && e.contains("[2, 2]"), "{e}");
        let e = vb.get(2, "model.layers.0.ln_9.weight").unwrap_err().to_string();
        assert!(e.contains("no counterpart"), "{e}");
        Ok(())
    }
}
