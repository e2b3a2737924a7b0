//! bf16 weights: the packing, the exact definition of a product, and the paths that compute it.
//!
//! A product on bf16 weights is defined as AVX-512 BF16's `vdpbf16ps` chain (see the module doc of
//! `kernels`), and every CPU computes exactly that: `avx512bf16.rs` with the instruction where the
//! CPU has it and it pays ([`Bf16Kernel::for_family`]), and otherwise an emulation with plain f32
//! FMAs on the bf16 values widened exactly (shifted into the upper half) in registers
//! (`avx512bf16fma.rs`, `avx2bf16.rs`, and the portable kernels here). The emulation follows
//! Intel's pseudo-code for `VDPBF16PS`, which measurement on a Sapphire Rapids class CPU confirmed
//! bit for bit (96M random lanes with every exponent, and sweeps around f32's smallest normal, all
//! equal): per lane and pair, `acc = fma(x_odd, w_odd, acc)` and then `acc = fma(x_even, w_even,
//! acc)`, each FMA rounded once to nearest even with denormal inputs read as zero and tiny results
//! flushed to a signed zero, tininess detected after rounding as x86 does ([`fma_dz`]). Neither the
//! even product first nor one rounding of both products matches.
//!
//! The flushing costs nothing to honour: x and W are packed without denormals (`to_bf16` flushes
//! them), so only a tiny FMA result could ever differ from a plain FMA's, and none can occur when
//! every product is a multiple of 2^-126: then every partial sum is one too (rounding keeps such
//! multiples), hence zero or normal. A product of bf16 values with biased exponents `ex` and
//! `ew` is a multiple of 2^(ex-134) · 2^(ew-134), so `ex + ew >= 142` suffices. The packer keeps
//! each panel's smallest exponent of a non-zero weight and x's packing each row's, and a block
//! whose smallest pair falls short (activations below about 1e-27 times weights of ordinary
//! size, which real models do not produce) runs the [`exact`] kernel instead, which checks every
//! FMA. Either way the bits are `vdpbf16ps`'s, so which kernel runs never shows.

#[cfg(target_arch = "x86_64")]
use super::{avx2bf16, avx512bf16};
use super::{from_bf16, isa, pairs, pairs_mut, to_bf16, Kernel, Line, Path, MR, NR};

/// `ex + ew` at or above which every product of bf16 values with those biased exponents is a
/// multiple of 2^-126 (see the module doc).
pub(super) const SAFE_EXPONENT_SUM: u32 = 142;

/// Packed bf16 weights.
pub(super) struct Bf16Weights {
    /// `[panel][k/2 rounded up][NR]` u32, each the bf16 pair (k = 2p low, 2p+1 high) of one
    /// column; zero-padded past column n and, for odd k, in the last pair's high half.
    pub(super) data: Vec<Line>,
    /// Per panel, the smallest biased exponent of a non-zero weight (255 when there is none).
    emin: Vec<u8>,
}

impl Bf16Weights {
    pub(super) fn zeroed(n: usize, k: usize) -> Self {
        // A line holds 16 pairs, so a panel's k-pair row of NR pairs is two lines.
        let panels = n.div_ceil(NR);
        Bf16Weights {
            data: Line::zeroed(panels * k.div_ceil(2) * (NR / 16)),
            emin: vec![255; panels],
        }
    }

    pub(super) fn bytes(&self) -> usize {
        std::mem::size_of_val(self.data.as_slice()) + self.emin.len()
    }

    /// Writes row `r` of W (`src`, k values) into column r % NR of its panel.
    pub(super) fn put_row(&mut self, k: usize, r: usize, src: &[f32]) {
        self.put_row_with(k, r, |kk| to_bf16(src[kk]));
    }

    /// As [`Self::put_row`] from bf16 bit patterns: the packing of their exact f32 values
    /// (denormals flushed, NaNs quieted, as `to_bf16` does).
    pub(super) fn put_row_bits(&mut self, k: usize, r: usize, src: &[u16]) {
        self.put_row_with(k, r, |kk| to_bf16(from_bf16(src[kk])));
    }

