//! Integer products on GGUF weights, as llama.cpp computes them: each row of x is quantised to
//! int8 in blocks of 32 along k (`dx = amax / 127`, `xq = round(x / dx)`, held with the block's
//! sums of xq over each half), and a weight block's integer q values meet xq in exact integer
//! dot products (`vpdpbusd` with AVX-512 VNNI, `vpmaddubsw` on AVX2, `sdot` on NEON), leaving a
//! few float operations per block of 32 instead of an FMA per weight. Used for every GGUF type
//! held as stored: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and Q2_K–Q6_K (every tensor of a Q2_K, Q3_K_M,
//! Q4_0, Q4_K_M, Q5_K_M, Q6_K or Q8_0 file, the Q5_0/Q5_1 that llama.cpp writes where a row is
//! not a whole number of 256-blocks included). `--dtype stored-exact` keeps the exact kernels
//! (`quant.rs`).
//!
//! Bits: the integer sums are exact whatever adds them, so each output element is
//! `acc = Σ_u fma(t_u, dx_u, acc)` over k's blocks u = 0, 1, … in order, from 0, with
//! - zero-point types (Q8_0 with z = 128, its q stored offset by 128; Q4_0, z = 8; Q5_0, z = 16):
//!   `t = J·a`, `J = Σ (q - z)·xq`,
//! - offset and min types (Q4_1, Q5_1: `a = d`, `o = m`; Q4_K, Q5_K: the sub-block's `a = d·sc`,
//!   `o = -(dmin·m)`): `t = fma(o, S, I·a)`, `I = Σ q·xq`, `S = Σ xq`,
//! - the types with sub-blocks of 16, over the unit's two sub-blocks h = 0, 1 (xq's half sums
//!   `Sₕ`): zero-point Q6_K (z = 32) and Q3_K (z = 4, `a = d·(sc - 32)`):
//!   `t = fma(J₁, a₁, J₀·a₀)`, `Jₕ = Σ (q - z)·xq`; min type Q2_K (`a = d·sc`, `o = -(dmin·m)`):
//!   `t = fma(o₁, S₁, fma(I₁, a₁, fma(o₀, S₀, I₀·a₀)))`,
//!
//! then `+ bias`. Every instruction set computes exactly these operations, so the scalar, AVX2,
//! AVX-512 and NEON kernels agree bit for bit, and an element depends on its own row of x and
//! column of W only: batch invariant as the f32 kernels are. It is not the f32 product on the
//! dequantised W (x is rounded to int8); `tests.rs` measures how far it is, next to llama.cpp's
//! own error.
//!
//! Layout per panel of [`NR`] columns, per block of 32 k values (a "unit"), one byte per column
//! and k-quad lane so a 32-bit lane holds four consecutive k of one column, what `vpdpbusd`
//! multiplies with a broadcast quad of xq ([`Quants`]):
//! - 8 bits (Q8_0): 8 quads × `[NR][4]` bytes of `q + 128` (1024 bytes);
//! - 4 bits (Q4_0, Q4_1, Q4_K): 4 groups of 8 k × `[NR][4]` bytes, k0+kk in the low nibble and
//!   k0+4+kk in the high one (512 bytes);
//! - 5 bits (Q5_0, Q5_1, Q5_K): those nibble groups of q's low 4 bits, then `[NR][4]` bytes of
//!   the fifth bits (bit t: quad t) (640 bytes);
//! - Q6_K: per half of 16 k, two such nibble groups of q's low 4 bits, then `[NR][4]` bytes of
//!   the high 2 bits of the half's four quads (bits 2t..2t+1: quad t) (768 bytes);
//! - 2 bits (Q2_K): per half h of 16 k, `[NR][4]` bytes of its four quads' q (bits 2t..2t+1:
//!   quad 4h + t) (256 bytes);
//! - 3 bits (Q3_K): q's low 2 bits as Q2_K's, then `[NR][4]` bytes of the third bits (bit t:
//!   quad t) (384 bytes).
//!
//! Scale records per GGUF block as `quant.rs` keeps them (d as f16 per column; the second f16,
//! sc and m where the type has them), so memory stays the file's size.

use std::cell::RefCell;

use super::quant::{self, Format, Rule, Sc};
use super::{GgufType, Kernel, Line, Path, QuantType, MR, NR};

