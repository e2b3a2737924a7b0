//! NEON kernels for int8 products (`int8.rs`), aarch64. A unit row's 4-byte column lanes meet a
//! broadcast quad of xq in `sdot` (the dot-product extension: Σ of four i8·i8 into each i32
//! lane), or, on a CPU without it, in `smull` + two pairwise adds (a pair of products is at most
//! 2·128·127 < 2¹⁵, so the i16 step is exact). The weights go in signed: Q8_0's stored `q + 128`
//! with its top bit flipped is the file's signed q, and the other types' quants (at most 63) are
//! non-negative bytes. The integer sums are exact, so each element gets `int8.rs`'s float
//! operations in its order and the bits of the portable and x86 kernels. A panel is taken 4
//! columns (one vector) at a time, four rows at once.

use std::arch::aarch64::*;

use super::int8::{Kind, Quants, Shape, UNIT, XU};
use super::neonquant::scale_offset4;
use super::{MR, NR};

/// Rows whose accumulators and integer sums stay in registers while one unpacked weight vector
/// serves them all.
const GROUP: usize = 4;
/// How many units ahead of the one being multiplied its weights are fetched.
const PREFETCH_UNITS: usize = 8;

/// `int8::block_scalar` with `sdot`; same contract (rows ≤ MR, k a whole number of blocks).
///
/// # Safety
/// The CPU has the dot-product extension (`isa::cpu_has_neon_dotprod`).
#[target_feature(enable = "dotprod")]
pub(super) unsafe fn block_dot(
    kind: Kind,
    rows: usize,
    k: usize,
    a: &[u32],
    q: &[u8],
    s: &[u8],
    out: &mut [[f32; NR]; MR],
) {
    // SAFETY: forwarded; `Dot` is only used here, under the feature.
    unsafe { block::<Dot>(kind, rows, k, a, q, s, out) }
}

/// `int8::block_scalar` on NEON alone (`smull`); same contract.
pub(super) fn block_plain(
    kind: Kind,
    rows: usize,
    k: usize,
    a: &[u32],
    q: &[u8],
    s: &[u8],
    out: &mut [[f32; NR]; MR],
) {
    // SAFETY: `Plain` needs nothing past NEON, aarch64's baseline.
    unsafe { block::<Plain>(kind, rows, k, a, q, s, out) }
}

/// Σ over each 4-byte lane of w·x, added to `acc` (also attention's int8 scores).
pub(crate) trait Dot4: Copy {
    /// # Safety
    /// The CPU runs this implementation's instructions.
    unsafe fn dot(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t;
}

/// `sdot`: the CPU must have the dot-product extension, enabled on the caller.
#[derive(Clone, Copy)]
pub(crate) struct Dot;

impl Dot4 for Dot {
    #[inline]
    #[target_feature(enable = "dotprod")]
    unsafe fn dot(mut acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
        // (`vdotq_s32` is not stable in Rust yet; this is the instruction it names.)
        // SAFETY: register-only; the feature is enabled on this function.
        unsafe {
            std::arch::asm!("sdot {a:v}.4s, {w:v}.16b, {x:v}.16b", a = inout(vreg) acc, w = in(vreg) w, x = in(vreg) x, options(pure, nomem, nostack))
        };
        acc
    }
}

/// `smull` and pairwise adds: NEON alone.
#[derive(Clone, Copy)]
pub(crate) struct Plain;

impl Dot4 for Plain {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
        let pairs = vpaddq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(x)), vmull_high_s8(w, x));
        vpadalq_s16(acc, pairs)
    }
}

#[inline(always)]
unsafe fn block<D: Dot4>(
    kind: Kind,
    rows: usize,
    k: usize,
    a: &[u32],
    q: &[u8],
    s: &[u8],
    out: &mut [[f32; NR]; MR],
) {
    let f = kind.format();
    assert!(
        rows <= MR
            && k.is_multiple_of(f.block)
            && a.len() >= k / UNIT * XU * rows
            && q.len() >= k / UNIT * kind.unit_bytes()
            && s.len() >= k / f.block * f.record()
    );
    let groups = rows.div_ceil(GROUP);
    let (a, q, s) = (a.as_ptr(), q.as_ptr(), s.as_ptr());
    for g in 0..groups {
        let (i0, i1) = (g * rows / groups, (g + 1) * rows / groups);
        for v in 0..NR / 4 {
            let o = &mut out[i0..i1];
            // SAFETY (all arms): bounds asserted above, rows i0..i1 < rows; `D` from the caller.
            unsafe {
                match i1 - i0 {
                    1 => by_int8_kind!(kind, K => kern::<1, K, D>(k, a, rows, i0, q, s, v, o)),
                    2 => by_int8_kind!(kind, K => kern::<2, K, D>(k, a, rows, i0, q, s, v, o)),
                    3 => by_int8_kind!(kind, K => kern::<3, K, D>(k, a, rows, i0, q, s, v, o)),
                    _ => by_int8_kind!(kind, K => kern::<4, K, D>(k, a, rows, i0, q, s, v, o)),
                }
            }
        }
    }
}

