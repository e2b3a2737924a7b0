//! The packed step on the CPU, as the CUDA backend runs it: every operation once for all rows
//! of the step (one launch each, counted in [`Launches`]), the kernels' references for the
//! custom operations and a plain row-by-row product for cuBLAS's. A step's rows are tokens of
//! any mix of sequences, each at its own (slot, position): all rows' keys and values are
//! written before any row attends, so a prompt's tokens can share one step (prefill) and
//! decoding rows join them (continuous batching).
//!
//! Llama-style decoders only (RMSNorm before attention and MLP, SiLU-gated MLP, one rope
//! table, no biases or q/k norms, full attention); others are refused at construction.

use std::collections::HashMap;

use candle_core::{DType, Tensor};

use super::reference::{self, Heads, RowAt};
use crate::error::{Error, Result, TensorContext};
use crate::model::config::ModelConfig;
use crate::model::family::{Activation, Layout, Mlp, NormKind, QkNorm};
use crate::model::rope::inv_freq;

/// Threads a block the kernels are launched with (the references follow the same trees).
pub const THREADS: usize = 128;

/// Launches enqueued, counted where each operation is issued: a kernel or a cuBLAS call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Launches(pub usize);

struct Layer {
    attn_norm: Vec<f32>,
    /// `[q | k | v]` rows, `[(q + 2 kv) · head_dim][hidden]`.
    qkv: Vec<f32>,
    o: Vec<f32>,
    mlp_norm: Vec<f32>,
    /// `[gate | up]` rows, `[2 · inter][hidden]`.
    gate_up: Vec<f32>,
    down: Vec<f32>,
}

/// A model's weights, rope tables and bf16 KV caches (`slots` sequences of `max_len`
/// positions each), and the step over them.
pub struct ReferenceStep {
    hidden: usize,
    inter: usize,
    vocab: usize,
    eps: f32,
    scale: f32,
    heads: Heads,
    embed: Vec<f32>,
    layers: Vec<Layer>,
    final_norm: Vec<f32>,
    lm_head: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    k_cache: Vec<Vec<u16>>,
    v_cache: Vec<Vec<u16>>,
}

fn model_error(message: String) -> Error {
    Error::Model { origin: "for the packed step".to_string(), message }
}

fn unsupported(what: &str) -> Error {
    model_error(format!("the packed CUDA step runs Llama-style decoders only: {what}"))
}