/// k values per unit (one x scale, one pair of x sums).
pub(super) const UNIT: usize = 32;
/// Packed x per unit: 8 quads of xq, dx (f32 bits), S₀ and S₁ (i32 bits).
pub(super) const XU: usize = 11;
/// Values of x in a row block at or above which its quantization is split over the threads.
const PACK_PAR_VALUES: usize = 8192;

/// The types with integer kernels.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
}

/// How a unit's 32 q values are laid out (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Quants {
    /// Q8_0's `q + 128`, a byte each.
    Bytes,
    /// 4-bit q in nibble groups.
    Nibbles,
    /// The nibble groups of 5-bit q, then a plane of their fifth bits.
    Nibbles5,
    /// Q6_K's halves of 16.
    Six,
    /// Q2_K's 2-bit q, a group per half of 16.
    Two,
    /// Q3_K: the 2-bit groups of q's low bits, then a plane of their third bits.
    Three,
}

const _: () = {
    assert!(Kind::ALL.len() == 10, "by_int8_kind! has one arm per kind");
    let mut i = 0;
    while i < Kind::ALL.len() {
        assert!(Kind::ALL[i].index() == i, "Kind::ALL is in declaration order");
        i += 1;
    }
};

/// Q8_0 as a [`Format`]: q stored offset by 128, so `w = (q - 128)·d`.
const Q8_0_FORMAT: Format = Format {
    block: 32,
    block_bytes: 34,
    sub: 32,
    nibble: false,
    planes: 0,
    e: false,
    sc: Sc::None,
    mins: false,
    rule: Rule::Zero(128),
};

impl Kind {
    /// Every kind; the SIMD kernels are compiled once per index.
    pub(super) const ALL: [Kind; 10] = [
        Kind::Q8_0,
        Kind::Q4_0,
        Kind::Q4_1,
        Kind::Q5_0,
        Kind::Q5_1,
        Kind::Q2_K,
        Kind::Q3_K,
        Kind::Q4_K,
        Kind::Q5_K,
        Kind::Q6_K,
    ];

    pub(super) const fn of(t: GgufType) -> Kind {
        match t {
            GgufType::Q8_0 => Kind::Q8_0,
            GgufType::Quant(QuantType::Q4_0) => Kind::Q4_0,
            GgufType::Quant(QuantType::Q4_1) => Kind::Q4_1,
            GgufType::Quant(QuantType::Q5_0) => Kind::Q5_0,
            GgufType::Quant(QuantType::Q5_1) => Kind::Q5_1,
            GgufType::Quant(QuantType::Q2_K) => Kind::Q2_K,
            GgufType::Quant(QuantType::Q3_K) => Kind::Q3_K,
            GgufType::Quant(QuantType::Q4_K) => Kind::Q4_K,
            GgufType::Quant(QuantType::Q5_K) => Kind::Q5_K,
            GgufType::Quant(QuantType::Q6_K) => Kind::Q6_K,
        }
    }

    /// The index of `self` in [`Kind::ALL`] (`by_int8_kind!` has an arm for each): its
    /// discriminant, as `ALL` lists the kinds in declaration order (checked below).
    pub(super) const fn index(self) -> usize {
        self as usize
    }

    pub(super) const fn gguf(self) -> GgufType {
        match self {
            Kind::Q8_0 => GgufType::Q8_0,
            Kind::Q4_0 => GgufType::Quant(QuantType::Q4_0),
            Kind::Q4_1 => GgufType::Quant(QuantType::Q4_1),
            Kind::Q5_0 => GgufType::Quant(QuantType::Q5_0),
            Kind::Q5_1 => GgufType::Quant(QuantType::Q5_1),
            Kind::Q2_K => GgufType::Quant(QuantType::Q2_K),
            Kind::Q3_K => GgufType::Quant(QuantType::Q3_K),
            Kind::Q4_K => GgufType::Quant(QuantType::Q4_K),
            Kind::Q5_K => GgufType::Quant(QuantType::Q5_K),
            Kind::Q6_K => GgufType::Quant(QuantType::Q6_K),
        }
    }

    pub(super) const fn format(self) -> Format {
        match self.gguf() {
            GgufType::Q8_0 => Q8_0_FORMAT,
            GgufType::Quant(t) => t.format(),
        }
    }

    pub(super) const fn quants(self) -> Quants {
        match self {
            Kind::Q8_0 => Quants::Bytes,
            Kind::Q4_0 | Kind::Q4_1 | Kind::Q4_K => Quants::Nibbles,
            Kind::Q5_0 | Kind::Q5_1 | Kind::Q5_K => Quants::Nibbles5,
            Kind::Q6_K => Quants::Six,
            Kind::Q2_K => Quants::Two,
            Kind::Q3_K => Quants::Three,
        }
    }

