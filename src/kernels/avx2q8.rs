//! AVX2+FMA microkernel for Q8_0 weights: `avx2.rs`'s kernel with each W vector made from int8
//! (sign-extend, convert, times the block's scale: exact) instead of loaded as f32, so each lane
//! is the same FMA chain over the dequantised W, the same bits.

use std::arch::x86_64::*;

use super::avx2::{finish, R3, V};
use super::q8::QK;
use super::{prefetch_bytes_ahead, NR};

/// See `avx512q8::block`; same contract.
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
    let mut i0 = 0;
    while i0 < rows {
        let r = (rows - i0).min(R3);
        // SAFETY: bounds asserted above (rows i0..i0+r of the [k][rows] block); feature and `c`
        // forwarded from the caller.
        unsafe {
            let (a, q, s, c) = (a.as_ptr().add(i0), q.as_ptr(), s.as_ptr(), c.add(i0 * ldc));
            match r {
                1 => kern::<1>(k, a, rows, q, s, bias, c, ldc, cols),
                2 => kern::<2>(k, a, rows, q, s, bias, c, ldc, cols),
                _ => kern::<3>(k, a, rows, q, s, bias, c, ldc, cols),
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
    q: *const i8,
    s: *const f32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    for kk in 0..k {
        if kk % QK == 0 {
            prefetch_bytes_ahead(q.wrapping_add(kk * NR), QK * NR);
            prefetch_bytes_ahead(s.wrapping_add(kk / QK * NR), NR * 4);
        }
        // SAFETY: `block` checked a has k*lda floats, q k*NR bytes and s a scale row per block.
        unsafe {
            // As in `avx2.rs`, one W vector live at a time keeps 16 registers enough; the scales
            // come from L1 as memory operands.
            let mut xb = [_mm256_setzero_ps(); R];
            for (i, xr) in xb.iter_mut().enumerate() {
                *xr = _mm256_set1_ps(*a.add(kk * lda + i));
            }
            let sb = s.add((kk / QK) * NR);
            for v in 0..V {
                let qv = _mm_loadl_epi64(q.add(kk * NR + v * 8).cast());
                let wv = _mm256_mul_ps(
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qv)),
                    _mm256_loadu_ps(sb.add(v * 8)),
                );
                for (row, &xi) in acc.iter_mut().zip(&xb) {
                    row[v] = _mm256_fmadd_ps(xi, wv, row[v]);
                }
            }
        }
    }
    // SAFETY: `block` checked the bias slice holds NR floats, and the caller `c`.
    unsafe { finish(&mut acc, bias, c, ldc, cols) };
}
