//! AVX2+FMA microkernel for x86 CPUs without AVX-512 (most Intel client parts): the same
//! packed layout and per-element order as `avx512.rs` (one FMA chain over k from 0, then
//! `+ bias`), in 8-lane registers. Sixteen ymm registers hold 3 rows × 32 columns of
//! accumulators, so a row block of up to MR rows is run three rows at a time.

use std::arch::x86_64::*;

use super::{prefetch_panel_ahead, NextPanel, NR};

/// Rows per inner call: 3 × 4 accumulators + 4 W vectors = 16 ymm.
pub(super) const R3: usize = 3;

/// See `scalar::block`; same contract. With `next_panel` (the caller's chunk is this one
/// block, so nothing else reads the panel) the passes after the first bring the next panel
/// into L2 ([`NextPanel`]).
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
    let next = w.as_ptr().wrapping_add(k * NR);
    let mut i0 = 0;
    while i0 < rows {
        let r = (rows - i0).min(R3);
        let pf = NextPanel::for_pass(next, k * NR * 4, k, (i0 / R3).min(passes - 1), passes);
        // SAFETY: bounds asserted above (rows i0..i0+r of the [k][rows] block); feature and `c`
        // forwarded from the caller.
        unsafe {
            let (a, w, c) = (a.as_ptr().add(i0), w.as_ptr(), c.add(i0 * ldc));
            match r {
                1 => {
                    finish(&mut kern::<1, false, true>(k, a, rows, w, None, pf), bias, c, ldc, cols)
                }
                2 => {
                    finish(&mut kern::<2, false, true>(k, a, rows, w, None, pf), bias, c, ldc, cols)
                }
                _ => {
                    finish(&mut kern::<3, false, true>(k, a, rows, w, None, pf), bias, c, ldc, cols)
                }
            }
        }
        i0 += r;
    }
}

/// k steps of a panel per slice in [`panel_by_slices`]: 16 KiB of f32, kept in L1 while every
/// row block of the chunk runs over it. (f32 weights gain nothing from slicing: measured.)
pub(super) const SLICE: usize = 128;

