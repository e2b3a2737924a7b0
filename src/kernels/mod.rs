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
//! same for any m, any other rows and any rayon pool. The scalar, AVX2, AVX-512 and NEON paths
//! agree bit for bit as well (all IEEE FMAs in the same order); which one runs is picked at pack
//! time from the CPU's features.
//!
//! Layout: W ([n, k] row-major, as in `nn.Linear`) becomes panels of [`NR`] output columns,
//! `[panel][k][NR]`, the last panel zero-padded. x is repacked per block of up to [`MR`] rows
//! as `[k][rows]` so the microkernel walks two contiguous streams.
//!
//! bf16 weights ([`PackedMatrix::pack_bf16`], `bf16.rs`): W rounded to bf16 halves the bytes a
//! decode step streams. The product is what bf16 inference computes (bf16 inputs, f32
//! accumulation), defined bit for bit as AVX-512 BF16's `vdpbf16ps` computes it, and every CPU
//! gives those bits: `out[i][j] = (Σ_p dpbf16(x[i][2p..2p+2], w[j][2p..2p+2])) + bias[j]`, where x
//! is rounded f32 → bf16 (nearest even; like the hardware conversions, inputs below f32's normal
//! range become signed zeros) while it is packed, k is zero-padded to even, and the sum is one
//! chain over p = 0..k/2 from 0 whose step adds the pair's odd product (k = 2p+1) and then its even
//! one to the f32 accumulator, each addition rounded once (nearest even, denormals flushed, MXCSR
//! ignored; a product of two bf16 is exact in f32). With AVX-512 BF16 a step may be one
//! `vdpbf16ps`; elsewhere, and on Intel's cores for products of more than three rows (where the
//! instruction is slower than two FMA ports), it is two FMAs on the values widened exactly in
//! registers, which give the same bits: `bf16.rs` gives the measurement against the instruction and
//! how its flushing is honoured. So bf16 weights have one set of bits on every CPU (NaN payloads
//! aside), and batch invariance holds as for f32: the chunking, row blocks and threading are the
//! same code (generic over [`Path`]), only the packing and the microkernels differ. Layout: W
//! `[panel][k/2][NR]` as u32 bf16 pairs (k = 2p in the low half, 2p+1 in the high one: the pair one
//! 32-bit lane of `vdpbf16ps` takes); x `[k/2][rows]` as pairs for `vdpbf16ps`, as the widened
//! values for the emulation.
//!
//! f16 weights ([`PackedMatrix::pack_f16`], `f16.rs`): W rounded to f16 (nearest even), half of
//! f32's bytes, widened exactly to f32 in registers (`vcvtph2ps` with F16C or AVX-512F, the
//! `half` crate on the portable path), then the f32 kernels' FMA chain on f32 x: a product is bit
//! for bit the f32 product on the f16-rounded W, on every instruction set, batch invariant alike.
//!
//! Q8_0 weights ([`PackedMatrix::pack_q8_0`], `q8.rs`): llama.cpp's 8-bit blocks (32 int8 values
//! along k and one f16 scale), a quarter of f32's weight bytes. The kernels widen each int8 to f32
//! and multiply by its block's scale, which is exact, then run the f32 kernels' FMA chain; so a
//! Q8_0 product is bit for bit the f32 product on the dequantised W, on every instruction set
//! (scalar, AVX2, AVX-512, NEON), with the same batch invariance. Activations stay f32.

/// `$kern::<R>(args)` for R = `$rows`, 1..=MR: each microkernel is compiled once per row count,
/// so its accumulators are a fixed array in registers.
macro_rules! by_rows {
    ($rows:expr, $kern:ident($($arg:expr),* $(,)?)) => {
        match $rows {
            1 => $kern::<1>($($arg),*),
            2 => $kern::<2>($($arg),*),
            3 => $kern::<3>($($arg),*),
            4 => $kern::<4>($($arg),*),
            5 => $kern::<5>($($arg),*),
            6 => $kern::<6>($($arg),*),
            7 => $kern::<7>($($arg),*),
            8 => $kern::<8>($($arg),*),
            9 => $kern::<9>($($arg),*),
            10 => $kern::<10>($($arg),*),
            11 => $kern::<11>($($arg),*),
            12 => $kern::<12>($($arg),*),
            rows => unreachable!("row block of {rows} > MR = {}", $crate::kernels::MR),
        }
    };
}