impl ReferenceStep {
    /// From HF-named tensors (`model.layers.N.self_attn.q_proj.weight`, …).
    pub fn new(
        cfg: &ModelConfig,
        tensors: &HashMap<String, Tensor>,
        slots: usize,
        max_len: usize,
    ) -> Result<Self> {
        let layout = Layout::of(cfg).map_err(|e| model_error(e.to_string()))?;
        if layout.norm != NormKind::Rms
            || !layout.norms.before_attention
            || layout.norms.after_attention
            || layout.norms.after_mlp
            || layout.parallel_residual
        {
            return Err(unsupported("its norms are not Llama's"));
        }
        if layout.mlp != Mlp::Gated(Activation::Silu) || layout.moe.is_some() {
            return Err(unsupported("its MLP is not SiLU-gated and dense"));
        }
        if layout.qkv_bias || layout.o_bias || layout.mlp_bias || layout.qk_norm != QkNorm::None {
            return Err(unsupported("it has biases or q/k norms"));
        }
        if layout.ropes.len() != 1
            || layout.layers.iter().any(|l| l.window.is_some())
            || layout.embed_scale.is_some()
            || layout.attn_softcap.is_some()
            || layout.final_softcap.is_some()
            || layout.learned_positions
        {
            return Err(unsupported("it has windows, several rope tables or soft caps"));
        }
        let get = |name: &str| -> Result<Vec<f32>> {
            let t = tensors.get(name).ok_or_else(|| model_error(format!("no tensor {name}")))?;
            t.to_dtype(DType::F32).and_then(|t| t.flatten_all()?.to_vec1::<f32>()).ctx(name)
        };
        let cat = |names: &[String]| -> Result<Vec<f32>> {
            Ok(names.iter().map(|n| get(n)).collect::<Result<Vec<_>>>()?.concat())
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let p = |s: &str| format!("model.layers.{i}.{s}.weight");
                Ok(Layer {
                    attn_norm: get(&p("input_layernorm"))?,
                    qkv: cat(&[
                        p("self_attn.q_proj"),
                        p("self_attn.k_proj"),
                        p("self_attn.v_proj"),
                    ])?,
                    o: get(&p("self_attn.o_proj"))?,
                    mlp_norm: get(&p("post_attention_layernorm"))?,
                    gate_up: cat(&[p("mlp.gate_proj"), p("mlp.up_proj")])?,
                    down: get(&p("mlp.down_proj"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed = get("model.embed_tokens.weight")?;
        let lm_head = if cfg.tie_word_embeddings { embed.clone() } else { get("lm_head.weight")? };
        let (dim, kv) = (cfg.head_dim(), cfg.num_kv_heads());
        let freqs = inv_freq(cfg, layout.rotary_dim, &layout.ropes[0]);
        let heads = Heads { q: cfg.num_attention_heads, kv, dim, half: freqs.len(), max_len };
        // As the host decoder's tables: f32 position × f32 inverse frequency.
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for p in 0..max_len {
            for f in &freqs {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let cache = slots * kv * max_len * dim;
        Ok(Self {
            hidden: cfg.hidden_size,
            inter: cfg.intermediate_size,
            vocab: cfg.vocab_size,
            eps: cfg.rms_norm_eps as f32,
            scale: layout.attn_scale as f32,
            heads,
            embed,
            layers,
            final_norm: get("model.norm.weight")?,
            lm_head,
            cos,
            sin,
            k_cache: vec![vec![0; cache]; cfg.num_hidden_layers],
            v_cache: vec![vec![0; cache]; cfg.num_hidden_layers],
        })
    }

    /// One step: row i is token `tokens[i]` of the sequence in slot `at[i].slot` at position
    /// `at[i].pos`. Returns every row's logits (`[rows][vocab]`), their greedy tokens, and the
    /// launches the step enqueued.
    pub fn step(&mut self, tokens: &[u32], at: &[RowAt]) -> (Vec<f32>, Vec<u32>, Launches) {
        assert_eq!(tokens.len(), at.len());
        let (rows, hs, heads) = (tokens.len(), self.hidden, self.heads);
        let mut launches = Launches(0);
        let mut launch = || launches.0 += 1;

        launch(); // embedding gather
        let mut residual: Vec<f32> = tokens
            .iter()
            .flat_map(|&t| self.embed[t as usize * hs..][..hs].iter().copied())
            .collect();
        let mut normed = vec![0f32; rows * hs];
        let mut delta: Option<Vec<f32>> = None;
        for (l, layer) in self.layers.iter().enumerate() {
            launch();
            add_rms_norm(&mut residual, delta.as_deref(), &layer.attn_norm, &mut normed, self.eps);
            launch();
            let mut qkv = gemm(&normed, &layer.qkv, hs);
            launch();
            let (kc, vc) = (&mut self.k_cache[l], &mut self.v_cache[l]);
            for (row, &a) in qkv.chunks_exact_mut(heads.qkv_width()).zip(at) {
                reference::rope_kv_write(row, &self.cos, &self.sin, a, heads, kc, vc);
            }
            launch();
            let mut attn = vec![0f32; rows * heads.q * heads.dim];
            for ((row, &a), out) in qkv
                .chunks_exact(heads.qkv_width())
                .zip(at)
                .zip(attn.chunks_exact_mut(heads.q * heads.dim))
            {
                reference::decode_attention(row, kc, vc, a, heads, self.scale, out, THREADS);
            }
            launch();
            let o = gemm(&attn, &layer.o, heads.q * heads.dim);
            launch();
            add_rms_norm(&mut residual, Some(&o), &layer.mlp_norm, &mut normed, self.eps);
            launch();
            let gu = gemm(&normed, &layer.gate_up, hs);
            launch();
            let mut act = vec![0f32; rows * self.inter];
            for (g, o) in gu.chunks_exact(2 * self.inter).zip(act.chunks_exact_mut(self.inter)) {
                reference::silu_mul(g, o);
            }
            launch();
            delta = Some(gemm(&act, &layer.down, self.inter));
        }
        launch();
        add_rms_norm(&mut residual, delta.as_deref(), &self.final_norm, &mut normed, self.eps);
        launch();
        let logits = gemm(&normed, &self.lm_head, hs);
        launch();
        let next = logits.chunks_exact(self.vocab).map(reference::argmax).collect();
        (logits, next, launches)
    }
}

/// `add_rms_norm` over every row.
fn add_rms_norm(x: &mut [f32], delta: Option<&[f32]>, weight: &[f32], out: &mut [f32], eps: f32) {
    let hs = weight.len();
    for (r, (x, o)) in x.chunks_exact_mut(hs).zip(out.chunks_exact_mut(hs)).enumerate() {
        let d = delta.map(|d| &d[r * hs..][..hs]);
        reference::add_rms_norm(x, d, weight, o, eps, THREADS);
    }
}

/// `x` (`[rows][k]`) times `w`ᵀ (`w`: `[n][k]`): what the step asks cuBLAS for, each output
/// one sum over k in order (cuBLAS's order differs; its results are compared within rounding).
fn gemm(x: &[f32], w: &[f32], k: usize) -> Vec<f32> {
    let n = w.len() / k;
    let mut out = Vec::with_capacity(x.len() / k * n);
    for xr in x.chunks_exact(k) {
        out.extend(w.chunks_exact(k).map(|wr| xr.iter().zip(wr).fold(0f32, |s, (a, b)| s + a * b)));
    }
    out
}
