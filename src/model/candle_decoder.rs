//! The decoder on candle's ops: every device (CUDA, Metal, CPU) and the differentiable version
//! that training needs. On the CPU with f32 weights [`super::host`] runs instead.
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

struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn load(vb: VarBuilder, size: usize, eps: f64) -> Result<Self> {
        Ok(Self { weight: vb.get(size, "weight")?, eps: eps as f32 })
    }

    fn forward(&self, x: &Tensor, differentiable: bool) -> Result<Tensor> {
        if differentiable {
            candle_nn::ops::rms_norm_slow(x, &self.weight, self.eps)
        } else {
            candle_nn::ops::rms_norm(x, &self.weight, self.eps)
        }
    }
}

/// What every layer of one forward pass shares: the packing and the per-token rope rows.
struct Pass<'a> {
    segs: &'a [Segment],
    cos: Tensor,
    sin: Tensor,
    differentiable: bool,
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    /// Qwen3 normalises each query/key head before RoPE.
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    window: Option<usize>,
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let (h, kv, hd) = (cfg.num_attention_heads, cfg.num_kv_heads(), cfg.head_dim());
        let (qkv_bias, o_bias) = cfg.projection_bias();
        let qk_norm = if cfg.qk_norm() {
            Some((
                RmsNorm::load(vb.pp("q_norm"), hd, cfg.rms_norm_eps)?,
                RmsNorm::load(vb.pp("k_norm"), hd, cfg.rms_norm_eps)?,
            ))
        } else {
            None
        };
        Ok(Self {
            q_proj: linear_b(cfg.hidden_size, h * hd, qkv_bias, vb.pp("q_proj"))?,
            k_proj: linear_b(cfg.hidden_size, kv * hd, qkv_bias, vb.pp("k_proj"))?,
            v_proj: linear_b(cfg.hidden_size, kv * hd, qkv_bias, vb.pp("v_proj"))?,
            o_proj: linear_b(h * hd, cfg.hidden_size, o_bias, vb.pp("o_proj"))?,
            qk_norm,
            num_heads: h,
            num_kv_heads: kv,
            head_dim: hd,
            window: cfg.attention_window(),
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        pass: &Pass,
        mut caches: Option<&mut [&mut CandleCache]>,
        layer: usize,
    ) -> Result<Tensor> {
        let Pass { segs, cos, sin, differentiable } = pass;
        let (segs, differentiable) = (*segs, *differentiable);
        let n = x.dim(0)?;
        let (h, kv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let group = h / kv;
        let mut q = self.q_proj.forward(x)?.reshape((n, h, hd))?;
        let mut k = self.k_proj.forward(x)?.reshape((n, kv, hd))?;
        if let Some((q_norm, k_norm)) = &self.qk_norm {
            q = q_norm.forward(&q, differentiable)?;
            k = k_norm.forward(&k, differentiable)?;
        }
        let q = q.transpose(0, 1)?.contiguous()?;
        let k = k.transpose(0, 1)?.contiguous()?;
        let v = self.v_proj.forward(x)?.reshape((n, kv, hd))?.transpose(0, 1)?.contiguous()?;
        let q = Rope::apply(&q, cos, sin, differentiable)?;
        let k = Rope::apply(&k, cos, sin, differentiable)?;
        let scale = 1.0 / (hd as f64).sqrt();

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
            let scores = (qs.matmul(&ks.t()?)? * scale)?;
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

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let (hs, is, b) = (cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias);
        Ok(Self {
            gate_proj: linear_b(hs, is, b, vb.pp("gate_proj"))?,
            up_proj: linear_b(hs, is, b, vb.pp("up_proj"))?,
            down_proj: linear_b(is, hs, b, vb.pp("down_proj"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = candle_nn::ops::silu(&self.gate_proj.forward(x)?)?;
        self.down_proj.forward(&(gate * self.up_proj.forward(x)?)?)
    }
}

struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

/// A Llama-family decoder. `load` reads HF weight names; `forward` runs a packed batch.
pub(crate) struct CandleDecoder {
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
    cfg: ModelConfig,
    /// Fused candle kernels have no backward pass; training swaps in composed ops.
    differentiable: bool,
}

impl CandleDecoder {
    pub fn load(vb: VarBuilder, cfg: &ModelConfig, differentiable: bool) -> Result<Self> {
        let m = vb.pp("model");
        let embed_tokens = embedding(cfg.vocab_size, cfg.hidden_size, m.pp("embed_tokens"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = m.pp(format!("layers.{i}"));
                Ok(Block {
                    input_layernorm: RmsNorm::load(
                        l.pp("input_layernorm"),
                        cfg.hidden_size,
                        cfg.rms_norm_eps,
                    )?,
                    self_attn: Attention::load(l.pp("self_attn"), cfg)?,
                    post_attention_layernorm: RmsNorm::load(
                        l.pp("post_attention_layernorm"),
                        cfg.hidden_size,
                        cfg.rms_norm_eps,
                    )?,
                    mlp: Mlp::load(l.pp("mlp"), cfg)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(m.pp("norm"), cfg.hidden_size, cfg.rms_norm_eps)?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::new(embed_tokens.embeddings().clone(), None)
        } else {
            linear_no_bias(cfg.hidden_size, cfg.vocab_size, vb.pp("lm_head"))?
        };
        let scaling = cfg.rope_scaling().map_err(candle_core::Error::msg)?;
        let rope = Rope::new(cfg, scaling, vb.dtype(), vb.device())?;
        Ok(Self { embed_tokens, layers, norm, lm_head, rope, cfg: cfg.clone(), differentiable })
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
        let pass = Pass {
            segs,
            cos: self.rope.cos.index_select(&positions, 0)?,
            sin: self.rope.sin.index_select(&positions, 0)?,
            differentiable: self.differentiable,
        };

        let mut x = self.embed_tokens.forward(tokens)?;
        for (i, block) in self.layers.iter().enumerate() {
            let h = block.input_layernorm.forward(&x, self.differentiable)?;
            let h = block.self_attn.forward(&h, &pass, caches.as_deref_mut(), i)?;
            x = (x + h)?;
            let h = block.post_attention_layernorm.forward(&x, self.differentiable)?;
            x = (&x + block.mlp.forward(&h)?)?;
        }
        self.norm.forward(&x, self.differentiable)
    }

    /// Logits `[rows, vocab]` for selected hidden states.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)
    }
}