    /// Whether a unit has two sub-blocks of 16 (scales per half), not one of 32.
    pub(super) const fn halves(self) -> bool {
        self.format().sub == 16
    }

    /// The zero point z of `w = (q - z)·a`, or None for the types with an offset.
    pub(super) const fn zero(self) -> Option<i32> {
        match self.format().rule {
            Rule::Zero(z) => Some(z as i32),
            Rule::Min | Rule::Offset => None,
        }
    }

    /// Quant bytes of one unit of a panel.
    pub(super) const fn unit_bytes(self) -> usize {
        4 * NR
            * match self.quants() {
                Quants::Bytes => 8,
                Quants::Nibbles => 4,
                Quants::Nibbles5 => 5,
                Quants::Six => 6,
                Quants::Two => 2,
                Quants::Three => 3,
            }
    }
}

/// A type's shape as the kernels take it: constants once `K` is (`const { Shape::of(K) }`), so
/// every branch on it folds away.
#[derive(Clone, Copy)]
pub(super) struct Shape {
    pub format: Format,
    pub quants: Quants,
    /// See [`Kind::zero`].
    pub zero: Option<i32>,
    /// Bytes of a block's scale record, of a unit's quants; units per block.
    pub record: usize,
    pub unit_bytes: usize,
    pub per_block: usize,
}

impl Shape {
    pub(super) const fn of(k: usize) -> Shape {
        let kind = Kind::ALL[k];
        let format = kind.format();
        Shape {
            format,
            quants: kind.quants(),
            zero: kind.zero(),
            record: format.record(),
            unit_bytes: kind.unit_bytes(),
            per_block: format.block / UNIT,
        }
    }
}

/// Packed weights of one [`Kind`]; see the module comment.
pub(super) struct Int8Weights {
    pub kind: Kind,
    q: Vec<Line>,
    scales: Vec<Line>,
}

impl Int8Weights {
    pub(super) fn zeroed(kind: Kind, n: usize, k: usize) -> Self {
        let f = kind.format();
        let panels = n.div_ceil(NR);
        Int8Weights {
            kind,
            q: Line::zeroed((panels * k / UNIT * kind.unit_bytes()).div_ceil(64)),
            scales: Line::zeroed((panels * (k / f.block) * f.record()).div_ceil(64)),
        }
    }

    pub(super) fn bytes(&self) -> usize {
        std::mem::size_of_val(self.q.as_slice()) + std::mem::size_of_val(self.scales.as_slice())
    }

    /// Panel p's quants and scale records (k values a row).
    fn panel(&self, k: usize, p: usize) -> (&[u8], &[u8]) {
        let (qn, sn) = (
            k / UNIT * self.kind.unit_bytes(),
            k / self.kind.format().block * self.kind.format().record(),
        );
        (
            &quant::bytes(&self.q)[p * qn..(p + 1) * qn],
            &quant::bytes(&self.scales)[p * sn..(p + 1) * sn],
        )
    }
}

/// Writes rows `first..` of W, given as their GGUF bytes, into their columns of their panels.
/// Every byte belongs to one column, so rows are written independently; threads take panels.
pub(super) fn put_rows(w: &mut Int8Weights, k: usize, first: usize, raw: &[u8]) {
    use rayon::prelude::*;
    let (kind, f) = (w.kind, w.kind.format());
    let row_bytes = kind.gguf().row_bytes(k);
    let rows = raw.len() / row_bytes;
    let panels = (first / NR)..(first + rows).div_ceil(NR);
    let jobs: Vec<_> = quant::bytes_mut(&mut w.q)
        .chunks_mut(k / UNIT * kind.unit_bytes())
        .zip(quant::bytes_mut(&mut w.scales).chunks_mut(k / f.block * f.record()))
        .enumerate()
        .skip(panels.start)
        .take(panels.len())
        .collect();
    jobs.into_par_iter().for_each(|(p, (q, s))| {
        for r in (p * NR).max(first)..((p + 1) * NR).min(first + rows) {
            put_row(kind, r % NR, &raw[(r - first) * row_bytes..(r - first + 1) * row_bytes], q, s);
        }
    });
}

