//! The decoder on the CPU with f32 (or bf16, f16, Q8_0) weights, on plain slices: pre-packed weights and the
//! project's kernels ([`crate::kernels`]), fused q/k/v and gate/up projections, and attention
//! straight over each sequence's KV cache. candle's generic ops cost more than the arithmetic at
//! decode shapes; here a step is a handful of kernel calls per layer.
//!
//! Every reduction runs in an order fixed by the model's shapes alone, never by the batch, so an
//! item's logits are bit for bit the same whatever shares its batch.

mod attention;
mod attn_kernels;
mod linear;
mod moe;
mod ops;
mod pool;

use candle_core::{DType, Result};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use self::attention::{attend, Heads};
pub use self::attention::{HostCache, KvDtype};
use self::linear::Linear;
use self::moe::{Expert, MoeFfn};
/// The `exp` the CUDA kernels' references (`model::gpu`) follow, and the operations they are
/// tested against.
pub(super) use self::ops::exp;
#[cfg(test)]
pub(super) use self::ops::{rms_norm, rope_in_place, silu_mul};
use self::pool::on_worker;

use super::config::ModelConfig;
use super::decoder::Segment;
use super::family::{Activation, Layout, Mlp, NormKind, QkNorm};
use super::rope::{attention_factor, inv_freq};
use crate::kernels::{GgufType, PackedMatrix, Packer};

/// Tensors a checkpoint stores in a GGUF quantised type, which the host kernels hold as they are
/// (`MatrixFormat::Gguf`).
pub(crate) trait StoredTensors {
    /// The type tensor `name` (its HF name) is stored in, when the kernels hold that type.
    fn stored_type(&self, name: &str) -> Option<GgufType>;
    /// Its bytes as stored, rows in HF order.
    fn stored_bytes(&self, name: &str) -> Result<Vec<u8>>;
    /// Whether matrix `name` is stored in a 16-bit float type (F16 or BF16), which the host
    /// kernels can hold as it is.
    fn half_type(&self, name: &str) -> Option<DType>;
    /// When matrix `name` is stored as `dtype` (f32, f16 or bf16), hands its bytes as stored
    /// (little-endian, rows in HF order) to `take`, in order and in pieces of whole rows, and
    /// returns true; its shape must be `[rows, cols]` (else an error). False, reading nothing,
    /// for other types.
    fn float_rows(
        &self,
        name: &str,
        dtype: DType,
        shape: (usize, usize),
        take: &mut dyn FnMut(&[u8]),
    ) -> Result<bool>;
}

/// A norm's weight (with Gemma's 1 already added) and, for LayerNorm, its bias.
struct Norm {
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
}

impl Norm {
    fn load(vb: &VarBuilder, size: usize, layout: &Layout) -> Result<Self> {
        let mut weight = vector(vb, size, "weight")?;
        if layout.norm == NormKind::RmsPlusOne {
            for w in &mut weight {
                *w += 1.0;
            }
        }
        let bias = if layout.norm_bias() { Some(vector(vb, size, "bias")?) } else { None };
        Ok(Norm { weight, bias })
    }

    fn bytes(&self) -> usize {
        std::mem::size_of_val(&self.weight[..])
            + self.bias.as_ref().map_or(0, |b| std::mem::size_of_val(&b[..]))
    }

    /// `out` = this norm of each row of `x`.
    fn apply(&self, isa: crate::kernels::isa::Isa, x: &[f32], eps: f32, out: &mut [f32]) {
        match &self.bias {
            Some(b) => ops::layer_norm(isa, x, &self.weight, b, eps, out),
            None => ops::rms_norm(isa, x, &self.weight, eps, out),
        }
    }
}

/// A block's MLP.
// One per layer, built once and never moved after: the size of the dense variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Ffn {
    Dense {
        /// `[gate | up]` rows packed as one matrix (or one per stored type); `up` alone for a
        /// plain MLP.
        gate_up: Linear,
        down: Linear,
    },
    Moe(Box<MoeFfn>),
}

impl Ffn {
    fn bytes(&self) -> usize {
        match self {
            Ffn::Dense { gate_up, down } => gate_up.bytes() + down.bytes(),
            Ffn::Moe(m) => m.bytes(),
        }
    }
}

/// The block's norms where its family has them (see [`Layout::norms`]).
struct BlockNorms {
    before_attention: Option<Norm>,
    after_attention: Option<Norm>,
    before_mlp: Option<Norm>,
    after_mlp: Option<Norm>,
}

