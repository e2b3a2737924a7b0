//! Portable microkernel (non-x86 builds, and the reference order for the SIMD ones): per output
//! element one `mul_add` chain over k from 0, then `+ bias`, exactly as the AVX-512 kernel does.
//! Written over fixed-size arrays so LLVM can vectorise it (NEON `fmla` on aarch64).

use super::q8::QK;
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
    unsafe { by_rows!(rows, kern(k, a, w, bias, c, ldc, cols)) }
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
    // SAFETY: forwarded from the caller.
    unsafe { finish(&mut acc, bias, c, ldc, cols) };
}

/// `rows` (1..=MR) rows of packed x times one Q8_0 panel (`q`: [k][NR] int8, `s`:
/// [k/QK rounded up][NR] scales): [`block`] on the dequantised panel, one k step at a time
/// (each weight `q · s` is exact, so the FMA chains are the f32 ones).
///
/// # Safety
/// As for [`block`].
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn block_q8(
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
    assert!(rows <= MR, "row block of {rows} > MR = {MR}");
    let (a, q) = (&a[..k * rows], &q[..k * NR]);
    let mut acc = [[0.0f32; NR]; MR];
    let mut wk = [0.0f32; NR];
    for (kk, (xa, qk)) in a.chunks_exact(rows.max(1)).zip(q.chunks_exact(NR)).enumerate() {
        let sk = &s[(kk / QK) * NR..(kk / QK + 1) * NR];
        for j in 0..NR {
            wk[j] = qk[j] as f32 * sk[j];
        }
        for (i, &xi) in xa.iter().enumerate() {
            for j in 0..NR {
                acc[i][j] = xi.mul_add(wk[j], acc[i][j]);
            }
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { finish(&mut acc[..rows], bias, c, ldc, cols) };
}

/// Adds the bias (if any) and stores each row's first `cols` columns.
///
/// # Safety
/// `c` must be valid for writes of `acc.len()` rows of `cols` floats at stride `ldc`.
unsafe fn finish(
    acc: &mut [[f32; NR]],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    if let Some(b) = bias {
        for row in acc.iter_mut() {
            for j in 0..NR {
                row[j] += b[j];
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: the caller guarantees each row's `cols` floats are writable at stride ldc.
        let dst = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), cols) };
        dst.copy_from_slice(&row[..cols]);
    }
}