/// One row's GGUF bytes into column `c` of a panel's quants `q` and records `s`.
fn put_row(kind: Kind, c: usize, raw: &[u8], q: &mut [u8], s: &mut [u8]) {
    let f = kind.format();
    let (record, ub) = (f.record(), kind.unit_bytes());
    for (b, blk_raw) in raw.chunks_exact(f.block_bytes).enumerate() {
        let blk = match kind.gguf() {
            GgufType::Q8_0 => {
                let mut blk = quant::Block {
                    q: [0; 256],
                    d: u16::from_le_bytes([blk_raw[0], blk_raw[1]]),
                    e: 0,
                    sc: [0; 16],
                    m: [0; 16],
                };
                for (o, &v) in blk.q.iter_mut().zip(&blk_raw[2..34]) {
                    *o = v ^ 0x80;
                }
                blk
            }
            GgufType::Quant(t) => quant::decode(t, blk_raw),
        };
        quant::put_record(&f, &mut s[b * record..(b + 1) * record], c, &blk);
        for u in 0..f.block / UNIT {
            let v = &blk.q[u * UNIT..(u + 1) * UNIT];
            let dst = &mut q[(b * f.block / UNIT + u) * ub..][..ub];
            for kk in 0..4 {
                let at = |g: usize| g * 4 * NR + 4 * c + kk;
                let nibbles = |dst: &mut [u8], v: &[u8], first: usize| {
                    for g in 0..v.len() / 8 {
                        dst[at(first + g)] =
                            (v[8 * g + kk] & 0x0F) | ((v[8 * g + 4 + kk] & 0x0F) << 4);
                    }
                };
                match kind.quants() {
                    Quants::Bytes => {
                        for t in 0..8 {
                            dst[at(t)] = v[4 * t + kk];
                        }
                    }
                    Quants::Nibbles => nibbles(dst, v, 0),
                    Quants::Nibbles5 => {
                        nibbles(dst, v, 0);
                        dst[at(4)] =
                            (0..8).map(|t| ((v[4 * t + kk] >> 4) & 1) << t).fold(0, |a, b| a | b);
                    }
                    Quants::Six => {
                        for h in 0..2 {
                            let v = &v[16 * h..16 * h + 16];
                            nibbles(dst, v, 3 * h);
                            dst[at(3 * h + 2)] = (0..4)
                                .map(|t| ((v[4 * t + kk] >> 4) & 3) << (2 * t))
                                .fold(0, |a, b| a | b);
                        }
                    }
                    Quants::Two | Quants::Three => {
                        for h in 0..2 {
                            dst[at(h)] = (0..4)
                                .map(|t| (v[16 * h + 4 * t + kk] & 3) << (2 * t))
                                .fold(0, |a, b| a | b);
                        }
                        if kind.quants() == Quants::Three {
                            dst[at(2)] = (0..8)
                                .map(|t| ((v[4 * t + kk] >> 2) & 1) << t)
                                .fold(0, |a, b| a | b);
                        }
                    }
                }
            }
        }
    }
}

/// q of column `c` at k offset `kk` (< 32) of a unit's quant bytes.
#[inline(always)]
fn q_at(kind: Kind, unit: &[u8], c: usize, kk: usize) -> u8 {
    let byte = |g: usize, lane: usize| unit[g * 4 * NR + 4 * c + lane];
    let (quad, lane) = (kk / 4, kk % 4);
    let nibble = |g: usize, t: usize| (byte(g, lane) >> (4 * (t % 2))) & 0x0F;
    match kind.quants() {
        Quants::Bytes => byte(quad, lane),
        Quants::Nibbles => nibble(quad / 2, quad),
        Quants::Nibbles5 => nibble(quad / 2, quad) | (((byte(4, lane) >> quad) & 1) << 4),
        Quants::Six => {
            let (h, t) = (quad / 4, quad % 4);
            nibble(3 * h + t / 2, t) | (((byte(3 * h + 2, lane) >> (2 * t)) & 3) << 4)
        }
        Quants::Two => (byte(quad / 4, lane) >> (2 * (quad % 4))) & 3,
        Quants::Three => {
            ((byte(quad / 4, lane) >> (2 * (quad % 4))) & 3) | (((byte(2, lane) >> quad) & 1) << 2)
        }
    }
}

