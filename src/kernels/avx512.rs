//! AVX-512 microkernel: R rows × 32 columns in 2·R zmm accumulators. Per k step two W loads,
//! R broadcasts of x (folded into the FMAs as `{1to16}` operands) and 2·R FMAs; each lane is one
//! FMA chain over k from 0, then `+ bias`: the same per-element order as `scalar.rs`.

use std::arch::x86_64::*;

use super::{prefetch_panel_ahead, NR};

/// See `scalar::block`; same contract.
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
    w: &[f32],
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
    w: *const f32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let (mut a, mut w) = (a, w);
    for _ in 0..k {
        // SAFETY: `block` checked a has k*R and w has k*NR floats; the pointers advance by one
        // k step per iteration.
        unsafe {
            prefetch_panel_ahead(w);
            let w0 = _mm512_loadu_ps(w);
            let w1 = _mm512_loadu_ps(w.add(16));
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

/// Adds the bias (if any) and stores R rows × V vectors, the last panel masked to `cols`.
///
/// # Safety
/// `bias` is null or holds V·16 floats; `c` as for [`wide`] with V/2 panels.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn finish<const R: usize, const V: usize>(
    acc: &mut [[__m512; V]; R],
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    if !bias.is_null() {
        for v in 0..V {
            // SAFETY: the caller guarantees V·16 bias floats.
            let b = unsafe { _mm512_loadu_ps(bias.add(v * 16)) };
            for row in acc.iter_mut() {
                row[v] = _mm512_add_ps(row[v], b);
            }
        }
    }
    let last = if cols >= NR { u32::MAX } else { (1u32 << cols) - 1 };
    for (i, row) in acc.iter().enumerate() {
        for (v, &r) in row.iter().enumerate() {
            let mask = if v + 2 < V { u16::MAX } else { (last >> (16 * (v % 2))) as u16 };
            // SAFETY: the caller guarantees the columns up to `cols` of the last panel per row at
            // stride ldc; masked-off lanes are not written, and `wrapping_add` because past a
            // narrow last panel the vector may start beyond `out`.
            unsafe { _mm512_mask_storeu_ps(c.wrapping_add(i * ldc + v * 16), mask, r) };
        }
    }
}

/// Most panels per [`wide`] call.
pub(super) const WIDE: usize = 4;

/// `rows` (1..=3) rows of packed x times `panels` (1..=WIDE) consecutive panels, only the last
/// of which may be narrower (`cols` columns). With one panel a decode step has only two FMA
/// chains and waits on FMA latency; four panels give eight. Same per-element order as [`block`].
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
    w: &[f32],
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
    w: *const f32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    let stride = k * NR;
    for kk in 0..k {
        // SAFETY: `wide` checked a has k*R floats and each of the V/2 panels k*NR.
        unsafe {
            let mut wv = [_mm512_setzero_ps(); V];
            for (v, wr) in wv.iter_mut().enumerate() {
                *wr = _mm512_loadu_ps(w.add((v / 2) * stride + kk * NR + (v % 2) * 16));
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