    fn put_row_with(&mut self, k: usize, r: usize, value: impl Fn(usize) -> u16) {
        let (p, c, kp) = (r / NR, r % NR, k.div_ceil(2));
        let panel = &mut pairs_mut(&mut self.data)[p * kp * NR..(p + 1) * kp * NR];
        let mut emin = self.emin[p];
        for (pp, slot) in panel.iter_mut().skip(c).step_by(NR).enumerate() {
            let lo = value(2 * pp);
            let hi = if 2 * pp + 1 < k { value(2 * pp + 1) } else { 0 };
            *slot = lo as u32 | (hi as u32) << 16;
            emin = emin.min(exponent(lo)).min(exponent(hi));
        }
        self.emin[p] = emin;
    }

    /// Row `r` widened (exactly) to f32.
    pub(super) fn row(&self, k: usize, r: usize, out: &mut [f32]) {
        let (p, c, kp) = (r / NR, r % NR, k.div_ceil(2));
        let panel = &pairs(&self.data)[p * kp * NR..(p + 1) * kp * NR];
        for (kk, o) in out.iter_mut().enumerate() {
            *o = from_bf16((panel[(kk / 2) * NR + c] >> (16 * (kk % 2))) as u16);
        }
    }

    /// Every stored bit (tests compare packings).
    #[cfg(test)]
    pub(super) fn raw_bits(&self) -> Vec<u32> {
        pairs(&self.data).iter().copied().chain(self.emin.iter().map(|&e| e as u32)).collect()
    }
}

/// The biased exponent of bf16 `b`, or 255 for a zero (which no product rounds against).
#[inline]
fn exponent(b: u16) -> u8 {
    if b & 0x7fff == 0 {
        255
    } else {
        (b >> 7) as u8
    }
}

/// One FMA as `vdpbf16ps` computes it: `a·b + c` rounded once to nearest even, denormal inputs
/// read as zero and a result that is tiny (below 2^-126 in magnitude after rounding to 24 bits
/// with an unbounded exponent, as x86 detects tininess) flushed to zero of its sign. The
/// reference the tests hold the instruction and the kernels to.
#[cfg(test)]
pub(crate) fn fma_dz(a: f32, b: f32, c: f32) -> f32 {
    let daz = |v: f32| if v.is_subnormal() { f32::from_bits(v.to_bits() & 0x8000_0000) } else { v };
    let (a, b, c) = (daz(a), daz(b), daz(c));
    settle(a.mul_add(b, c), a, b, c)
}

/// Turns the IEEE result `r` of `a·b + c` (inputs not denormal) into `vdpbf16ps`'s. Below
/// 2^-126, IEEE rounds to a denormal and x86 flushes. At exactly ±2^-126, IEEE may have rounded
/// up from [2^-126 - 2^-150, 2^-126) where 24-bit rounding with an unbounded exponent stays
/// below 2^-126 (and so flushes): that is when the exact sum is below 2^-126 - 2^-151 (the tie
/// goes to 2^-126, whose significand is even). The exact sum is then within 2^-150 of ±2^-126,
/// which needs |c| < 2^-100 (a larger c has no bits that fine to cancel against), so f64 holds
/// `2^-126 - 2^-151 - s·c` exactly, and the bf16 product `a·b` (16 significant bits) too.
#[inline]
pub(crate) fn settle(r: f32, a: f32, b: f32, c: f32) -> f32 {
    let mag = r.abs();
    let zero = f32::from_bits(r.to_bits() & 0x8000_0000);
    if mag < f32::MIN_POSITIVE {
        return zero;
    }
    if mag == f32::MIN_POSITIVE {
        let s = if r < 0.0 { -1.0 } else { 1.0 };
        let limit = f32::MIN_POSITIVE as f64 - 2f64.powi(-151) - s * c as f64;
        if s * (a as f64 * b as f64) < limit {
            return zero;
        }
    }
    r
}