/// Dequantised row `r` (see [`PackedMatrix::row`]): the weights these products approximate.
pub(super) fn row(w: &Int8Weights, k: usize, r: usize, out: &mut [f32]) {
    let f = w.kind.format();
    let (p, c) = (r / NR, r % NR);
    let (q, s) = w.panel(k, p);
    for (kk, o) in out.iter_mut().enumerate() {
        let (b, sub) = (kk / f.block, (kk % f.block) / f.sub);
        let ao = quant::scale_offset(&f, &s[b * f.record()..(b + 1) * f.record()], sub, c);
        let unit = &q[kk / UNIT * w.kind.unit_bytes()..][..w.kind.unit_bytes()];
        *o = quant::weight(&f, q_at(w.kind, unit, c, kk % UNIT) as u32, ao);
    }
}

/// Quantises unit u of `rows` rows of x (row i's values at `src[i * k..]`) into `dst`, row i's
/// [`XU`] packed values at `dst[i * XU..]`. The SIMD families find the largest |x|, round and sum
/// on their vectors where a block is finite (the same operations, so the same bits) and leave
/// the rest to [`pack_unit`].
fn pack_unit_rows(kernel: IntKernel, src: &[f32], k: usize, u: usize, dst: &mut [u32]) {
    let rows = dst.len() / XU;
    assert!(k.is_multiple_of(UNIT) && u < k / UNIT && src.len() >= rows * k);
    #[cfg(target_arch = "x86_64")]
    let x = src[u * UNIT..].as_ptr();
    match kernel {
        // SAFETY: Avx2 and AvxVnni are chosen only where avx2 is; row i's 32 values at x + i·k
        // are in src.
        #[cfg(target_arch = "x86_64")]
        IntKernel::Avx2 | IntKernel::AvxVnni => unsafe {
            super::avx2int8::pack_unit_rows(x, k, dst)
        },
        // SAFETY: Vnni is chosen only where avx512f and avx512bw are; as above.
        #[cfg(target_arch = "x86_64")]
        IntKernel::Vnni => unsafe { super::avx512int8::pack_unit_rows(x, k, dst) },
        _ => {
            for (i, dst) in dst.chunks_exact_mut(XU).enumerate() {
                pack_unit(&src[i * k + u * UNIT..][..UNIT], dst);
            }
        }
    }
}

/// The portable packing of one unit of one row (`x`, 32 values) into its [`XU`] values: the
/// reference of the SIMD families' `pack_unit_rows`, and what they do with a non-finite block.
pub(super) fn pack_unit(x: &[f32], dst: &mut [u32]) {
    let (d, id) = int8_scale(x);
    let xq: [i8; UNIT] = std::array::from_fn(|i| round_i8(x[i] * id));
    for (o, quad) in dst.iter_mut().zip(xq.chunks_exact(4)) {
        *o = u32::from_le_bytes([quad[0] as u8, quad[1] as u8, quad[2] as u8, quad[3] as u8]);
    }
    let sum = |h: usize| xq[16 * h..16 * h + 16].iter().map(|&v| v as i32).sum::<i32>();
    dst[8] = d.to_bits();
    dst[9] = sum(0) as u32;
    dst[10] = sum(1) as u32;
}

/// llama.cpp's int8 scale of a block `x` (its `q8_0`): `d = max |x| / 127` and `id = 1 / d` (0
/// for a zero block), so that `x ≈ d · round_i8(x · id)`, the largest |x| landing on ±127. Every
/// int8 quantisation here (activations, Q8_0 weights, an int8 KV cache, attention's queries)
/// takes its scale from this one place.
#[inline(always)]
pub(crate) fn int8_scale(x: &[f32]) -> (f32, f32) {
    scale_of(amax(x))
}

/// [`int8_scale`] from the block's largest |x|.
#[inline(always)]
pub(super) fn scale_of(amax: f32) -> (f32, f32) {
    let d = amax / 127.0;
    (d, if d != 0.0 { 1.0 / d } else { 0.0 })
}

/// The largest |x|, through its bits (the order of non-negative floats), which vectorises where
/// `f32::max` does not; a NaN wins, so a NaN input gives NaN outputs, as f32 does. The SIMD
/// `pack_unit_rows` compute the same.
#[inline(always)]
fn amax(x: &[f32]) -> f32 {
    f32::from_bits(x.iter().map(|v| v.to_bits() & 0x7fff_ffff).fold(0, u32::max))
}

