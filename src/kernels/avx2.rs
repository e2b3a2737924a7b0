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
                1 => kern::<1>(k, a, rows, w, bias, c, ldc, cols),
                2 => kern::<2>(k, a, rows, w, bias, c, ldc, cols),
                _ => kern::<3>(k, a, rows, w, bias, c, ldc, cols),
            }
        }
        i0 += r;
    }
}

/// `a` points at this call's first row inside a `[k][lda]` block.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn kern<const R: usize>(
    k: usize,
    a: *const f32,
    lda: usize,
    w: *const f32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    for kk in 0..k {
        // SAFETY: `block` checked a has k*lda and w k*NR floats.
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
    // SAFETY: `block` checked the bias slice holds NR floats, and the caller `c`.
    unsafe { finish(&mut acc, bias, c, ldc, cols) };
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
