//! Packing W into [`PackedMatrix`] panels, whole or streamed: a [`Packer`] takes W's rows in
//! order, a block at a time, so loading can pack straight from a checkpoint's tensor without an
//! f32 copy of the whole matrix (a tied 50k-token embedding is 116 MB of f32). `pack*` are the
//! one-block case, so both give the same bits.

use super::bf16::Bf16Weights;
use super::int8::{self, Int8Weights};
use super::q8::{self, Q8Weights};
use super::quant::{self, QuantType, QuantWeights};
use super::{f16, lines_mut, Line, Packed, PackedMatrix, NR};

/// A [`PackedMatrix`] being filled row by row; see [`PackedMatrix::packer`].
pub struct Packer {
    m: PackedMatrix,
    /// The next row [`Packer::push`] writes.
    next: usize,
}

impl PackedMatrix {
    /// Packs row-major `w` ([n, k]) and optional `bias` ([n]). Panics only on length mismatch.
    pub fn pack(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Self {
        check_lens(w, n, k, bias);
        Self::packer(n, k, bias).whole(w)
    }

    /// Packs W as bf16 (values rounded to nearest-even from f32; exact when they came from a
    /// bf16 checkpoint). Runs on every CPU. Panics only on length mismatch.
    pub fn pack_bf16(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Self {
        check_lens(w, n, k, bias);
        Self::packer_bf16(n, k, bias).whole(w)
    }

    /// Packs W as f16 (values rounded to nearest-even from f32; exact when they came from an
    /// f16 checkpoint). Runs on every CPU. Panics only on length mismatch.
    pub fn pack_f16(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Self {
        check_lens(w, n, k, bias);
        Self::packer_f16(n, k, bias).whole(w)
    }

    /// Packs W quantised to Q8_0 (per row, blocks of 32 along k; see `kernels::q8`). Runs on
    /// every CPU. Panics only on length mismatch.
    pub fn pack_q8_0(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Self {
        check_lens(w, n, k, bias);
        Self::packer_q8_0(n, k, bias).whole(w)
    }

    /// Packs W given as the GGUF bytes of type `t` (n rows of `t.row_bytes(k)`), held as
    /// stored. Panics only on length mismatch.
    pub fn pack_quant(t: QuantType, raw: &[u8], n: usize, k: usize, bias: Option<&[f32]>) -> Self {
        let mut p = Self::packer_gguf(GgufType::Quant(t), n, k, bias);
        p.push_gguf(raw);
        p.finish()
    }

    /// A [`Packer`] for W stored in a GGUF as `t` ([n, k], k a whole number of `t`'s blocks),
    /// filled by [`Packer::push_gguf`] with the file's bytes, which it keeps as they are.
    pub fn packer_gguf(t: GgufType, n: usize, k: usize, bias: Option<&[f32]>) -> Packer {
        assert!(
            k.is_multiple_of(t.block_len()),
            "PackedMatrix: k = {k} is not a whole number of {} blocks",
            t.name()
        );
        let data = match t {
            GgufType::Q8_0 => Packed::Q8_0(Q8Weights::zeroed(n, k)),
            GgufType::Quant(t) => Packed::Quant(QuantWeights::zeroed(t, n, k)),
        };
        Packer::new(n, k, data, bias)
    }

    /// As [`PackedMatrix::packer_gguf`] for products on int8-quantised x (`int8.rs`, as
    /// llama.cpp computes them).
    pub fn packer_gguf_int8(t: GgufType, n: usize, k: usize, bias: Option<&[f32]>) -> Packer {
        assert!(
            k.is_multiple_of(t.block_len()),
            "PackedMatrix: k = {k} is not a whole number of {} blocks",
            t.name()
        );
        Packer::new(n, k, Packed::Int8(Int8Weights::zeroed(int8::Kind::of(t), n, k)), bias)
    }

    /// A [`Packer`] for f32 weights of [n, k] with optional `bias` ([n]; panics otherwise).
    pub fn packer(n: usize, k: usize, bias: Option<&[f32]>) -> Packer {
        let data = Line::zeroed(n.div_ceil(NR) * k * (NR / 16));
        Packer::new(n, k, Packed::F32(data), bias)
    }

    /// As [`PackedMatrix::packer`] for bf16 weights ([`PackedMatrix::pack_bf16`]).
    pub fn packer_bf16(n: usize, k: usize, bias: Option<&[f32]>) -> Packer {
        Packer::new(n, k, Packed::Bf16(Bf16Weights::zeroed(n, k)), bias)
    }

    /// As [`PackedMatrix::packer`] for f16 weights ([`PackedMatrix::pack_f16`]).
    pub fn packer_f16(n: usize, k: usize, bias: Option<&[f32]>) -> Packer {
        Packer::new(n, k, Packed::F16(f16::zeroed(n, k)), bias)
    }

    /// As [`PackedMatrix::packer`] for Q8_0 weights ([`PackedMatrix::pack_q8_0`]).
    pub fn packer_q8_0(n: usize, k: usize, bias: Option<&[f32]>) -> Packer {
        Packer::new(n, k, Packed::Q8_0(Q8Weights::zeroed(n, k)), bias)
    }
}

impl Packer {
    fn new(n: usize, k: usize, data: Packed, bias: Option<&[f32]>) -> Self {
        if let Some(b) = bias {
            assert_eq!(b.len(), n, "PackedMatrix::pack: bias.len() != n");
        }
        Packer {
            m: PackedMatrix { n, k, data, bias: pad_bias(bias, n), kernel: super::isa::current() },
            next: 0,
        }
    }

    /// Packs the next rows of W: `w` holds whole rows of k values, row-major. Panics when `w`
    /// is not whole rows or runs past row n.
    pub fn push(&mut self, w: &[f32]) {
        let (n, k) = (self.m.n, self.m.k);
        if k == 0 {
            return;
        }
        assert_eq!(w.len() % k, 0, "Packer::push: not whole rows of {k}");
        assert!(self.next + w.len() / k <= n, "Packer::push: more than {n} rows");
        for src in w.chunks_exact(k) {
            self.put_row(self.next, src);
            self.next += 1;
        }
    }

    /// As [`Packer::push`] for the bf16 and f16 packers, from rows of bf16 or f16 bit patterns
    /// (as stored in a checkpoint): the same packing as pushing their exact f32 values.
    /// Panics on another packer or a length that is not whole rows.
    pub fn push_bits(&mut self, bits: &[u16]) {
        let (n, k) = (self.m.n, self.m.k);
        if k == 0 {
            return;
        }
        assert_eq!(bits.len() % k, 0, "Packer::push_bits: not whole rows of {k}");
        assert!(self.next + bits.len() / k <= n, "Packer::push_bits: more than {n} rows");
        for src in bits.chunks_exact(k) {
            let r = self.next;
            match &mut self.m.data {
                Packed::Bf16(b) => b.put_row_bits(k, r, src),
                Packed::F16(d) => f16::put_row_bits(d, k, r, src),
                _ => panic!("Packer::push_bits on a packer for neither bf16 nor f16 rows"),
            }
            self.next += 1;
        }
    }

    /// Packs the next rows of W from their GGUF bytes (a [`PackedMatrix::packer_gguf`] packer):
    /// whole rows, each `row_bytes(k)` long. Panels are filled in parallel.
    pub fn push_gguf(&mut self, raw: &[u8]) {
        let (n, k) = (self.m.n, self.m.k);
        let row_bytes = match &self.m.data {
            Packed::Q8_0(_) => GgufType::Q8_0.row_bytes(k),
            Packed::Quant(w) => w.ty.row_bytes(k),
            Packed::Int8(w) => w.kind.gguf().row_bytes(k),
            _ => panic!("Packer::push_gguf on a packer for f32, bf16 or f16 rows"),
        };
        if row_bytes == 0 {
            return;
        }
        assert_eq!(
            raw.len() % row_bytes,
            0,
            "Packer::push_gguf: not whole rows of {row_bytes} bytes"
        );
        let rows = raw.len() / row_bytes;
        assert!(self.next + rows <= n, "Packer::push_gguf: more than {n} rows");
        match &mut self.m.data {
            Packed::Q8_0(w) => q8::put_gguf_rows(w, k, self.next, raw),
            Packed::Quant(w) => quant::put_rows(w, k, self.next, raw),
            Packed::Int8(w) => int8::put_rows(w, k, self.next, raw),
            _ => unreachable!("checked above"),
        }
        self.next += rows;
    }

    /// The packed matrix. Panics unless all n rows were pushed (k = 0 has nothing to push).
    pub fn finish(self) -> PackedMatrix {
        assert!(
            self.m.k == 0 || self.next == self.m.n,
            "Packer::finish: {} of {} rows pushed",
            self.next,
            self.m.n
        );
        self.m
    }

    fn whole(mut self, w: &[f32]) -> PackedMatrix {
        self.push(w);
        self.finish()
    }

    /// Writes row `r` of W into column r % NR of its panel; the rest stays as it is (zero until
    /// written, so padding past n, and past k in the last bf16 pair, stays zero).
    fn put_row(&mut self, r: usize, src: &[f32]) {
        let (p, c, k) = (r / NR, r % NR, self.m.k);
        match &mut self.m.data {
            Packed::F32(d) => {
                let panel = &mut lines_mut(d)[p * k * NR..(p + 1) * k * NR];
                for (kk, &v) in src.iter().enumerate() {
                    panel[kk * NR + c] = v;
                }
            }
            Packed::Bf16(b) => b.put_row(k, r, src),
            Packed::F16(d) => f16::put_row(d, k, r, src),
            Packed::Q8_0(q) => q8::put_row(q, k, r, src),
            Packed::Quant(q) => {
                panic!("Packer::push on {} weights: they take GGUF rows (push_gguf)", q.ty.name())
            }
            Packed::Int8(q) => panic!(
                "Packer::push on {} weights: they take GGUF rows (push_gguf)",
                q.kind.gguf().name()
            ),
        }
    }
}

/// A GGUF tensor type the host kernels hold as stored.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufType {
    Q8_0,
    Quant(QuantType),
}

impl GgufType {
    pub fn name(self) -> &'static str {
        match self {
            GgufType::Q8_0 => "q8_0",
            GgufType::Quant(t) => t.name(),
        }
    }

    /// k values per block.
    pub fn block_len(self) -> usize {
        match self {
            GgufType::Q8_0 => q8::QK,
            GgufType::Quant(t) => t.block_len(),
        }
    }

    /// Bytes of a row of k values.
    pub fn row_bytes(self, k: usize) -> usize {
        match self {
            GgufType::Q8_0 => k / q8::QK * (2 + q8::QK),
            GgufType::Quant(t) => t.row_bytes(k),
        }
    }
}

fn check_lens(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) {
    assert_eq!(w.len(), n * k, "PackedMatrix::pack: w.len() != n * k");
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "PackedMatrix::pack: bias.len() != n");
    }
}

fn pad_bias(bias: Option<&[f32]>, n: usize) -> Option<Vec<f32>> {
    bias.map(|b| {
        let mut v = vec![0.0; n.div_ceil(NR) * NR];
        v[..n].copy_from_slice(b);
        v
    })
}