/// `$kern::<R, V>(args)` for R = `$rows` (1..=3) rows and V = 2·`$panels` (1..=4 panels) vectors:
/// the small-m `wide` kernels, compiled once per shape.
/// `$kern::<T>(args)` for the index T of `$ty` in `QuantType::ALL`: the GGUF-type kernels,
/// compiled once per type.
macro_rules! by_quant_type {
    ($ty:expr, $kern:ident($($arg:expr),* $(,)?)) => {
        match $ty {
            QuantType::Q4_0 => $kern::<0>($($arg),*),
            QuantType::Q4_1 => $kern::<1>($($arg),*),
            QuantType::Q5_0 => $kern::<2>($($arg),*),
            QuantType::Q5_1 => $kern::<3>($($arg),*),
            QuantType::Q2_K => $kern::<4>($($arg),*),
            QuantType::Q3_K => $kern::<5>($($arg),*),
            QuantType::Q4_K => $kern::<6>($($arg),*),
            QuantType::Q5_K => $kern::<7>($($arg),*),
            QuantType::Q6_K => $kern::<8>($($arg),*),
        }
    };
}

/// `$call` with `$k` a constant, the index of `$kind` in `int8::Kind::ALL`: the int8 kernels,
/// compiled once per type.
macro_rules! by_int8_kind {
    ($kind:expr, $k:ident => $call:expr) => {
        match $kind.index() {
            0 => {
                const $k: usize = 0;
                $call
            }
            1 => {
                const $k: usize = 1;
                $call
            }
            2 => {
                const $k: usize = 2;
                $call
            }
            3 => {
                const $k: usize = 3;
                $call
            }
            4 => {
                const $k: usize = 4;
                $call
            }
            5 => {
                const $k: usize = 5;
                $call
            }
            6 => {
                const $k: usize = 6;
                $call
            }
            7 => {
                const $k: usize = 7;
                $call
            }
            8 => {
                const $k: usize = 8;
                $call
            }
            _ => {
                const $k: usize = 9;
                $call
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
macro_rules! by_rows_and_panels {
    ($rows:expr, $panels:expr, $kern:ident($($arg:expr),* $(,)?)) => {
        match ($rows, $panels) {
            (1, 1) => $kern::<1, 2>($($arg),*),
            (1, 2) => $kern::<1, 4>($($arg),*),
            (1, 3) => $kern::<1, 6>($($arg),*),
            (1, 4) => $kern::<1, 8>($($arg),*),
            (2, 1) => $kern::<2, 2>($($arg),*),
            (2, 2) => $kern::<2, 4>($($arg),*),
            (2, 3) => $kern::<2, 6>($($arg),*),
            (2, 4) => $kern::<2, 8>($($arg),*),
            (3, 1) => $kern::<3, 2>($($arg),*),
            (3, 2) => $kern::<3, 4>($($arg),*),
            (3, 3) => $kern::<3, 6>($($arg),*),
            (3, 4) => $kern::<3, 8>($($arg),*),
            (rows, panels) => unreachable!("wide block of {rows} rows × {panels} panels"),
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2bf16;
#[cfg(target_arch = "x86_64")]
mod avx2f16;
#[cfg(target_arch = "x86_64")]
mod avx2int8;
#[cfg(target_arch = "x86_64")]
mod avx2q8;
#[cfg(target_arch = "x86_64")]
mod avx2quant;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512bf16;
#[cfg(target_arch = "x86_64")]
mod avx512bf16fma;
#[cfg(target_arch = "x86_64")]
mod avx512f16;
#[cfg(target_arch = "x86_64")]
mod avx512int8;
#[cfg(target_arch = "x86_64")]
mod avx512q8;
#[cfg(target_arch = "x86_64")]
mod avx512quant;
mod bf16;
mod f16;
mod int8;
pub mod isa;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "aarch64")]
mod neonint8;
#[cfg(target_arch = "aarch64")]
mod neonquant;
mod pack;
mod q8;
mod quant;
mod scalar;
#[cfg(test)]
mod tests;

use std::cell::RefCell;

use rayon::prelude::*;

pub(crate) use self::int8::{int8_scale, round_i8};
#[cfg(target_arch = "aarch64")]
pub(crate) use self::neonint8::{Dot, Dot4, Plain};
pub use self::pack::{GgufType, Packer};
pub use self::quant::QuantType;

/// Output columns per packed panel (two 16-lane vectors).
pub(crate) const NR: usize = 32;
/// Most rows of x per microkernel call (2·MR accumulators + 2 W vectors fit in 32 zmm).
pub(crate) const MR: usize = 12;
/// Below this many multiply-adds a fork/join costs more than it saves.
const PAR_MIN_WORK: usize = 200_000;
/// Bytes of packed x kept per m-chunk, sized to stay in L2 next to one W panel.
const X_CHUNK_BYTES: usize = 512 * 1024;

/// How many k steps (k pairs for bf16 panels) ahead of the one being multiplied the f32 and
/// bf16 microkernels fetch their panel: about a memory latency's worth of FMA time on the Zen 5
/// and Emerald Rapids machines it was measured on (`docs/cpu-path.md`).
#[cfg(target_arch = "x86_64")]
const PREFETCH_STEPS: usize = 64;

/// Asks for the panel row [`PREFETCH_STEPS`] steps past `row`. In decode the panel streams from
/// memory once per product, one stream a core, which the hardware prefetcher alone does not keep
/// ahead of the FMA chains.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_panel_ahead<T>(row: *const T) {
    prefetch_panel_row(row.wrapping_add(PREFETCH_STEPS * NR));
}

/// Asks for the `bytes` (whole cache lines) that start as far past `at` as
/// [`prefetch_panel_ahead`] looks ahead: for the panels whose k steps are not 128 bytes (f16,
/// Q8_0 and its scales).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_bytes_ahead<T>(at: *const T, bytes: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let ahead = at.cast::<i8>().wrapping_add(PREFETCH_STEPS * NR * 4);
    for line in (0..bytes).step_by(64) {
        // SAFETY: a prefetch has no effect on memory and never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line)) };
    }
}

/// Asks for the panel row at `row`: one k step of a panel, NR 4-byte lanes (128 bytes, two cache
/// lines). A prefetch never faults, so one past the panel's end is harmless.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_panel_row<T>(row: *const T) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    const { assert!(std::mem::size_of::<T>() == 4) };
    let row = row.cast::<i8>();
    // SAFETY: a prefetch has no effect on memory and never faults, whatever the address.
    unsafe {
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(64));
    }
}

/// The next panel's rows that one pass over a panel asks L2 for while it multiplies. With a
/// few rows, a panel is read by several passes (row groups, column halves), and only the first
/// would touch memory: the core then waits on the panel's lines and computes, in turn. Spread
/// over the later passes, the next panel's lines arrive while the FMAs run (the first pass of
/// every panel still prefetches its own rows ahead, for the first panel and for a slow memory).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct NextPanel {
    line: *const u8,
    left: usize,
    /// Lines asked for per `steps` steps, spread evenly (`owed` carries the remainder).
    share: usize,
    steps: usize,
    owed: usize,
}

