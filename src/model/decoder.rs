//! Decoder-only transformer (every family [`super::family::Layout`] describes) over packed,
//! ragged batches.
//!
//! Every forward pass takes a *packed* list of tokens from many sequences: the linear layers
//! run over all tokens at once, attention runs per sequence against that sequence's own KV
//! cache. So there is no padding, each sequence has its own positions, and a sequence's
//! numbers do not depend on which other sequences share the batch.
//!
//! Two implementations sit behind this one type. On the CPU (f32, bf16, f16 or Q8_0 weights) the
//! host decoder ([`super::host`]) runs on pre-packed weights with the project's own kernels, which
//! keep every reduction in an order that does not depend on the batch; everywhere else (CUDA,
//! Metal, training) the candle decoder runs on candle's ops.

use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use super::candle_decoder::{CandleCache, CandleDecoder};
use super::config::ModelConfig;
use super::family::Layout;
pub use super::host::KvDtype;
use super::host::{HostCache, HostDecoder, MatrixFormat, StoredTensors};
use crate::device::WeightType;

/// One sequence's slice of a packed batch: `len` new tokens whose first position is `offset`
/// (equal to the number of tokens already in that sequence's cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub len: usize,
    pub offset: usize,
}

/// Which implementation runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The host kernels on the CPU (f32, bf16, f16 and Q8_0 weights), candle otherwise.
    #[default]
    Auto,
    /// candle's ops everywhere (the reference the host kernels are checked against too).
    Candle,
    /// candle's ops with backpropagation support (slower; for training only).
    CandleDifferentiable,
}

/// One sequence's KV cache, made by [`Decoder::new_cache`] for that decoder.
#[derive(Debug, Clone)]
pub struct SeqCache(CacheKind);

#[derive(Debug, Clone)]
enum CacheKind {
    Candle(CandleCache),
    Host(HostCache),
}

