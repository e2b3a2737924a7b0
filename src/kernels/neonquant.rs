//! NEON kernels for GGUF quantised weights on f32 activations (`quant.rs`), aarch64: as on
//! AVX2, each sub-block's weights are first made into a tile (q unpacked from its planes, then
//! one exact step with the sub-block's `a` and `o`), and every group of up to three rows runs its
//! FMA chains over the tile, carrying its accumulators from one sub-block to the next. The order
//! per element is the f32 kernels' chain over k, so the bits are those of the f32 product on the
//! dequantised W, as on every other instruction set.

use std::arch::aarch64::*;

use super::neon::widen_f16;
use super::quant::{Format, QuantType, Rule, Sc};
use super::{MR, NR};

/// 4-lane vectors per panel row.
const V: usize = NR / 4;
/// Rows whose accumulators stay in registers over a tile: 3 × 8 of the 32 registers.
const GROUP: usize = 3;

/// `quant::block_scalar`; same contract.
///
/// # Safety
/// `c` is valid for writes of `rows` rows of `cols` floats at stride `ldc`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn block(
    ty: QuantType,
    rows: usize,
    k: usize,
    a: &[f32],
    q: &[u8],
    s: &[u8],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let f = ty.format();
    assert!(
        a.len() >= k * rows
            && rows <= MR
            && k.is_multiple_of(f.block)
            && q.len() >= k * f.step()
            && s.len() >= k / f.block * f.record()
            && bias.is_none_or(|b| b.len() >= NR)
            && cols <= NR
    );
    // SAFETY (all arms): bounds asserted above.
    let acc = unsafe { by_quant_type!(ty, run(rows, k, a, q, s)) };
    // SAFETY: forwarded from the caller.
    unsafe { super::store_rows(&acc[..rows], bias, c, ldc, cols) };
}

/// `quant::scale_offset` for columns 4v..4v+4 of a block's record: the same operations.
///
/// # Safety
/// `rec` points at a whole record of `f`.
#[inline(always)]
pub(super) unsafe fn scale_offset4(
    f: &Format,
    rec: *const u8,
    sub: usize,
    v: usize,
) -> (float32x4_t, float32x4_t) {
    // SAFETY: the record holds NR d (and e) halves and NR sc (and m) bytes per sub-block.
    unsafe {
        let halves = |at: usize| widen_f16(vld1_u16(rec.add(at + 8 * v).cast()));
        let bytes = |at: usize| {
            let four = std::ptr::read_unaligned(rec.add(at + 4 * v).cast::<u32>());
            vmovl_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(four)))))
        };
        let d = halves(0);
        let e = if f.e { halves(2 * NR) } else { vdupq_n_f32(0.0) };
        let (sc, m) = match f.sc {
            Sc::None => (None, None),
            Sc::U8 => {
                let m = f.mins.then(|| vcvtq_f32_u32(bytes(f.m_at(sub))));
                (Some(vcvtq_f32_u32(bytes(f.sc_at(sub)))), m)
            }
            // Sign-extend each byte from bit 7 of its 32-bit lane.
            Sc::I8 => {
                let b = vreinterpretq_s32_u32(bytes(f.sc_at(sub)));
                (Some(vcvtq_f32_s32(vshrq_n_s32::<24>(vshlq_n_s32::<24>(b)))), None)
            }
            Sc::Nibbles => {
                let b = bytes(f.sc_at(sub));
                (
                    Some(vcvtq_f32_u32(vandq_u32(b, vdupq_n_u32(0x0F)))),
                    Some(vcvtq_f32_u32(vshrq_n_u32::<4>(b))),
                )
            }
        };
        let a = match sc {
            Some(sc) => vmulq_f32(d, sc),
            None => d,
        };
        let o = match f.rule {
            Rule::Zero(_) => vdupq_n_f32(0.0),
            Rule::Min => vnegq_f32(vmulq_f32(e, m.unwrap_or(vdupq_n_f32(0.0)))),
            Rule::Offset => e,
        };
        (a, o)
    }
}

