//! AVX2+FMA+F16C kernel for f16 weights: `avx2.rs`'s kernel with each W vector widened from 8
//! f16 (`vcvtph2ps`, exact) instead of loaded as f32, so each lane is the same FMA chain over the
//! f16-rounded W, the same bits.

use std::arch::x86_64::*;

use super::avx2::{finish, R3, V};
use super::{prefetch_bytes_ahead, NextPanel, NR};

/// See `scalar::block`; same contract with `w` a [k][NR] f16 panel. With `next_panel` (the
/// caller's chunk is this one block) the passes after the first bring the next panel into L2
/// ([`NextPanel`]).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C, and `c` must be valid for writes of `rows` rows of
/// `cols` floats at stride `ldc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn block(
    rows: usize,
    k: usize,
    a: &[f32],
    w: &[u16],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    next_panel: bool,
) {
    assert!(
        a.len() >= k * rows
            && w.len() >= k * NR
            && bias.is_none_or(|b| b.len() >= NR)
            && cols <= NR
    );
    let bias = bias.map_or(std::ptr::null(), |b| b.as_ptr());
    let passes = if next_panel { rows.div_ceil(R3) } else { 1 };
    let (next, bytes) = (w.as_ptr().wrapping_add(k * NR), k * NR * 2);
    let mut i0 = 0;
    while i0 < rows {
        let r = (rows - i0).min(R3);
        let pf = NextPanel::for_pass(next, bytes, k, (i0 / R3).min(passes - 1), passes);
        // SAFETY: bounds asserted above (rows i0..i0+r of the [k][rows] block); features and `c`
        // forwarded from the caller.
        unsafe {
            let (a, w, c) = (a.as_ptr().add(i0), w.as_ptr(), c.add(i0 * ldc));
            match r {
                1 => kern::<1>(k, a, rows, w, pf, bias, c, ldc, cols),
                2 => kern::<2>(k, a, rows, w, pf, bias, c, ldc, cols),
                _ => kern::<3>(k, a, rows, w, pf, bias, c, ldc, cols),
            }
        }
        i0 += r;
    }
}

/// `a` points at this call's first row inside a `[k][lda]` block.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kern<const R: usize>(
    k: usize,
    a: *const f32,
    lda: usize,
    w: *const u16,
    mut ahead: NextPanel,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    for kk in 0..k {
        ahead.step();
        prefetch_bytes_ahead(w.wrapping_add(kk * NR), 64);
        // SAFETY: `block` checked a has k*lda floats and w k*NR halves.
        unsafe {
            // As in `avx2.rs`: one W vector live at a time keeps 16 registers enough.
            let mut xb = [_mm256_setzero_ps(); R];
            for (i, xr) in xb.iter_mut().enumerate() {
                *xr = _mm256_set1_ps(*a.add(kk * lda + i));
            }
            for v in 0..V {
                let wv = _mm256_cvtph_ps(_mm_loadu_si128(w.add(kk * NR + v * 8).cast()));
                for (row, &xi) in acc.iter_mut().zip(&xb) {
                    row[v] = _mm256_fmadd_ps(xi, wv, row[v]);
                }
            }
        }
    }
    // SAFETY: `block` checked the bias slice holds NR floats, and the caller `c`.
    unsafe { finish(&mut acc, bias, c, ldc, cols) };
}
