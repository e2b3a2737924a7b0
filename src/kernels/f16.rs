//! f16 weights: W rounded to IEEE half precision (nearest even) and held so, half of f32's bytes.
//! The kernels widen each weight to f32 in registers (exact: every f16, subnormals included, is
//! an f32) and run the f32 kernels' one FMA chain over k on f32 activations, so a product on f16
//! weights is bit for bit the f32 product on the f16-rounded W, on every instruction set, batch
//! invariant as that one is.
//!
//! Layout: `[panel][k][NR]` u16, one 64-byte line per k step of a panel; columns past n are zero.

use half::f16;

#[cfg(target_arch = "x86_64")]
use super::{avx2f16, avx512f16};
use super::{Kernel, Line, Packed, PackedMatrix, Path, MR, NR};

impl PackedMatrix {
    /// Whether the weights are held as f16.
    pub fn is_f16(&self) -> bool {
        matches!(self.data, Packed::F16(_))
    }
}

/// Lines for W of [n, k], zeroed.
pub(super) fn zeroed(n: usize, k: usize) -> Vec<Line> {
    Line::zeroed(n.div_ceil(NR) * k)
}

/// Writes row `r` of W (`src`, k values) rounded to f16 into column r % NR of its panel.
pub(super) fn put_row(d: &mut [Line], k: usize, r: usize, src: &[f32]) {
    let (p, c) = (r / NR, r % NR);
    let panel = &mut halves_mut(d)[p * k * NR..(p + 1) * k * NR];
    for (kk, &v) in src.iter().enumerate() {
        panel[kk * NR + c] = f16::from_f32(v).to_bits();
    }
}

/// As [`put_row`] from f16 bit patterns (stored as they are: the f16 of their exact f32 value).
pub(super) fn put_row_bits(d: &mut [Line], k: usize, r: usize, src: &[u16]) {
    let (p, c) = (r / NR, r % NR);
    let panel = &mut halves_mut(d)[p * k * NR..(p + 1) * k * NR];
    for (kk, &b) in src.iter().enumerate() {
        panel[kk * NR + c] = f16::from_f32(f16::from_bits(b).to_f32()).to_bits();
    }
}

/// Row `r` widened to f32 (see [`PackedMatrix::row`]): the values products use.
pub(super) fn row(d: &[Line], k: usize, r: usize, out: &mut [f32]) {
    let (p, c) = (r / NR, r % NR);
    let panel = &halves(d)[p * k * NR..(p + 1) * k * NR];
    for (kk, o) in out.iter_mut().enumerate() {
        *o = f16::from_bits(panel[kk * NR + c]).to_f32();
    }
}

/// f16 weights in the shared driver, run by `kernel`. x is packed as for f32 weights.
#[derive(Clone, Copy)]
pub(super) struct F16Path<'a> {
    w: &'a [u16],
    k: usize,
    kernel: Kernel,
}

impl<'a> F16Path<'a> {
    pub(super) fn new(d: &'a [Line], k: usize, kernel: Kernel) -> Self {
        F16Path { w: halves(d), k, kernel }
    }
}

impl Path for F16Path<'_> {
    type X = f32;
    // Half the weight bytes per multiply-add, so twice the work to pay for a fork/join.
    const PAR_MIN_WORK: usize = 2 * super::PAR_MIN_WORK;

    fn depth(&self) -> usize {
        self.k
    }

    fn pack_block(&self, src: &[f32], k: usize, block: &mut [f32], rows: usize) {
        super::pack_f32_block(src, k, block, rows);
    }

    fn with_buf<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
        super::with_cached(&super::XBUF, f)
    }

    fn wide_max(&self, rows: usize) -> usize {
        #[cfg(target_arch = "x86_64")]
        if self.kernel == Kernel::Avx512 && rows <= 3 {
            return avx512f16::WIDE;
        }
        let _ = rows;
        0
    }

    #[allow(clippy::too_many_arguments)]
    unsafe fn wide(
        &self,
        rows: usize,
        p: usize,
        g: usize,
        a: &[f32],
        bias: Option<&[f32]>,
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        let w = &self.w[p * self.k * NR..(p + g) * self.k * NR];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `wide_max` is non-zero only for Avx512, chosen after detecting avx512f; `c`
        // is forwarded from the caller.
        unsafe {
            avx512f16::wide(rows, g, self.k, a, w, bias, c, ldc, cols)
        };
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (rows, g, w, a, bias, c, ldc, cols);
            unreachable!("`wide_max` is 0 off x86_64");
        }
    }

    #[allow(clippy::too_many_arguments)]
    unsafe fn block(
        &self,
        rows: usize,
        p: usize,
        a: &[f32],
        bias: Option<&[f32]>,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        alone: bool,
    ) {
        let k = self.k;
        let w = &self.w[p * k * NR..(p + 1) * k * NR];
        #[cfg(not(target_arch = "x86_64"))]
        let _ = alone;
        match self.kernel {
            // SAFETY: `c` is forwarded from the caller.
            Kernel::Scalar => unsafe { block_scalar(rows, k, a, w, bias, c, ldc, cols) },
            // SAFETY: Avx2 is only chosen where avx2, fma and f16c are; `c` as for Scalar.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::AvxVnni => unsafe {
                avx2f16::block(rows, k, a, w, bias, c, ldc, cols, alone)
            },
            // SAFETY: as for Avx2, with avx512f.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { avx512f16::block(rows, k, a, w, bias, c, ldc, cols) },
            // SAFETY: NEON is aarch64's baseline; `c` as for Scalar.
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => unsafe { super::neon::block_f16(rows, k, a, w, bias, c, ldc, cols) },
        }
    }
}

/// The portable kernel: each k step's weights widened into a row, then every row's FMA chain
/// over it (the f32 kernels' order).
///
/// # Safety
/// `c` must be valid for writes of `rows` rows of `cols` floats at stride `ldc`.
#[allow(clippy::too_many_arguments)]
unsafe fn block_scalar(
    rows: usize,
    k: usize,
    a: &[f32],
    w: &[u16],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    assert!(rows <= MR && cols <= NR && bias.is_none_or(|b| b.len() >= NR));
    let mut acc = [[0.0f32; NR]; MR];
    let mut wk = [0.0f32; NR];
    for (xa, hk) in a[..k * rows].chunks_exact(rows.max(1)).zip(w[..k * NR].chunks_exact(NR)) {
        for j in 0..NR {
            wk[j] = f16::from_bits(hk[j]).to_f32();
        }
        for (i, &xi) in xa.iter().enumerate() {
            for j in 0..NR {
                acc[i][j] = xi.mul_add(wk[j], acc[i][j]);
            }
        }
    }
    for (i, row) in acc[..rows].iter_mut().enumerate() {
        if let Some(b) = bias {
            for j in 0..NR {
                row[j] += b[j];
            }
        }
        // SAFETY: the caller guarantees each row's `cols` floats are writable at stride ldc.
        let dst = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), cols) };
        dst.copy_from_slice(&row[..cols]);
    }
}

fn halves(data: &[Line]) -> &[u16] {
    // SAFETY: `Line` is 64 plain bytes (`repr(C)` around `[f32; 16]`, no padding), aligned to
    // 64; u16 needs 2 and every bit pattern is valid.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u16>(), data.len() * 32) }
}

fn halves_mut(data: &mut [Line]) -> &mut [u16] {
    // SAFETY: as for `halves`; any bits written are valid f32 bit patterns too.
    unsafe { std::slice::from_raw_parts_mut(data.as_mut_ptr().cast::<u16>(), data.len() * 32) }
}
