//! The decoder on candle's ops: every device (CUDA, Metal, CPU) and the differentiable version
//! that training needs. On the CPU [`super::host`] runs instead. Every family's blocks are
//! built from its [`Layout`].
//!
//! Unlike candle-transformers' llama (one scalar offset per batch, last-position logits only),
//! every forward pass takes a *packed* list of tokens from many sequences: the linear layers run
//! over all tokens at once, attention runs per sequence against that sequence's own KV cache.
//! So there is no padding, each sequence has its own positions, and a sequence's attention does
//! not depend on which other sequences share the batch.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{embedding, linear_b, linear_no_bias, Embedding, Linear, VarBuilder};

use super::config::ModelConfig;
use super::decoder::Segment;
use super::family::{Activation, Layout, Mlp, Moe, NormKind, QkNorm};
use super::rope::Rope;

/// Per-sequence KV cache, one entry per layer, tensors shaped `[kv_heads, T, head_dim]`.
#[derive(Debug, Clone)]
pub(crate) struct CandleCache {
    layers: Vec<candle_nn::kv_cache::KvCache>,
}

impl CandleCache {
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.current_seq_len())
    }

    /// Bytes of the keys and values stored (memory reports).
    pub fn bytes(&self) -> Result<usize> {
        let mut total = 0;
        for l in &self.layers {
            for t in [l.k()?, l.v()?].into_iter().flatten() {
                total += t.elem_count() * t.dtype().size_in_bytes();
            }
        }
        Ok(total)
    }

    /// A deep copy with room for `max_len` positions, which then grows on its own: a `clone`
    /// would share candle's preallocated buffers, so two clones' appends would overwrite each
    /// other. Lets several continuations follow one context computed once.
    pub fn fork(&self, max_len: usize) -> Result<CandleCache> {
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let mut c = candle_nn::kv_cache::KvCache::new(1, max_len.max(self.len()).max(1));
            if let (Some(k), Some(v)) = (l.k()?, l.v()?) {
                c.append(&k, &v)?;
            }
            layers.push(c);
        }
        Ok(CandleCache { layers })
    }
}

/// A norm as the family computes it: RMSNorm (Gemma's weights already hold their 1) or
/// LayerNorm with bias.
struct Norm {
    weight: Tensor,
    bias: Option<Tensor>,
    eps: f32,
}

impl Norm {
    fn load(vb: VarBuilder, size: usize, eps: f64, layout: &Layout) -> Result<Self> {
        let mut weight = vb.get(size, "weight")?;
        if layout.norm == NormKind::RmsPlusOne {
            // transformers adds the 1 in f32: (1 + w.float()).
            weight = (weight.to_dtype(DType::F32)? + 1.0)?.to_dtype(vb.dtype())?;
        }
        let bias = if layout.norm_bias() { Some(vb.get(size, "bias")?) } else { None };
        Ok(Self { weight, bias, eps: eps as f32 })
    }

    fn forward(&self, x: &Tensor, differentiable: bool) -> Result<Tensor> {
        match (&self.bias, differentiable) {
            (Some(b), false) => candle_nn::ops::layer_norm(x, &self.weight, b, self.eps),
            (Some(b), true) => candle_nn::ops::layer_norm_slow(x, &self.weight, b, self.eps),
            (None, false) => candle_nn::ops::rms_norm(x, &self.weight, self.eps),
            (None, true) => candle_nn::ops::rms_norm_slow(x, &self.weight, self.eps),
        }
    }
}

