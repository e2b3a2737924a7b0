//! AVX2+FMA kernels for bf16 weights on CPUs without AVX-512 BF16: `vdpbf16ps` emulated with
//! plain FMAs (see `bf16.rs`). Each k-pair row of a panel is loaded as u32 pairs and widened in
//! registers, exactly: the odd (high) halves by masking off the low 16 bits, the even (low) ones
//! by shifting them up. x comes widened already (`bf16::EmuPath`), `[2kp+1][rows]` f32.

use std::arch::x86_64::*;

use super::avx2::{finish, R3, V};
use super::{prefetch_panel_ahead, prefetch_panel_row, NextPanel, NR};

/// See `bf16::fast`; `rows` (1..=MR) rows of widened x times one bf16 panel (`w`: [kp][NR]);
/// `alone` as for `Path::block`.
///
/// # Safety
/// The CPU must support AVX2 and FMA, no FMA of the product may come out tiny (the caller's
/// exponent check), and `c` must be valid for writes of `rows` rows of `cols` floats at stride
/// `ldc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn block(
    rows: usize,
    kp: usize,
    a: &[f32],
    w: &[u32],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    alone: bool,
) {
    assert!(
        a.len() >= 2 * kp * rows
            && w.len() >= kp * NR
            && bias.is_none_or(|b| b.len() >= NR)
            && cols <= NR
    );
    if rows > R3 {
        // SAFETY: forwarded from the caller.
        return unsafe { halves(rows, kp, a, w, bias, c, ldc, cols, alone) };
    }
    let bias = bias.map_or(std::ptr::null(), |b| b.as_ptr());
    let mut i0 = 0;
    while i0 < rows {
        let r = (rows - i0).min(R3);
        // SAFETY: bounds asserted above (rows i0..i0+r of the [2kp+1][rows] block); feature and
        // `c` forwarded from the caller.
        unsafe {
            let (a, w, c) = (a.as_ptr().add(i0), w.as_ptr(), c.add(i0 * ldc));
            match r {
                1 => kern::<1>(kp, a, rows, w, bias, c, ldc, cols),
                2 => kern::<2>(kp, a, rows, w, bias, c, ldc, cols),
                _ => kern::<3>(kp, a, rows, w, bias, c, ldc, cols),
            }
        }
        i0 += r;
    }
}

/// `a` points at this call's first row inside a `[2kp+1][lda]` block.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn kern<const R: usize>(
    kp: usize,
    a: *const f32,
    lda: usize,
    w: *const u32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    let high = _mm256_set1_epi32(0xffff_0000u32 as i32);
    for p in 0..kp {
        // SAFETY: `block` checked a has 2kp*lda floats and w kp*NR u32s.
        unsafe {
            prefetch_panel_ahead(w.wrapping_add(p * NR));
            let (xo, xe) = (a.add((2 * p + 1) * lda), a.add(2 * p * lda));
            for v in 0..V {
                let pair = _mm256_loadu_si256(w.add(p * NR + v * 8).cast());
                let odd = _mm256_castsi256_ps(_mm256_and_si256(pair, high));
                let even = _mm256_castsi256_ps(_mm256_slli_epi32(pair, 16));
                // x is broadcast from memory at each use: 12 accumulators, two weight vectors
                // and the mask leave no room to keep 2·R broadcasts in registers.
                for (i, row) in acc.iter_mut().enumerate() {
                    let t = _mm256_fmadd_ps(_mm256_broadcast_ss(&*xo.add(i)), odd, row[v]);
                    row[v] = _mm256_fmadd_ps(_mm256_broadcast_ss(&*xe.add(i)), even, t);
                }
            }
        }
    }
    // SAFETY: `block` checked the bias slice holds NR floats, and the caller `c`.
    unsafe { finish(&mut acc, bias, c, ldc, cols) };
}

/// Rows of one [`halves`] pass: 4 rows × 16 columns of accumulators (8 ymm), the two column
/// vectors' widened odd and even weights (4), the mask and a broadcast leave a register spare.
pub(super) const R4: usize = 4;

