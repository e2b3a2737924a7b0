//! Q8_0 weights (llama.cpp's 8-bit format): each row of W cut into blocks of [`QK`] values along
//! k, each block held as int8 values `q` and one scale `d` rounded to f16, the weight being
//! `q · d`. Products dequantise on the fly and keep f32 activations: each int8 widened to f32
//! and multiplied by its block's scale (exact in f32: 8 bits times f16's 11 give at most 19),
//! then the f32 kernels' one FMA chain over k. So a Q8_0 product has the bits of the f32
//! product on the dequantised W, on every instruction set, and is batch invariant the same way.
//!
//! Layout: `[panel][k][NR]` int8 (32 bytes a k step, a quarter of f32's stream) and
//! `[panel][k/QK rounded up][NR]` f32 scales; columns past n are zero, and a short last block
//! (k not a multiple of QK) simply ends at k.

#[cfg(target_arch = "x86_64")]
use super::{avx2q8, avx512q8};
use super::{lines, lines_mut, Kernel, Line, Packed, PackedMatrix, Path, NR};

/// Values per quantisation block (llama.cpp's `QK8_0`).
pub(crate) const QK: usize = 32;

/// Quantises one block as llama.cpp's `quantize_row_q8_0_ref` does: `d = amax / 127`,
/// `q = roundf(x / d)` (through the reciprocal of the unrounded d, halves away from zero), and d
/// stored as f16 (nearest even). Returns d widened back to f32, the value products use.
pub(crate) fn quantize_block(x: &[f32], q: &mut [i8]) -> f32 {
    let (d, id) = super::int8::int8_scale(x);
    for (o, &v) in q.iter_mut().zip(x) {
        *o = super::int8::round_i8(v * id);
    }
    half::f16::from_f32(d).to_f32()
}

/// Packed Q8_0 weights, see the module comment.
pub(super) struct Q8Weights {
    /// `[panel][k][NR]` int8 in 64-byte lines (the last one zero-padded).
    q: Vec<Line>,
    /// `[panel][k/QK rounded up][NR]` f32.
    scales: Vec<Line>,
}

impl Q8Weights {
    /// All zeros for W of [n, k]: the padding stays so, and rows are written by [`put_row`].
    pub(super) fn zeroed(n: usize, k: usize) -> Self {
        let (panels, kb) = (n.div_ceil(NR), k.div_ceil(QK));
        Q8Weights {
            q: Line::zeroed((panels * k * NR).div_ceil(64)),
            scales: Line::zeroed(panels * kb * (NR / 16)),
        }
    }

    /// Every stored bit, padding included (tests compare packings).
    #[cfg(test)]
    pub(super) fn raw_bits(&self) -> Vec<u32> {
        lines(&self.q).iter().chain(lines(&self.scales)).map(|v| v.to_bits()).collect()
    }

    pub(super) fn bytes(&self) -> usize {
        std::mem::size_of_val(self.q.as_slice()) + std::mem::size_of_val(self.scales.as_slice())
    }
}

impl PackedMatrix {
    /// Whether the weights are held as Q8_0.
    pub fn is_q8_0(&self) -> bool {
        matches!(self.data, Packed::Q8_0(_))
    }
}

/// Quantises row `r` of W (`src`, k values) into its place in `wq`.
pub(super) fn put_row(wq: &mut Q8Weights, k: usize, r: usize, src: &[f32]) {
    let (p, c, kb) = (r / NR, r % NR, k.div_ceil(QK));
    let (qf, sf) = (int8s_mut(&mut wq.q), lines_mut(&mut wq.scales));
    let mut block = [0i8; QK];
    for (b, part) in src.chunks(QK).enumerate() {
        sf[(p * kb + b) * NR + c] = quantize_block(part, &mut block);
        for (i, &v) in block[..part.len()].iter().enumerate() {
            qf[(p * k + b * QK + i) * NR + c] = v;
        }
    }
}