/// Bit `from` of each byte of `hb` moved to bit `to`, the rest cleared.
///
/// # Safety
/// None past NEON, aarch64's baseline (the intrinsics are `unsafe` to call all the same).
#[inline(always)]
unsafe fn move_bit(hb: uint8x16_t, from: usize, to: usize) -> int8x16_t {
    // (`vshlq_u8` shifts right by a negative count.)
    // SAFETY: register-only NEON.
    unsafe {
        let moved = vshlq_u8(hb, vdupq_n_s8(to as i8 - from as i8));
        vreinterpretq_s8_u8(vandq_u8(moved, vdupq_n_u8(1 << to)))
    }
}

/// Bits 2t..2t+1 of each byte of `g` as a byte (a 2-bit q of quad t).
///
/// # Safety
/// As [`move_bit`].
#[inline(always)]
unsafe fn two_bits(g: uint8x16_t, t: usize) -> int8x16_t {
    // SAFETY: register-only NEON.
    unsafe {
        let moved = vshlq_u8(g, vdupq_n_s8(-2 * t as i8));
        vreinterpretq_s8_u8(vandq_u8(moved, vdupq_n_u8(3)))
    }
}

/// The 16 bytes of columns 4v..4v+4 in a unit row at `p`.
#[inline(always)]
unsafe fn load(p: *const u8, v: usize) -> int8x16_t {
    // SAFETY: the caller guarantees a 128-byte unit row at p.
    unsafe { vreinterpretq_s8_u8(vld1q_u8(p.add(16 * v))) }
}

