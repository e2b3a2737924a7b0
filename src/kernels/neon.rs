//! NEON microkernels (aarch64) for f32, f16, Q8_0 and bf16 weights: the packed layouts and
//! per-element orders of the x86 kernels (one fused multiply-add chain over k from 0, then
//! `+ bias`; bf16 as `bf16.rs`'s emulation, the odd product first), in 4-lane registers, so every
//! element has the bits the portable and x86 kernels give. NEON is aarch64's baseline, so none of
//! this needs a runtime check; what the portable kernels lack is register blocking: 32 vector
//! registers hold 3 rows × 32 columns of accumulators, the row's x broadcasts and one W vector,
//! and a row block of up to MR rows runs three rows at a time.
//!
//! W vectors come from a [`Panel`]: loaded as f32, widened from f16 (`fcvtl`, exact), made from
//! Q8_0's int8 times the block's scale (exact), or widened from bf16 pairs, one half a step.

use std::arch::aarch64::*;

use super::q8::QK;
use super::NR;

/// 4-lane vectors per row of one panel.
const V: usize = NR / 4;
/// Rows per inner call: 3 × 8 accumulators + 3 broadcasts + a W vector fit in 32 registers.
const R3: usize = 3;

/// One panel of W as the kernel reads it: vector `v` (columns 4v..4v+4) of k step `kk`.
trait Panel: Copy {
    /// # Safety
    /// `kk` < the panel's steps and `v` < V.
    unsafe fn w(self, kk: usize, v: usize) -> float32x4_t;

    /// The row of packed x that step `kk` multiplies.
    #[inline(always)]
    fn x_row(kk: usize) -> usize {
        kk
    }
}

/// f32 weights, `[k][NR]`.
#[derive(Clone, Copy)]
struct F32(*const f32);

impl Panel for F32 {
    #[inline(always)]
    unsafe fn w(self, kk: usize, v: usize) -> float32x4_t {
        // SAFETY: the caller's bounds; the panel holds k·NR floats.
        unsafe { vld1q_f32(self.0.add(kk * NR + 4 * v)) }
    }
}

/// f16 weights, `[k][NR]` halves.
#[derive(Clone, Copy)]
struct F16(*const u16);

impl Panel for F16 {
    #[inline(always)]
    unsafe fn w(self, kk: usize, v: usize) -> float32x4_t {
        // SAFETY: as for F32, with k·NR halves.
        unsafe { widen_f16(vld1_u16(self.0.add(kk * NR + 4 * v))) }
    }
}

/// Q8_0 weights: `[k][NR]` int8 and `[k/QK rounded up][NR]` scales.
#[derive(Clone, Copy)]
struct Q8(*const i8, *const f32);

impl Panel for Q8 {
    #[inline(always)]
    unsafe fn w(self, kk: usize, v: usize) -> float32x4_t {
        // SAFETY: as for F32: four int8 at (kk, 4v), the scale row of kk's block.
        unsafe {
            let four = std::ptr::read_unaligned(self.0.add(kk * NR + 4 * v).cast::<u32>());
            let q = vmovl_s16(vget_low_s16(vmovl_s8(vreinterpret_s8_u32(vdup_n_u32(four)))));
            vmulq_f32(vcvtq_f32_s32(q), vld1q_f32(self.1.add((kk / QK) * NR + 4 * v)))
        }
    }
}

/// bf16 weights, `[kp][NR]` pairs (k = 2p in the low half), run as 2·kp steps in the order of
/// `bf16.rs`'s emulation: step 2p is the pair's odd weight (the high half) against x row 2p + 1,
/// step 2p + 1 its even one against row 2p. Widening is exact: masking, or shifting up.
#[derive(Clone, Copy)]
struct Bf16(*const u32);

impl Panel for Bf16 {
    #[inline(always)]
    unsafe fn w(self, kk: usize, v: usize) -> float32x4_t {
        // SAFETY: the caller's bounds; the panel holds kp·NR pairs.
        let pair = unsafe { vld1q_u32(self.0.add((kk / 2) * NR + 4 * v)) };
        if kk.is_multiple_of(2) {
            vreinterpretq_f32_u32(vandq_u32(pair, vdupq_n_u32(0xffff_0000)))
        } else {
            vreinterpretq_f32_u32(vshlq_n_u32::<16>(pair))
        }
    }

    #[inline(always)]
    fn x_row(kk: usize) -> usize {
        kk ^ 1
    }
}

/// Four f16 widened to f32, exactly (`fcvtl`; Rust's f16 NEON intrinsics are not stable yet).
#[inline(always)]
pub(super) fn widen_f16(h: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: a register-only conversion every aarch64 CPU has (FP is baseline).
    unsafe {
        std::arch::asm!("fcvtl {o:v}.4s, {i:v}.4h", o = out(vreg) out, i = in(vreg) h, options(pure, nomem, nostack))
    };
    out
}