/// `r` rounded to the nearest integer, halves away from zero (C's `roundf`, as llama.cpp
/// rounds), clamped to ±127 so that -128 never occurs (AVX2's sign trick negates xq). Written
/// without `f32::round`, a libm call on baseline x86-64, so the loop vectorises: the fraction
/// `r - trunc(r)` is exact, so comparing it with ±0.5 decides as `roundf` does.
#[inline(always)]
pub(crate) fn round_i8(r: f32) -> i8 {
    // (Clamped first so that nothing overflows; past ±128 only the sign matters.)
    let t = (r as i32).clamp(-128, 128);
    let frac = r - t as f32;
    let q = t + (frac >= 0.5) as i32 - (frac <= -0.5) as i32;
    q.clamp(-127, 127) as i8
}

/// Which integer microkernels run: the AVX-512 family uses VNNI's `vpdpbusd` where the CPU has
/// it (AVX-512BW and VNNI), the AVX-VNNI family the AVX2 kernels with AVX-VNNI's 256-bit
/// `vpdpbusd`, the AVX2 kernels elsewhere on x86 (the same bits in every case).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IntKernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Vnni,
    /// The AVX2 kernels with AVX-VNNI's `vpdpbusd` on ymm registers (`avx2int8::block_vnni`).
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
    /// NEON's `smull` (`neonint8.rs`).
    #[cfg(target_arch = "aarch64")]
    Neon,
    /// NEON's `sdot`, where the CPU has the dot-product extension.
    #[cfg(target_arch = "aarch64")]
    NeonDot,
}

impl IntKernel {
    pub(super) fn for_family(kernel: Kernel) -> IntKernel {
        match kernel {
            Kernel::Scalar => IntKernel::Scalar,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => IntKernel::Avx2,
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni => IntKernel::AvxVnni,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 if super::isa::cpu_has_avx512_vnni() => IntKernel::Vnni,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => IntKernel::Avx2,
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon if super::isa::cpu_has_neon_dotprod() => IntKernel::NeonDot,
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => IntKernel::Neon,
        }
    }
}

/// Int8 products in the shared driver.
#[derive(Clone, Copy)]
pub(super) struct Int8Path<'a> {
    w: &'a Int8Weights,
    k: usize,
    kernel: IntKernel,
}

impl<'a> Int8Path<'a> {
    pub(super) fn new(w: &'a Int8Weights, k: usize, kernel: IntKernel) -> Self {
        Int8Path { w, k, kernel }
    }
}

thread_local! {
    /// Packed x of int8 products, reused across calls (as `XBUF` is for f32).
    static XBUF_INT8: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// A panel's accumulators (see `Int8Path::block`).
    static ACC_INT8: RefCell<[[f32; NR]; MR]> = const { RefCell::new([[0.0; NR]; MR]) };
}

impl Path for Int8Path<'_> {
    type X = u32;
    // A quarter of the f32 kernels' time per multiply-add: more work to pay for a fork/join.
    const PAR_MIN_WORK: usize = 4 * super::PAR_MIN_WORK;

    fn depth(&self) -> usize {
        self.k / UNIT * XU
    }

    /// `[unit][row][XU]`: a row's values of one unit side by side, so a kernel finds them at
    /// constant offsets from the unit's row block.
    ///
    /// A block as wide as a decode step's is quantized by every thread, a range of units each
    /// (the product would otherwise wait on one thread's rounding).
    fn pack_block(&self, src: &[f32], k: usize, block: &mut [u32], rows: usize) {
        let unit = |(u, dst): (usize, &mut [u32])| pack_unit_rows(self.kernel, src, k, u, dst);
        let block = &mut block[..k / UNIT * rows * XU];
        if rows * k >= PACK_PAR_VALUES && rayon::current_num_threads() > 1 {
            use rayon::prelude::*;
            block.par_chunks_mut(rows * XU).enumerate().with_min_len(16).for_each(unit);
        } else {
            block.chunks_mut(rows * XU).enumerate().for_each(unit);
        }
    }

    fn with_buf<R>(f: impl FnOnce(&mut Vec<u32>) -> R) -> R {
        super::with_cached(&XBUF_INT8, f)
    }

    fn wide_max(&self, _rows: usize) -> usize {
        0
    }

    unsafe fn wide(
        &self,
        _: usize,
        _: usize,
        _: usize,
        _: &[u32],
        _: Option<&[f32]>,
        _: *mut f32,
        _: usize,
        _: usize,
    ) {
        unreachable!("`wide_max` is 0 for int8 products");
    }

    #[allow(clippy::too_many_arguments)]
    unsafe fn block(
        &self,
        rows: usize,
        p: usize,
        a: &[u32],
        bias: Option<&[f32]>,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        alone: bool,
    ) {
        let (q, s) = self.w.panel(self.k, p);
        assert!(
            a.len() >= self.depth() * rows
                && rows <= MR
                && cols <= NR
                && bias.is_none_or(|b| b.len() >= NR)
        );
        // One accumulator block per thread, filled in place: returned by value or zeroed per
        // call, 1.5 KB went through `memcpy` or `memset` for every panel. Every kernel writes
        // all of its `rows` rows.
        ACC_INT8.with_borrow_mut(|acc| {
            self.block_into(rows, q, s, a, acc, alone);
            // SAFETY: forwarded from the caller.
            unsafe { super::store_rows(&acc[..rows], bias, c, ldc, cols) };
        });
    }
}

