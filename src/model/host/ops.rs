//! Row-wise operations of the host decoder on plain f32 slices. Each output row depends only on
//! its own input row, in a fixed order, so nothing here depends on what else is in the batch.
//!
//! The element-wise passes take the kernel family (`isa`, one this CPU runs: the decoder passes
//! `isa::current()`) and run a copy of their Rust body compiled for it: the same IEEE operations
//! in the same order (Rust never contracts a*b+c), so the same bits, in wider registers.

use rayon::prelude::*;

use crate::kernels::isa::Isa;

/// `$vis fn $name(isa: Isa, args..)` runs `$body(args..)`, an `#[inline(always)]` function,
/// compiled for `isa`: one copy per family, each inlining the body with its target features.
macro_rules! per_isa {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $body:ident) => {
        $(#[$attr])*
        $vis fn $name(isa: Isa, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                match isa {
                    // SAFETY: callers pass a family this CPU runs (avx512f).
                    Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above, with avx2 and fma.
                    Isa::Avx2 | Isa::AvxVnni => return unsafe { avx2($($arg),*) },
                    Isa::Scalar => {}
                }
            }
            let _ = isa;
            $body($($arg),*)
        }
    };
}

/// Rows at or above which an elementwise pass is split across rayon's threads.
const PARALLEL_ROWS: usize = 64;

/// How a stored value widens to f32 in registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Widen {
    F32,
    /// bf16 bits: shifted into the high half.
    Bf16,
    /// A signed integer, converted exactly (the scale is applied apart, per position).
    I8,
}

/// A value as a KV cache stores it: f32, bf16 bits or int8, each of which widens to f32 exactly.
pub trait Stored: Copy + Send + Sync + 'static {
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // read by the x86 attention only
    const WIDEN: Widen;
    fn f32(self) -> f32;
}

impl Stored for f32 {
    const WIDEN: Widen = Widen::F32;
    #[inline(always)]
    fn f32(self) -> f32 {
        self
    }
}

impl Stored for u16 {
    const WIDEN: Widen = Widen::Bf16;
    #[inline(always)]
    fn f32(self) -> f32 {
        crate::kernels::from_bf16(self)
    }
}

impl Stored for i8 {
    const WIDEN: Widen = Widen::I8;
    #[inline(always)]
    fn f32(self) -> f32 {
        self as f32
    }
}

/// Sum of `a[i] * b[i]` with 16 independent partial sums (vectorisable; the order is fixed by
/// the length alone).
#[inline(always)]
pub fn dot<T: Stored>(a: &[f32], b: &[T]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = a.len() / 16;
    for c in 0..chunks {
        let (x, y) = (&a[c * 16..c * 16 + 16], &b[c * 16..c * 16 + 16]);
        for l in 0..16 {
            acc[l] += x[l] * y[l].f32();
        }
    }
    if chunks * 16 == a.len() {
        return hsum(&acc);
    }
    let mut tail = 0f32;
    for i in chunks * 16..a.len() {
        tail += a[i] * b[i].f32();
    }
    hsum(&acc) + tail
}

/// The 16 lanes summed in a fixed tree.
#[inline(always)]
pub fn hsum(acc: &[f32; 16]) -> f32 {
    let mut s8 = [0f32; 8];
    for l in 0..8 {
        s8[l] = acc[l] + acc[l + 8];
    }
    let s4 = [s8[0] + s8[4], s8[1] + s8[5], s8[2] + s8[6], s8[3] + s8[7]];
    (s4[0] + s4[2]) + (s4[1] + s4[3])
}

/// `1 / sqrt(mean(x²) + eps)` of one row.
#[inline(always)]
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    1.0 / (dot(x, x) / x.len() as f32 + eps).sqrt()
}

/// `out[i] = x[i] / sqrt(mean(x²) + eps) * weight[i]` per row of `weight.len()` values.
pub fn rms_norm(isa: Isa, x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    let row = |(xr, or): (&[f32], &mut [f32])| rms_norm_row(isa, xr, weight, eps, or);
    if x.len() / d >= PARALLEL_ROWS {
        x.par_chunks(d).zip(out.par_chunks_mut(d)).for_each(row);
    } else {
        x.chunks(d).zip(out.chunks_mut(d)).for_each(row);
    }
}