/// The reference for one step of a lane: `vdpbf16ps` on bf16 pairs `x` and `w` (k = 2p in the
/// low halves) into `acc`.
#[cfg(test)]
pub(crate) fn dp_pair(acc: f32, x: u32, w: u32) -> f32 {
    let (hi, lo) = (|v: u32| f32::from_bits(v & 0xffff_0000), |v: u32| f32::from_bits(v << 16));
    fma_dz(lo(x), lo(w), fma_dz(hi(x), hi(w), acc))
}

/// Which kernels run a product on bf16 weights for a kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Bf16Kernel {
    /// The portable emulation.
    Scalar,
    /// The AVX2+FMA emulation (`avx2bf16.rs`).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// The AVX-512F emulation (`avx512bf16fma.rs`), for products of more than [`FEW_ROWS`]
    /// rows (see [`Bf16Kernel::for_family`]).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// `vdpbf16ps` (`avx512bf16.rs`).
    #[cfg(target_arch = "x86_64")]
    Avx512Bf16,
    /// The NEON emulation (`neon.rs`).
    #[cfg(target_arch = "aarch64")]
    Neon,
}

/// Products of at most this many rows run the small-m kernels (`vdpbf16ps`'s wide ones, which
/// keep up to 16 FMA chains in flight where a one-row block of the FMA emulation has two).
#[cfg(target_arch = "x86_64")]
const FEW_ROWS: usize = 3;

impl Bf16Kernel {
    /// Every bf16 kernel this build has.
    #[cfg(test)]
    pub(super) const ALL: &'static [Bf16Kernel] = &[
        Bf16Kernel::Scalar,
        #[cfg(target_arch = "x86_64")]
        Bf16Kernel::Avx2,
        #[cfg(target_arch = "x86_64")]
        Bf16Kernel::Avx512,
        #[cfg(target_arch = "x86_64")]
        Bf16Kernel::Avx512Bf16,
        #[cfg(target_arch = "aarch64")]
        Bf16Kernel::Neon,
    ];

    /// Whether this CPU runs these kernels.
    pub(super) fn supported(self) -> bool {
        match self {
            Bf16Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Bf16Kernel::Avx2 => Kernel::Avx2.supported(),
            #[cfg(target_arch = "x86_64")]
            Bf16Kernel::Avx512 => Kernel::Avx512.supported() && Kernel::Avx2.supported(),
            #[cfg(target_arch = "x86_64")]
            Bf16Kernel::Avx512Bf16 => isa::cpu_has_avx512_bf16(),
            #[cfg(target_arch = "aarch64")]
            Bf16Kernel::Neon => Kernel::Neon.supported(),
        }
    }

    /// The kernels for a product of `m` rows in `family` on this CPU.
    pub(super) fn choose(family: Kernel, m: usize) -> Self {
        Self::for_family(family, isa::cpu_has_avx512_bf16(), isa::vdpbf16ps_outruns_fma(), m)
    }

    /// The kernels for a product of `m` rows in `family` on a CPU that has AVX-512 BF16 or not
    /// (`cpu_bf16`) and on which `vdpbf16ps` outruns two FMAs or not (`vdp_fast`). All give the
    /// same bits, so the choice by m keeps a row's results independent of its batch. Few rows
    /// run `vdpbf16ps` where the CPU has it (the FMA emulation's one-row block waits on FMA
    /// latency) and more rows run it where it is the faster; the other cases the emulation in
    /// the widest registers the CPU has: an AVX-512 CPU without BF16 (Skylake-X to Ice Lake)
    /// or whose `vdpbf16ps` is slow (Intel's) runs the AVX-512 emulation for more than
    /// [`FEW_ROWS`] rows, and the AVX2 one for fewer where it lacks the instruction.
    pub(super) fn for_family(family: Kernel, cpu_bf16: bool, vdp_fast: bool, m: usize) -> Self {
        match family {
            Kernel::Scalar => Bf16Kernel::Scalar,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 if cpu_bf16 && (vdp_fast || m <= FEW_ROWS) => Bf16Kernel::Avx512Bf16,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 if m > FEW_ROWS && Kernel::Avx2.supported() => Bf16Kernel::Avx512,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::AvxVnni | Kernel::Avx512 if Kernel::Avx2.supported() => {
                Bf16Kernel::Avx2
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::AvxVnni | Kernel::Avx512 => Bf16Kernel::Scalar,
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => {
                let _ = (cpu_bf16, vdp_fast, m);
                Bf16Kernel::Neon
            }
        }
    }
}