#[cfg(target_arch = "x86_64")]
impl NextPanel {
    /// For pass `pass` of `passes` (`steps` steps each) over a panel whose successor is the
    /// `bytes` from `next`: pass 0 asks for nothing, each later one for its share of the
    /// successor's cache lines, spread over its steps.
    fn for_pass<T>(next: *const T, bytes: usize, steps: usize, pass: usize, passes: usize) -> Self {
        if pass == 0 {
            return Self::none();
        }
        let (lines, later) = (bytes.div_ceil(64), passes - 1);
        let (lo, hi) = ((pass - 1) * lines / later, pass * lines / later);
        NextPanel {
            line: next.cast::<u8>().wrapping_add(lo * 64),
            left: hi - lo,
            share: hi - lo,
            steps: steps.max(1),
            owed: 0,
        }
    }

    /// Asks for nothing (a pass that is not decode's, or the first).
    fn none() -> Self {
        NextPanel { line: std::ptr::null(), left: 0, share: 0, steps: 1, owed: 0 }
    }

    /// Called once a step: asks L2 for the lines whose turn has come.
    #[inline(always)]
    fn step(&mut self) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        // Into L2 only: wanted a whole panel later, in L1 they would push out the lines of the
        // panel being multiplied.
        // SAFETY: a prefetch has no effect on memory and never faults, whatever the address.
        self.step_with(|line| unsafe { _mm_prefetch::<_MM_HINT_T1>(line.cast()) });
    }

    /// [`Self::step`] with `ask` for the prefetch.
    #[inline(always)]
    fn step_with(&mut self, mut ask: impl FnMut(*const u8)) {
        if self.left > 0 {
            self.owed += self.share;
            while self.owed >= self.steps && self.left > 0 {
                self.owed -= self.steps;
                self.left -= 1;
                ask(self.line);
                self.line = self.line.wrapping_add(64);
            }
        }
    }
}

/// Which microkernel family runs (see `isa.rs`). Every family gives the same bits for the same
/// element.
pub(crate) use self::isa::Isa as Kernel;

/// 64-byte aligned storage so each panel row is one aligned cache line pair.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

impl Line {
    const ZERO: Line = Line([0.0; 16]);

    /// `n` zero lines, written by every thread: a packed matrix is then filled row by row, and
    /// the first write to each of its pages is a page fault. One thread taking the faults of a
    /// 1B model's 4.3 GB of f32 weights spent seconds in them (the kernel's zeroing, and in a
    /// VM the trap of each page), which two threads take in a fraction of that time.
    fn zeroed(n: usize) -> Vec<Line> {
        let mut v = Vec::with_capacity(n);
        if n < PARALLEL_ZERO_LINES {
            v.resize(n, Line::ZERO);
        } else {
            v.par_extend(rayon::iter::repeat_n(Line::ZERO, n));
        }
        v
    }
}

