//! AVX-512 microkernels for f16 weights: `avx512.rs`'s kernels with each W vector widened from 16
//! f16 (`vcvtph2ps`, exact) instead of loaded as f32, so each lane is the f32 kernels' FMA chain
//! over the f16-rounded W, the same bits.

use std::arch::x86_64::*;

use super::avx512::finish;
use super::{prefetch_bytes_ahead, NR};

/// The 16 weights at `w` widened to f32.
///
/// # Safety
/// AVX-512F; `w` is readable for 16 halves.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn weights(w: *const u16) -> __m512 {
    // SAFETY: the caller guarantees 32 readable bytes.
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(w.cast())) }
}

/// See `avx512::block`; same contract with `w` a [k][NR] f16 panel.
///
/// # Safety
/// The CPU must support AVX-512F, and `c` must be valid for writes of `rows` rows of `cols`
/// floats at stride `ldc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn block(
    rows: usize,
    k: usize,
    a: &[f32],
    w: &[u16],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    assert!(
        a.len() >= k * rows
            && w.len() >= k * NR
            && bias.is_none_or(|b| b.len() >= NR)
            && cols <= NR
    );
    let bias = bias.map_or(std::ptr::null(), |b| b.as_ptr());
    // SAFETY (all arms): bounds asserted above; feature and `c` forwarded from the caller.
    unsafe {
        let (a, w) = (a.as_ptr(), w.as_ptr());
        by_rows!(rows, kern(k, a, w, bias, c, ldc, cols))
    }
}

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn kern<const R: usize>(
    k: usize,
    a: *const f32,
    w: *const u16,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let (mut a, mut w) = (a, w);
    for _ in 0..k {
        // SAFETY: `block` checked a has k*R floats and w k*NR halves; the pointers advance by
        // one k step per iteration.
        unsafe {
            prefetch_bytes_ahead(w, 64);
            let w0 = weights(w);
            let w1 = weights(w.add(16));
            for (i, row) in acc.iter_mut().enumerate() {
                let xi = _mm512_set1_ps(*a.add(i));
                row[0] = _mm512_fmadd_ps(xi, w0, row[0]);
                row[1] = _mm512_fmadd_ps(xi, w1, row[1]);
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

/// `rows` (1..=3) rows of packed x times `panels` (1..=WIDE) consecutive f16 panels, only the
/// last of which may be narrower (`cols` columns): decode streams W, and several panels keep
/// enough FMA chains in flight. Same per-element order as [`block`].
///
/// # Safety
/// AVX-512F; `c` is valid for `rows` rows of (panels-1)*NR + cols floats at stride `ldc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn wide(
    rows: usize,
    panels: usize,
    k: usize,
    a: &[f32],
    w: &[u16],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    assert!(
        a.len() >= k * rows
            && w.len() >= panels * k * NR
            && bias.is_none_or(|b| b.len() >= panels * NR)
            && cols <= NR
    );
    let bias = bias.map_or(std::ptr::null(), |b| b.as_ptr());
    // SAFETY (all arms): bounds asserted above; feature and `c` forwarded from the caller.
    unsafe {
        let (a, w) = (a.as_ptr(), w.as_ptr());
        by_rows_and_panels!(rows, panels, wide_kern(k, a, w, bias, c, ldc, cols))
    }
}

/// R rows × V/2 panels (V 16-lane vectors per row).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn wide_kern<const R: usize, const V: usize>(
    k: usize,
    a: *const f32,
    w: *const u16,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    let stride = k * NR;
    for kk in 0..k {
        // SAFETY: `wide` checked a has k*R floats and each of the V/2 panels k*NR halves.
        unsafe {
            for panel in 0..V / 2 {
                prefetch_bytes_ahead(w.wrapping_add(panel * stride + kk * NR), 64);
            }
            let mut wv = [_mm512_setzero_ps(); V];
            for (v, wr) in wv.iter_mut().enumerate() {
                *wr = weights(w.add((v / 2) * stride + kk * NR + (v % 2) * 16));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let xi = _mm512_set1_ps(*a.add(kk * R + i));
                for (r, &wr) in row.iter_mut().zip(&wv) {
                    *r = _mm512_fmadd_ps(xi, wr, *r);
                }
            }
        }
    }
    // SAFETY: `wide` checked the bias slice holds V/2*NR floats, and the caller `c`.
    unsafe { finish(&mut acc, bias, c, ldc, cols) };
}