struct Block {
    norms: BlockNorms,
    /// `[q | k | v]` rows packed as one matrix (or one per stored type).
    qkv: Linear,
    /// q and k norms: one head's weights (applied per head) or the whole projection's.
    qk_norm: Option<(Vec<f32>, Vec<f32>)>,
    o: Linear,
    ffn: Ffn,
    heads: Heads,
    /// Index into the decoder's rope tables.
    rope: usize,
}

enum Embeddings {
    Table(Vec<f32>),
    /// A GGUF table kept in its quantised type; rows are dequantised as they are looked up.
    Stored(PackedMatrix),
    /// Tied to the LM head: rows are read back from the packed head, so the table is held once.
    Tied,
}

/// One table of rotary frequencies.
struct RopeFreqs {
    inv_freq: Vec<f32>,
    /// cos and sin are multiplied by this (longrope).
    factor: f32,
}

pub(crate) struct HostDecoder {
    embed: Embeddings,
    /// GPT-2's learned positions, `[positions][hidden]`.
    positions: Option<Vec<f32>>,
    layers: Vec<Block>,
    norm: Norm,
    lm_head: Linear,
    ropes: Vec<RopeFreqs>,
    layout: Layout,
    heads: Heads,
    hidden: usize,
    inter: usize,
    eps: f32,
    weights: MatrixFormat,
    kv_dtype: KvDtype,
}

fn act(a: Activation) -> ops::Act {
    match a {
        Activation::Silu => ops::Act::Silu,
        Activation::GeluTanh => ops::Act::GeluTanh,
        Activation::GeluErf => ops::Act::GeluErf,
    }
}

/// Most rows the MLP takes at once: its buffers (`2 × intermediate` floats a row, and the
/// kernels' packed copy of its input) are the largest of a pass, and a prefill step of a thousand
/// tokens left tens of MB of them in the allocator's hands. Rows are independent, so the numbers
/// are the same; past a few hundred rows the products are no faster whole.
const MLP_ROWS: usize = 256;

/// Passes of at least this many tokens hand their freed activations back to the system.
const TRIM_AFTER_TOKENS: usize = 256;