/// Lines (64 bytes each) from which [`Line::zeroed`] writes with every thread: 16 MB.
const PARALLEL_ZERO_LINES: usize = 1 << 18;

/// Packed weights: f32, bf16 pairs or f16 in the same 64-byte lines, Q8_0 (see `q8.rs`), or GGUF
/// blocks (`quant.rs`, `int8.rs`).
enum Packed {
    /// `[panel][k][NR]` f32, the last panel zero-padded past column n.
    F32(Vec<Line>),
    /// bf16 pairs (see `bf16.rs`).
    Bf16(bf16::Bf16Weights),
    /// `[panel][k][NR]` f16 (see `f16.rs`).
    F16(Vec<Line>),
    Q8_0(q8::Q8Weights),
    /// A GGUF quantised type as stored (see `quant.rs`).
    Quant(quant::QuantWeights),
    /// A GGUF type as stored, for products on int8-quantised x (see `int8.rs`).
    Int8(int8::Int8Weights),
}

/// A weight matrix W ([n, k]) with optional bias, packed for [`PackedMatrix::matmul`].
pub struct PackedMatrix {
    n: usize,
    k: usize,
    data: Packed,
    /// Padded to a whole number of panels with zeros.
    bias: Option<Vec<f32>>,
    /// Microkernel family, the one in force when packed (`isa::current`).
    kernel: Kernel,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedMatrix")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("bias", &self.bias.is_some())
            .field("bf16", &self.is_bf16())
            .field("f16", &self.is_f16())
            .field("q8_0", &self.is_q8_0())
            .field("quant", &self.quant_type())
            .field("kernel", &self.kernel)
            .finish()
    }
}

/// Output pointer shared by the threads of one `matmul`, and its row stride.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32, usize);
// SAFETY: each thread writes only the output columns of its own disjoint panel range, and the
// `&mut [f32]` the pointer came from outlives the parallel region, so no two threads touch the
// same element and nothing reads it concurrently.
unsafe impl Send for OutPtr {}
// SAFETY: as for Send; the pointer itself is only copied.
unsafe impl Sync for OutPtr {}

impl PackedMatrix {
    /// Whether the weights are held as bf16.
    pub fn is_bf16(&self) -> bool {
        matches!(self.data, Packed::Bf16(_))
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes held (for memory reports).
    pub fn bytes(&self) -> usize {
        let w = match &self.data {
            Packed::F32(d) | Packed::F16(d) => std::mem::size_of_val(d.as_slice()),
            Packed::Bf16(b) => b.bytes(),
            Packed::Q8_0(q) => q.bytes(),
            Packed::Quant(q) => q.bytes(),
            Packed::Int8(q) => q.bytes(),
        };
        w + self.bias.as_ref().map_or(0, |b| b.len() * 4)
    }

    /// Copies weight row `r` (length k) into `out`: an embedding lookup when the LM head is tied
    /// to the embeddings, so the unpacked table need not be kept. bf16 and f16 weights come back
    /// widened (exactly) to f32, Q8_0 ones dequantised (exactly: the values products use).
    pub fn row(&self, r: usize, out: &mut [f32]) {
        assert!(r < self.n, "PackedMatrix::row: row {r} out of {}", self.n);
        assert_eq!(out.len(), self.k, "PackedMatrix::row: out.len() != k");
        let (p, c) = (r / NR, r % NR);
        match &self.data {
            Packed::F32(d) => {
                let panel = &lines(d)[p * self.k * NR..(p + 1) * self.k * NR];
                for (kk, o) in out.iter_mut().enumerate() {
                    *o = panel[kk * NR + c];
                }
            }
            Packed::Bf16(b) => b.row(self.k, r, out),
            Packed::F16(d) => f16::row(d, self.k, r, out),
            Packed::Q8_0(q) => q8::row(q, self.k, r, out),
            Packed::Quant(q) => quant::row(q, self.k, r, out),
            Packed::Int8(q) => int8::row(q, self.k, r, out),
        }
    }

    /// out[m, n] = x[m, k] · Wᵀ + bias. Runs on rayon's current pool (split over output
    /// columns) when the work is large enough.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.matmul_with(self.kernel, x, m, out);
    }

    /// As [`matmul`](Self::matmul) run by the kernels of family `kernel` (bf16 weights by
    /// `vdpbf16ps` or its emulation as `bf16::Bf16Kernel::for_family` picks; the same bits
    /// either way).
    pub(crate) fn matmul_with(&self, kernel: Kernel, x: &[f32], m: usize, out: &mut [f32]) {
        assert_eq!(out.len(), m * self.n, "PackedMatrix::matmul: out.len() != m * n");
        self.product(kernel, x, m, out, self.n);
    }