/// bf16 weights run by `vdpbf16ps`: x packed as bf16 pairs like W.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) struct VdpPath<'a> {
    w: &'a [u32],
    k: usize,
}

#[cfg(target_arch = "x86_64")]
impl<'a> VdpPath<'a> {
    /// # Safety
    /// The CPU must have AVX-512F and AVX-512 BF16 ([`Bf16Kernel::Avx512Bf16`]).
    pub(super) unsafe fn new(w: &'a Bf16Weights, k: usize) -> Self {
        VdpPath { w: pairs(&w.data), k }
    }
}

#[cfg(target_arch = "x86_64")]
impl Path for VdpPath<'_> {
    type X = u32;
    // Half the weight bytes per multiply-add, so twice the work to pay for a fork/join.
    const PAR_MIN_WORK: usize = 2 * super::PAR_MIN_WORK;

    fn depth(&self) -> usize {
        self.k.div_ceil(2)
    }

    fn pack_block(&self, src: &[f32], k: usize, block: &mut [u32], rows: usize) {
        for i in 0..rows {
            let (src, dst) = (&src[i * k..(i + 1) * k], &mut block[i..]);
            // SAFETY: a VdpPath is only made (`new`) where the CPU has AVX-512F and AVX-512 BF16.
            unsafe { avx512bf16::pack_row(src, dst, rows) }
        }
    }

    fn with_buf<R>(f: impl FnOnce(&mut Vec<u32>) -> R) -> R {
        super::with_cached(&XBUF_PAIRS, f)
    }

    fn wide_max(&self, rows: usize) -> usize {
        if rows <= 3 {
            avx512bf16::WIDE
        } else {
            0
        }
    }

    #[allow(clippy::too_many_arguments)]
    unsafe fn wide(
        &self,
        rows: usize,
        p: usize,
        g: usize,
        a: &[u32],
        bias: Option<&[f32]>,
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        let kp = self.depth();
        let w = &self.w[p * kp * NR..(p + g) * kp * NR];
        // SAFETY: features as in `pack_block`; `c` is forwarded from the caller.
        unsafe { avx512bf16::wide(rows, g, kp, a, w, bias, c, ldc, cols) }
    }

    #[allow(clippy::too_many_arguments)]
    unsafe fn block(
        &self,
        rows: usize,
        p: usize,
        a: &[u32],
        bias: Option<&[f32]>,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        _alone: bool,
    ) {
        let kp = self.depth();
        let w = &self.w[p * kp * NR..(p + 1) * kp * NR];
        // SAFETY: as for `wide`.
        unsafe { avx512bf16::block(rows, kp, a, w, bias, c, ldc, cols) }
    }
}

/// bf16 weights run by the FMA emulation. x is packed widened: row-major `[2·kp + 1]` f32 per
/// row (k padded to even with a zero), the rounded values in k order and then the row's
/// smallest biased exponent of a non-zero value (as an f32 number) for the block's check.
#[derive(Clone, Copy)]
pub(super) struct EmuPath<'a> {
    w: &'a [u32],
    emin: &'a [u8],
    k: usize,
    kernel: Bf16Kernel,
}