/// Returns memory freed into glibc's arenas to the system. A long pass's activations (about
/// 20 MB for 1,024 tokens of a 135M model) are freed into the arena of the rayon worker that
/// ran it, and glibc keeps them: one set per worker, on top of the next pass's. Trimming takes
/// 1-3 ms, against at least 150 ms for such a pass (GSM8K 5-shot, q8_0: 20 MB less at peak).
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A weight's values, row-major, as f32.
fn values(vb: &VarBuilder, shape: (usize, usize), name: &str) -> Result<Vec<f32>> {
    vb.get(shape, name)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

/// Rows per block handed from a checkpoint tensor to a [`Packer`]: a few panels, so only that
/// much of a matrix is ever held as f32 besides the tensor and the packed copy.
const LOAD_ROWS: usize = 8 * crate::kernels::NR;

/// Pushes the rows of weight `name` ([rows, cols], read in the checkpoint's dtype) to `packer`
/// a block at a time, widened to f32 block by block.
fn push_rows(
    packer: &mut Packer,
    vb: &VarBuilder,
    (rows, cols): (usize, usize),
    name: &str,
) -> Result<()> {
    let t = vb.get((rows, cols), name)?;
    for r0 in (0..rows).step_by(LOAD_ROWS) {
        let len = LOAD_ROWS.min(rows - r0);
        packer.push(&t.narrow(0, r0, len)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(())
}

fn vector(vb: &VarBuilder, size: usize, name: &str) -> Result<Vec<f32>> {
    vb.get(size, name)?.to_dtype(DType::F32)?.to_vec1::<f32>()
}

/// How the host decoder holds its matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatrixFormat {
    F32,
    /// bf16 weights (activations rounded to bf16 at each product's input, f32 accumulation):
    /// `vdpbf16ps` where the CPU has AVX-512 BF16, its bit-exact emulation elsewhere.
    Bf16,
    /// f16 weights widened to f32 in the kernels (f32 activations and accumulation).
    F16,
    /// Every linear layer in llama.cpp's Q8_0 (8-bit blocks, dequantised in the kernels; f32
    /// activations). Norms and biases stay f32; an untied embedding table too.
    Q8_0,
    /// A GGUF's tensors as stored: each matrix in its quantised type (`kernels::quant`, Q8_0),
    /// F16 matrices as f16, BF16 ones as bf16 with `int8` (else f32), other tensors as f32. With
    /// `int8`, products on every quantised GGUF type round their input rows to int8
    /// (`kernels::int8`) and on bf16 to bf16, as llama.cpp's do; otherwise activations stay f32.
    Gguf {
        int8: bool,
    },
}

impl MatrixFormat {
    /// The host representation of candle dtype `dtype`, if there is one (on every CPU).
    pub fn for_dtype(dtype: DType) -> Option<Self> {
        match dtype {
            DType::F32 => Some(MatrixFormat::F32),
            DType::BF16 => Some(MatrixFormat::Bf16),
            DType::F16 => Some(MatrixFormat::F16),
            _ => None,
        }
    }

    fn packer(self, n: usize, k: usize, bias: Option<&[f32]>) -> Packer {
        match self {
            MatrixFormat::F32 => PackedMatrix::packer(n, k, bias),
            MatrixFormat::Bf16 => PackedMatrix::packer_bf16(n, k, bias),
            MatrixFormat::F16 => PackedMatrix::packer_f16(n, k, bias),
            MatrixFormat::Q8_0 => PackedMatrix::packer_q8_0(n, k, bias),
            MatrixFormat::Gguf { .. } => PackedMatrix::packer(n, k, bias),
        }
    }
}

/// Where a matrix's rows come from: the checkpoint's tensors through `vb`, and with
/// `MatrixFormat::Gguf` the tensors it stores quantised, read as stored.
#[derive(Clone, Copy)]
struct Source<'a> {
    weights: MatrixFormat,
    stored: Option<&'a dyn StoredTensors>,
}

impl Source<'_> {
    /// How tensor `name` under `vb` is held as stored, if it is.
    fn stored_type(&self, vb: &VarBuilder, name: &str) -> Option<GgufType> {
        match (self.weights, self.stored) {
            (MatrixFormat::Gguf { .. }, Some(s)) => {
                s.stored_type(&format!("{}.{name}", vb.prefix()))
            }
            _ => None,
        }
    }

    /// With `MatrixFormat::Gguf`, how matrices that the file stores in 16-bit floats are held:
    /// f16 as f16 (widened exactly in the kernels: f32 activations, either way); bf16 as bf16
    /// with int8 products (bf16 activations, as llama.cpp computes bf16 weights), else as f32
    /// (`stored-exact` promises f32 products). `None` for other tensors, and when the parts are
    /// not all stored alike.
    fn half_format(&self, vb: &VarBuilder, parts: &[(&str, usize)]) -> Option<MatrixFormat> {
        let (MatrixFormat::Gguf { int8 }, Some(s)) = (self.weights, self.stored) else {
            return None;
        };
        let types: Vec<_> = parts
            .iter()
            .map(|(name, _)| s.half_type(&format!("{}.weight", vb.pp(name).prefix())))
            .collect();
        match types.first().copied().flatten() {
            _ if !types.windows(2).all(|t| t[0] == t[1]) => None,
            Some(DType::F16) => Some(MatrixFormat::F16),
            Some(DType::BF16) if int8 => Some(MatrixFormat::Bf16),
            _ => None,
        }
    }

    /// Linear layers stacked along their outputs (with their biases if `bias`), packed as one
    /// matrix when they are held alike, else one matrix per part. Each part's rows go to the
    /// packer straight from its tensor, so no f32 copy of the stack (or of one part) is made.
    fn packed(
        &self,
        vb: &VarBuilder,
        parts: &[(&str, usize)],
        inputs: usize,
        bias: bool,
    ) -> Result<Linear> {
        let types: Vec<_> =
            parts.iter().map(|(name, _)| self.stored_type(&vb.pp(name), "weight")).collect();
        if types.windows(2).all(|t| t[0] == t[1]) {
            return Ok(Linear::One(self.pack_parts(vb, parts, inputs, bias, types[0])?));
        }
        let matrices = parts
            .iter()
            .zip(types)
            .map(|(&part, t)| self.pack_parts(vb, &[part], inputs, bias, t))
            .collect::<Result<Vec<_>>>()?;
        Ok(Linear::Parts(matrices))
    }

    /// Pushes weight `vb.weight` (`[rows, cols]`) straight from a GGUF's stored f32, f16 or
    /// bf16 bytes when `packer` holds that very type (bf16 and f16 as bf16 and f16, f32 as
    /// f32), a block of rows at a time: candle's dequantized f32 copy of the whole tensor, and
    /// the copies made from it, are what made loading a 1B bf16 or f32 file take three times
    /// llama.cpp's. The values are those the dequantized path packs (bf16 and f16 widen to f32
    /// exactly). Returns false, pushing nothing, when it does not apply.
    fn push_stored_floats(
        &self,
        packer: &mut Packer,
        format: MatrixFormat,
        vb: &VarBuilder,
        (rows, cols): (usize, usize),
    ) -> Result<bool> {
        let Some(source) = self.stored else { return Ok(false) };
        let held = match format {
            MatrixFormat::Bf16 => DType::BF16,
            MatrixFormat::F16 => DType::F16,
            MatrixFormat::F32 | MatrixFormat::Gguf { .. } => DType::F32,
            MatrixFormat::Q8_0 => return Ok(false),
        };
        let name = format!("{}.weight", vb.prefix());
        let block = (LOAD_ROWS * cols * held.size_in_bytes()).max(1);
        let (mut values, mut bits) = (Vec::new(), Vec::new());
        source.float_rows(&name, held, (rows, cols), &mut |raw| {
            for chunk in raw.chunks(block) {
                if held == DType::F32 {
                    values.clear();
                    values.extend(
                        chunk.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    );
                    packer.push(&values);
                } else {
                    bits.clear();
                    bits.extend(chunk.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])));
                    packer.push_bits(&bits);
                }
            }
        })
    }

    /// `parts` packed as one matrix, as stored type `stored` or as `self.weights`.
    fn pack_parts(
        &self,
        vb: &VarBuilder,
        parts: &[(&str, usize)],
        inputs: usize,
        bias: bool,
        stored: Option<GgufType>,
    ) -> Result<PackedMatrix> {
        let rows: usize = parts.iter().map(|p| p.1).sum();
        let mut b = Vec::with_capacity(if bias { rows } else { 0 });
        if bias {
            for &(name, n) in parts {
                b.extend(vector(&vb.pp(name), n, "bias")?);
            }
        }
        let bias = bias.then_some(b.as_slice());
        let (Some(t), Some(source)) = (stored, self.stored) else {
            let format = self.half_format(vb, parts).unwrap_or(self.weights);
            let mut packer = format.packer(rows, inputs, bias);
            for &(name, n) in parts {
                if !self.push_stored_floats(&mut packer, format, &vb.pp(name), (n, inputs))? {
                    push_rows(&mut packer, &vb.pp(name), (n, inputs), "weight")?;
                }
            }
            return Ok(packer.finish());
        };
        let mut packer = match self.weights {
            MatrixFormat::Gguf { int8: true } => {
                PackedMatrix::packer_gguf_int8(t, rows, inputs, bias)
            }
            _ => PackedMatrix::packer_gguf(t, rows, inputs, bias),
        };
        for &(name, n) in parts {
            let full = format!("{}.weight", vb.pp(name).prefix());
            let raw = source.stored_bytes(&full)?;
            if raw.len() != n * t.row_bytes(inputs) {
                candle_core::bail!(
                    "{full}: {} bytes of {} for [{n}, {inputs}]",
                    raw.len(),
                    t.name()
                );
            }
            packer.push_gguf(&raw);
        }
        Ok(packer.finish())
    }
}