    /// As [`matmul`](Self::matmul) into the first n columns of rows `ldc` apart: row i's
    /// outputs are `out[i * ldc..i * ldc + n]` (the rest of `out` is left as it is), so several
    /// matrices can fill one output side by side.
    pub fn matmul_at(&self, x: &[f32], m: usize, out: &mut [f32], ldc: usize) {
        assert!(ldc >= self.n, "PackedMatrix::matmul_at: ldc < n");
        assert!(
            m == 0 || out.len() >= (m - 1) * ldc + self.n,
            "PackedMatrix::matmul_at: out too short"
        );
        self.product(self.kernel, x, m, out, ldc);
    }

    fn product(&self, kernel: Kernel, x: &[f32], m: usize, out: &mut [f32], ldc: usize) {
        assert_eq!(x.len(), m * self.k, "PackedMatrix::matmul: x.len() != m * k");
        if m == 0 || self.n == 0 {
            return;
        }
        let out = OutPtr(out.as_mut_ptr(), ldc);
        match &self.data {
            Packed::F32(d) => self.drive(F32Path { w: lines(d), k: self.k, kernel }, x, m, out),
            Packed::Bf16(b) => self.bf16_product(bf16::Bf16Kernel::choose(kernel, m), b, x, m, out),
            Packed::F16(d) => self.drive(f16::F16Path::new(d, self.k, kernel), x, m, out),
            Packed::Q8_0(q) => self.drive(q8::Q8Path::new(q, self.k, kernel), x, m, out),
            Packed::Quant(q) => self.drive(quant::QuantPath::new(q, self.k, kernel), x, m, out),
            Packed::Int8(q) => self.drive(
                int8::Int8Path::new(q, self.k, int8::IntKernel::for_family(kernel)),
                x,
                m,
                out,
            ),
        }
    }

    /// A product on bf16 weights run by `bk`, which the CPU must support.
    fn bf16_product(
        &self,
        bk: bf16::Bf16Kernel,
        b: &bf16::Bf16Weights,
        x: &[f32],
        m: usize,
        out: OutPtr,
    ) {
        assert!(bk.supported(), "{bk:?} on a CPU without it");
        match bk {
            // SAFETY: the CPU supports Avx512Bf16 (asserted): AVX-512F and AVX-512 BF16.
            #[cfg(target_arch = "x86_64")]
            bf16::Bf16Kernel::Avx512Bf16 => {
                self.drive(unsafe { bf16::VdpPath::new(b, self.k) }, x, m, out)
            }
            emulated => self.drive(bf16::EmuPath::new(b, self.k, emulated), x, m, out),
        }
    }

    /// As [`matmul`](Self::matmul) on bf16 weights run by `bk` whatever the rows or the CPU's
    /// preference, so that tests reach every kernel the CPU has.
    #[cfg(test)]
    fn matmul_bf16_with(&self, bk: bf16::Bf16Kernel, x: &[f32], m: usize, out: &mut [f32]) {
        assert_eq!(out.len(), m * self.n);
        assert_eq!(x.len(), m * self.k);
        let Packed::Bf16(b) = &self.data else { panic!("not bf16 weights") };
        if m > 0 && self.n > 0 {
            self.bf16_product(bk, b, x, m, OutPtr(out.as_mut_ptr(), self.n));
        }
    }

    /// Packs x once, then splits the panels over rayon's pool (or not) and runs them through
    /// `path`'s kernels against that one packed copy.
    fn drive<P: Path>(&self, path: P, x: &[f32], m: usize, ptr: OutPtr) {
        let panels = self.n.div_ceil(NR);
        let threads = rayon::current_num_threads().min(panels);
        let parallel =
            threads > 1 && m.saturating_mul(self.n).saturating_mul(self.k) >= P::PAR_MIN_WORK;
        P::with_buf(|buf| {
            let packed = self.pack_x(path, x, m, buf, parallel);
            if !parallel {
                self.run_panels(path, packed, m, 0..panels, ptr);
                return;
            }
            // Wide products get a few tasks per thread so a core slowed by other work does not
            // hold up the rest.
            let tasks = threads * (panels / (threads * 12)).clamp(1, 4);
            rayon::scope(|s| {
                for t in 0..tasks {
                    let range = (t * panels / tasks)..((t + 1) * panels / tasks);
                    s.spawn(move |_| self.run_panels(path, packed, m, range, ptr));
                }
            });
        })
    }

    /// Rows per chunk of packed x: a chunk stays in L2 while every panel streams past it.
    fn chunk_rows<P: Path>(path: &P) -> usize {
        (X_CHUNK_BYTES / (path.depth().max(1) * std::mem::size_of::<P::X>()) / MR * MR).max(MR)
    }

