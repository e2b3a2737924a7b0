//! Llama-family decoder over packed, ragged batches.
//!
//! Unlike candle-transformers' llama (one scalar offset per batch, last-position logits only),
//! every forward pass takes a *packed* list of tokens from many sequences: the linear layers run
//! over all tokens at once, attention runs per sequence against that sequence's own KV cache.
//! So there is no padding, each sequence has its own positions, and a sequence's attention does
//! not depend on which other sequences share the batch.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{embedding, linear_b, linear_no_bias, Embedding, Linear, VarBuilder};

use super::config::LlamaConfig;

/// One sequence's slice of a packed batch: `len` new tokens whose first position is `offset`
/// (equal to the number of tokens already in that sequence's cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub len: usize,
    pub offset: usize,
}

/// Per-sequence KV cache, one entry per layer, tensors shaped `[kv_heads, T, head_dim]`.
#[derive(Debug, Clone)]
pub struct SeqCache {
    layers: Vec<candle_nn::kv_cache::KvCache>,
}

impl SeqCache {
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.current_seq_len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

/// cos/sin tables for every position up to the model's context, indexed per token.
struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    fn new(cfg: &LlamaConfig, dtype: DType, device: &Device) -> Result<Self> {
        let half = cfg.head_dim() / 2;
        let theta = cfg.rope_theta();
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| (1.0 / theta.powf(2.0 * i as f64 / cfg.head_dim() as f64)) as f32)
            .collect();
        let positions = cfg.max_position_embeddings;
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let t = Tensor::arange(0u32, positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((positions, 1))?;
        let freqs = t.broadcast_mul(&inv_freq)?;
        Ok(Self { cos: freqs.cos()?.to_dtype(dtype)?, sin: freqs.sin()?.to_dtype(dtype)? })
    }

    /// `x` is `[heads, N, head_dim]`; `cos`/`sin` are `[N, head_dim/2]` gathered by position.
    fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor, differentiable: bool) -> Result<Tensor> {
        if differentiable {
            let half = x.dim(D::Minus1)? / 2;
            let x1 = x.narrow(D::Minus1, 0, half)?;
            let x2 = x.narrow(D::Minus1, half, half)?;
            let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(0)?;
            let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(0)?;
            let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
            x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
        } else {
            candle_nn::rotary_emb::rope(&x.unsqueeze(0)?.contiguous()?, cos, sin)?.squeeze(0)
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
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &LlamaConfig) -> Result<Self> {
        let (h, kv, hd) = (cfg.num_attention_heads, cfg.num_kv_heads(), cfg.head_dim());
        let bias = cfg.attention_bias;
        Ok(Self {
            q_proj: linear_b(cfg.hidden_size, h * hd, bias, vb.pp("q_proj"))?,
            k_proj: linear_b(cfg.hidden_size, kv * hd, bias, vb.pp("k_proj"))?,
            v_proj: linear_b(cfg.hidden_size, kv * hd, bias, vb.pp("v_proj"))?,
            o_proj: linear_b(h * hd, cfg.hidden_size, bias, vb.pp("o_proj"))?,
            num_heads: h,
            num_kv_heads: kv,
            head_dim: hd,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        pass: &Pass,
        mut caches: Option<&mut [&mut SeqCache]>,
        layer: usize,
    ) -> Result<Tensor> {
        let Pass { segs, cos, sin, differentiable } = pass;
        let (segs, differentiable) = (*segs, *differentiable);
        let n = x.dim(0)?;
        let (h, kv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let group = h / kv;
        let heads_first = |t: Tensor, heads: usize| t.reshape((n, heads, hd))?.transpose(0, 1);
        let q = heads_first(self.q_proj.forward(x)?, h)?.contiguous()?;
        let k = heads_first(self.k_proj.forward(x)?, kv)?.contiguous()?;
        let v = heads_first(self.v_proj.forward(x)?, kv)?.contiguous()?;
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
            let scores = if seg.len > 1 {
                let mask = causal_mask(seg.len, total, x.device())?.to_dtype(scores.dtype())?;
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

/// Additive mask `[n, total]`: query i (the i-th new token) sees keys up to `total - n + i`.
fn causal_mask(n: usize, total: usize, device: &Device) -> Result<Tensor> {
    let past = total - n;
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..total).map(move |j| if j <= past + i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Tensor::from_vec(mask, (n, total), device)
}

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn load(vb: VarBuilder, cfg: &LlamaConfig) -> Result<Self> {
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

/// A Llama decoder. `load` reads HF weight names; `forward` runs a packed batch.
pub struct Llama {
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
    cfg: LlamaConfig,
    /// Fused candle kernels have no backward pass; training swaps in composed ops.
    differentiable: bool,
}

impl Llama {
    pub fn load(vb: VarBuilder, cfg: &LlamaConfig) -> Result<Self> {
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
        let rope = Rope::new(cfg, vb.dtype(), vb.device())?;
        Ok(Self { embed_tokens, layers, norm, lm_head, rope, cfg: cfg.clone(), differentiable: false })
    }

    /// Switches to ops that support backpropagation (slower; for training only).
    pub fn differentiable(mut self) -> Self {
        self.differentiable = true;
        self
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        self.embed_tokens.embeddings().device()
    }

    pub fn dtype(&self) -> DType {
        self.embed_tokens.embeddings().dtype()
    }

    /// A cache for one sequence of at most `max_len` tokens (it grows if exceeded).
    pub fn new_cache(&self, max_len: usize) -> SeqCache {
        let layers = (0..self.cfg.num_hidden_layers)
            .map(|_| candle_nn::kv_cache::KvCache::new(1, max_len.max(1)))
            .collect();
        SeqCache { layers }
    }

    /// Runs `tokens` (`[N]`, u32, the segments' tokens back to back) and returns the final
    /// normalised hidden states `[N, hidden]`. With `caches` (one per segment) keys and values
    /// are appended to each sequence's cache; without, every segment is a whole sequence.
    pub fn forward(
        &self,
        tokens: &Tensor,
        segs: &[Segment],
        mut caches: Option<&mut [&mut SeqCache]>,
    ) -> Result<Tensor> {
        let n: usize = segs.iter().map(|s| s.len).sum();
        if tokens.dim(0)? != n {
            candle_core::bail!("{} tokens for segments totalling {n}", tokens.dim(0)?);
        }
        if let Some(c) = caches.as_deref() {
            if c.len() != segs.len() {
                candle_core::bail!("{} caches for {} segments", c.len(), segs.len());
            }
        }
        let max_pos = segs.iter().map(|s| s.offset + s.len).max().unwrap_or(0);
        if max_pos > self.cfg.max_position_embeddings {
            candle_core::bail!(
                "sequence of {max_pos} tokens exceeds the model's context of {}",
                self.cfg.max_position_embeddings
            );
        }
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
