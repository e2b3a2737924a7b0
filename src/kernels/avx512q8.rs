//! AVX-512 microkernels for Q8_0 weights: `avx512.rs`'s kernels with each k step's W vectors
//! made from int8 (`vpmovsxbd`, `vcvtdq2ps`, times the block's scale vector, all exact) instead
//! of loaded as f32. The conversion happens once per k step and panel and serves every row of
//! the block; the FMA chain per lane is the f32 kernels' own, so the bits are theirs on the
//! dequantised W.

use std::arch::x86_64::*;

use super::avx512::finish;
use super::q8::QK;
use super::{prefetch_bytes_ahead, NR};

/// The 16 weights at `q` as f32, times `scale` (exact: see `q8.rs`).
///
/// # Safety
/// AVX-512F; `q` is readable for 16 bytes.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn weights(q: *const i8, scale: __m512) -> __m512 {
    // SAFETY: the caller guarantees 16 readable bytes.
    let v = unsafe { _mm_loadu_si128(q.cast()) };
    _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)), scale)
}

/// `rows` (1..=MR) rows of packed x (`a`: [k][rows]) times one Q8_0 panel (`q`: [k][NR] int8,
/// `s`: [k/QK rounded up][NR] scales) into `c`, writing only the first `cols` columns.
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
    q: &[i8],
    s: &[f32],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    assert!(
        a.len() >= k * rows
            && q.len() >= k * NR
            && s.len() >= k.div_ceil(QK) * NR
            && bias.is_none_or(|b| b.len() >= NR)
            && cols <= NR
    );
    let bias = bias.map_or(std::ptr::null(), |b| b.as_ptr());
    // SAFETY (all arms): bounds asserted above; feature and `c` forwarded from the caller.
    unsafe {
        let (a, q, s) = (a.as_ptr(), q.as_ptr(), s.as_ptr());
        by_rows!(rows, kern(k, a, q, s, bias, c, ldc, cols))
    }
}

#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn kern<const R: usize>(
    k: usize,
    a: *const f32,
    q: *const i8,
    s: *const f32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let (mut a, mut q) = (a, q);
    let mut k0 = 0;
    while k0 < k {
        // SAFETY: `block` checked a has k*R floats, q k*NR bytes and s a scale row per block;
        // the pointers advance by one k step per iteration, and by one scale row per block.
        unsafe {
            let sb = s.add((k0 / QK) * NR);
            prefetch_bytes_ahead(q, QK * NR);
            prefetch_bytes_ahead(sb, NR * 4);
            let (s0, s1) = (_mm512_loadu_ps(sb), _mm512_loadu_ps(sb.add(16)));
            for _ in k0..(k0 + QK).min(k) {
                let w0 = weights(q, s0);
                let w1 = weights(q.add(16), s1);
                for (i, row) in acc.iter_mut().enumerate() {
                    let xi = _mm512_set1_ps(*a.add(i));
                    row[0] = _mm512_fmadd_ps(xi, w0, row[0]);
                    row[1] = _mm512_fmadd_ps(xi, w1, row[1]);
                }
                a = a.add(R);
                q = q.add(NR);
            }
        }
        k0 += QK;
    }
    // SAFETY: `block` checked the bias slice holds NR floats, and the caller `c`.
    unsafe { finish(&mut acc, bias, c, ldc, cols) };
}

/// Most panels per [`wide`] call.
pub(super) const WIDE: usize = 4;

/// `rows` (1..=3) rows of packed x times `panels` (1..=WIDE) consecutive Q8_0 panels, only the
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
    q: &[i8],
    s: &[f32],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    assert!(
        a.len() >= k * rows
            && q.len() >= panels * k * NR
            && s.len() >= panels * k.div_ceil(QK) * NR
            && bias.is_none_or(|b| b.len() >= panels * NR)
            && cols <= NR
    );
    let bias = bias.map_or(std::ptr::null(), |b| b.as_ptr());
    // SAFETY (all arms): bounds asserted above; feature and `c` forwarded from the caller.
    unsafe {
        let (a, q, s) = (a.as_ptr(), q.as_ptr(), s.as_ptr());
        by_rows_and_panels!(rows, panels, wide_kern(k, a, q, s, bias, c, ldc, cols))
    }
}

/// R rows × V/2 panels (V 16-lane vectors per row).
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn wide_kern<const R: usize, const V: usize>(
    k: usize,
    a: *const f32,
    q: *const i8,
    s: *const f32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    let (stride, sstride) = (k * NR, k.div_ceil(QK) * NR);
    let mut k0 = 0;
    while k0 < k {
        // SAFETY: `wide` checked a has k*R floats, and each of the V/2 panels k*NR bytes and a
        // scale row per block.
        unsafe {
            let mut sv = [_mm512_setzero_ps(); V];
            for (v, sr) in sv.iter_mut().enumerate() {
                *sr = _mm512_loadu_ps(s.add((v / 2) * sstride + (k0 / QK) * NR + (v % 2) * 16));
            }
            for kk in k0..(k0 + QK).min(k) {
                let mut wv = [_mm512_setzero_ps(); V];
                for (v, wr) in wv.iter_mut().enumerate() {
                    *wr = weights(q.add((v / 2) * stride + kk * NR + (v % 2) * 16), sv[v]);
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let xi = _mm512_set1_ps(*a.add(kk * R + i));
                    for (r, &wr) in row.iter_mut().zip(&wv) {
                        *r = _mm512_fmadd_ps(xi, wr, *r);
                    }
                }
            }
        }
        k0 += QK;
    }
    // SAFETY: `wide` checked the bias slice holds V/2*NR floats, and the caller `c`.
    unsafe { finish(&mut acc, bias, c, ldc, cols) };
}