    /// x packed for the kernels into `buf`: chunk by chunk, each row block as [depth][block
    /// rows], so rows r.. start at `r * depth` for every chunk and block start r. Row blocks
    /// are packed in parallel when the product is.
    fn pack_x<'b, P: Path>(
        &self,
        path: P,
        x: &[f32],
        m: usize,
        buf: &'b mut Vec<P::X>,
        parallel: bool,
    ) -> &'b [P::X] {
        let (k, d) = (self.k, path.depth());
        if buf.len() < m * d {
            buf.resize(m * d, P::X::default());
        }
        let mut jobs: Vec<(usize, usize, &mut [P::X])> = Vec::new();
        let mut rest = &mut buf[..m * d];
        for (r0, rows) in chunks(m, Self::chunk_rows(&path)) {
            for (b0, br) in row_blocks(rows) {
                let (dst, tail) = std::mem::take(&mut rest).split_at_mut(br * d);
                jobs.push((r0 + b0, br, dst));
                rest = tail;
            }
        }
        let pack = |(start, br, dst): (usize, usize, &mut [P::X])| {
            // (k = 0 leaves nothing to pack, and no room to slice row i's start.)
            if d > 0 {
                path.pack_block(&x[start * k..(start + br) * k], k, dst, br);
            }
        };
        if parallel {
            jobs.into_par_iter().for_each(pack);
        } else {
            jobs.into_iter().for_each(pack);
        }
        &buf[..m * d]
    }

    /// Computes output columns of `panels` for all m rows from x packed by [`Self::pack_x`].
    /// Rows are taken in chunks whose packed copy stays in L2 while every panel of the range
    /// streams past it.
    fn run_panels<P: Path>(
        &self,
        path: P,
        packed: &[P::X],
        m: usize,
        panels: std::ops::Range<usize>,
        out: OutPtr,
    ) {
        let d = path.depth();
        for (r0, rows) in chunks(m, Self::chunk_rows(&path)) {
            let buf = &packed[r0 * d..(r0 + rows) * d];
            let mut p = panels.start;
            while p < panels.end {
                // SAFETY: rows r0 .. r0+rows are < m and columns from p*NR are < n, so
                // every write lands inside `out` ((m-1)*ldc + n, checked by the caller), and this
                // thread owns the columns of its panel range (see OutPtr).
                let (c, ldc) = (unsafe { out.0.add(r0 * out.1 + p * NR) }, out.1);
                let g = (panels.end - p).min(path.wide_max(rows));
                if g > 0 {
                    let bias = self.bias.as_ref().map(|b| &b[p * NR..(p + g) * NR]);
                    let cols = (self.n - (p + g - 1) * NR).min(NR);
                    // SAFETY: `c` covers rows × the g panels as above.
                    unsafe { path.wide(rows, p, g, buf, bias, c, ldc, cols) };
                    p += g;
                    continue;
                }
                let bias = self.bias.as_ref().map(|b| &b[p * NR..(p + 1) * NR]);
                let cols = (self.n - p * NR).min(NR);
                // SAFETY: the chunk's rows are inside `out` (see `c` above), so `c` is valid
                // for `rows` rows of `cols` columns at stride n.
                unsafe { path.panel(rows, p, buf, bias, c, ldc, cols) };
                p += 1;
            }
        }
    }
}

