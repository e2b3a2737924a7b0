//! AVX-512 BF16 microkernels for bf16 weights: R rows × 32 columns in 2·R zmm accumulators, one
//! `vdpbf16ps` per accumulator per k-pair. W is `[kp][NR]` u32 per panel and x `[kp][R]` u32,
//! each u32 the bf16 pair (k = 2p in the low half, 2p+1 in the high half) that one 32-bit lane
//! of `vdpbf16ps` takes. Each lane is one `vdpbf16ps` chain over p from 0, then `+ bias`, in
//! both [`block`] and [`wide`], so which of them computes an element does not change its bits.

use std::arch::x86_64::*;

use super::avx512::finish;
use super::{prefetch_panel_ahead, NR};

/// One `vdpbf16ps`: acc + x·w over the bf16 pair of each lane. The `__m512i` → `__m512bh`
/// transmutes are bit casts between 512-bit vector types of the same size.
#[inline]
#[target_feature(enable = "avx512bf16,avx512f")]
fn dp(acc: __m512, x: __m512i, w: __m512i) -> __m512 {
    // SAFETY: both types are 64-byte SIMD vectors with no invalid bit patterns.
    let (x, w) = unsafe {
        (std::mem::transmute::<__m512i, __m512bh>(x), std::mem::transmute::<__m512i, __m512bh>(w))
    };
    _mm512_dpbf16_ps(acc, x, w)
}

/// Row `src` of x as bf16 pairs into `dst[p * stride]` (p < k/2 rounded up; a missing high
/// half is 0), 32 values per `vcvtne2ps2bf16`: nearest even, below-normal inputs to signed
/// zero, as [`super::to_bf16`] (which differs only in NaN payloads; `to_bf16_matches_hardware`).
/// Every row of every product goes through here, so rows stay comparable bit for bit.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512 BF16.
#[target_feature(enable = "avx512bf16,avx512f")]
pub(super) unsafe fn pack_row(src: &[f32], dst: &mut [u32], stride: usize) {
    let pairs = src.len().div_ceil(2);
    let mut padded = [0f32; 32];
    let mut out = [0u32; 16];
    for (c, chunk) in src.chunks(32).enumerate() {
        let v: &[f32] = if chunk.len() == 32 {
            chunk
        } else {
            padded[..chunk.len()].copy_from_slice(chunk);
            &padded
        };
        // SAFETY: `v` holds 32 floats and `out` 16 u32 (64 bytes); the feature is the caller's.
        unsafe {
            let r =
                _mm512_cvtne2ps_pbh(_mm512_loadu_ps(v[16..].as_ptr()), _mm512_loadu_ps(v.as_ptr()));
            _mm512_storeu_si512(
                out.as_mut_ptr().cast(),
                std::mem::transmute::<__m512bh, __m512i>(r),
            );
        }
        for (j, &pair) in out.iter().enumerate().take(pairs - c * 16) {
            dst[(c * 16 + j) * stride] = pair;
        }
    }
}

/// `rows` (1..=MR) rows of packed x (`a`: [kp][rows]) times one bf16 W panel (`w`: [kp][NR])
/// into `c` (row stride `ldc`), writing only the first `cols` columns.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512 BF16, and `c` must be valid for writes of `rows`
/// rows of `cols` floats at stride `ldc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512bf16,avx512f")]
pub(super) unsafe fn block(
    rows: usize,
    kp: usize,
    a: &[u32],
    w: &[u32],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    assert!(
        a.len() >= kp * rows
            && w.len() >= kp * NR
            && bias.is_none_or(|b| b.len() >= NR)
            && cols <= NR
    );
    let bias = bias.map_or(std::ptr::null(), |b| b.as_ptr());
    // SAFETY (all arms): bounds asserted above; features and `c` forwarded from the caller.
    unsafe {
        let (a, w) = (a.as_ptr(), w.as_ptr());
        by_rows!(rows, kern(kp, a, w, bias, c, ldc, cols))
    }
}

#[inline]
#[target_feature(enable = "avx512bf16,avx512f")]
unsafe fn kern<const R: usize>(
    kp: usize,
    a: *const u32,
    w: *const u32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let (mut a, mut w) = (a, w);
    for _ in 0..kp {
        // SAFETY: `block` checked a has kp*R and w has kp*NR u32s; the pointers advance by one
        // k-pair per iteration.
        unsafe {
            prefetch_panel_ahead(w);
            let w0 = _mm512_loadu_si512(w.cast());
            let w1 = _mm512_loadu_si512(w.add(16).cast());
            for (i, row) in acc.iter_mut().enumerate() {
                let xi = _mm512_set1_epi32(*a.add(i) as i32);
                row[0] = dp(row[0], xi, w0);
                row[1] = dp(row[1], xi, w1);
            }
            a = a.add(R);
            w = w.add(NR);
        }
    }
    // SAFETY: `block` checked the bias slice holds NR floats, and the caller `c`.
    unsafe { finish(&mut acc, bias, c, ldc, cols) };
}

/// Most panels per [`wide`] call.
pub(super) const WIDE: usize = 4;

/// `rows` (1..=3) rows of packed x times `panels` (1..=WIDE) consecutive bf16 panels, only the
/// last of which may be narrower (`cols` columns): decode is bound by W bandwidth, and one panel
/// would leave only two dependency chains in flight. Same per-element order as [`block`].
///
/// # Safety
/// AVX-512F and AVX-512 BF16; `c` is valid for `rows` rows of (panels-1)*NR + cols floats at
/// stride `ldc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512bf16,avx512f")]
pub(super) unsafe fn wide(
    rows: usize,
    panels: usize,
    kp: usize,
    a: &[u32],
    w: &[u32],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    assert!(
        a.len() >= kp * rows
            && w.len() >= panels * kp * NR
            && bias.is_none_or(|b| b.len() >= panels * NR)
            && cols <= NR
    );
    let bias = bias.map_or(std::ptr::null(), |b| b.as_ptr());
    // SAFETY (all arms): bounds asserted above; features and `c` forwarded from the caller.
    unsafe {
        let (a, w) = (a.as_ptr(), w.as_ptr());
        by_rows_and_panels!(rows, panels, wide_kern(kp, a, w, bias, c, ldc, cols))
    }
}

/// R rows × V/2 panels (V 16-lane vectors per row).
#[inline]
#[target_feature(enable = "avx512bf16,avx512f")]
unsafe fn wide_kern<const R: usize, const V: usize>(
    kp: usize,
    a: *const u32,
    w: *const u32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    let stride = kp * NR;
    for p in 0..kp {
        // SAFETY: `wide` checked a has kp*R u32s and each of the V/2 panels kp*NR.
        unsafe {
            for panel in 0..V / 2 {
                prefetch_panel_ahead(w.wrapping_add(panel * stride + p * NR));
            }
            let mut wv = [_mm512_setzero_si512(); V];
            for (v, wr) in wv.iter_mut().enumerate() {
                *wr = _mm512_loadu_si512(w.add((v / 2) * stride + p * NR + (v % 2) * 16).cast());
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let xi = _mm512_set1_epi32(*a.add(p * R + i) as i32);
                for (r, &wr) in row.iter_mut().zip(&wv) {
                    *r = dp(*r, xi, wr);
                }
            }
        }
    }
    // SAFETY: `wide` checked the bias slice holds V/2*NR floats, and the caller `c`.
    unsafe { finish(&mut acc, bias, c, ldc, cols) };
}