impl Int8Path<'_> {
    /// Rows `..rows` of `out`: packed x `a` times the panel with quants `q` and records `s`.
    fn block_into(
        &self,
        rows: usize,
        q: &[u8],
        s: &[u8],
        a: &[u32],
        out: &mut [[f32; NR]; MR],
        next_panel: bool,
    ) {
        let (kind, k) = (self.w.kind, self.k);
        #[cfg(not(target_arch = "x86_64"))]
        let _ = next_panel;
        match self.kernel {
            IntKernel::Scalar => block_scalar(kind, rows, k, a, q, s, out),
            // SAFETY: Avx2 is chosen only where avx2, fma and f16c are (an AVX-512 CPU has them).
            #[cfg(target_arch = "x86_64")]
            IntKernel::Avx2 => unsafe {
                super::avx2int8::block(kind, rows, k, a, q, s, out, next_panel)
            },
            // SAFETY: Vnni is chosen only where avx512f, avx512bw and avx512vnni are.
            #[cfg(target_arch = "x86_64")]
            IntKernel::Vnni => unsafe { super::avx512int8::block(kind, rows, k, a, q, s, out) },
            // SAFETY: AvxVnni is chosen only where avx2, fma, f16c and avxvnni are.
            #[cfg(target_arch = "x86_64")]
            IntKernel::AvxVnni => unsafe {
                super::avx2int8::block_vnni(kind, rows, k, a, q, s, out, next_panel)
            },
            #[cfg(target_arch = "aarch64")]
            IntKernel::Neon => super::neonint8::block_plain(kind, rows, k, a, q, s, out),
            // SAFETY: NeonDot is chosen only where the dot-product extension is.
            #[cfg(target_arch = "aarch64")]
            IntKernel::NeonDot => unsafe {
                super::neonint8::block_dot(kind, rows, k, a, q, s, out)
            },
        }
    }
}

/// The x values of unit u for row i of a block of `rows`: (quads, dx, S₀, S₁).
#[inline(always)]
pub(super) fn x_unit(a: &[u32], rows: usize, u: usize, i: usize) -> ([u32; 8], f32, i32, i32) {
    let at = |e: usize| a[(u * rows + i) * XU + e];
    let mut quads = [0u32; 8];
    for (t, v) in quads.iter_mut().enumerate() {
        *v = at(t);
    }
    (quads, f32::from_bits(at(8)), at(9) as i32, at(10) as i32)
}

