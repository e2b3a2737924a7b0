//! CPU matrix multiply for the model's linear layers: `y = x · Wᵀ (+ bias)` with W packed once
//! at load time.
//!
//! Why our own kernel rather than candle's: an evaluation must not depend on how prompts were
//! batched (a prompt decoded alone or among 64 gives the same logits, bit for bit), and small-m
//! decode products are several times faster. So every output element here is computed in one
//! fixed order that depends on nothing but the element itself: one FMA chain
//! over k = 0..K-1 starting from 0, then `+ bias`. Blocking over m, the microkernel height
//! (tails included), the thread count and the instruction set only decide *who* computes an
//! element and *when*, never the order of its sum, so row i of the output is bit-for-bit the
//! same for any m, any other rows and any rayon pool. The scalar, AVX2 and AVX-512 paths agree
//! bit for bit as well (all IEEE FMAs in the same order); which one runs is picked at pack time
//! from the CPU's features.
//!
//! Layout: W ([n, k] row-major, as in `nn.Linear`) becomes panels of [`NR`] output columns,
//! `[panel][k][NR]`, the last panel zero-padded. x is repacked per block of up to [`MR`] rows
//! as `[k][rows]` so the microkernel walks two contiguous streams.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod scalar;
#[cfg(test)]
mod tests;

use std::cell::RefCell;

/// Output columns per packed panel (two 16-lane vectors).
pub(crate) const NR: usize = 32;
/// Most rows of x per microkernel call (2·MR accumulators + 2 W vectors fit in 32 zmm).
pub(crate) const MR: usize = 12;
/// Below this many multiply-adds a fork/join costs more than it saves.
const PAR_MIN_WORK: usize = 200_000;
/// Bytes of packed x kept per m-chunk, sized to stay in L2 next to one W panel.
const X_CHUNK_BYTES: usize = 512 * 1024;

/// Which microkernel family runs. Every variant gives the same bits for the same element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Kernel::Avx512;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Kernel::Avx2;
        }
        Kernel::Scalar
    }
}

/// 64-byte aligned storage so each panel row is one aligned cache line pair.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// A weight matrix W ([n, k]) with optional bias, packed for [`PackedMatrix::matmul`].
pub struct PackedMatrix {
    n: usize,
    k: usize,
    /// `[panel][k][NR]`, the last panel zero-padded past column n.
    data: Vec<Line>,
    /// Padded to a whole number of panels with zeros.
    bias: Option<Vec<f32>>,
    kernel: Kernel,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedMatrix")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("bias", &self.bias.is_some())
            .field("kernel", &self.kernel)
            .finish()
    }
}

/// Output pointer shared by the threads of one `matmul`.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: each thread writes only the output columns of its own disjoint panel range, and the
// `&mut [f32]` the pointer came from outlives the parallel region, so no two threads touch the
// same element and nothing reads it concurrently.
unsafe impl Send for OutPtr {}
// SAFETY: as for Send; the pointer itself is only copied.
unsafe impl Sync for OutPtr {}

impl PackedMatrix {
    /// Packs row-major `w` ([n, k]) and optional `bias` ([n]). Panics only on length mismatch.
    pub fn pack(w: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Self {
        assert_eq!(w.len(), n * k, "PackedMatrix::pack: w.len() != n * k");
        if let Some(b) = bias {
            assert_eq!(b.len(), n, "PackedMatrix::pack: bias.len() != n");
        }
        let panels = n.div_ceil(NR);
        let mut data = vec![Line([0.0; 16]); panels * k * (NR / 16)];
        let flat = lines_mut(&mut data);
        for p in 0..panels {
            let cols = (n - p * NR).min(NR);
            let panel = &mut flat[p * k * NR..(p + 1) * k * NR];
            for c in 0..cols {
                let src = &w[(p * NR + c) * k..(p * NR + c + 1) * k];
                for (kk, &v) in src.iter().enumerate() {
                    panel[kk * NR + c] = v;
                }
            }
        }
        let bias = bias.map(|b| {
            let mut v = vec![0.0; panels * NR];
            v[..n].copy_from_slice(b);
            v
        });
        PackedMatrix { n, k, data, bias, kernel: Kernel::detect() }
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes held (for memory reports).
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(self.data.as_slice()) + self.bias.as_ref().map_or(0, |b| b.len() * 4)
    }

    /// Copies weight row `r` (length k) into `out`: an embedding lookup when the LM head is tied
    /// to the embeddings, so the unpacked table need not be kept.
    pub fn row(&self, r: usize, out: &mut [f32]) {
        assert!(r < self.n, "PackedMatrix::row: row {r} out of {}", self.n);
        assert_eq!(out.len(), self.k, "PackedMatrix::row: out.len() != k");
        let (p, c) = (r / NR, r % NR);
        let panel = &self.flat()[p * self.k * NR..(p + 1) * self.k * NR];
        for (kk, o) in out.iter_mut().enumerate() {
            *o = panel[kk * NR + c];
        }
    }

    /// out[m, n] = x[m, k] · Wᵀ + bias. Runs on rayon's current pool (split over output
    /// columns) when the work is large enough.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.matmul_with(self.kernel, x, m, out);
    }