impl SeqCache {
    /// Tokens already in the cache.
    pub fn len(&self) -> usize {
        match &self.0 {
            CacheKind::Candle(c) => c.len(),
            CacheKind::Host(c) => c.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the keys and values this cache stores, a shared prefix (the host decoder's,
    /// read in place) not counted: that is [`SharedCache::bytes`].
    pub fn bytes(&self) -> Result<usize> {
        match &self.0 {
            CacheKind::Candle(c) => c.bytes(),
            CacheKind::Host(c) => Ok(c.bytes()),
        }
    }

    /// An independent copy with room for `max_len` positions, which then grows on its own:
    /// several continuations can follow one context computed once.
    pub fn fork(&self, max_len: usize) -> Result<SeqCache> {
        Ok(SeqCache(match &self.0 {
            CacheKind::Candle(c) => CacheKind::Candle(c.fork(max_len)?),
            CacheKind::Host(c) => CacheKind::Host(c.fork(max_len)),
        }))
    }
}

/// A prefix's KV cache, computed once and continued by many sequences: the host decoder reads it
/// in place; the candle decoder gives each continuation a copy.
#[derive(Debug, Clone)]
pub struct SharedCache(SharedKind);

#[derive(Debug, Clone)]
enum SharedKind {
    Candle(CandleCache),
    Host(Arc<HostCache>),
}

impl SeqCache {
    /// Freezes this cache as a prefix others continue.
    pub fn into_shared(self) -> SharedCache {
        SharedCache(match self.0 {
            CacheKind::Candle(c) => SharedKind::Candle(c),
            CacheKind::Host(c) => SharedKind::Host(Arc::new(c)),
        })
    }
}

impl SharedCache {
    /// Tokens in the prefix.
    pub fn len(&self) -> usize {
        match &self.0 {
            SharedKind::Candle(c) => c.len(),
            SharedKind::Host(c) => c.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the prefix's keys and values, stored once however many continue it.
    pub fn bytes(&self) -> Result<usize> {
        match &self.0 {
            SharedKind::Candle(c) => c.bytes(),
            SharedKind::Host(c) => Ok(c.bytes()),
        }
    }

    /// A cache holding the prefix, with room for `max_len` positions in all.
    pub fn continuation(&self, max_len: usize) -> Result<SeqCache> {
        Ok(SeqCache(match &self.0 {
            SharedKind::Candle(c) => CacheKind::Candle(c.fork(max_len)?),
            SharedKind::Host(c) => {
                CacheKind::Host(HostCache::after(c, max_len.saturating_sub(c.len())))
            }
        }))
    }
}

enum Inner {
    Candle(Box<CandleDecoder>),
    Host(Box<HostDecoder>),
}

/// A decoder of any supported family. `load` reads Llama-style weight names (see
/// [`super::names`]); `forward` runs a packed batch.
pub struct Decoder {
    inner: Inner,
    cfg: ModelConfig,
    /// Positions a sequence may reach (the config's, or less where the family needs it).
    context: usize,
}

impl Decoder {
    /// Loads with [`Backend::Auto`].
    pub fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let weights = WeightType::Float(vb.dtype());
        Self::load_with(vb, cfg, Backend::Auto, weights)
    }

    /// Loads with `backend`. `weights` says how the host kernels hold the matrices: Q8_0 is
    /// quantised here from `vb` (read as f32) and needs the host kernels; a float type is `vb`'s
    /// own dtype.
    pub fn load_with(
        vb: VarBuilder,
        cfg: &ModelConfig,
        backend: Backend,
        weights: WeightType,
    ) -> Result<Self> {
        Self::load_stored(vb, cfg, backend, weights, None)
    }

    /// As [`Decoder::load_with`]; [`WeightType::Stored`] keeps the matrices `stored` holds (a
    /// GGUF's quantised tensors) in their own types.
    pub(crate) fn load_stored(
        vb: VarBuilder,
        cfg: &ModelConfig,
        backend: Backend,
        weights: WeightType,
        stored: Option<&dyn StoredTensors>,
    ) -> Result<Self> {
        let on_host = backend == Backend::Auto && vb.device().is_cpu();
        let host = match weights {
            WeightType::Q8_0 if on_host => Some(MatrixFormat::Q8_0),
            WeightType::Q8_0 => candle_core::bail!("{}", crate::error::Error::Q8NeedsHost),
            WeightType::Stored | WeightType::StoredExact if on_host && stored.is_some() => {
                Some(MatrixFormat::Gguf { int8: weights == WeightType::Stored })
            }
            WeightType::Stored | WeightType::StoredExact if on_host => {
                candle_core::bail!(
                    "--dtype {} keeps a GGUF file's types; this model is not a GGUF file",
                    weights.name()
                )
            }
            WeightType::Stored | WeightType::StoredExact => {
                candle_core::bail!(
                    "GGUF types as stored run on the CPU; use --dtype bf16 or f16 on a GPU"
                )
            }
            WeightType::Float(_) => on_host.then(|| MatrixFormat::for_dtype(vb.dtype())).flatten(),
        };
        // Read from the config once; both decoders build their blocks from it.
        let layout = Layout::of(cfg).map_err(candle_core::Error::msg)?;
        let context = layout.context;
        let inner = if let Some(weights) = host {
            Inner::Host(Box::new(HostDecoder::load(vb, cfg, layout, weights, stored)?))
        } else {
            Inner::Candle(Box::new(CandleDecoder::load(
                vb,
                cfg,
                layout,
                backend == Backend::CandleDifferentiable,
            )?))
        };
        Ok(Self { inner, cfg: cfg.clone(), context })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Positions a sequence may reach: `max_position_embeddings`, or Phi-3's original context
    /// where only its short rope factors are implemented.
    pub fn context(&self) -> usize {
        self.context
    }

    pub fn device(&self) -> &Device {
        match &self.inner {
            Inner::Candle(m) => m.device(),
            Inner::Host(_) => &Device::Cpu,
        }
    }

    /// The weights' dtype; Q8_0 weights compute on f32 activations, so F32 for them.
    pub fn dtype(&self) -> DType {
        match &self.inner {
            Inner::Candle(m) => m.dtype(),
            Inner::Host(m) => match m.weights() {
                MatrixFormat::F32 | MatrixFormat::Q8_0 | MatrixFormat::Gguf { .. } => DType::F32,
                MatrixFormat::Bf16 => DType::BF16,
                MatrixFormat::F16 => DType::F16,
            },
        }
    }

    /// How the host decoder holds its matrices; `None` when candle runs the model (what tests
    /// ask, rather than reading [`Decoder::backend_name`]'s words).
    pub fn host_format(&self) -> Option<MatrixFormat> {
        match &self.inner {
            Inner::Candle(_) => None,
            Inner::Host(m) => Some(m.weights()),
        }
    }

    /// Which implementation runs, in words (for logs and run records).
    pub fn backend_name(&self) -> &'static str {
        match &self.inner {
            Inner::Candle(_) => "candle",
            Inner::Host(m) => match m.weights() {
                MatrixFormat::F32 => "host f32 kernels",
                MatrixFormat::Bf16 => "host bf16 kernels",
                MatrixFormat::F16 => "host f16 kernels",
                MatrixFormat::Q8_0 => "host q8_0 kernels",
                MatrixFormat::Gguf { int8: true } => {
                    "host kernels, GGUF types as stored, int8 activations"
                }
                MatrixFormat::Gguf { int8: false } => "host kernels, GGUF types as stored",
            },
        }
    }

    /// A cache for one sequence of at most `max_len` tokens (it grows if exceeded).
    /// Stores new caches' keys and values as `dtype`. The candle path keeps its caches in the
    /// model's dtype; only f32 is accepted there.
    pub fn set_kv_dtype(&mut self, dtype: KvDtype) -> Result<()> {
        match &mut self.inner {
            Inner::Host(m) => m.set_kv_dtype(dtype),
            Inner::Candle(_) if dtype == KvDtype::F32 => {}
            Inner::Candle(_) => candle_core::bail!(
                "`--kv-dtype {}` needs the CPU host path (a CPU, not the candle backend); on this device the cache has the model's dtype",
                dtype.name()
            ),
        }
        Ok(())
    }

    /// Bytes the weights hold as loaded (packed, padding included) on the host path; None on
    /// candle's, whose tensors are not tallied.
    pub fn weights_bytes(&self) -> Option<usize> {
        match &self.inner {
            Inner::Candle(_) => None,
            Inner::Host(m) => Some(m.weights_bytes()),
        }
    }

    /// Bytes one token's keys and values take in a cache: every layer's keys and values, in
    /// the cache's dtype.
    pub fn kv_bytes_per_token(&self) -> usize {
        let dim = self.cfg.head_dim();
        let row = match &self.inner {
            Inner::Candle(m) => m.dtype().size_in_bytes() * dim,
            Inner::Host(m) => m.kv_dtype().row_bytes(dim),
        };
        self.cfg.num_hidden_layers * 2 * self.cfg.num_kv_heads() * row
    }

    pub fn new_cache(&self, max_len: usize) -> SeqCache {
        SeqCache(match &self.inner {
            Inner::Candle(m) => CacheKind::Candle(m.new_cache(max_len)),
            Inner::Host(m) => CacheKind::Host(m.new_cache(max_len)),
        })
    }

    /// Runs `tokens` (`[N]`, u32, the segments' tokens back to back) and returns the final
    /// normalised hidden states `[N, hidden]`. With `caches` (one per segment) keys and values
    /// are appended to each sequence's cache; without, every segment is a whole sequence.
    pub fn forward(
        &self,
        tokens: &Tensor,
        segs: &[Segment],
        caches: Option<&mut [&mut SeqCache]>,
    ) -> Result<Tensor> {
        let n: usize = segs.iter().map(|s| s.len).sum();
        if tokens.dim(0)? != n {
            candle_core::bail!("{} tokens for segments totalling {n}", tokens.dim(0)?);
        }
        if let Some(c) = caches.as_deref() {
            if c.len() != segs.len() {
                candle_core::bail!("{} caches for {} segments", c.len(), segs.len());
            }
            if let Some((c, s)) = c.iter().zip(segs).find(|(c, s)| c.len() != s.offset) {
                candle_core::bail!(
                    "a segment at offset {} with {} tokens in its cache",
                    s.offset,
                    c.len()
                );
            }
        } else if let Some(s) = segs.iter().find(|s| s.offset != 0) {
            candle_core::bail!("a segment at offset {} without a cache", s.offset);
        }
        let max_pos = segs.iter().map(|s| s.offset + s.len).max().unwrap_or(0);
        if max_pos > self.context {
            candle_core::bail!(
                "sequence of {max_pos} tokens exceeds the model's context of {}",
                self.context
            );
        }
        match &self.inner {
            Inner::Candle(m) => {
                let mut own = own_caches(caches, |c| match c {
                    CacheKind::Candle(c) => Some(c),
                    CacheKind::Host(_) => None,
                })?;
                m.forward(tokens, segs, own.as_deref_mut())
            }
            Inner::Host(m) => {
                let mut own = own_caches(caches, |c| match c {
                    CacheKind::Host(c) => Some(c),
                    CacheKind::Candle(_) => None,
                })?;
                let ids = tokens.to_vec1::<u32>()?;
                let hidden = m.forward(&ids, segs, own.as_deref_mut())?;
                Tensor::from_vec(hidden, (n, self.cfg.hidden_size), &Device::Cpu)
            }
        }
    }

    /// [`Self::logits`] as f32 values, row after row; the host decoder's are handed over as
    /// computed, without the copy a tensor's would take.
    pub fn logits_f32(&self, hidden: &Tensor) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        self.logits_f32_into(hidden, &mut out)?;
        Ok(out)
    }

    /// [`Self::logits_f32`] into `out`, reusing its allocation.
    pub fn logits_f32_into(&self, hidden: &Tensor, out: &mut Vec<f32>) -> Result<()> {
        match &self.inner {
            Inner::Candle(m) => {
                let values =
                    m.logits(hidden)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                out.clear();
                out.extend_from_slice(&values);
                Ok(())
            }
            Inner::Host(m) => {
                let rows = hidden.dim(0)?;
                m.logits_into(
                    &hidden.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
                    rows,
                    out,
                )
            }
        }
    }

    /// Logits `[rows, vocab]` for selected hidden states `[rows, hidden]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        match &self.inner {
            Inner::Candle(m) => m.logits(hidden),
            Inner::Host(_) => Tensor::from_vec(
                self.logits_f32(hidden)?,
                (hidden.dim(0)?, self.cfg.vocab_size),
                &Device::Cpu,
            ),
        }
    }
}

/// Each cache as the running implementation holds it; one another decoder made is an error.
fn own_caches<'a, T>(
    caches: Option<&'a mut [&mut SeqCache]>,
    pick: impl Fn(&'a mut CacheKind) -> Option<&'a mut T>,
) -> Result<Option<Vec<&'a mut T>>> {
    caches
        .map(|cs| {
            cs.iter_mut()
                .map(|c| {
                    pick(&mut c.0).ok_or_else(|| {
                        candle_core::Error::msg("a KV cache made by another decoder")
                    })
                })
                .collect()
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(m: &Decoder, cache: &mut SeqCache, tokens: &[u32]) {
        let seg = [Segment { len: tokens.len(), offset: cache.len() }];
        let t = Tensor::new(tokens, &Device::Cpu).unwrap();
        m.forward(&t, &seg, Some(&mut [cache])).unwrap();
    }

    #[test]
    fn cache_bytes_count_stored_values_and_a_shared_prefix_once() {
        let cfg: ModelConfig = serde_json::from_value(serde_json::json!({"hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100}))
        .unwrap();
        // A head's position: 16 values, and int8's scale.
        for (kv, row) in [(KvDtype::F32, 16 * 4), (KvDtype::Bf16, 16 * 2), (KvDtype::Int8, 16 + 4)]
        {
            let mut m =
                super::super::random::random_decoder(&cfg, DType::F32, &Device::Cpu, 1).unwrap();
            m.set_kv_dtype(kv).unwrap();
            // layers × (keys, values) × kv heads × a head's position
            let per = 2 * 2 * 2 * row;
            assert_eq!(m.kv_bytes_per_token(), per);
            // Room for 100 tokens is capacity, not stored values.
            let mut c = m.new_cache(100);
            feed(&m, &mut c, &[1, 2, 3, 4, 5]);
            assert_eq!(c.bytes().unwrap(), 5 * per);
            let shared = c.into_shared();
            let mut cont = shared.continuation(100).unwrap();
            assert_eq!(cont.bytes().unwrap(), 0, "the prefix is the shared cache's");
            feed(&m, &mut cont, &[6, 7, 8]);
            assert_eq!((shared.bytes().unwrap(), cont.bytes().unwrap()), (5 * per, 3 * per));
            assert_eq!(cont.fork(50).unwrap().bytes().unwrap(), 3 * per);
        }
    }
}