per_isa! {
    /// One row of [`rms_norm`].
    fn rms_norm_row(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) => rms_norm_row_body
}

#[inline(always)]
fn rms_norm_row_body(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let scale = inv_rms(x, eps);
    for ((o, v), w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

per_isa! {
    /// [`rms_norm`] in place, per `weight.len()`-sized piece (Qwen3's per-head q/k norm).
    pub fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) => rms_norm_in_place_body
}

#[inline(always)]
fn rms_norm_in_place_body(x: &mut [f32], weight: &[f32], eps: f32) {
    let d = weight.len();
    for r in x.chunks_mut(d) {
        let scale = inv_rms(r, eps);
        for (v, w) in r.iter_mut().zip(weight) {
            *v = *v * scale * w;
        }
    }
}

per_isa! {
    /// Rotates the first `2 * cos.len()` dimensions of each `head_dim`-sized head of `x` in
    /// place (the non-interleaved "rotate half" form of Llama): `(a, b) → (a cos − b sin,
    /// a sin + b cos)` on their two halves; the rest of the head (partial rotary) passes through.
    pub fn rope_in_place(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) => rope_in_place_body
}

#[inline(always)]
fn rope_in_place_body(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    assert_eq!(sin.len(), half, "rope: a sine per cosine");
    assert!(2 * half <= head_dim, "rope: more rotating dimensions than a head has");
    for head in x.chunks_mut(head_dim) {
        let (a, b) = head[..2 * half].split_at_mut(half);
        for (((a, b), &c), &s) in a.iter_mut().zip(b).zip(cos).zip(sin) {
            let (x1, x2) = (*a, *b);
            *a = x1 * c - x2 * s;
            *b = x1 * s + x2 * c;
        }
    }
}

/// `out[t][i] = silu(gu[t][i]) * gu[t][inter + i]` for rows `gu[t] = [gate | up]` of `2 inter`.
/// Few rows (a decode step's) are split into pieces of columns: an element depends on its own
/// gate and up values alone, so any split gives the same bits.
pub fn silu_mul(isa: Isa, gu: &[f32], inter: usize, out: &mut [f32]) {
    const PIECE: usize = 2048;
    let row = |(g, o): (&[f32], &mut [f32])| {
        let (gate, up) = g.split_at(inter);
        silu_mul_part(isa, gate, up, o);
    };
    if out.len() / inter >= PARALLEL_ROWS {
        gu.par_chunks(2 * inter).zip(out.par_chunks_mut(inter)).for_each(row);
    } else if out.len() >= 2 * PIECE && rayon::current_num_threads() > 1 {
        let pieces: Vec<_> = gu
            .chunks(2 * inter)
            .zip(out.chunks_mut(inter))
            .flat_map(|(g, o)| {
                let (gate, up) = g.split_at(inter);
                o.chunks_mut(PIECE).zip(gate.chunks(PIECE)).zip(up.chunks(PIECE))
            })
            .collect();
        pieces.into_par_iter().for_each(|((o, g), u)| silu_mul_part(isa, g, u, o));
    } else {
        gu.chunks(2 * inter).zip(out.chunks_mut(inter)).for_each(row);
    }
}

per_isa! {
    /// Columns of one row of [`silu_mul`]: its gate values, its up values.
    fn silu_mul_part(gate: &[f32], up: &[f32], o: &mut [f32]) => silu_mul_part_body
}

#[inline(always)]
fn silu_mul_part_body(gate: &[f32], up: &[f32], o: &mut [f32]) {
    for ((o, &x), &u) in o.iter_mut().zip(gate).zip(up) {
        *o = x / (1.0 + exp(-x)) * u;
    }
}

per_isa! {
    /// `x[i] += y[i]` (the residual connection).
    pub fn add(x: &mut [f32], y: &[f32]) => add_body
}

#[inline(always)]
fn add_body(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// `out[i] = (x[i] − mean) / sqrt(var + eps) · weight[i] + bias[i]` per row (LayerNorm, biased
/// variance as torch computes it).
pub fn layer_norm(isa: Isa, x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    let row = |(xr, or): (&[f32], &mut [f32])| layer_norm_row(isa, xr, weight, bias, eps, or);
    if x.len() / d >= PARALLEL_ROWS {
        x.par_chunks(d).zip(out.par_chunks_mut(d)).for_each(row);
    } else {
        x.chunks(d).zip(out.chunks_mut(d)).for_each(row);
    }
}

per_isa! {
    /// One row of [`layer_norm`].
    fn layer_norm_row(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) => layer_norm_row_body
}

#[inline(always)]
fn layer_norm_row_body(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len() as f32;
    let mut acc = [0f32; 16];
    let chunks = x.len() / 16;
    for c in 0..chunks {
        for l in 0..16 {
            acc[l] += x[c * 16 + l];
        }
    }
    let tail: f32 = x[chunks * 16..].iter().sum();
    let mean = (hsum(&acc) + tail) / n;
    // The centred row, then its mean square, in `out` (overwritten below).
    for (o, v) in out.iter_mut().zip(x) {
        *o = v - mean;
    }
    let scale = 1.0 / (dot(out, out) / n + eps).sqrt();
    for ((o, w), b) in out.iter_mut().zip(weight).zip(bias) {
        *o = *o * scale * w + b;
    }
}

/// An MLP's activation, for [`act_mul`] and [`act_into`] ([`silu_mul`] is the vectorised
/// SwiGLU of the Llama family).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Silu,
    /// `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
    GeluTanh,
    /// `0.5 x (1 + erf(x / √2))`.
    GeluErf,
}

#[inline(always)]
fn act(kind: Act, x: f32) -> f32 {
    match kind {
        Act::Silu => x / (1.0 + exp(-x)),
        Act::GeluTanh => {
            const C: f32 = 0.797_884_6; // √(2/π)
            0.5 * x * (1.0 + (C * (x + 0.044_715 * x * x * x)).tanh())
        }
        Act::GeluErf => {
            0.5 * x * (1.0 + candle_core::cpu::erf::erf_f32(x * std::f32::consts::FRAC_1_SQRT_2))
        }
    }
}

/// `out[t][i] = act(gu[t][i]) * gu[t][inter + i]` (GeGLU and the like) for rows
/// `[gate | up]` of `2 inter`.
pub fn act_mul(kind: Act, gu: &[f32], inter: usize, out: &mut [f32]) {
    let row = |(g, o): (&[f32], &mut [f32])| {
        let (gate, up) = g.split_at(inter);
        for ((o, &x), &u) in o.iter_mut().zip(gate).zip(up) {
            *o = act(kind, x) * u;
        }
    };
    if out.len() / inter >= PARALLEL_ROWS {
        gu.par_chunks(2 * inter).zip(out.par_chunks_mut(inter)).for_each(row);
    } else {
        gu.chunks(2 * inter).zip(out.chunks_mut(inter)).for_each(row);
    }
}

/// `out[i] = act(x[i])`.
pub fn act_into(kind: Act, x: &[f32], out: &mut [f32]) {
    const PIECE: usize = 4096;
    let piece = |(x, o): (&[f32], &mut [f32])| {
        for (o, &v) in o.iter_mut().zip(x) {
            *o = act(kind, v);
        }
    };
    if x.len() >= PARALLEL_ROWS * PIECE {
        x.par_chunks(PIECE).zip(out.par_chunks_mut(PIECE)).for_each(piece);
    } else {
        piece((x, out));
    }
}

/// `x = cap · tanh(x / cap)` (Gemma 2's soft-capping), in transformers' order.
#[inline(always)]
pub fn softcap(x: &mut [f32], cap: f32) {
    for v in x {
        *v = (*v / cap).tanh() * cap;
    }
}

/// Adding and subtracting 1.5·2²³ rounds any |x| < 2²² to the nearest integer, ties to even, in
/// two plain f32 operations (SSE2): `f32::round` is a libm call on x86-64's baseline, and
/// `round_ties_even` is one too without SSE4.1.
const ROUND: f32 = 12_582_912.0;

/// `e^x` within about 1 ulp for x in [-87.3, 88.3] (clamped outside), branch-free so that
/// loops over it vectorise: `x = n ln2 + r` with |r| ≤ ln2/2, Cephes' minimax polynomial for
/// `e^r`, then `2^n` built in the exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.3);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    // t's low mantissa bits are n itself (|n| < 2²²), so 2ⁿ needs no float-to-int conversion
    // (Rust's saturating `as`, which does not vectorise).
    let n = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    e * f32::from_bits(((n + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (ours, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((ours - want) / want).abs());
            x += 0.000_97;
        }
        assert!(worst < 2.5e-7, "relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-200.0) < 1e-37 && exp(200.0).is_finite());
    }

    #[test]
    fn rms_norm_matches_the_formula_and_keeps_rows_apart() {
        let x: Vec<f32> = (0..3 * 40).map(|i| ((i * 37 % 17) as f32 - 8.0) / 3.0).collect();
        let w: Vec<f32> = (0..40).map(|i| 0.5 + i as f32 / 40.0).collect();
        let mut out = vec![0f32; x.len()];
        rms_norm(Isa::Scalar, &x, &w, 1e-5, &mut out);
        for (r, o) in x.chunks(40).zip(out.chunks(40)) {
            let ms = r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / 40.0;
            for ((v, o), w) in r.iter().zip(o).zip(&w) {
                let want = *v as f64 / (ms + 1e-5).sqrt() * *w as f64;
                assert!((*o as f64 - want).abs() < 1e-5, "{o} vs {want}");
            }
        }
        let mut one = vec![0f32; 40];
        rms_norm(Isa::Scalar, &x[40..80], &w, 1e-5, &mut one);
        assert_eq!(one, out[40..80]);
    }

    #[test]
    fn silu_mul_and_rope_match_their_formulas() {
        let gu: Vec<f32> = (0..2 * 6).map(|i| i as f32 - 5.5).collect();
        let mut out = vec![0f32; 6];
        silu_mul(Isa::Scalar, &gu, 6, &mut out);
        for i in 0..6 {
            let g = gu[i] as f64;
            let want = g / (1.0 + (-g).exp()) * gu[6 + i] as f64;
            assert!((out[i] as f64 - want).abs() < 1e-5 * want.abs().max(1.0));
        }
        let mut x = vec![1.0f32, 2.0, 3.0, 4.0];
        rope_in_place(Isa::Scalar, &mut x, 4, &[0.0, 1.0], &[1.0, 0.0]);
        assert_eq!(x, vec![-3.0, 2.0, 1.0, 4.0]);
        // Partial rotary: the first 2 of each 3 dimensions rotate.
        let mut x = vec![1.0f32, 2.0, 5.0, 3.0, 4.0, 6.0];
        rope_in_place(Isa::Scalar, &mut x, 3, &[0.0], &[1.0]);
        assert_eq!(x, vec![-2.0, 1.0, 5.0, -4.0, 3.0, 6.0]);
    }

    #[test]
    fn layer_norm_and_gelu_match_their_formulas() {
        let x: Vec<f32> = (0..2 * 40).map(|i| ((i * 37 % 17) as f32 - 3.0) / 3.0).collect();
        let w: Vec<f32> = (0..40).map(|i| 0.5 + i as f32 / 40.0).collect();
        let b: Vec<f32> = (0..40).map(|i| i as f32 / 80.0 - 0.2).collect();
        let mut out = vec![0f32; x.len()];
        layer_norm(Isa::Scalar, &x, &w, &b, 1e-5, &mut out);
        for (r, o) in x.chunks(40).zip(out.chunks(40)) {
            let mean = r.iter().map(|v| *v as f64).sum::<f64>() / 40.0;
            let var = r.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / 40.0;
            for (i, (v, o)) in r.iter().zip(o).enumerate() {
                let want = (*v as f64 - mean) / (var + 1e-5).sqrt() * w[i] as f64 + b[i] as f64;
                assert!((*o as f64 - want).abs() < 1e-5, "{o} vs {want}");
            }
        }
        // GELU at points with known values (erf form) and its tanh approximation nearby.
        let pts = [-3.0f32, -1.0, 0.0, 0.5, 2.0];
        let mut erf = [0f32; 5];
        act_into(Act::GeluErf, &pts, &mut erf);
        let want = [-0.004_049_73, -0.158_655_25, 0.0, 0.345_731_3, 1.954_499_7];
        for (g, w) in erf.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
        let mut tanh = [0f32; 5];
        act_into(Act::GeluTanh, &pts, &mut tanh);
        assert!(tanh.iter().zip(&erf).all(|(t, e)| (t - e).abs() < 2e-3) && tanh != erf);
        let gu = [1.0f32, 2.0, 3.0, -1.0];
        let mut geglu = [0f32; 2];
        act_mul(Act::GeluTanh, &gu, 2, &mut geglu);
        assert_eq!(geglu, [act(Act::GeluTanh, 1.0) * 3.0, -act(Act::GeluTanh, 2.0)]);
        let mut capped = [100.0f32, -1.0];
        softcap(&mut capped, 5.0);
        assert!((capped[0] - 5.0).abs() < 1e-6 && (capped[1] + 5.0 * (0.2f32).tanh()).abs() < 1e-7);
    }

    /// Mixed signs and magnitudes (the softmax and SiLU inputs of a real model span tens), with
    /// values past `exp`'s clamp.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let v =
                    ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 10f32.powi((s % 4) as i32 - 1);
                if i % 97 == 13 {
                    v.signum() * 150.0
                } else {
                    v
                }
            })
            .collect()
    }

    /// A decode step's few wide rows go through the split into pieces of columns: every element
    /// still meets its own gate and up values, with the formula's bits, on every family.
    #[test]
    fn few_wide_rows_split_into_pieces_keep_each_elements_bits() {
        let (rows, inter) = (3, 2500);
        let gu = values(rows * 2 * inter, 9);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for &isa in Isa::ALL.iter().filter(|i| i.supported()) {
            let mut out = vec![0f32; rows * inter];
            pool.install(|| silu_mul(isa, &gu, inter, &mut out));
            for (t, (o, g)) in out.chunks(inter).zip(gu.chunks(2 * inter)).enumerate() {
                for (i, o) in o.iter().enumerate() {
                    let (x, u) = (g[i], g[inter + i]);
                    let want = x / (1.0 + exp(-x)) * u;
                    assert_eq!(o.to_bits(), want.to_bits(), "{} row {t} column {i}", isa.name());
                }
            }
        }
    }

    #[test]
    fn every_kernel_family_gives_the_portable_bits() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for &isa in Isa::ALL.iter().filter(|&&i| i != Isa::Scalar) {
            if !isa.supported() {
                eprintln!("skipped {}: this CPU lacks it", isa.name());
                continue;
            }
            // Row lengths off every vector width, and enough rows for the parallel split.
            for (d, rows) in [(7, 3), (40, 5), (64, 70), (576, 2), (1000, 1)] {
                let x = values(rows * d, d as u64);
                let w = values(d, 1 + d as u64);
                let run = |isa: Isa| {
                    let mut out = vec![0f32; rows * d];
                    rms_norm(isa, &x, &w, 1e-5, &mut out);
                    let mut in_place = x.clone();
                    rms_norm_in_place(isa, &mut in_place, &w, 1e-6);
                    let mut sum = x.clone();
                    add(isa, &mut sum, &out);
                    let gu = values(rows * 2 * d, 2 + d as u64);
                    let mut act = vec![0f32; rows * d];
                    silu_mul(isa, &gu, d, &mut act);
                    let (cos, sin) = (values(d, 3), values(d, 4));
                    let mut rot = values(rows * 2 * d, 5);
                    rope_in_place(isa, &mut rot, 2 * d, &cos, &sin);
                    let mut ln = vec![0f32; rows * d];
                    layer_norm(isa, &x, &w, &values(d, 6), 1e-5, &mut ln);
                    [out, in_place, sum, act, rot, ln].map(|v| bits(&v))
                };
                let (fast, slow) = (run(isa), run(Isa::Scalar));
                for (op, (f, s)) in
                    ["rms_norm", "rms_norm_in_place", "add", "silu_mul", "rope", "layer_norm"]
                        .iter()
                        .zip(fast.iter().zip(&slow))
                {
                    assert!(f == s, "{isa:?}: {op} differs, row of {d}");
                }
            }
        }
    }
}