/// The portable kernel, and the reference for the SIMD ones: `rows` rows of packed x times one
/// panel, before the bias.
fn block_scalar(
    kind: Kind,
    rows: usize,
    k: usize,
    a: &[u32],
    q: &[u8],
    s: &[u8],
    out: &mut [[f32; NR]; MR],
) {
    let f = kind.format();
    let (record, ub) = (f.record(), kind.unit_bytes());
    let acc = &mut out[..rows];
    acc.iter_mut().for_each(|r| *r = [0.0; NR]);
    for u in 0..k / UNIT {
        let unit = &q[u * ub..(u + 1) * ub];
        let (b, u_in) = (u * UNIT / f.block, u % (f.block / UNIT));
        let rec = &s[b * record..(b + 1) * record];
        for (i, row) in acc.iter_mut().enumerate() {
            let (quads, dx, s0, s1) = x_unit(a, rows, u, i);
            let xq: Vec<i32> =
                quads.iter().flat_map(|v| v.to_le_bytes()).map(|b| b as i8 as i32).collect();
            for (j, o) in row.iter_mut().enumerate() {
                let dot = |range: std::ops::Range<usize>| {
                    range.map(|kk| q_at(kind, unit, j, kk) as i32 * xq[kk]).sum::<i32>()
                };
                let t = match (kind.halves(), kind.zero()) {
                    (true, Some(z)) => {
                        let (a0, _) = quant::scale_offset(&f, rec, 2 * u_in, j);
                        let (a1, _) = quant::scale_offset(&f, rec, 2 * u_in + 1, j);
                        let (j0, j1) = (dot(0..16) - z * s0, dot(16..32) - z * s1);
                        (j1 as f32).mul_add(a1, j0 as f32 * a0)
                    }
                    (true, None) => {
                        let (a0, o0) = quant::scale_offset(&f, rec, 2 * u_in, j);
                        let (a1, o1) = quant::scale_offset(&f, rec, 2 * u_in + 1, j);
                        let t0 = o0.mul_add(s0 as f32, dot(0..16) as f32 * a0);
                        o1.mul_add(s1 as f32, (dot(16..32) as f32).mul_add(a1, t0))
                    }
                    (false, Some(z)) => {
                        let (a, _) = quant::scale_offset(&f, rec, u_in, j);
                        (dot(0..32) - z * (s0 + s1)) as f32 * a
                    }
                    (false, None) => {
                        let (a, o) = quant::scale_offset(&f, rec, u_in, j);
                        o.mul_add((s0 + s1) as f32, dot(0..32) as f32 * a)
                    }
                };
                *o = t.mul_add(dx, *o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family's unit quantisation gives the portable loops' scale bits, bytes and half
    /// sums: ties, clamps, zero and non-finite blocks included.
    #[test]
    fn vector_quantisation_is_the_portable_quantisation() {
        let families =
            Kernel::ALL.iter().filter(|k| k.supported()).map(|&k| IntKernel::for_family(k));
        for kernel in families {
            for seed in 0..240u32 {
                let mut x = crate::kernels::tests::rand_vec(seed + 1, UNIT);
                let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
                match seed % 8 {
                    // Ties: values that land on k + 0.5 after scaling, either sign.
                    0 | 3 => {
                        for (i, v) in x.iter_mut().enumerate().skip(1) {
                            *v = (i as f32 - 16.0 + 0.5) * amax / 127.0;
                        }
                    }
                    5 => x.iter_mut().for_each(|v| *v = 0.0),
                    6 => x[(seed as usize / 8) % UNIT] = f32::NAN,
                    7 => x[(seed as usize / 8) % UNIT] = -f32::INFINITY,
                    _ => x.iter_mut().for_each(|v| *v *= (seed as f32 * 0.37).exp2()),
                }
                let (d, id) = int8_scale(&x);
                let xq: [i8; UNIT] = std::array::from_fn(|i| round_i8(x[i] * id));
                let half =
                    |h: usize| xq[16 * h..16 * h + 16].iter().map(|&v| v as i32).sum::<i32>();
                let quad =
                    |q: &[i8]| u32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8]);
                let mut want: Vec<u32> = xq.chunks(4).map(quad).collect();
                want.extend([d.to_bits(), half(0) as u32, half(1) as u32]);
                // The unit as the second of three rows, between a finite and a NaN one.
                let mut rows = crate::kernels::tests::rand_vec(seed + 7, 3 * UNIT);
                rows[UNIT..2 * UNIT].copy_from_slice(&x);
                rows[2 * UNIT + 5] = f32::NAN;
                let mut got = vec![0u32; 3 * XU];
                pack_unit_rows(kernel, &rows, UNIT, 0, &mut got);
                assert_eq!(got[XU..2 * XU], want, "{kernel:?} seed {seed}");
                let mut each = vec![0u32; 3 * XU];
                for (i, dst) in each.chunks_exact_mut(XU).enumerate() {
                    pack_unit(&rows[i * UNIT..(i + 1) * UNIT], dst);
                }
                assert_eq!(got, each, "{kernel:?} seed {seed}");
            }
        }
    }

    #[test]
    fn rounding_is_roundf_with_halves_away_from_zero() {
        let edge = [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            0.49999997,
            -0.49999997,
            126.5,
            127.4,
            -127.6,
            130.0,
            1e30,
            -1e30,
            f32::INFINITY,
            f32::NAN,
        ];
        let more = (-3000..3000).map(|i| i as f32 * 0.0437);
        for r in edge.into_iter().chain(more) {
            let want = if r.is_nan() { 0 } else { r.round().clamp(-127.0, 127.0) as i8 };
            assert_eq!(super::round_i8(r), want, "{r}");
        }
    }
}