/// `scalar::block` on f32 weights; same contract.
///
/// # Safety
/// `c` must be valid for writes of `rows` rows of `cols` floats at stride `ldc`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn block(
    rows: usize,
    k: usize,
    a: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    assert!(w.len() >= k * NR);
    // SAFETY: bounds asserted here and in `run`; `c` from the caller.
    unsafe { run(rows, k, a, F32(w.as_ptr()), bias, c, ldc, cols) }
}

/// `f16::block_scalar` on a `[k][NR]` f16 panel; same contract.
///
/// # Safety
/// As for [`block`].
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn block_f16(
    rows: usize,
    k: usize,
    a: &[f32],
    w: &[u16],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    assert!(w.len() >= k * NR);
    // SAFETY: as for `block`.
    unsafe { run(rows, k, a, F16(w.as_ptr()), bias, c, ldc, cols) }
}

/// `scalar::block_q8`; same contract.
///
/// # Safety
/// As for [`block`].
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn block_q8(
    rows: usize,
    k: usize,
    a: &[f32],
    q: &[i8],
    s: &[f32],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    assert!(q.len() >= k * NR && s.len() >= k.div_ceil(QK) * NR);
    // SAFETY: as for `block`.
    unsafe { run(rows, k, a, Q8(q.as_ptr(), s.as_ptr()), bias, c, ldc, cols) }
}

/// Rows three at a time through [`kern`].
///
/// # Safety
/// `w` holds the panel's k steps; `c` as for [`block`].
#[allow(clippy::too_many_arguments)]
unsafe fn run<W: Panel>(
    rows: usize,
    k: usize,
    a: &[f32],
    w: W,
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    assert!(a.len() >= k * rows && bias.is_none_or(|b| b.len() >= NR) && cols <= NR);
    let bias = bias.map_or(std::ptr::null(), |b| b.as_ptr());
    let mut i0 = 0;
    while i0 < rows {
        let r = (rows - i0).min(R3);
        // SAFETY: rows i0..i0+r of the [k][rows] block are in `a`; `w` and `c` from the caller.
        unsafe {
            let (a, c) = (a.as_ptr().add(i0), c.add(i0 * ldc));
            match r {
                1 => kern::<1, W>(k, a, rows, w, bias, c, ldc, cols),
                2 => kern::<2, W>(k, a, rows, w, bias, c, ldc, cols),
                _ => kern::<3, W>(k, a, rows, w, bias, c, ldc, cols),
            }
        }
        i0 += r;
    }
}

/// R rows (`a` at this call's first row of a `[k][lda]` block) times the panel's k steps.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn kern<const R: usize, W: Panel>(
    k: usize,
    a: *const f32,
    lda: usize,
    w: W,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[vdupq_n_f32(0.0); V]; R];
    for kk in 0..k {
        // SAFETY: `run` checked a has k·lda floats; `w` holds k steps.
        unsafe {
            let x = a.add(W::x_row(kk) * lda);
            let xb: [float32x4_t; R] = std::array::from_fn(|i| vdupq_n_f32(*x.add(i)));
            for v in 0..V {
                let wv = w.w(kk, v);
                for (row, &xi) in acc.iter_mut().zip(&xb) {
                    row[v] = vfmaq_f32(row[v], xi, wv);
                }
            }
        }
    }
    // SAFETY: `run` checked the bias, the caller `c`.
    unsafe { finish(&mut acc, bias, c, ldc, cols) };
}

/// `bf16::fast` (no FMA can come out tiny: the caller's exponent check) on widened x
/// (`[2kp+1][rows]`) and a bf16 pair panel (`[kp][NR]`); same contract as [`block`].
///
/// # Safety
/// As for [`block`], and the caller's exponent check has passed.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn block_bf16(
    rows: usize,
    kp: usize,
    a: &[f32],
    w: &[u32],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    assert!(w.len() >= kp * NR);
    // SAFETY: as for `block`.
    unsafe { run(rows, 2 * kp, a, Bf16(w.as_ptr()), bias, c, ldc, cols) }
}

/// Adds the bias (if any) and stores R rows × `cols` columns.
///
/// # Safety
/// `bias` is null or holds NR floats; `c` is valid for writes of R rows of `cols` floats at
/// stride `ldc`.
#[inline(always)]
unsafe fn finish<const R: usize>(
    acc: &mut [[float32x4_t; V]; R],
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    if !bias.is_null() {
        for v in 0..V {
            // SAFETY: the caller guarantees NR bias floats.
            let b = unsafe { vld1q_f32(bias.add(4 * v)) };
            for row in acc.iter_mut() {
                row[v] = vaddq_f32(row[v], b);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        let mut tmp = [0.0f32; NR];
        for (v, &r) in row.iter().enumerate() {
            // SAFETY: tmp has NR = 4·V floats.
            unsafe { vst1q_f32(tmp.as_mut_ptr().add(4 * v), r) };
        }
        // SAFETY: the caller guarantees `cols` floats per row at stride ldc.
        unsafe { std::ptr::copy_nonoverlapping(tmp.as_ptr(), c.add(i * ldc), cols) };
    }
}