/// What the f32, bf16 and Q8_0 weights do differently inside the shared driver
/// ([`PackedMatrix::run_panels`]): how x is packed and which microkernels run. The per-element
/// order is each kernel's own; the driver only decides who computes which element.
trait Path: Copy + Send + Sync {
    /// One packed x element: an f32, or a bf16 pair in a u32.
    type X: Copy + Default + Send + Sync;
    /// Multiply-adds below which one thread does the whole product.
    const PAR_MIN_WORK: usize;
    /// Packed x elements per row (k, or k/2 rounded up).
    fn depth(&self) -> usize;
    /// Packs a block of x (`src`: its `rows` rows of `k` floats, one after the other) into the
    /// block's packed x: row i's element d < depth at `block[d * rows + i]` (`[depth][rows]`)
    /// unless the path says otherwise.
    fn pack_block(&self, src: &[f32], k: usize, block: &mut [Self::X], rows: usize);
    /// Runs `f` on this thread's packed-x buffer.
    fn with_buf<R>(f: impl FnOnce(&mut Vec<Self::X>) -> R) -> R;
    /// Panels the small-m kernel takes per call for `rows` rows, or 0 when it does not apply.
    fn wide_max(&self, rows: usize) -> usize;
    /// `rows` rows of packed x (`a`) times panels p..p+g into `c`, the last panel to `cols`
    /// columns.
    ///
    /// # Safety
    /// `c` is valid for writes of `rows` rows of (g-1)*NR + cols floats at stride `ldc`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn wide(
        &self,
        rows: usize,
        p: usize,
        g: usize,
        a: &[Self::X],
        bias: Option<&[f32]>,
        c: *mut f32,
        ldc: usize,
        cols: usize,
    );
    /// `rows` (1..=MR) rows of packed x times panel p into `c`, first `cols` columns. `alone`:
    /// the block is its whole chunk (decode), so no other block reads panel p after it and a
    /// kernel that reads the panel in several passes may bring the next one into L2 meanwhile
    /// ([`NextPanel`]).
    ///
    /// # Safety
    /// `c` is valid for writes of `rows` rows of `cols` floats at stride `ldc`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn block(
        &self,
        rows: usize,
        p: usize,
        a: &[Self::X],
        bias: Option<&[f32]>,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        alone: bool,
    );
    /// All `rows` rows of a chunk's packed x (`a`, its row blocks as [`PackedMatrix::pack_x`]
    /// lays them out) times panel p into `c`, first `cols` columns: row block by row block,
    /// unless the path first turns the panel into something its kernels read faster.
    ///
    /// # Safety
    /// `c` is valid for writes of `rows` rows of `cols` floats at stride `ldc`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn panel(
        &self,
        rows: usize,
        p: usize,
        a: &[Self::X],
        bias: Option<&[f32]>,
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { by_blocks(self, rows, p, a, bias, c, ldc, cols) }
    }
}

/// [`Path::panel`] done plainly: [`Path::block`] for each row block.
///
/// # Safety
/// As for [`Path::panel`].
#[allow(clippy::too_many_arguments)]
unsafe fn by_blocks<P: Path>(
    path: &P,
    rows: usize,
    p: usize,
    a: &[P::X],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let (d, alone) = (path.depth(), rows <= MR);
    for (b0, br) in row_blocks(rows) {
        let (a, c) = (&a[b0 * d..(b0 + br) * d], c.wrapping_add(b0 * ldc));
        // SAFETY: row b0 < rows, so `c` is valid for br rows of `cols` columns at ldc.
        unsafe { path.block(br, p, a, bias, c, ldc, cols, alone) };
    }
}

/// f32 weights, run by `kernel`.
#[derive(Clone, Copy)]
struct F32Path<'a> {
    w: &'a [f32],
    k: usize,
    kernel: Kernel,
}

impl Path for F32Path<'_> {
    type X = f32;
    const PAR_MIN_WORK: usize = PAR_MIN_WORK;

    fn depth(&self) -> usize {
        self.k
    }

    fn pack_block(&self, src: &[f32], k: usize, block: &mut [f32], rows: usize) {
        pack_f32_block(src, k, block, rows);
    }

    fn with_buf<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
        with_cached(&XBUF, f)
    }

    fn wide_max(&self, rows: usize) -> usize {
        #[cfg(target_arch = "x86_64")]
        if self.kernel == Kernel::Avx512 && rows <= 3 {
            return avx512::WIDE;
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
        let (k, w) = (self.k, self.w);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `wide_max` is non-zero only for Avx512, chosen after detecting avx512f; `c`
        // is forwarded from the caller.
        unsafe {
            avx512::wide(rows, g, k, a, &w[p * k * NR..(p + g) * k * NR], bias, c, ldc, cols)
        };
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (rows, p, g, k, w, a, bias, c, ldc, cols);
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
        let wp = &self.w[p * k * NR..(p + 1) * k * NR];
        #[cfg(not(target_arch = "x86_64"))]
        let _ = alone;
        match self.kernel {
            // SAFETY: `c` is forwarded from the caller.
            Kernel::Scalar => unsafe { scalar::block(rows, k, a, wp, bias, c, ldc, cols) },
            // SAFETY: Avx2 is only chosen after detecting avx2 and fma (tests check it too);
            // `c` as for Scalar.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::AvxVnni => unsafe {
                avx2::block(rows, k, a, wp, bias, c, ldc, cols, alone)
            },
            // SAFETY: as for Avx2, with avx512f.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { avx512::block(rows, k, a, wp, bias, c, ldc, cols) },
            // SAFETY: NEON is aarch64's baseline; `c` as for Scalar.
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => unsafe { neon::block(rows, k, a, wp, bias, c, ldc, cols) },
        }
    }
}