/// Decode's batches (`R3 < rows <= MR`): the panel is taken 16 columns at a time, each half
/// by the row groups of at most [`R4`] rows in turn, widened in registers at every pass. The
/// passes after the first find the panel in L2 and, when the block is `alone`, meanwhile bring
/// the next panel there ([`NextPanel`]), so the memory stream runs under the FMAs instead of
/// between them, as it did when `panel_by_slices` widened a slice into memory and waited on
/// its lines in a burst (1B bf16 at batch 8 on the AVX2 path: 32-39 -> 45-53 tokens/s). Same
/// FMAs in the same order per element as [`block`], so the same bits.
///
/// # Safety
/// As for [`block`], which checked the bounds.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn halves(
    rows: usize,
    kp: usize,
    a: &[f32],
    w: &[u32],
    bias: Option<&[f32]>,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    alone: bool,
) {
    let groups = rows.div_ceil(R4);
    let passes = if alone { 2 * groups } else { 1 };
    let next = w.as_ptr().wrapping_add(kp * NR);
    for g in 0..groups {
        let (i0, i1) = (g * rows / groups, (g + 1) * rows / groups);
        for h in 0..2 {
            let hc = cols.saturating_sub(h * HALF).min(HALF);
            if hc == 0 {
                continue;
            }
            let ahead =
                NextPanel::for_pass(next, kp * NR * 4, kp, (2 * g + h).min(passes - 1), passes);
            let bias = bias.map_or(std::ptr::null(), |b| b[h * HALF..].as_ptr());
            // SAFETY: rows i0..i1 < rows of the [2kp+1][rows] block, columns h·16.. of the
            // panel's NR (asserted by `block`); feature and `c` forwarded from the caller.
            unsafe {
                let (a, w) = (a.as_ptr().add(i0), w.as_ptr().add(h * HALF));
                let c = c.add(i0 * ldc + h * HALF);
                match i1 - i0 {
                    1 => half::<1>(kp, a, rows, w, ahead, bias, c, ldc, hc),
                    2 => half::<2>(kp, a, rows, w, ahead, bias, c, ldc, hc),
                    3 => half::<3>(kp, a, rows, w, ahead, bias, c, ldc, hc),
                    _ => half::<4>(kp, a, rows, w, ahead, bias, c, ldc, hc),
                }
            }
        }
    }
}

/// Columns of one [`halves`] pass.
const HALF: usize = NR / 2;

/// R rows × 16 columns of a panel; `w` points at the half's first column in pair row 0,
/// `bias` (null or) at its first column, `c` at the first row's.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn half<const R: usize>(
    kp: usize,
    a: *const f32,
    lda: usize,
    w: *const u32,
    mut ahead: NextPanel,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let high = _mm256_set1_epi32(0xffff_0000u32 as i32);
    for p in 0..kp {
        ahead.step();
        // SAFETY: `block` checked a has 2kp*lda floats and w kp*NR u32s from the panel start.
        unsafe {
            prefetch_panel_ahead(w.wrapping_add(p * NR));
            let (xo, xe) = (a.add((2 * p + 1) * lda), a.add(2 * p * lda));
            let p0 = _mm256_loadu_si256(w.add(p * NR).cast());
            let p1 = _mm256_loadu_si256(w.add(p * NR + 8).cast());
            let (o0, o1) = (_mm256_and_si256(p0, high), _mm256_and_si256(p1, high));
            let (e0, e1) = (_mm256_slli_epi32(p0, 16), _mm256_slli_epi32(p1, 16));
            let (o0, o1) = (_mm256_castsi256_ps(o0), _mm256_castsi256_ps(o1));
            let (e0, e1) = (_mm256_castsi256_ps(e0), _mm256_castsi256_ps(e1));
            for (i, row) in acc.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*xo.add(i));
                row[0] = _mm256_fmadd_ps(x, o0, row[0]);
                row[1] = _mm256_fmadd_ps(x, o1, row[1]);
                let x = _mm256_broadcast_ss(&*xe.add(i));
                row[0] = _mm256_fmadd_ps(x, e0, row[0]);
                row[1] = _mm256_fmadd_ps(x, e1, row[1]);
            }
        }
    }
    for (i, row) in acc.iter_mut().enumerate() {
        let mut tmp = [0f32; HALF];
        for (v, r) in row.iter_mut().enumerate() {
            if !bias.is_null() {
                // SAFETY: the caller's bias holds the half's 16 floats.
                *r = _mm256_add_ps(*r, unsafe { _mm256_loadu_ps(bias.add(v * 8)) });
            }
            // SAFETY: tmp holds 16 floats.
            unsafe { _mm256_storeu_ps(tmp.as_mut_ptr().add(v * 8), *r) };
        }
        // SAFETY: the caller's `c` holds `cols` floats of each of the R rows at stride ldc.
        unsafe { std::ptr::copy_nonoverlapping(tmp.as_ptr(), c.add(i * ldc), cols) };
    }
}