/// The 32 q values of the k step at `q`, 4 columns a vector: a byte per column in two
/// registers (the nibbles, then each bit plane's bytes spread to the lanes by a table lookup and
/// tested against each lane's bit), then widened.
#[inline(always)]
unsafe fn unpack(f: &Format, q: *const u8) -> [uint32x4_t; V] {
    let (mut lo, mut hi) = (vdupq_n_u8(0), vdupq_n_u8(0));
    let mut planes = q;
    let mut first = 0;
    if f.nibble {
        // SAFETY: a k step holds 16 nibble bytes, then its bit planes.
        let b = unsafe { vld1q_u8(q) };
        (lo, hi) = (vandq_u8(b, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(b));
        // SAFETY: as above.
        planes = unsafe { q.add(16) };
        first = 4;
    }
    if f.planes > 0 {
        // Lane c (of 32) takes plane byte c / 8 and tests its bit c % 8.
        let spread_lo = vcombine_u8(vdup_n_u8(0), vdup_n_u8(1));
        let spread_hi = vcombine_u8(vdup_n_u8(2), vdup_n_u8(3));
        let bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
        for j in 0..f.planes {
            // SAFETY: as above: plane j is 4 bytes.
            let bits = unsafe { std::ptr::read_unaligned(planes.add(4 * j).cast::<u32>()) };
            let bytes = vreinterpretq_u8_u32(vdupq_n_u32(bits));
            let value = vdupq_n_u8(1 << (first + j));
            lo = vorrq_u8(lo, vandq_u8(vtstq_u8(vqtbl1q_u8(bytes, spread_lo), bit), value));
            hi = vorrq_u8(hi, vandq_u8(vtstq_u8(vqtbl1q_u8(bytes, spread_hi), bit), value));
        }
    }
    let wide = |b: uint8x16_t| {
        let (l, h) = (vmovl_u8(vget_low_u8(b)), vmovl_high_u8(b));
        [
            vmovl_u16(vget_low_u16(l)),
            vmovl_high_u16(l),
            vmovl_u16(vget_low_u16(h)),
            vmovl_high_u16(h),
        ]
    };
    let (l, h) = (wide(lo), wide(hi));
    [l[0], l[1], l[2], l[3], h[0], h[1], h[2], h[3]]
}

/// Rows i0..i0+G: their FMA chains over the tile's k steps (`x` holds those steps' rows, `rows`
/// apart), accumulators in registers throughout.
#[inline(always)]
fn group<const G: usize>(
    acc: &mut [[float32x4_t; V]],
    tile: &[[float32x4_t; V]],
    x: &[f32],
    rows: usize,
    i0: usize,
) {
    // SAFETY: register arithmetic only (the intrinsics are `unsafe` for their target feature,
    // NEON, which aarch64 always has).
    unsafe {
        let mut r = [[vdupq_n_f32(0.0); V]; G];
        r.copy_from_slice(&acc[i0..i0 + G]);
        for (t, w) in tile.iter().enumerate() {
            for (i, ri) in r.iter_mut().enumerate() {
                let xi = vdupq_n_f32(x[t * rows + i0 + i]);
                for v in 0..V {
                    ri[v] = vfmaq_f32(ri[v], xi, w[v]);
                }
            }
        }
        acc[i0..i0 + G].copy_from_slice(&r);
    }
}

/// Every row's accumulators (row-major, NR columns) after the whole FMA chain over k.
///
/// # Safety
/// The extents `block` asserts.
#[inline(always)]
unsafe fn run<const T: usize>(
    rows: usize,
    k: usize,
    a: &[f32],
    q: &[u8],
    s: &[u8],
) -> [[f32; NR]; MR] {
    let f = QuantType::ALL[T].format();
    let (step, record) = (f.step(), f.record());
    let mut acc = [[vdupq_n_f32(0.0); V]; MR];
    let mut tile = [[vdupq_n_f32(0.0); V]; 32];
    for b in 0..k / f.block {
        // SAFETY: `block` checked s holds a record per block.
        let rec = unsafe { s.as_ptr().add(b * record) };
        for sub in 0..f.subs() {
            let k0 = b * f.block + sub * f.sub;
            // SAFETY: as above; q holds a k step per k.
            unsafe {
                let so: [_; V] = std::array::from_fn(|v| scale_offset4(&f, rec, sub, v));
                for (t, w) in tile[..f.sub].iter_mut().enumerate() {
                    let qv = unpack(&f, q.as_ptr().add((k0 + t) * step));
                    for v in 0..V {
                        let (sa, o) = so[v];
                        w[v] = match f.rule {
                            Rule::Zero(z) => {
                                let q =
                                    vsubq_s32(vreinterpretq_s32_u32(qv[v]), vdupq_n_s32(z as i32));
                                vmulq_f32(vcvtq_f32_s32(q), sa)
                            }
                            Rule::Min | Rule::Offset => vfmaq_f32(o, vcvtq_f32_u32(qv[v]), sa),
                        };
                    }
                }
            }
            let x = &a[k0 * rows..(k0 + f.sub) * rows];
            let mut i0 = 0;
            while i0 < rows {
                let g = (rows - i0).min(GROUP);
                match g {
                    1 => group::<1>(&mut acc, &tile[..f.sub], x, rows, i0),
                    2 => group::<2>(&mut acc, &tile[..f.sub], x, rows, i0),
                    _ => group::<3>(&mut acc, &tile[..f.sub], x, rows, i0),
                }
                i0 += g;
            }
        }
    }
    let mut out = [[0.0f32; NR]; MR];
    for (o, r) in out.iter_mut().zip(&acc).take(rows) {
        for (v, &rv) in r.iter().enumerate() {
            // SAFETY: each row of `out` holds V·4 floats.
            unsafe { vst1q_f32(o.as_mut_ptr().add(4 * v), rv) };
        }
    }
    out
}