/// R rows from `i0` of the block's packed x times columns 4v..4v+4 of the panel, into those
/// columns of `out`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn kern<const R: usize, const K: usize, D: Dot4>(
    k: usize,
    a: *const u32,
    rows: usize,
    i0: usize,
    q: *const u8,
    s: *const u8,
    v: usize,
    out: &mut [[f32; NR]],
) {
    let Shape { format: f, quants, zero: zero_point, record, unit_bytes: ub, per_block } =
        const { Shape::of(K) };
    let low = vdupq_n_s8(0x0F);
    let zero = vdupq_n_s32(0);
    let mut acc = [vdupq_n_f32(0.0); R];
    for u in 0..k / UNIT {
        // SAFETY: `block` checked the x, quant and record extents for every unit.
        unsafe {
            let x = |e: usize, i: usize| *a.add((u * rows + i0 + i) * XU + e);
            let xb = |e: usize, i: usize| vreinterpretq_s8_u32(vdupq_n_u32(x(e, i)));
            let rec = s.add(u / per_block * record);
            let unit = q.add(u * ub);
            // Weights a few units ahead, on the first of the column passes (see
            // `avx512int8`).
            if v == 0 {
                let ahead = unit.wrapping_add(PREFETCH_UNITS * ub);
                for line in (0..ub).step_by(64) {
                    // A hint only: it cannot fault, whatever the address.
                    std::arch::asm!("prfm pldl1keep, [{p}]", p = in(reg) ahead.wrapping_add(line), options(nostack, preserves_flags, readonly));
                }
            }
            let mut t = [vdupq_n_f32(0.0); R];
            match quants {
                Quants::Bytes | Quants::Nibbles | Quants::Nibbles5 => {
                    // J = Σ (q - z)·xq for Q8_0 (its top bit flipped: q), I = Σ q·xq for the
                    // nibble types.
                    let mut ia = [zero; R];
                    if quants == Quants::Bytes {
                        for quad in 0..8 {
                            let w = veorq_s8(load(unit.add(quad * 4 * NR), v), vdupq_n_s8(i8::MIN));
                            for (i, r) in ia.iter_mut().enumerate() {
                                *r = D::dot(*r, w, xb(quad, i));
                            }
                        }
                    } else {
                        let hb = (quants == Quants::Nibbles5)
                            .then(|| vreinterpretq_u8_s8(load(unit.add(4 * 4 * NR), v)));
                        for g in 0..4 {
                            let w = load(unit.add(g * 4 * NR), v);
                            let (mut lo, mut hi) = (
                                vandq_s8(w, low),
                                vreinterpretq_s8_u8(vshrq_n_u8::<4>(vreinterpretq_u8_s8(w))),
                            );
                            if let Some(hb) = hb {
                                lo = vorrq_s8(lo, move_bit(hb, 2 * g, 4));
                                hi = vorrq_s8(hi, move_bit(hb, 2 * g + 1, 4));
                            }
                            for (i, r) in ia.iter_mut().enumerate() {
                                *r = D::dot(D::dot(*r, lo, xb(2 * g, i)), hi, xb(2 * g + 1, i));
                            }
                        }
                    }
                    let (sa, so) = scale_offset4(&f, rec, u % per_block, v);
                    for (i, (ti, r)) in t.iter_mut().zip(ia).enumerate() {
                        let sum = x(9, i) as i32 + x(10, i) as i32;
                        *ti = match zero_point {
                            Some(z) if quants != Quants::Bytes => {
                                vmulq_f32(vcvtq_f32_s32(vsubq_s32(r, vdupq_n_s32(z * sum))), sa)
                            }
                            Some(_) => vmulq_f32(vcvtq_f32_s32(r), sa),
                            None => vfmaq_f32(
                                vmulq_f32(vcvtq_f32_s32(r), sa),
                                so,
                                vdupq_n_f32(sum as f32),
                            ),
                        };
                    }
                }
                Quants::Six | Quants::Two | Quants::Three => {
                    let high = vdupq_n_u8(0x30);
                    for sixteen in 0..2 {
                        let mut ia = [zero; R];
                        let mut pair_of = |quad: usize, w0: int8x16_t, w1: int8x16_t| {
                            for (i, r) in ia.iter_mut().enumerate() {
                                *r = D::dot(D::dot(*r, w0, xb(quad, i)), w1, xb(quad + 1, i));
                            }
                        };
                        if quants == Quants::Six {
                            let base = unit.add(sixteen * 3 * 4 * NR);
                            let hb = vreinterpretq_u8_s8(load(base.add(2 * 4 * NR), v));
                            for pair in 0..2 {
                                let nib = vreinterpretq_u8_s8(load(base.add(pair * 4 * NR), v));
                                // hb bits 2t..2t+1 to bits 4..5 for quads t = 2·pair, 2·pair+1.
                                let (top0, top1) = if pair == 0 {
                                    (vshlq_n_u8::<4>(hb), vshlq_n_u8::<2>(hb))
                                } else {
                                    (hb, vshrq_n_u8::<2>(hb))
                                };
                                let lo4 = vdupq_n_u8(0x0F);
                                let w0 = vreinterpretq_s8_u8(vorrq_u8(
                                    vandq_u8(nib, lo4),
                                    vandq_u8(top0, high),
                                ));
                                let w1 = vreinterpretq_s8_u8(vorrq_u8(
                                    vshrq_n_u8::<4>(nib),
                                    vandq_u8(top1, high),
                                ));
                                pair_of(4 * sixteen + 2 * pair, w0, w1);
                            }
                        } else {
                            let g = vreinterpretq_u8_s8(load(unit.add(sixteen * 4 * NR), v));
                            let hb = (quants == Quants::Three)
                                .then(|| vreinterpretq_u8_s8(load(unit.add(2 * 4 * NR), v)));
                            let q = |t: usize| match hb {
                                Some(hb) => {
                                    vorrq_s8(two_bits(g, t), move_bit(hb, 4 * sixteen + t, 2))
                                }
                                None => two_bits(g, t),
                            };
                            for pair in 0..2 {
                                pair_of(4 * sixteen + 2 * pair, q(2 * pair), q(2 * pair + 1));
                            }
                        }
                        let (sa, so) = scale_offset4(&f, rec, 2 * (u % per_block) + sixteen, v);
                        for (i, (ti, r)) in t.iter_mut().zip(ia).enumerate() {
                            let sum = x(9 + sixteen, i) as i32;
                            *ti = match zero_point {
                                // J = I - z·S; t = J₀·a₀, then fma(J₁, a₁, t).
                                Some(z) => {
                                    let j = vcvtq_f32_s32(vsubq_s32(r, vdupq_n_s32(z * sum)));
                                    if sixteen == 0 {
                                        vmulq_f32(j, sa)
                                    } else {
                                        vfmaq_f32(*ti, j, sa)
                                    }
                                }
                                // t = fma(o₀, S₀, I₀·a₀), then fma(o₁, S₁, fma(I₁, a₁, t)).
                                None => {
                                    let i = vcvtq_f32_s32(r);
                                    let t = if sixteen == 0 {
                                        vmulq_f32(i, sa)
                                    } else {
                                        vfmaq_f32(*ti, i, sa)
                                    };
                                    vfmaq_f32(t, so, vdupq_n_f32(sum as f32))
                                }
                            };
                        }
                    }
                }
            }
            for (i, (row, ti)) in acc.iter_mut().zip(t).enumerate() {
                *row = vfmaq_f32(*row, ti, vdupq_n_f32(f32::from_bits(x(8, i))));
            }
        }
    }
    for (row, o) in acc.iter().zip(out.iter_mut()) {
        // SAFETY: `o` holds NR = 32 floats; columns 4v.. take 4.
        unsafe { vst1q_f32(o.as_mut_ptr().add(4 * v), *row) };
    }
}