/// All `rows` (> R3) rows of a chunk's packed x (`a`: row blocks of `[d][br]`, the first `k`
/// of each row's d values being the steps) times one panel whose weights `fill(k0, steps,
/// scratch)` writes into `scratch` as f32 `[steps][NR]` (a bf16 panel widened), a slice of
/// [`SLICE`] steps at a time: the conversion is done once for all the rows, and each row
/// block's accumulators are kept in memory between slices (exactly). With `ODD_FIRST` each
/// pair of steps is taken odd first (k = 1, 0, 3, 2, …: `vdpbf16ps`'s order), k even. Row blocks for which `skip(b0, br)` holds are left to the caller; the others are
/// written to `c` with the bias added as `finish` does. The same FMAs in the same order as
/// [`block`] (with `ODD_FIRST`, as the bf16 kernels), so the same bits.
///
/// # Safety
/// The CPU must support AVX2 and FMA, and `c` must be valid for writes of `rows` rows of `cols`
/// floats at stride `ldc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn panel_by_slices<const ODD_FIRST: bool>(
    rows: usize,
    d: usize,
    k: usize,
    a: &[f32],
    fill: impl Fn(usize, usize, &mut [f32]),
    skip: impl Fn(usize, usize) -> bool,
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    assert!(
        k <= d
            && a.len() >= rows * d
            && (!ODD_FIRST || k.is_multiple_of(2))
            && cols <= NR
            && bias.is_none_or(|b| b.len() >= NR)
    );
    super::with_cached(&SLICE_BUF, |buf| {
        if buf.len() < (SLICE + rows) * NR {
            buf.resize((SLICE + rows) * NR, 0.0);
        }
        let (scratch, acc) = buf.split_at_mut(SLICE * NR);
        let acc = &mut acc[..rows * NR];
        acc.fill(0.0);
        for k0 in (0..k).step_by(SLICE) {
            let steps = (k - k0).min(SLICE);
            let w = &mut scratch[..steps * NR];
            fill(k0, steps, w);
            for (b0, br) in super::row_blocks(rows) {
                if skip(b0, br) {
                    continue;
                }
                let a = &a[b0 * d + k0 * br..(b0 + br) * d];
                let none = NextPanel::none();
                let mut i0 = 0;
                while i0 < br {
                    let r = (br - i0).min(R3);
                    // SAFETY: rows i0..i0+r of the block's steps k0..k0+steps (k <= d) and w's
                    // `steps` rows; their accumulators are rows b0+i0.. of `acc`.
                    unsafe {
                        let (a, w) = (a.as_ptr().add(i0), w.as_ptr());
                        let acc = acc.as_mut_ptr().add((b0 + i0) * NR);
                        match r {
                            1 => store(
                                &kern::<1, ODD_FIRST, false>(steps, a, br, w, Some(acc), none),
                                acc,
                            ),
                            2 => store(
                                &kern::<2, ODD_FIRST, false>(steps, a, br, w, Some(acc), none),
                                acc,
                            ),
                            _ => store(
                                &kern::<3, ODD_FIRST, false>(steps, a, br, w, Some(acc), none),
                                acc,
                            ),
                        }
                    }
                    i0 += r;
                }
            }
        }
        for (b0, br) in super::row_blocks(rows) {
            if skip(b0, br) {
                continue;
            }
            for i in b0..b0 + br {
                let sums = &acc[i * NR..][..cols];
                // SAFETY: row i < rows: the caller's `cols` floats at stride ldc.
                let dst = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), cols) };
                match bias {
                    // `finish`'s one rounded add per element.
                    Some(b) => dst.iter_mut().zip(sums).zip(b).for_each(|((o, s), b)| *o = s + b),
                    None => dst.copy_from_slice(sums),
                }
            }
        }
    });
}

thread_local! {
    /// [`panel_by_slices`]' slice scratch and accumulators, reused across calls.
    static SLICE_BUF: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// R rows × NR accumulators into `[R][NR]` floats at `acc`.
///
/// # Safety
/// `acc` is valid for writes of R·NR floats.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store<const R: usize>(rows: &[[__m256; V]; R], acc: *mut f32) {
    for (i, row) in rows.iter().enumerate() {
        for (v, &r) in row.iter().enumerate() {
            // SAFETY: i < R and v * 8 + 8 <= NR (the caller's R·NR floats).
            unsafe { _mm256_storeu_ps(acc.add(i * NR + v * 8), r) };
        }
    }
}

/// R rows × NR columns of `k` FMA steps, from zero or from `init` (`[R][NR]` floats); with
/// `PF` the panel is prefetched ahead and `ahead`'s share of the next panel asked for.
/// `a` points at this call's first row inside a `[k][lda]` block; with `ODD_FIRST` k is even.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn kern<const R: usize, const ODD_FIRST: bool, const PF: bool>(
    k: usize,
    a: *const f32,
    lda: usize,
    w: *const f32,
    init: Option<*const f32>,
    mut ahead: NextPanel,
) -> [[__m256; V]; R] {
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    if let Some(init) = init {
        for (i, row) in acc.iter_mut().enumerate() {
            for (v, r) in row.iter_mut().enumerate() {
                // SAFETY: the caller's `init` holds R·NR floats.
                *r = unsafe { _mm256_loadu_ps(init.add(i * NR + v * 8)) };
            }
        }
    }
    for kk in 0..k {
        if PF {
            ahead.step();
            prefetch_panel_ahead(w.wrapping_add(kk * NR));
        }
        let kk = if ODD_FIRST { kk ^ 1 } else { kk };
        // SAFETY: the callers checked a has k rows of lda floats and w k*NR floats.
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
    acc
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