impl<'a> EmuPath<'a> {
    pub(super) fn new(w: &'a Bf16Weights, k: usize, kernel: Bf16Kernel) -> Self {
        EmuPath { w: pairs(&w.data), emin: &w.emin, k, kernel }
    }
}

impl EmuPath<'_> {
    /// Whether some FMA of this row block (`a`, `rows` rows) times panel p could come out tiny
    /// (see the module doc), so that only the exact kernel may run it.
    fn tiny(&self, rows: usize, p: usize, a: &[f32]) -> bool {
        let kp = self.k.div_ceil(2);
        assert!(a.len() >= self.depth() * rows);
        let xmin =
            a[2 * kp * rows..(2 * kp + 1) * rows].iter().fold(255u32, |m, &e| m.min(e as u32));
        xmin + (self.emin[p] as u32) < SAFE_EXPONENT_SUM
    }
}

impl Path for EmuPath<'_> {
    type X = f32;
    const PAR_MIN_WORK: usize = 2 * super::PAR_MIN_WORK;

    fn depth(&self) -> usize {
        2 * self.k.div_ceil(2) + 1
    }

    fn pack_block(&self, src: &[f32], k: usize, block: &mut [f32], rows: usize) {
        for i in 0..rows {
            let (src, dst) = (&src[i * k..(i + 1) * k], &mut block[i..]);
            let emin = match self.kernel {
                // SAFETY: Bf16Kernel::Avx2 and Avx512 are only chosen where the CPU has AVX2.
                #[cfg(target_arch = "x86_64")]
                Bf16Kernel::Avx2 | Bf16Kernel::Avx512 => unsafe {
                    avx2bf16::pack_row(src, dst, rows)
                },
                _ => pack_row(src, dst, rows),
            };
            if k % 2 == 1 {
                dst[k * rows] = 0.0;
            }
            dst[(self.depth() - 1) * rows] = emin as f32;
        }
    }

    fn with_buf<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
        super::with_cached(&super::XBUF, f)
    }

    fn wide_max(&self, _rows: usize) -> usize {
        0
    }

    unsafe fn wide(
        &self,
        _: usize,
        _: usize,
        _: usize,
        _: &[f32],
        _: Option<&[f32]>,
        _: *mut f32,
        _: usize,
        _: usize,
    ) {
        unreachable!("`wide_max` is 0 for the bf16 emulation");
    }

    /// With the AVX2 kernels and more rows than one block (prefill, large batches), the panel
    /// is widened into f32 a slice at a time and the f32 microkernel runs every row block over
    /// the slice, odd k first (`avx2::panel_by_slices`): widening in registers would be redone
    /// for every few rows. (Up to a block, decode's batches, `avx2bf16::halves` widens in
    /// registers: there the panel's memory stream, not the widening, sets the pace.) Blocks
    /// that need the exact kernel run it afterwards. Same bits as [`Path::block`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn panel(
        &self,
        rows: usize,
        p: usize,
        a: &[f32],
        bias: Option<&[f32]>,
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.kernel == Bf16Kernel::Avx2 && rows > MR {
            let (kp, d) = (self.k.div_ceil(2), self.depth());
            let w = &self.w[p * kp * NR..(p + 1) * kp * NR];
            let block = |b0: usize, br: usize| &a[b0 * d..(b0 + br) * d];
            let tiny = |b0: usize, br: usize| self.tiny(br, p, block(b0, br));
            // SAFETY (the closure's): Bf16Kernel::Avx2 is only chosen where the CPU has AVX2.
            let widen = |k0: usize, steps: usize, out: &mut [f32]| unsafe {
                avx2bf16::widen(steps / 2, &w[k0 / 2 * NR..], out, super::avx2::SLICE / 2)
            };
            // SAFETY: Bf16Kernel::Avx2 is only chosen where the CPU has AVX2 and FMA; `c` is
            // forwarded from the caller.
            unsafe {
                super::avx2::panel_by_slices::<true>(
                    rows,
                    d,
                    2 * kp,
                    a,
                    widen,
                    tiny,
                    bias,
                    c,
                    ldc,
                    cols,
                )
            };
            for (b0, br) in super::row_blocks(rows).filter(|&(b0, br)| tiny(b0, br)) {
                // SAFETY: as above; row b0 < rows, so `c` covers br rows from row b0.
                unsafe {
                    avx2bf16::exact(br, kp, block(b0, br), w, bias, c.add(b0 * ldc), ldc, cols)
                };
            }
            return;
        }
        // SAFETY: forwarded from the caller.
        unsafe { super::by_blocks(self, rows, p, a, bias, c, ldc, cols) }
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
        let kp = self.k.div_ceil(2);
        let w = &self.w[p * kp * NR..(p + 1) * kp * NR];
        assert!(rows <= MR && cols <= NR && bias.is_none_or(|b| b.len() >= NR));
        #[cfg(not(target_arch = "x86_64"))]
        let _ = alone;
        match (self.kernel, self.tiny(rows, p, a)) {
            // SAFETY (all arms): `c` is forwarded from the caller.
            (Bf16Kernel::Scalar, false) => unsafe {
                by_rows!(rows, fast(kp, a, w, bias, c, ldc, cols))
            },
            (Bf16Kernel::Scalar, true) => unsafe { exact(rows, kp, a, w, bias, c, ldc, cols) },
            // SAFETY: Bf16Kernel::Avx2 is only chosen where Kernel::Avx2 is supported (avx2,
            // fma); `c` as above.
            #[cfg(target_arch = "x86_64")]
            (Bf16Kernel::Avx2, false) => unsafe {
                avx2bf16::block(rows, kp, a, w, bias, c, ldc, cols, alone)
            },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            (Bf16Kernel::Avx2, true) => unsafe {
                avx2bf16::exact(rows, kp, a, w, bias, c, ldc, cols)
            },
            // SAFETY: Bf16Kernel::Avx512 is only chosen where Kernel::Avx512 (avx512f) is
            // supported; `c` as above.
            #[cfg(target_arch = "x86_64")]
            (Bf16Kernel::Avx512, false) => unsafe {
                super::avx512bf16fma::block(rows, kp, a, w, bias, c, ldc, cols)
            },
            // SAFETY: Bf16Kernel::Avx512 is only chosen where Kernel::Avx2 is supported as
            // well; `c` as above.
            #[cfg(target_arch = "x86_64")]
            (Bf16Kernel::Avx512, true) => unsafe {
                avx2bf16::exact(rows, kp, a, w, bias, c, ldc, cols)
            },
            #[cfg(target_arch = "x86_64")]
            (Bf16Kernel::Avx512Bf16, _) => unreachable!("vdpbf16ps runs through VdpPath"),
            // SAFETY: NEON is aarch64's baseline; `c` as above.
            #[cfg(target_arch = "aarch64")]
            (Bf16Kernel::Neon, false) => unsafe {
                super::neon::block_bf16(rows, kp, a, w, bias, c, ldc, cols)
            },
            // (The exact kernel's FMAs compile to NEON's `fmadd` on aarch64, no runtime check.)
            // SAFETY: `c` as above.
            #[cfg(target_arch = "aarch64")]
            (Bf16Kernel::Neon, true) => unsafe { exact(rows, kp, a, w, bias, c, ldc, cols) },
        }
    }
}