/// What every layer of one forward pass shares: the packing and the per-token rope rows of each
/// rope table.
struct Pass<'a> {
    segs: &'a [Segment],
    ropes: Vec<(Tensor, Tensor)>,
    differentiable: bool,
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    /// Per head (Qwen3, Gemma 3) or over the whole projection (OLMo 2), before RoPE.
    qk_norm: Option<(Norm, Norm)>,
    qk_norm_whole: bool,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    window: Option<usize>,
    rope: usize,
    rotary: bool,
    scale: f64,
    softcap: Option<f64>,
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &ModelConfig, layout: &Layout, layer: usize) -> Result<Self> {
        let (h, kv, hd) = (cfg.num_attention_heads, cfg.num_kv_heads(), cfg.head_dim());
        let eps = cfg.rms_norm_eps;
        let qk_norm = match layout.qk_norm {
            QkNorm::None => None,
            QkNorm::PerHead => Some((
                Norm::load(vb.pp("q_norm"), hd, eps, layout)?,
                Norm::load(vb.pp("k_norm"), hd, eps, layout)?,
            )),
            QkNorm::Whole => Some((
                Norm::load(vb.pp("q_norm"), h * hd, eps, layout)?,
                Norm::load(vb.pp("k_norm"), kv * hd, eps, layout)?,
            )),
        };
        let (qkv_bias, o_bias) = (layout.qkv_bias, layout.o_bias);
        let at = layout.layers[layer];
        Ok(Self {
            q_proj: linear_b(cfg.hidden_size, h * hd, qkv_bias, vb.pp("q_proj"))?,
            k_proj: linear_b(cfg.hidden_size, kv * hd, qkv_bias, vb.pp("k_proj"))?,
            v_proj: linear_b(cfg.hidden_size, kv * hd, qkv_bias, vb.pp("v_proj"))?,
            o_proj: linear_b(h * hd, cfg.hidden_size, o_bias, vb.pp("o_proj"))?,
            qk_norm,
            qk_norm_whole: layout.qk_norm == QkNorm::Whole,
            num_heads: h,
            num_kv_heads: kv,
            head_dim: hd,
            window: at.window,
            rope: at.rope,
            rotary: layout.rotary_dim > 0,
            scale: layout.attn_scale,
            softcap: layout.attn_softcap,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        pass: &Pass,
        mut caches: Option<&mut [&mut CandleCache]>,
        layer: usize,
    ) -> Result<Tensor> {
        let Pass { segs, ropes, differentiable } = pass;
        let (segs, differentiable) = (*segs, *differentiable);
        let n = x.dim(0)?;
        let (h, kv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let group = h / kv;
        let (mut q, mut k) = (self.q_proj.forward(x)?, self.k_proj.forward(x)?);
        if let (Some((q_norm, k_norm)), true) = (&self.qk_norm, self.qk_norm_whole) {
            q = q_norm.forward(&q, differentiable)?;
            k = k_norm.forward(&k, differentiable)?;
        }
        let mut q = q.reshape((n, h, hd))?;
        let mut k = k.reshape((n, kv, hd))?;
        if let (Some((q_norm, k_norm)), false) = (&self.qk_norm, self.qk_norm_whole) {
            q = q_norm.forward(&q, differentiable)?;
            k = k_norm.forward(&k, differentiable)?;
        }
        let mut q = q.transpose(0, 1)?.contiguous()?;
        let mut k = k.transpose(0, 1)?.contiguous()?;
        let v = self.v_proj.forward(x)?.reshape((n, kv, hd))?.transpose(0, 1)?.contiguous()?;
        if self.rotary {
            let (cos, sin) = &ropes[self.rope];
            q = Rope::apply(&q, cos, sin, differentiable)?;
            k = Rope::apply(&k, cos, sin, differentiable)?;
        }

        let mut outs = Vec::with_capacity(segs.len());
        let mut start = 0;
        for (i, seg) in segs.iter().enumerate() {
            let qs = q.narrow(1, start, seg.len)?;
            let mut ks = k.narrow(1, start, seg.len)?.contiguous()?;
            let mut vs = v.narrow(1, start, seg.len)?.contiguous()?;
            if let Some(caches) = caches.as_deref_mut() {
                let (kc, vc) = caches[i].layers[layer].append(&ks, &vs)?;
                ks = kc.contiguous()?;
                vs = vc.contiguous()?;
            }
            let total = ks.dim(1)?;
            // Query heads sharing a KV head are stacked so K/V are never copied per head.
            let qs = qs.contiguous()?.reshape((kv, group * seg.len, hd))?;
            let mut scores = (qs.matmul(&ks.t()?)? * self.scale)?;
            if let Some(cap) = self.softcap {
                scores = ((scores / cap)?.tanh()? * cap)?;
            }
            let windowed = self.window.is_some_and(|w| total > w);
            let scores = if seg.len > 1 || windowed {
                let mask = causal_mask(seg.len, total, self.window, x.device())?
                    .to_dtype(scores.dtype())?;
                scores.reshape((kv, group, seg.len, total))?.broadcast_add(&mask)?.reshape((
                    kv,
                    group * seg.len,
                    total,
                ))?
            } else {
                scores
            };
            let probs = if differentiable {
                candle_nn::ops::softmax(&scores, D::Minus1)?
            } else {
                candle_nn::ops::softmax_last_dim(&scores)?
            };
            outs.push(probs.matmul(&vs)?.reshape((h, seg.len, hd))?);
            start += seg.len;
        }
        let out = Tensor::cat(&outs, 1)?.transpose(0, 1)?.reshape((n, h * hd))?;
        self.o_proj.forward(&out)
    }
}

/// Additive mask `[n, total]`: query i (the i-th new token, at position `total - n + i`) sees
/// keys up to its own position and, with a window, only the last `window` of them.
fn causal_mask(n: usize, total: usize, window: Option<usize>, device: &Device) -> Result<Tensor> {
    let past = total - n;
    let visible = |i: usize, j: usize| j <= past + i && window.is_none_or(|w| past + i - j < w);
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..total).map(move |j| if visible(i, j) { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Tensor::from_vec(mask, (n, total), device)
}

struct FeedForward {
    /// `None` for a plain (ungated) MLP.
    gate_proj: Option<Linear>,
    up_proj: Linear,
    down_proj: Linear,
    act: Activation,
}

impl FeedForward {
    fn load(vb: VarBuilder, cfg: &ModelConfig, layout: &Layout) -> Result<Self> {
        let (hs, is, b) = (cfg.hidden_size, cfg.intermediate_size, layout.mlp_bias);
        let (gated, act) = match layout.mlp {
            Mlp::Gated(a) => (true, a),
            Mlp::Plain(a) => (false, a),
        };
        Ok(Self {
            gate_proj: if gated { Some(linear_b(hs, is, b, vb.pp("gate_proj"))?) } else { None },
            up_proj: linear_b(hs, is, b, vb.pp("up_proj"))?,
            down_proj: linear_b(is, hs, b, vb.pp("down_proj"))?,
            act,
        })
    }

    fn activate(&self, x: &Tensor) -> Result<Tensor> {
        match self.act {
            Activation::Silu => candle_nn::ops::silu(x),
            Activation::GeluTanh => x.gelu(),
            Activation::GeluErf => x.gelu_erf(),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let up = self.up_proj.forward(x)?;
        let hidden = match &self.gate_proj {
            Some(gate) => (self.activate(&gate.forward(x)?)? * up)?,
            None => self.activate(&up)?,
        };
        self.down_proj.forward(&hidden)
    }
}

/// A mixture of SwiGLU experts (see [`Moe`]): routed on the host, each expert run once over the
/// rows that picked it, its weighted output added back row by row in ascending expert order.
struct Experts {
    router: Linear,
    experts: Vec<FeedForward>,
    /// Qwen2-MoE's always-on expert and its one-row gate.
    shared: Option<(FeedForward, Linear)>,
    moe: Moe,
}

impl Experts {
    fn load(vb: VarBuilder, cfg: &ModelConfig, moe: Moe) -> Result<Self> {
        let hs = cfg.hidden_size;
        let expert = |vb: VarBuilder, inter: usize| -> Result<FeedForward> {
            Ok(FeedForward {
                gate_proj: Some(linear_no_bias(hs, inter, vb.pp("gate_proj"))?),
                up_proj: linear_no_bias(hs, inter, vb.pp("up_proj"))?,
                down_proj: linear_no_bias(inter, hs, vb.pp("down_proj"))?,
                act: Activation::Silu,
            })
        };
        let experts = (0..moe.experts)
            .map(|e| expert(vb.pp(format!("experts.{e}")), moe.inter))
            .collect::<Result<Vec<_>>>()?;
        let shared = match moe.shared {
            Some(width) => Some((
                expert(vb.pp("shared_expert"), width)?,
                linear_no_bias(hs, 1, vb.pp("shared_expert_gate"))?,
            )),
            None => None,
        };
        Ok(Self { router: linear_no_bias(hs, moe.experts, vb.pp("gate"))?, experts, shared, moe })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let logits = self.router.forward(x)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let mut routed: Vec<(Vec<u32>, Vec<f32>)> =
            vec![(Vec::new(), Vec::new()); self.experts.len()];
        for (r, l) in logits.iter().enumerate() {
            for (e, w) in self.moe.route(l) {
                routed[e].0.push(r as u32);
                routed[e].1.push(w);
            }
        }
        let mut out = x.zeros_like()?;
        for (expert, (rows, weights)) in self.experts.iter().zip(routed) {
            if rows.is_empty() {
                continue;
            }
            let n = rows.len();
            let rows = Tensor::from_vec(rows, n, x.device())?;
            let weights = Tensor::from_vec(weights, (n, 1), x.device())?.to_dtype(x.dtype())?;
            let y = expert.forward(&x.index_select(&rows, 0)?)?.broadcast_mul(&weights)?;
            out = out.index_add(&rows, &y, 0)?;
        }
        if let Some((expert, gate)) = &self.shared {
            let g = candle_nn::ops::sigmoid(&gate.forward(x)?)?;
            out = (out + expert.forward(x)?.broadcast_mul(&g)?)?;
        }
        Ok(out)
    }
}

/// A block's MLP: dense, or a mixture of experts.
enum Ffn {
    Dense(FeedForward),
    Moe(Box<Experts>),
}

impl Ffn {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Ffn::Dense(f) => f.forward(x),
            Ffn::Moe(m) => m.forward(x),
        }
    }
}

struct Block {
    before_attention: Option<Norm>,
    self_attn: Attention,
    after_attention: Option<Norm>,
    before_mlp: Option<Norm>,
    mlp: Ffn,
    after_mlp: Option<Norm>,
}

fn maybe_norm(norm: &Option<Norm>, x: Tensor, differentiable: bool) -> Result<Tensor> {
    match norm {
        Some(n) => n.forward(&x, differentiable),
        None => Ok(x),
    }
}

/// A decoder of any family [`Layout`] describes. `load` reads Llama-style weight names
/// ([`super::names`] renames the others); `forward` runs a packed batch.
pub(crate) struct CandleDecoder {
    embed_tokens: Embedding,
    embed_positions: Option<Embedding>,
    layers: Vec<Block>,
    norm: Norm,
    lm_head: Linear,
    ropes: Vec<Rope>,
    cfg: ModelConfig,
    layout: Layout,
    /// Fused candle kernels have no backward pass; training swaps in composed ops.
    differentiable: bool,
}

impl CandleDecoder {
    pub fn load(
        vb: VarBuilder,
        cfg: &ModelConfig,
        layout: Layout,
        differentiable: bool,
    ) -> Result<Self> {
        let m = vb.pp("model");
        let (hs, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        let embed_tokens = embedding(cfg.vocab_size, hs, m.pp("embed_tokens"))?;
        let embed_positions = if layout.learned_positions {
            Some(embedding(cfg.max_position_embeddings, hs, m.pp("embed_positions"))?)
        } else {
            None
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = m.pp(format!("layers.{i}"));
                let norm = |on: bool, name: &str| {
                    on.then(|| Norm::load(l.pp(name), hs, eps, &layout)).transpose()
                };
                let n = layout.norms;
                Ok(Block {
                    before_attention: norm(n.before_attention, "input_layernorm")?,
                    self_attn: Attention::load(l.pp("self_attn"), cfg, &layout, i)?,
                    after_attention: norm(n.after_attention, "post_attention_layernorm")?,
                    before_mlp: n
                        .before_mlp
                        .map(|name| Norm::load(l.pp(name), hs, eps, &layout))
                        .transpose()?,
                    mlp: match layout.moe {
                        Some(moe) if layout.layers[i].sparse => {
                            Ffn::Moe(Box::new(Experts::load(l.pp("mlp"), cfg, moe)?))
                        }
                        _ => Ffn::Dense(FeedForward::load(l.pp("mlp"), cfg, &layout)?),
                    },
                    after_mlp: norm(n.after_mlp, "post_feedforward_layernorm")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = Norm::load(m.pp("norm"), hs, eps, &layout)?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::new(embed_tokens.embeddings().clone(), None)
        } else {
            linear_no_bias(hs, cfg.vocab_size, vb.pp("lm_head"))?
        };
        let ropes = if layout.rotary_dim > 0 {
            layout
                .ropes
                .iter()
                .map(|t| {
                    Rope::new(cfg, layout.rotary_dim, t, layout.context, vb.dtype(), vb.device())
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        Ok(Self {
            embed_tokens,
            embed_positions,
            layers,
            norm,
            lm_head,
            ropes,
            cfg: cfg.clone(),
            layout,
            differentiable,
        })
    }

    pub fn device(&self) -> &Device {
        self.embed_tokens.embeddings().device()
    }

    pub fn dtype(&self) -> DType {
        self.embed_tokens.embeddings().dtype()
    }

    /// A cache for one sequence of at most `max_len` tokens (it grows if exceeded).
    pub fn new_cache(&self, max_len: usize) -> CandleCache {
        let layers = (0..self.cfg.num_hidden_layers)
            .map(|_| candle_nn::kv_cache::KvCache::new(1, max_len.max(1)))
            .collect();
        CandleCache { layers }
    }

    /// See [`super::Decoder::forward`]; the caller has checked the arguments.
    pub fn forward(
        &self,
        tokens: &Tensor,
        segs: &[Segment],
        mut caches: Option<&mut [&mut CandleCache]>,
    ) -> Result<Tensor> {
        let n: usize = segs.iter().map(|s| s.len).sum();
        let positions: Vec<u32> =
            segs.iter().flat_map(|s| (s.offset..s.offset + s.len).map(|p| p as u32)).collect();
        let positions = Tensor::from_vec(positions, n, self.device())?;
        let ropes = self
            .ropes
            .iter()
            .map(|r| Ok((r.cos.index_select(&positions, 0)?, r.sin.index_select(&positions, 0)?)))
            .collect::<Result<Vec<_>>>()?;
        let pass = Pass { segs, ropes, differentiable: self.differentiable };
        let d = self.differentiable;

        let mut x = self.embed_tokens.forward(tokens)?;
        if let Some(scale) = self.layout.embed_scale {
            x = (x * scale)?;
        }
        if let Some(table) = &self.embed_positions {
            x = (x + table.forward(&positions)?)?;
        }
        for (i, block) in self.layers.iter().enumerate() {
            let h = maybe_norm(&block.before_attention, x.clone(), d)?;
            let attn = block.self_attn.forward(&h, &pass, caches.as_deref_mut(), i)?;
            let attn = maybe_norm(&block.after_attention, attn, d)?;
            if self.layout.parallel_residual {
                let h = maybe_norm(&block.before_mlp, x.clone(), d)?;
                let mlp = maybe_norm(&block.after_mlp, block.mlp.forward(&h)?, d)?;
                x = ((mlp + attn)? + x)?;
            } else {
                x = (x + attn)?;
                let h = maybe_norm(&block.before_mlp, x.clone(), d)?;
                x = (&x + maybe_norm(&block.after_mlp, block.mlp.forward(&h)?, d)?)?;
            }
        }
        self.norm.forward(&x, d)
    }

    /// Logits `[rows, vocab]` for selected hidden states.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let logits = self.lm_head.forward(hidden)?;
        match self.layout.final_softcap {
            Some(cap) => (logits / cap)?.tanh()? * cap,
            None => Ok(logits),
        }
    }
}
