//! Portable microkernel (non-x86 builds, and the reference order for the SIMD ones): per output
//! element one `mul_add` chain over k from 0, then `+ bias`, exactly as the AVX-512 kernel does.
//! Written over fixed-size arrays so LLVM can vectorise it (NEON `fmla` on aarch64).

use super::{MR, NR};

/// `rows` (1..=MR) rows of packed x (`a`: [k][rows]) times one W panel (`w`: [k][NR]) into
/// `c` (row stride `ldc`), writing only the first `cols` columns.
///
/// # Safety
/// `c` must be valid for writes of `rows` rows of `cols` floats at stride `ldc`.
#[allow(clippy::too_many_arguments)]
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
    // SAFETY (all arms): forwarded from the caller.
    unsafe {
        match rows {
            1 => kern::<1>(k, a, w, bias, c, ldc, cols),
            2 => kern::<2>(k, a, w, bias, c, ldc, cols),
            3 => kern::<3>(k, a, w, bias, c, ldc, cols),
            4 => kern::<4>(k, a, w, bias, c, ldc, cols),
            5 => kern::<5>(k, a, w, bias, c, ldc, cols),
            6 => kern::<6>(k, a, w, bias, c, ldc, cols),
            7 => kern::<7>(k, a, w, bias, c, ldc, cols),
            8 => kern::<8>(k, a, w, bias, c, ldc, cols),
            9 => kern::<9>(k, a, w, bias, c, ldc, cols),
            10 => kern::<10>(k, a, w, bias, c, ldc, cols),
            11 => kern::<11>(k, a, w, bias, c, ldc, cols),
            12 => kern::<12>(k, a, w, bias, c, ldc, cols),
            _ => unreachable!("row block of {rows} > MR = {MR}"),
        }
    }
}

unsafe fn kern<const R: usize>(
    k: usize,
    a: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let a = &a[..k * R];
    let w = &w[..k * NR];
    let mut acc = [[0.0f32; NR]; R];
    for (xa, wk) in a.chunks_exact(R).zip(w.chunks_exact(NR)) {
        for i in 0..R {
            let xi = xa[i];
            for j in 0..NR {
                acc[i][j] = xi.mul_add(wk[j], acc[i][j]);
            }
        }
    }
    if let Some(b) = bias {
        for row in acc.iter_mut() {
            for j in 0..NR {
                row[j] += b[j];
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: the caller guarantees rows < R and cols are writable at stride ldc.
        let dst = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), cols) };
        dst.copy_from_slice(&row[..cols]);
    }
}