/// Rounds a row of x to bf16 and stores it widened back to f32 at `dst[kk * stride]`; returns
/// the smallest biased exponent of a non-zero value (255 when there is none).
pub(super) fn pack_row(src: &[f32], dst: &mut [f32], stride: usize) -> u8 {
    let mut emin = 255;
    for (kk, &v) in src.iter().enumerate() {
        let b = to_bf16(v);
        dst[kk * stride] = from_bf16(b);
        emin = emin.min(exponent(b));
    }
    emin
}

/// The odd and even weights of a k-pair row of a panel, widened.
#[inline(always)]
fn widen(w: &[u32]) -> ([f32; NR], [f32; NR]) {
    let (mut odd, mut even) = ([0f32; NR], [0f32; NR]);
    for j in 0..NR {
        odd[j] = f32::from_bits(w[j] & 0xffff_0000);
        even[j] = f32::from_bits(w[j] << 16);
    }
    (odd, even)
}

/// The portable kernel where no FMA can come out tiny (see the module doc): R rows of widened x
/// (`a`: [2kp+1][R]) times one panel, two plain FMAs per pair, the odd product first.
///
/// # Safety
/// `c` must be valid for writes of R rows of `cols` floats at stride `ldc`.
unsafe fn fast<const R: usize>(
    kp: usize,
    a: &[f32],
    w: &[u32],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[0.0f32; NR]; R];
    for (p, wp) in w[..kp * NR].chunks_exact(NR).enumerate() {
        let (odd, even) = widen(wp);
        let (xo, xe) = (&a[(2 * p + 1) * R..(2 * p + 2) * R], &a[2 * p * R..(2 * p + 1) * R]);
        for i in 0..R {
            for j in 0..NR {
                acc[i][j] = xe[i].mul_add(even[j], xo[i].mul_add(odd[j], acc[i][j]));
            }
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { finish(&mut acc, bias, c, ldc, cols) };
}

/// The portable exact kernel: as [`fast`], with every FMA's result checked and, where it is
/// tiny, settled as `vdpbf16ps` would (see [`settle`]).
///
/// # Safety
/// `rows` <= MR; `c` must be valid for writes of `rows` rows of `cols` floats at stride `ldc`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn exact(
    rows: usize,
    kp: usize,
    a: &[f32],
    w: &[u32],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe { exact_body(rows, kp, a, w, bias, c, ldc, cols) }
}