impl HostDecoder {
    /// Loads `vb`'s tensors held as `weights`; with `MatrixFormat::Gguf`, `stored` gives the
    /// tensors kept in their GGUF types.
    pub fn load(
        vb: VarBuilder,
        cfg: &ModelConfig,
        layout: Layout,
        weights: MatrixFormat,
        stored: Option<&dyn StoredTensors>,
    ) -> Result<Self> {
        let src = Source { weights, stored };
        let (hs, is) = (cfg.hidden_size, cfg.intermediate_size);
        let (h, kv, hd) = (cfg.num_attention_heads, cfg.num_kv_heads(), cfg.head_dim());
        let m = vb.pp("model");
        // The largest tensors first, while nothing else is held: loading peaks at the packed
        // model plus one tensor.
        let (embed, lm_head) = if cfg.tie_word_embeddings {
            (Embeddings::Tied, src.packed(&m, &[("embed_tokens", cfg.vocab_size)], hs, false)?)
        } else {
            let table = match src.stored_type(&m.pp("embed_tokens"), "weight") {
                Some(t) => Embeddings::Stored(src.pack_parts(
                    &m,
                    &[("embed_tokens", cfg.vocab_size)],
                    hs,
                    false,
                    Some(t),
                )?),
                None => Embeddings::Table(values(
                    &m.pp("embed_tokens"),
                    (cfg.vocab_size, hs),
                    "weight",
                )?),
            };
            (table, src.packed(&vb, &[("lm_head", cfg.vocab_size)], hs, false)?)
        };
        let positions = if layout.learned_positions {
            Some(values(&m.pp("embed_positions"), (cfg.max_position_embeddings, hs), "weight")?)
        } else {
            None
        };
        let scale = layout.attn_scale as f32;
        let softcap = layout.attn_softcap.map(|c| c as f32);
        let mlp_rows: Vec<(&str, usize)> = layout.mlp_parts().iter().map(|&p| (p, is)).collect();
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = m.pp(format!("layers.{i}"));
                let a = l.pp("self_attn");
                let qk_sizes = match layout.qk_norm {
                    QkNorm::None => None,
                    QkNorm::PerHead => Some((hd, hd)),
                    QkNorm::Whole => Some((h * hd, kv * hd)),
                };
                let qk_norm = match qk_sizes {
                    Some((qn, kn)) => Some((
                        Norm::load(&a.pp("q_norm"), qn, &layout)?.weight,
                        Norm::load(&a.pp("k_norm"), kn, &layout)?.weight,
                    )),
                    None => None,
                };
                let norm = |on: bool, name: &str| {
                    on.then(|| Norm::load(&l.pp(name), hs, &layout)).transpose()
                };
                let n = &layout.norms;
                let norms = BlockNorms {
                    before_attention: norm(n.before_attention, "input_layernorm")?,
                    after_attention: norm(n.after_attention, "post_attention_layernorm")?,
                    before_mlp: n
                        .before_mlp
                        .map(|name| Norm::load(&l.pp(name), hs, &layout))
                        .transpose()?,
                    after_mlp: norm(n.after_mlp, "post_feedforward_layernorm")?,
                };
                let mlp = l.pp("mlp");
                let at = layout.layers[i];
                Ok(Block {
                    norms,
                    qkv: src.packed(
                        &a,
                        &[("q_proj", h * hd), ("k_proj", kv * hd), ("v_proj", kv * hd)],
                        hs,
                        layout.qkv_bias,
                    )?,
                    qk_norm,
                    o: src.packed(&a, &[("o_proj", hs)], h * hd, layout.o_bias)?,
                    ffn: match layout.moe {
                        Some(moe) if at.sparse => {
                            let expert = |vb: &VarBuilder, inter: usize| -> Result<Expert> {
                                Ok(Expert {
                                    gate_up: src.packed(
                                        vb,
                                        &[("gate_proj", inter), ("up_proj", inter)],
                                        hs,
                                        false,
                                    )?,
                                    down: src.packed(vb, &[("down_proj", hs)], inter, false)?,
                                    inter,
                                })
                            };
                            let experts = (0..moe.experts)
                                .map(|e| expert(&mlp.pp(format!("experts.{e}")), moe.inter))
                                .collect::<Result<Vec<_>>>()?;
                            let shared = match moe.shared {
                                Some(width) => Some((
                                    expert(&mlp.pp("shared_expert"), width)?,
                                    src.packed(&mlp, &[("shared_expert_gate", 1)], hs, false)?,
                                )),
                                None => None,
                            };
                            Ffn::Moe(Box::new(MoeFfn {
                                router: src.packed(&mlp, &[("gate", moe.experts)], hs, false)?,
                                experts,
                                shared,
                                moe,
                            }))
                        }
                        _ => Ffn::Dense {
                            gate_up: src.packed(&mlp, &mlp_rows, hs, layout.mlp_bias)?,
                            down: src.packed(&mlp, &[("down_proj", hs)], is, layout.mlp_bias)?,
                        },
                    },
                    heads: Heads { q: h, kv, dim: hd, window: at.window, scale, softcap },
                    rope: at.rope,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ropes = layout
            .ropes
            .iter()
            .map(|t| RopeFreqs {
                inv_freq: inv_freq(cfg, layout.rotary_dim, t),
                factor: attention_factor(t),
            })
            .collect();
        Ok(Self {
            embed,
            positions,
            layers,
            norm: Norm::load(&m.pp("norm"), hs, &layout)?,
            lm_head,
            ropes,
            heads: Heads::new(h, kv, hd, None),
            layout,
            hidden: hs,
            inter: is,
            eps: cfg.rms_norm_eps as f32,
            weights,
            kv_dtype: KvDtype::F32,
        })
    }

    pub fn weights(&self) -> MatrixFormat {
        self.weights
    }

    /// Bytes the weights hold: packed matrices, norms and an untied embedding table.
    pub fn weights_bytes(&self) -> usize {
        let floats = |v: &[f32]| std::mem::size_of_val(v);
        let table = match &self.embed {
            Embeddings::Table(t) => floats(t),
            Embeddings::Stored(m) => m.bytes(),
            Embeddings::Tied => 0,
        };
        let layers: usize = self
            .layers
            .iter()
            .map(|b| {
                let qk = b.qk_norm.as_ref().map_or(0, |(q, k)| floats(q) + floats(k));
                let n = &b.norms;
                let norms: usize =
                    [&n.before_attention, &n.after_attention, &n.before_mlp, &n.after_mlp]
                        .iter()
                        .filter_map(|n| n.as_ref().map(Norm::bytes))
                        .sum();
                [&b.qkv, &b.o].iter().map(|m| m.bytes()).sum::<usize>() + b.ffn.bytes() + norms + qk
            })
            .sum();
        let positions = self.positions.as_deref().map_or(0, floats);
        table + positions + layers + self.lm_head.bytes() + self.norm.bytes()
    }

    pub fn kv_dtype(&self) -> KvDtype {
        self.kv_dtype
    }

    pub fn new_cache(&self, max_len: usize) -> HostCache {
        HostCache::new(self.layers.len(), self.heads.kv, self.heads.dim, max_len, self.kv_dtype)
    }

    /// How new caches store keys and values (f32 unless set).
    pub fn set_kv_dtype(&mut self, dtype: KvDtype) {
        self.kv_dtype = dtype;
    }

    /// cos/sin rows `[N][rotary / 2]` of rope table `table` for the tokens' positions, computed
    /// as the candle decoder's table is (f32 position × f32 inverse frequency, times longrope's
    /// factor).
    fn rope_rows(&self, table: usize, segs: &[Segment]) -> (Vec<f32>, Vec<f32>) {
        let RopeFreqs { inv_freq, factor } = &self.ropes[table];
        let n: usize = segs.iter().map(|s| s.len).sum();
        let (mut cos, mut sin) =
            (Vec::with_capacity(n * inv_freq.len()), Vec::with_capacity(n * inv_freq.len()));
        for s in segs {
            for p in s.offset..s.offset + s.len {
                for f in inv_freq {
                    let a = p as f32 * f;
                    // A factor of 1 (all but longrope) leaves the values exact.
                    cos.push(a.cos() * factor);
                    sin.push(a.sin() * factor);
                }
            }
        }
        (cos, sin)
    }

    fn embed(&self, tokens: &[u32], segs: &[Segment]) -> Result<Vec<f32>> {
        let hs = self.hidden;
        let mut x = vec![0f32; tokens.len() * hs];
        for (&t, row) in tokens.iter().zip(x.chunks_mut(hs)) {
            let t = t as usize;
            if t >= self.lm_head.n() {
                candle_core::bail!(
                    "token id {t} is outside the vocabulary of {}",
                    self.lm_head.n()
                );
            }
            match &self.embed {
                Embeddings::Table(table) => row.copy_from_slice(&table[t * hs..(t + 1) * hs]),
                Embeddings::Stored(m) => m.row(t, row),
                Embeddings::Tied => self.lm_head.row(t, row),
            }
        }
        if let Some(scale) = self.layout.embed_scale {
            // transformers rounds the factor to the weights' dtype (√2304 = 48 is exact; √3584
            // becomes 59.75 in bf16).
            let scale = match self.weights {
                MatrixFormat::Bf16 => half::bf16::from_f64(scale).to_f32(),
                MatrixFormat::F16 => half::f16::from_f64(scale).to_f32(),
                _ => scale as f32,
            };
            x.iter_mut().for_each(|v| *v *= scale);
        }
        if let Some(table) = &self.positions {
            let positions = segs.iter().flat_map(|s| s.offset..s.offset + s.len);
            for (p, row) in positions.zip(x.chunks_mut(hs)) {
                for (v, e) in row.iter_mut().zip(&table[p * hs..(p + 1) * hs]) {
                    *v += e;
                }
            }
        }
        Ok(x)
    }

    /// See [`super::Decoder::forward`]; the caller has checked the arguments. Returns the final
    /// normalised hidden states, `[N][hidden]`.
    pub fn forward(
        &self,
        tokens: &[u32],
        segs: &[Segment],
        caches: Option<&mut [&mut HostCache]>,
    ) -> Result<Vec<f32>> {
        let hidden = on_worker(|| self.forward_here(tokens, segs, caches));
        if tokens.len() >= TRIM_AFTER_TOKENS {
            return_freed_memory();
        }
        hidden
    }

    fn forward_here(
        &self,
        tokens: &[u32],
        segs: &[Segment],
        caches: Option<&mut [&mut HostCache]>,
    ) -> Result<Vec<f32>> {
        match caches {
            Some(c) => self.run(tokens, segs, c),
            None => {
                let mut scratch: Vec<HostCache> =
                    segs.iter().map(|s| self.new_cache(s.len)).collect();
                let mut refs: Vec<&mut HostCache> = scratch.iter_mut().collect();
                self.run(tokens, segs, &mut refs)
            }
        }
    }

    fn run(
        &self,
        tokens: &[u32],
        segs: &[Segment],
        caches: &mut [&mut HostCache],
    ) -> Result<Vec<f32>> {
        let n = tokens.len();
        let (hs, hd) = (self.hidden, self.heads.dim);
        let (qw, kvw) = (self.heads.q * hd, self.heads.kv * hd);
        let qkv_w = qw + 2 * kvw;
        let ropes: Vec<_> = (0..self.ropes.len()).map(|t| self.rope_rows(t, segs)).collect();
        // One family for the whole pass (the same bits whichever; see `ops`).
        let isa = crate::kernels::isa::current();
        let eps = self.eps;

        let mut x = self.embed(tokens, segs)?;
        let mut h = vec![0f32; n * hs];
        let mut qkv = vec![0f32; n * qkv_w];
        let mut att = vec![0f32; n * qw];
        let mut proj = vec![0f32; n * hs];
        // The MLP's output beside attention's, for a parallel residual.
        let mut mlp_out =
            if self.layout.parallel_residual { vec![0f32; n * hs] } else { Vec::new() };
        let mlp_rows = n.min(MLP_ROWS);
        let mlp_width = self.layout.mlp_parts().len() * self.inter;
        let mut gu = vec![0f32; mlp_rows * mlp_width];
        let mut acts = vec![0f32; mlp_rows * self.inter];
        for (li, b) in self.layers.iter().enumerate() {
            let input = match &b.norms.before_attention {
                Some(norm) => {
                    norm.apply(isa, &x, eps, &mut h);
                    &h
                }
                None => &x,
            };
            b.qkv.matmul(input, n, &mut qkv);
            self.position(isa, b, li, &ropes[b.rope], &mut qkv, segs, caches);
            let layer_caches: Vec<_> = caches.iter().map(|c| c.view(li)).collect();
            attend(isa, &qkv, qkv_w, segs, &layer_caches, b.heads, &mut att);
            b.o.matmul(&att, n, &mut proj);
            if let Some(norm) = &b.norms.after_attention {
                norm.apply(isa, &proj, eps, &mut h);
                std::mem::swap(&mut h, &mut proj);
            }
            // The MLP reads the block's input (parallel) or attention's sum (sequential).
            let (mlp_in, mlp_dst) = if self.layout.parallel_residual {
                (&x, &mut mlp_out)
            } else {
                ops::add(isa, &mut x, &proj);
                (&x, &mut proj)
            };
            let mlp_in = match &b.norms.before_mlp {
                Some(norm) => {
                    norm.apply(isa, mlp_in, eps, &mut h);
                    &h
                }
                None => mlp_in,
            };
            for r0 in (0..n).step_by(MLP_ROWS) {
                let m = (n - r0).min(MLP_ROWS);
                let (rows_in, rows_out) =
                    (&mlp_in[r0 * hs..(r0 + m) * hs], &mut mlp_dst[r0 * hs..(r0 + m) * hs]);
                let (gate_up, down) = match &b.ffn {
                    Ffn::Dense { gate_up, down } => (gate_up, down),
                    Ffn::Moe(moe) => {
                        moe.forward(isa, rows_in, m, hs, rows_out);
                        continue;
                    }
                };
                let (gu, act_out) = (&mut gu[..m * mlp_width], &mut acts[..m * self.inter]);
                gate_up.matmul(rows_in, m, gu);
                match self.layout.mlp {
                    Mlp::Gated(Activation::Silu) => ops::silu_mul(isa, gu, self.inter, act_out),
                    Mlp::Gated(a) => ops::act_mul(act(a), gu, self.inter, act_out),
                    Mlp::Plain(a) => ops::act_into(act(a), gu, act_out),
                }
                down.matmul(act_out, m, rows_out);
            }
            if let Some(norm) = &b.norms.after_mlp {
                norm.apply(isa, mlp_dst, eps, &mut h);
                std::mem::swap(&mut h, mlp_dst);
            }
            if self.layout.parallel_residual {
                // transformers: mlp + attention + residual, in that order.
                ops::add(isa, &mut mlp_out, &proj);
            }
            ops::add(isa, &mut x, if self.layout.parallel_residual { &mlp_out } else { &proj });
        }
        self.norm.apply(isa, &x, eps, &mut h);
        Ok(h)
    }

    /// Layer `li`'s q/k/v rows (`qkv`, a row per token) normalised and rotated where the model
    /// does, and each sequence's keys and values appended to its cache. The sequences are
    /// independent, so a decode step's run side by side.
    #[allow(clippy::too_many_arguments)]
    fn position(
        &self,
        isa: crate::kernels::isa::Isa,
        b: &Block,
        li: usize,
        (cos, sin): &(Vec<f32>, Vec<f32>),
        qkv: &mut [f32],
        segs: &[Segment],
        caches: &mut [&mut HostCache],
    ) {
        let hd = self.heads.dim;
        let (qw, kvw) = (self.heads.q * hd, self.heads.kv * hd);
        let (row_w, half, eps) = (qw + 2 * kvw, self.layout.rotary_dim / 2, self.eps);
        let one = |(cache, rows, t0): (&mut &mut HostCache, &mut [f32], usize)| {
            let kv = cache.layer_mut(li);
            for (j, row) in rows.chunks_exact_mut(row_w).enumerate() {
                let t = t0 + j;
                let (qr, kvr) = row.split_at_mut(qw);
                let (kr, vr) = kvr.split_at_mut(kvw);
                if let Some((qn, kn)) = &b.qk_norm {
                    ops::rms_norm_in_place(isa, qr, qn, eps);
                    ops::rms_norm_in_place(isa, kr, kn, eps);
                }
                if half > 0 {
                    let (c, sn) = (&cos[t * half..(t + 1) * half], &sin[t * half..(t + 1) * half]);
                    ops::rope_in_place(isa, qr, hd, c, sn);
                    ops::rope_in_place(isa, kr, hd, c, sn);
                }
                kv.append(kr, vr);
            }
        };
        let (mut rest, mut t0) = (qkv, 0);
        let mut jobs = Vec::with_capacity(segs.len());
        for (s, cache) in segs.iter().zip(caches.iter_mut()) {
            let (rows, tail) = std::mem::take(&mut rest).split_at_mut(s.len * row_w);
            jobs.push((cache, rows, t0));
            (rest, t0) = (tail, t0 + s.len);
        }
        if jobs.len() > 1 && rayon::current_num_threads() > 1 {
            jobs.into_par_iter().for_each(one);
        } else {
            jobs.into_iter().for_each(one);
        }
    }

    /// Logits `[rows][vocab]` of hidden states `[rows][hidden]` into `out`, which keeps its
    /// allocation from one call to the next.
    pub fn logits_into(&self, hidden: &[f32], rows: usize, out: &mut Vec<f32>) -> Result<()> {
        if hidden.len() != rows * self.hidden {
            candle_core::bail!("{} hidden values for {rows} rows of {}", hidden.len(), self.hidden);
        }
        // The product overwrites every value.
        out.resize(rows * self.lm_head.n(), 0.0);
        on_worker(|| self.lm_head.matmul(hidden, rows, out));
        if let Some(cap) = self.layout.final_softcap {
            ops::softcap(out, cap as f32);
        }
        Ok(())
    }
}