/// Writes rows `first..` of W from their GGUF Q8_0 blocks (34 bytes each: an f16 scale, 32
/// int8s): the file's values, kept as they are. Panels are filled in parallel.
pub(super) fn put_gguf_rows(wq: &mut Q8Weights, k: usize, first: usize, raw: &[u8]) {
    use rayon::prelude::*;
    let kb = k.div_ceil(QK);
    let row_bytes = kb * (2 + QK);
    let rows = raw.len() / row_bytes;
    let (q, s) = (int8s_mut(&mut wq.q), lines_mut(&mut wq.scales));
    let panels = (first / NR)..(first + rows).div_ceil(NR);
    let jobs: Vec<_> = q
        .chunks_mut(k * NR)
        .zip(s.chunks_mut(kb * NR))
        .enumerate()
        .skip(panels.start)
        .take(panels.len())
        .collect();
    jobs.into_par_iter().for_each(|(p, (q, s))| {
        for r in (p * NR).max(first)..((p + 1) * NR).min(first + rows) {
            let row = &raw[(r - first) * row_bytes..(r - first + 1) * row_bytes];
            let c = r % NR;
            for (b, block) in row.chunks_exact(2 + QK).enumerate() {
                s[b * NR + c] =
                    half::f16::from_bits(u16::from_le_bytes([block[0], block[1]])).to_f32();
                for (i, &v) in block[2..].iter().enumerate() {
                    q[(b * QK + i) * NR + c] = v as i8;
                }
            }
        }
    });
}

/// Dequantised row `r` of Q8_0 weights (see [`PackedMatrix::row`]).
pub(super) fn row(wq: &Q8Weights, k: usize, r: usize, out: &mut [f32]) {
    let (p, c, kb) = (r / NR, r % NR, k.div_ceil(QK));
    let (q, s) = (int8s(&wq.q), lines(&wq.scales));
    for (kk, o) in out.iter_mut().enumerate() {
        *o = q[(p * k + kk) * NR + c] as f32 * s[(p * kb + kk / QK) * NR + c];
    }
}

/// Q8_0 weights in the shared driver, run by `kernel`. x is packed as for f32 weights.
#[derive(Clone, Copy)]
pub(super) struct Q8Path<'a> {
    q: &'a [i8],
    s: &'a [f32],
    k: usize,
    kernel: Kernel,
}

impl<'a> Q8Path<'a> {
    pub(super) fn new(w: &'a Q8Weights, k: usize, kernel: Kernel) -> Self {
        Q8Path { q: int8s(&w.q), s: lines(&w.scales), k, kernel }
    }

    /// Panels p..p+g: their int8 values and their scales.
    fn panels(&self, p: usize, g: usize) -> (&'a [i8], &'a [f32]) {
        let (k, kb) = (self.k, self.k.div_ceil(QK));
        (&self.q[p * k * NR..(p + g) * k * NR], &self.s[p * kb * NR..(p + g) * kb * NR])
    }
}

impl Path for Q8Path<'_> {
    type X = f32;
    // A quarter of f32's weight bytes per multiply-add: more work is needed to pay a fork/join.
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
            return avx512q8::WIDE;
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
        let (q, s) = self.panels(p, g);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `wide_max` is non-zero only for Avx512, chosen after detecting avx512f; `c`
        // is forwarded from the caller.
        unsafe {
            avx512q8::wide(rows, g, self.k, a, q, s, bias, c, ldc, cols)
        };
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (rows, g, q, s, a, bias, c, ldc, cols);
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
        _alone: bool,
    ) {
        let (q, s) = self.panels(p, 1);
        let k = self.k;
        match self.kernel {
            // SAFETY: `c` is forwarded from the caller.
            Kernel::Scalar => unsafe {
                super::scalar::block_q8(rows, k, a, q, s, bias, c, ldc, cols)
            },
            // SAFETY: Avx2 is only chosen after detecting avx2 and fma; `c` as for Scalar.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::AvxVnni => unsafe {
                avx2q8::block(rows, k, a, q, s, bias, c, ldc, cols)
            },
            // SAFETY: as for Avx2, with avx512f.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { avx512q8::block(rows, k, a, q, s, bias, c, ldc, cols) },
            // SAFETY: NEON is aarch64's baseline; `c` as for Scalar.
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => unsafe { super::neon::block_q8(rows, k, a, q, s, bias, c, ldc, cols) },
        }
    }
}

fn int8s(data: &[Line]) -> &[i8] {
    // SAFETY: `Line` is 64 plain bytes (`repr(C)` around `[f32; 16]`, no padding); i8 has
    // alignment 1 and every bit pattern is valid.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<i8>(), data.len() * 64) }
}

fn int8s_mut(data: &mut [Line]) -> &mut [i8] {
    // SAFETY: as for `int8s`; any bytes written are valid f32 bit patterns too.
    unsafe { std::slice::from_raw_parts_mut(data.as_mut_ptr().cast::<i8>(), data.len() * 64) }
}