    pub(crate) fn matmul_with(&self, kernel: Kernel, x: &[f32], m: usize, out: &mut [f32]) {
        assert_eq!(x.len(), m * self.k, "PackedMatrix::matmul: x.len() != m * k");
        assert_eq!(out.len(), m * self.n, "PackedMatrix::matmul: out.len() != m * n");
        if m == 0 || self.n == 0 {
            return;
        }
        let panels = self.n.div_ceil(NR);
        let threads = rayon::current_num_threads().min(panels);
        let ptr = OutPtr(out.as_mut_ptr());
        if threads <= 1 || m.saturating_mul(self.n).saturating_mul(self.k) < PAR_MIN_WORK {
            self.run_panels(kernel, x, m, 0..panels, ptr);
            return;
        }
        // Wide products get a few tasks per thread so a core slowed by other work does not
        // hold up the rest; each task repacks all of x, so it needs a dozen panels to amortise.
        let tasks = threads * (panels / (threads * 12)).clamp(1, 4);
        rayon::scope(|s| {
            for t in 0..tasks {
                let range = (t * panels / tasks)..((t + 1) * panels / tasks);
                s.spawn(move |_| self.run_panels(kernel, x, m, range, ptr));
            }
        });
    }

    fn flat(&self) -> &[f32] {
        // SAFETY: `Line` is `repr(C)` around `[f32; 16]` with no padding (64 bytes exactly).
        unsafe { std::slice::from_raw_parts(self.data.as_ptr().cast::<f32>(), self.data.len() * 16) }
    }

    /// Computes output columns of `panels` for all m rows. Rows are taken in chunks whose packed
    /// copy stays in L2 while every panel of the range streams past it.
    fn run_panels(&self, kernel: Kernel, x: &[f32], m: usize, panels: std::ops::Range<usize>, out: OutPtr) {
        let k = self.k;
        let w = self.flat();
        let chunk_rows = (X_CHUNK_BYTES / (k.max(1) * 4) / MR * MR).max(MR);
        XBUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            let mut r0 = 0;
            while r0 < m {
                let rows = (m - r0).min(chunk_rows);
                let blocks = rows.div_ceil(MR);
                if buf.len() < rows * k {
                    buf.resize(rows * k, 0.0);
                }
                // Pack each row block as [k][block rows].
                let mut off = 0;
                for b in 0..blocks {
                    let (b0, br) = block(rows, blocks, b);
                    for i in 0..br {
                        let src = &x[(r0 + b0 + i) * k..(r0 + b0 + i + 1) * k];
                        for (kk, &v) in src.iter().enumerate() {
                            buf[off + kk * br + i] = v;
                        }
                    }
                    off += br * k;
                }
                let mut p = panels.start;
                while p < panels.end {
                    // SAFETY: rows r0 .. r0+rows are < m and columns from p*NR are < n, so
                    // every write lands inside `out` (m*n, checked by the caller), and this
                    // thread owns the columns of its panel range (see OutPtr).
                    let c = unsafe { out.0.add(r0 * self.n + p * NR) };
                    #[cfg(target_arch = "x86_64")]
                    if kernel == Kernel::Avx512 && rows <= 3 {
                        let g = (panels.end - p).min(avx512::WIDE);
                        let bias = self.bias.as_ref().map(|b| &b[p * NR..(p + g) * NR]);
                        let cols = (self.n - (p + g - 1) * NR).min(NR);
                        let (a, wg) = (&buf[..rows * k], &w[p * k * NR..(p + g) * k * NR]);
                        // SAFETY: avx512f detected; `c` covers rows × the g panels as above.
                        unsafe { avx512::wide(rows, g, k, a, wg, bias, c, self.n, cols) };
                        p += g;
                        continue;
                    }
                    let wp = &w[p * k * NR..(p + 1) * k * NR];
                    let bias = self.bias.as_ref().map(|b| &b[p * NR..(p + 1) * NR]);
                    let cols = (self.n - p * NR).min(NR);
                    let mut off = 0;
                    for b in 0..blocks {
                        let (b0, br) = block(rows, blocks, b);
                        let a = &buf[off..off + br * k];
                        // SAFETY: row b0 is inside this chunk (see `c` above).
                        let c = unsafe { c.add(b0 * self.n) };
                        match kernel {
                            // SAFETY: `c` is valid for br rows of `cols` columns at stride n.
                            Kernel::Scalar => unsafe { scalar::block(br, k, a, wp, bias, c, self.n, cols) },
                            // SAFETY: Avx2 is only chosen after detecting avx2 and fma (tests
                            // check it too); `c` is valid as for Scalar.
                            #[cfg(target_arch = "x86_64")]
                            Kernel::Avx2 => unsafe { avx2::block(br, k, a, wp, bias, c, self.n, cols) },
                            // SAFETY: as for Avx2, with avx512f.
                            #[cfg(target_arch = "x86_64")]
                            Kernel::Avx512 => unsafe { avx512::block(br, k, a, wp, bias, c, self.n, cols) },
                        }
                        off += br * k;
                    }
                    p += 1;
                }
                r0 += rows;
            }
        });
    }
}

/// Row block `b` of `blocks` over `rows`: (first row, row count), sizes as even as possible so
/// no block is left with a latency-bound handful of rows.
fn block(rows: usize, blocks: usize, b: usize) -> (usize, usize) {
    let start = b * rows / blocks;
    (start, (b + 1) * rows / blocks - start)
}

fn lines_mut(data: &mut [Line]) -> &mut [f32] {
    // SAFETY: `Line` is `repr(C)` around `[f32; 16]` with no padding (64 bytes exactly).
    unsafe { std::slice::from_raw_parts_mut(data.as_mut_ptr().cast::<f32>(), data.len() * 16) }
}

thread_local! {
    /// Packed x, reused across calls so a decode step does not page-fault in a fresh buffer.
    /// Bounded by one m-chunk: about `X_CHUNK_BYTES` + MR·k floats per thread.
    static XBUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}