/// Widens `pairs` k-pair rows of a panel (`w`: [pairs][NR] bf16 pairs) into f32 (`out`:
/// [2·pairs][NR], k in order), exactly, and asks for the pair rows `ahead` rows further on:
/// the next slice's widening then finds them in cache instead of waiting on memory while no
/// FMA runs.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn widen(pairs: usize, w: &[u32], out: &mut [f32], ahead: usize) {
    assert!(w.len() >= pairs * NR && out.len() >= 2 * pairs * NR);
    let high = _mm256_set1_epi32(0xffff_0000u32 as i32);
    for p in 0..pairs {
        let row = w.as_ptr().wrapping_add(p * NR);
        prefetch_panel_row(row.wrapping_add(ahead * NR));
        for v in 0..V {
            // SAFETY: p < pairs and v * 8 + 8 <= NR, inside both slices (asserted above).
            unsafe {
                let pair = _mm256_loadu_si256(row.add(v * 8).cast());
                let o = out.as_mut_ptr().add(2 * p * NR + v * 8);
                _mm256_storeu_si256(o.cast(), _mm256_slli_epi32(pair, 16));
                _mm256_storeu_si256(o.add(NR).cast(), _mm256_and_si256(pair, high));
            }
        }
    }
}

/// `bf16::pack_row` with the rounding done eight values at a time: `to_bf16`'s three cases
/// (NaN quieted, below-normal flushed to a signed zero, otherwise nearest even) as masks.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pack_row(src: &[f32], dst: &mut [f32], stride: usize) -> u8 {
    let n8 = src.len() / 8 * 8;
    assert!(src.is_empty() || dst.len() > (src.len() - 1) * stride);
    let c = _mm256_set1_epi32;
    let mut emin = c(255);
    for k0 in (0..n8).step_by(8) {
        // SAFETY: k0 + 8 <= n8 <= src.len().
        let b = unsafe { _mm256_loadu_si256(src.as_ptr().add(k0).cast()) };
        let high = _mm256_srli_epi32(b, 16);
        let nan = _mm256_cmpgt_epi32(_mm256_and_si256(b, c(0x7fff_ffff)), c(0x7f80_0000));
        let tiny = _mm256_cmpeq_epi32(_mm256_and_si256(b, c(0x7f80_0000)), c(0));
        let lsb = _mm256_and_si256(high, c(1));
        let nearest = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(b, c(0x7fff)), lsb), 16);
        let r = _mm256_blendv_epi8(nearest, _mm256_and_si256(high, c(0x8000)), tiny);
        let r = _mm256_blendv_epi8(r, _mm256_or_si256(high, c(0x40)), nan);
        let zero = _mm256_cmpeq_epi32(_mm256_and_si256(r, c(0x7fff)), c(0));
        let e =
            _mm256_blendv_epi8(_mm256_and_si256(_mm256_srli_epi32(r, 7), c(0xff)), c(255), zero);
        emin = _mm256_min_epu32(emin, e);
        let mut out = [0f32; 8];
        // SAFETY: `out` holds 8 floats.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), _mm256_slli_epi32(r, 16)) };
        for (j, v) in out.into_iter().enumerate() {
            dst[(k0 + j) * stride] = v;
        }
    }
    let mut lanes = [0u32; 8];
    // SAFETY: `lanes` holds 8 u32s.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), emin) };
    let tail = super::bf16::pack_row(&src[n8..], &mut dst[n8 * stride..], stride);
    lanes.into_iter().fold(tail, |m, e| m.min(e as u8))
}

/// `bf16::exact` compiled for AVX2 and FMA (its FMAs become vector FMAs, not libm calls).
///
/// # Safety
/// As for `bf16::exact`, and the CPU must support AVX2 and FMA.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
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
    unsafe { super::bf16::exact_body(rows, kp, a, w, bias, c, ldc, cols) }
}
