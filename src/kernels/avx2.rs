//! AVX2+FMA microkernel for x86 CPUs without AVX-512 (most Intel client parts): the same
//! packed layout and per-element order as `avx512.rs` (one FMA chain over k from 0, then
//! `+ bias`), in 8-lane registers. Sixteen ymm registers hold 3 rows × 32 columns of
//! accumulators, so a row block of up to MR rows is run three rows at a time.

use std::arch::x86_64::*;

use super::NR;

/// Rows per inner call: 3 × 4 accumulators + 4 W vectors = 16 ymm.
pub(super) const R3: usize = 3;

/// See `scalar::block`; same contract.
///
/// # Safety
/// The CPU must support AVX2 and FMA, and `c` must be valid for writes of `rows` rows of `cols`
/// floats at stride `ldc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
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
    let mut i0 = 0;
    while i0 < rows {
        let r = (rows - i0).min(R3);
        // SAFETY: bounds asserted above (rows i0..i0+r of the [k][rows] block); feature and `c`
        // forwarded from the caller.
        unsafe {
            let (a, w, c) = (a.as_ptr().add(i0), w.as_ptr(), c.add(i0 * ldc));
            match r {
                1 => finish(&mut kern::<1, false>(k, a, rows, w, None), bias, c, ldc, cols),
                2 => finish(&mut kern::<2, false>(k, a, rows, w, None), bias, c, ldc, cols),
                _ => finish(&mut kern::<3, false>(k, a, rows, w, None), bias, c, ldc, cols),
            }
        }
        i0 += r;
    }
}

/// Adds to `acc` (`[rows][NR]`, rows <= MR) the products of `k` steps of a row block's packed x
/// (`a`: `[k][lda]` from this slice's first step, lda >= rows) and an f32 panel slice (`w`:
/// `[k][NR]`), each pair of steps taken odd first (k = 1, 0, 3, 2, …): the order of
/// `vdpbf16ps`, for bf16 weights widened into f32 a slice at a time (`bf16::EmuPath::panel`).
/// Stopping and resuming the FMA chains at a slice edge changes no bit.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn accumulate_odd_first(
    rows: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    w: &[f32],
    acc: &mut [f32],
) {
    assert!(
        k.is_multiple_of(2)
            && rows <= lda
            && (k == 0 || a.len() >= (k - 1) * lda + rows)
            && w.len() >= k * NR
            && acc.len() >= rows * NR
    );
    let mut i0 = 0;
    while i0 < rows {
        let r = (rows - i0).min(R3);
        // SAFETY: bounds asserted above (rows i0..i0+r of the [k][lda] slice, their acc rows).
        unsafe {
            let (a, w, acc) = (a.as_ptr().add(i0), w.as_ptr(), acc.as_mut_ptr().add(i0 * NR));
            match r {
                1 => store(&kern::<1, true>(k, a, lda, w, Some(acc)), acc),
                2 => store(&kern::<2, true>(k, a, lda, w, Some(acc)), acc),
                _ => store(&kern::<3, true>(k, a, lda, w, Some(acc)), acc),
            }
        }
        i0 += r;
    }
}

/// R rows × NR accumulators into `[R][NR]` floats at `acc`.
///
/// # Safety
/// `acc` is valid for writes of R·NR floats.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store<const R: usize>(rows: &[[__m256; V]; R], acc: *mut f32) {
    for (i, row) in rows.iter().enumerate() {
        for (v, &r) in row.iter().enumerate() {
            // SAFETY: i < R and v * 8 + 8 <= NR (the caller's R·NR floats).
            unsafe { _mm256_storeu_ps(acc.add(i * NR + v * 8), r) };
        }
    }
}

/// R rows × NR columns of `k` FMA steps, from zero or from `init` (`[R][NR]` floats).
/// `a` points at this call's first row inside a `[k][lda]` block; with `ODD_FIRST` k is even.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn kern<const R: usize, const ODD_FIRST: bool>(
    k: usize,
    a: *const f32,
    lda: usize,
    w: *const f32,
    init: Option<*const f32>,
) -> [[__m256; V]; R] {
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    if let Some(init) = init {
        for (i, row) in acc.iter_mut().enumerate() {
            for (v, r) in row.iter_mut().enumerate() {
                // SAFETY: the caller's `init` holds R·NR floats.
                *r = unsafe { _mm256_loadu_ps(init.add(i * NR + v * 8)) };
            }
        }
    }
    for kk in 0..k {
        let kk = if ODD_FIRST { kk ^ 1 } else { kk };
        // SAFETY: the callers checked a has k rows of lda floats and w k*NR floats.
        unsafe {
            // R broadcasts + 1 W vector + 12 accumulators = 16 registers; loading all four W
            // vectors first would not fit and makes LLVM shuffle accumulators through the stack.
            let mut xb = [_mm256_setzero_ps(); R];
            for (i, xr) in xb.iter_mut().enumerate() {
                *xr = _mm256_set1_ps(*a.add(kk * lda + i));
            }
            for v in 0..V {
                let wv = _mm256_loadu_ps(w.add(kk * NR + v * 8));
                for (row, &xi) in acc.iter_mut().zip(&xb) {
                    row[v] = _mm256_fmadd_ps(xi, wv, row[v]);
                }
            }
        }
    }
    acc
}

/// 8-lane vectors per row of one panel.
pub(super) const V: usize = NR / 8;

/// Adds the bias (if any) and stores R rows × `cols` columns.
///
/// # Safety
/// `bias` is null or holds NR floats; `c` is valid for writes of R rows of `cols` floats at
/// stride `ldc`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn finish<const R: usize>(
    acc: &mut [[__m256; V]; R],
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    if !bias.is_null() {
        for v in 0..V {
            // SAFETY: the caller guarantees NR bias floats.
            let b = unsafe { _mm256_loadu_ps(bias.add(v * 8)) };
            for row in acc.iter_mut() {
                row[v] = _mm256_add_ps(row[v], b);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        let mut tmp = [0.0f32; NR];
        for (v, &r) in row.iter().enumerate() {
            // SAFETY: tmp has NR = V*8 floats.
            unsafe { _mm256_storeu_ps(tmp.as_mut_ptr().add(v * 8), r) };
        }
        // SAFETY: the caller guarantees `cols` floats per row at stride ldc.
        unsafe { std::ptr::copy_nonoverlapping(tmp.as_ptr(), c.add(i * ldc), cols) };
    }
}