/// The body of [`exact`], inlined into each instruction set's instance of it.
///
/// # Safety
/// As for [`exact`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn exact_body(
    rows: usize,
    kp: usize,
    a: &[f32],
    w: &[u32],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    assert!(rows <= MR);
    let mut acc = [[0.0f32; NR]; MR];
    for (p, wp) in w[..kp * NR].chunks_exact(NR).enumerate() {
        let (odd, even) = widen(wp);
        for (i, row) in acc[..rows].iter_mut().enumerate() {
            step(row, a[(2 * p + 1) * rows + i], &odd);
            step(row, a[2 * p * rows + i], &even);
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { finish(&mut acc[..rows], bias, c, ldc, cols) };
}

/// `acc[j] = fma_dz(x, w[j], acc[j])` for the inputs the kernels see (never denormal): plain
/// FMAs, and only when one result lands at or below 2^-126 (but not at zero) the lanes settled.
#[inline(always)]
fn step(acc: &mut [f32; NR], x: f32, w: &[f32; NR]) {
    let mut r = [0f32; NR];
    let mut edge = false;
    for j in 0..NR {
        r[j] = x.mul_add(w[j], acc[j]);
        edge |= (r[j].to_bits() & 0x7fff_ffff).wrapping_sub(1) < f32::MIN_POSITIVE.to_bits();
    }
    if edge {
        for j in 0..NR {
            r[j] = settle(r[j], x, w[j], acc[j]);
        }
    }
    *acc = r;
}

/// Adds the bias (if any) and stores each row's first `cols` columns.
///
/// # Safety
/// `c` must be valid for writes of `acc.len()` rows of `cols` floats at stride `ldc`.
#[inline(always)]
unsafe fn finish(
    acc: &mut [[f32; NR]],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    for (i, row) in acc.iter_mut().enumerate() {
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

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// x packed as bf16 pairs for `vdpbf16ps`, reused across calls like `XBUF`.
    static XBUF_PAIRS: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}