/// f32 → bf16 bits, rounding to nearest even. NaNs stay (quiet) NaNs, and inputs below f32's
/// normal range become signed zeros: AVX-512 BF16's conversions do the same, and `vdpbf16ps`
/// reads bf16 denormals as zero anyway.
pub(crate) fn to_bf16(v: f32) -> u16 {
    let b = v.to_bits();
    if v.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    if b & 0x7f80_0000 == 0 {
        return ((b >> 16) & 0x8000) as u16;
    }
    // No overflow: the largest non-NaN pattern is -inf, 0xff80_0000.
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// bf16 bits → f32 (exact: bf16 is f32's upper half).
#[inline(always)]
pub(crate) fn from_bf16(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Stores rows of finished accumulators: row i's first `cols` columns (plus the bias, if any)
/// at `c + i·ldc`.
///
/// # Safety
/// `c` is valid for writes of `acc.len()` rows of `cols` floats at stride `ldc`.
unsafe fn store_rows(
    acc: &[[f32; NR]],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: the caller guarantees each row's `cols` floats are writable at stride ldc.
        let dst = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), cols) };
        // Fixed lengths where the panel is whole, zipped slices otherwise: the copies compile to
        // vector moves, not a bounds check a column or a `memcpy` call a row.
        match (<&mut [f32; NR]>::try_from(&mut *dst), bias) {
            (Ok(whole), Some(b)) => {
                let b: &[f32; NR] = b[..NR].try_into().expect("a bias of NR columns");
                for j in 0..NR {
                    whole[j] = row[j] + b[j];
                }
            }
            (Ok(whole), None) => *whole = *row,
            (Err(_), Some(b)) => {
                dst.iter_mut().zip(&row[..cols]).zip(&b[..cols]).for_each(|((o, r), b)| *o = r + b)
            }
            (Err(_), None) => dst.copy_from_slice(&row[..cols]),
        }
    }
}

/// x row `src` as f32 and Q8_0 weights take it: `dst[kk * stride] = src[kk]`.
/// `rows` rows of `k` floats (`src`, one after the other) as `[k][rows]` into `dst`, written in
/// `dst`'s order (contiguous stores: one store per `rows`-strided element, row by row, cost a few
/// percent of a long prefill).
fn pack_f32_block(src: &[f32], k: usize, dst: &mut [f32], rows: usize) {
    assert!(src.len() >= rows * k && dst.len() >= rows * k, "pack_f32_block: block sizes");
    for (kk, col) in dst[..rows * k].chunks_exact_mut(rows).enumerate() {
        for (i, d) in col.iter_mut().enumerate() {
            *d = src[i * k + kk];
        }
    }
}

/// The chunks of m rows, `chunk_rows` (> 0) at a time: (first row, row count).
fn chunks(m: usize, chunk_rows: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..m).step_by(chunk_rows).map(move |r0| (r0, (m - r0).min(chunk_rows)))
}

/// The row blocks of a chunk of `rows`, each packed as [depth][block rows] right after the
/// previous one: (first row, row count), at most MR rows, sizes as even as possible so no block
/// is left with a latency-bound handful of rows.
fn row_blocks(rows: usize) -> impl Iterator<Item = (usize, usize)> {
    let blocks = rows.div_ceil(MR);
    (0..blocks).map(move |b| {
        let start = b * rows / blocks;
        (start, (b + 1) * rows / blocks - start)
    })
}

fn lines(data: &[Line]) -> &[f32] {
    // SAFETY: `Line` is `repr(C)` around `[f32; 16]` with no padding (64 bytes exactly).
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<f32>(), data.len() * 16) }
}

fn lines_mut(data: &mut [Line]) -> &mut [f32] {
    // SAFETY: `Line` is `repr(C)` around `[f32; 16]` with no padding (64 bytes exactly).
    unsafe { std::slice::from_raw_parts_mut(data.as_mut_ptr().cast::<f32>(), data.len() * 16) }
}

fn pairs(data: &[Line]) -> &[u32] {
    // SAFETY: as for `lines`; u32 has f32's size and alignment, and every bit pattern is valid.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u32>(), data.len() * 16) }
}

fn pairs_mut(data: &mut [Line]) -> &mut [u32] {
    // SAFETY: as for `pairs`.
    unsafe { std::slice::from_raw_parts_mut(data.as_mut_ptr().cast::<u32>(), data.len() * 16) }
}

/// Runs `f` on this thread's cached buffer, or on a fresh one when it is in use: a thread
/// waiting for a product's tasks may be handed another product by rayon.
fn with_cached<X, R>(
    cache: &'static std::thread::LocalKey<RefCell<Vec<X>>>,
    f: impl FnOnce(&mut Vec<X>) -> R,
) -> R {
    cache.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut Vec::new()),
    })
}

thread_local! {
    /// Packed x (f32 and Q8_0 weights), reused across calls so a decode step does not
    /// page-fault in a fresh buffer.
    /// Bounded by one m-chunk: about `X_CHUNK_BYTES` + MR·k floats per thread.
    static XBUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}
