//! Attention's two inner loops: the scores of query rows against tiles of keys, and the
//! probability-weighted sum of value rows. Long few-shot contexts spend most of a decode step and
//! of a prefill here. The cache keeps keys in tiles of [`TILE`] positions, each dimension-major
//! (`[dim][TILE]` per KV head), so one vector holds one dimension of [`TILE`] keys: a score is a
//! fused multiply-add chain over the dimensions in order, one key per lane, with no horizontal
//! sum, and several query rows (heads of a group, rows of a prefill) share each key load. Every
//! family performs the same IEEE operations in the same order as the portable loops (fused
//! multiply-adds, `f32::mul_add` there), so the bits do not depend on the instruction set, nor on
//! how many rows or tiles one call takes. Keys and values are read as the cache stores them, f32,
//! bf16 or int8 (widened in registers, exactly; an int8 cache's scales are applied by the caller),
//! so a narrow cache is never copied out as f32. An int8 cache's keys are tiled in quads of
//! dimensions ([`QUAD`]) and meet int8 query rows in exact integer dot products ([`int_scores`]:
//! `vpdpbusd` with AVX-512 VNNI, `vpmaddubsw` on AVX2, `sdot` on NEON), a quarter of the f32
//! chain's instructions, which prefill attention, compute-bound, is made of.

use super::ops::Stored;
use crate::kernels::isa::Isa;

/// Key positions per tile of the cache.
pub(super) const TILE: usize = 16;

/// The `K` tiles after a block's own (the first `K` of `tiles`), whose rows the vector routines
/// fetch meanwhile (a decode step streams the keys from memory).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn ahead<T, const K: usize>(tiles: &[&[T]]) -> [Option<*const T>; K] {
    std::array::from_fn(|t| tiles.get(K + t).map(|n| n.as_ptr()))
}

/// How many value rows ahead of the one being summed the vector routines fetch (a decode step
/// streams the values from memory).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const VALUES_AHEAD: usize = 8;

/// Where [`weighted_sum`]'s vector routines run: head dims that are whole 16-lane groups.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only the x86 paths ask
pub(super) fn simd_dim(dim: usize) -> bool {
    dim.is_multiple_of(16)
}

/// `out[i][t * TILE + l] = (Σ_c qs[i][c] · tiles[t][c * TILE + l]) · scale` for every query row
/// `i` and tile `t` (`[dim][TILE]` keys), the sum a fused multiply-add chain over `c = 0..dim`
/// from zero. `out` holds `qs.len()` rows of `tiles.len() * TILE`. `isa`: one this CPU runs.
#[inline(always)]
pub(super) fn scores<T: Stored>(
    isa: Isa,
    qs: &[&[f32]],
    tiles: &[&[T]],
    scale: f32,
    out: &mut [f32],
) {
    let d = qs.first().map_or(0, |q| q.len());
    let w = tiles.len() * TILE;
    assert!(
        qs.iter().all(|q| q.len() == d)
            && tiles.iter().all(|t| t.len() >= d * TILE)
            && out.len() >= qs.len() * w,
        "attention scores: query rows of one length, tiles of [dim][{TILE}], room for the scores"
    );
    match isa {
        // SAFETY: callers pass a family this CPU runs (avx512f); lengths checked above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::scores(qs, tiles, d, scale, out) },
        // SAFETY: as above, with avx2 and fma.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::AvxVnni => unsafe { avx2::scores(qs, tiles, d, scale, out) },
        _ => {
            for (q, out) in qs.iter().zip(out.chunks_mut(w)) {
                for (tile, out) in tiles.iter().zip(out.chunks_mut(TILE)) {
                    let mut acc = [0f32; TILE];
                    for (c, &qc) in q.iter().enumerate() {
                        let keys = &tile[c * TILE..][..TILE];
                        for (a, k) in acc.iter_mut().zip(keys) {
                            *a = qc.mul_add(k.f32(), *a);
                        }
                    }
                    for (o, a) in out.iter_mut().zip(acc) {
                        *o = a * scale;
                    }
                }
            }
        }
    }
}

/// Dimensions per 32-bit lane of an int8 key tile, `[dim / QUAD][TILE][QUAD]` (a head dim off a
/// multiple of four padded with zeros): each lane holds four dimensions of one key, what
/// `vpdpbusd` multiplies with a broadcast quad of a query row.
pub(super) const QUAD: usize = 4;

/// `out[i][t * TILE + l] = (Σ_c q[i][c] · k[t, l][c]) as f32 · rscale[i]` for the int8 query rows
/// `q` (`rscale.len()` rows of whole quads, flat) against int8 key tiles
/// (`[q[i].len() / QUAD][TILE][QUAD]`). The sums are exact in i32 (|q|, |k| ≤ 127, so any head dim
/// under 133,000), so every family gives the same bits whatever order it adds in. `out` holds
/// `rscale.len()` rows of `tiles.len() * TILE`. `isa`: one this CPU runs.
pub(super) fn int_scores(isa: Isa, q: &[i8], rscale: &[f32], tiles: &[&[i8]], out: &mut [f32]) {
    let rows = rscale.len();
    let kw = q.len().checked_div(rows).unwrap_or(0);
    let w = tiles.len() * TILE;
    assert!(
        kw.is_multiple_of(QUAD)
            && q.len() == rows * kw
            && tiles.iter().all(|t| t.len() >= kw * TILE)
            && out.len() >= rows * w,
        "attention int8 scores: query rows of whole quads, tiles of [dim/4][{TILE}][4], room for \
         the scores"
    );
    match isa {
        // SAFETY: the CPU has AVX-512F and VNNI (checked); lengths checked above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if crate::kernels::isa::cpu_has_avx512_vnni() => unsafe {
            avx512::int_scores(q, kw, rscale, tiles, out)
        },
        // SAFETY: the family's features (AVX-VNNI among them) are the CPU's; lengths as above.
        #[cfg(target_arch = "x86_64")]
        Isa::AvxVnni => unsafe { avx2::int_scores_vnni(q, kw, rscale, tiles, out) },
        // SAFETY: a family this CPU runs: AVX2 (which every AVX-512 CPU has); lengths as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx2 => unsafe { avx2::int_scores(q, kw, rscale, tiles, out) },
        // SAFETY: the CPU has the dot-product extension (checked); lengths as above.
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if crate::kernels::isa::cpu_has_neon_dotprod() => unsafe {
            neon::int_scores_dot(q, kw, rscale, tiles, out)
        },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon::int_scores_plain(q, kw, rscale, tiles, out),
        _ => {
            for ((q, &rs), out) in q.chunks(kw.max(1)).zip(rscale).zip(out.chunks_mut(w)) {
                for (tile, out) in tiles.iter().zip(out.chunks_mut(TILE)) {
                    let mut acc = [0i32; TILE];
                    for (c, quad) in q.chunks_exact(QUAD).enumerate() {
                        let keys = &tile[c * TILE * QUAD..][..TILE * QUAD];
                        for (a, k) in acc.iter_mut().zip(keys.chunks_exact(QUAD)) {
                            *a +=
                                quad.iter().zip(k).map(|(&x, &y)| x as i32 * y as i32).sum::<i32>();
                        }
                    }
                    for (o, a) in out.iter_mut().zip(acc) {
                        *o = a as f32 * rs;
                    }
                }
            }
        }
    }
}

/// [`int_scores`]' rows in blocks of up to `per`: (first row, its quantized rows, their scales).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn row_blocks<'a>(
    q: &'a [i8],
    kw: usize,
    rscale: &'a [f32],
    per: usize,
) -> impl Iterator<Item = (usize, &'a [i8], &'a [f32])> {
    rscale.chunks(per).zip(q.chunks(per * kw)).enumerate().map(move |(b, (rs, q))| (b * per, q, rs))
}

/// What keys offset by 128 (unsigned for `vpdpbusd`) add to each of a block's query rows'
/// sums, `128 · Σ q[r]`, to be taken off once for all of the row's tiles.
#[cfg(target_arch = "x86_64")]
fn key_offsets<const N: usize>(q: &[i8], kw: usize) -> [i32; N] {
    let mut off = [0i32; N];
    for (o, q) in off.iter_mut().zip(q.chunks_exact(kw.max(1))) {
        *o = 128 * q.iter().map(|&x| x as i32).sum::<i32>();
    }
    off
}

/// For each of `heads` heads `h` (`d = o.len() / heads`, rows of `o` and of `p`):
/// `o[h] = Σ_j p[h][j] · vals[j]`, a fused multiply-add chain in key order from zero (`o` is
/// overwritten). The heads share `vals`, so each value row is read once for all of them.
/// `isa`: as for [`scores`].
///
/// # Safety
/// Every row of `vals` holds at least `o.len() / heads` values (checked once by the caller
/// rather than here, where it would be a pass over every row per call).
#[inline(always)]
pub(super) unsafe fn weighted_sum<T: Stored>(
    isa: Isa,
    p: &[f32],
    vals: &[&[T]],
    o: &mut [f32],
    heads: usize,
) {
    let (n, d) = (vals.len(), o.len() / heads.max(1));
    debug_assert!(vals.iter().all(|v| v.len() >= d), "weighted_sum: value rows of the head dim");
    debug_assert!(p.len() >= heads * n, "weighted_sum: a probability per head and row");
    #[cfg(target_arch = "x86_64")]
    if simd_dim(d) {
        match isa {
            // SAFETY: as for `scores`; the rows' lengths as the caller promised.
            Isa::Avx512 => return unsafe { avx512::weighted_sum(p, vals, o, heads) },
            // SAFETY: as above.
            Isa::Avx2 | Isa::AvxVnni => return unsafe { avx2::weighted_sum(p, vals, o, heads) },
            Isa::Scalar => {}
        }
    }
    let _ = isa;
    o.fill(0.0);
    if n == 0 {
        return;
    }
    for (p, o) in p.chunks(n).zip(o.chunks_mut(d)) {
        for (&p, v) in p.iter().zip(vals) {
            for (o, v) in o.iter_mut().zip(*v) {
                *o = p.mul_add(v.f32(), *o);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::super::ops::Widen;
    use super::{ahead, Stored, TILE, VALUES_AHEAD};

    /// 16 stored values from `p` as f32 lanes (see [`Widen`]).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load16<T: Stored>(p: *const T) -> __m512 {
        match T::WIDEN {
            Widen::Bf16 => _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
                _mm256_loadu_si256(p.cast()),
            ))),
            Widen::I8 => _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast()))),
            Widen::F32 => _mm512_loadu_ps(p.cast()),
        }
    }

    /// Query rows per block: with two tiles, 16 accumulators of the 32 registers (four tiles
    /// for up to four rows).
    const ROWS: usize = 8;

    /// [`super::scores`]: blocks of up to [`ROWS`] query rows by two tiles (four for up to four
    /// rows), each accumulator one (row, tile) chain.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scores<T: Stored>(
        qs: &[&[f32]],
        tiles: &[&[T]],
        d: usize,
        scale: f32,
        out: &mut [f32],
    ) {
        let w = tiles.len() * TILE;
        for q0 in (0..qs.len()).step_by(ROWS) {
            let rows = &qs[q0..(q0 + ROWS).min(qs.len())];
            let mut t = 0;
            // A decode row's few heads take four tiles at once: more independent chains to
            // hide the FMAs' latency, and more key loads in flight (a decode step streams them).
            while rows.len() <= 4 && tiles.len() - t >= 4 {
                let o = out.as_mut_ptr().add(q0 * w + t * TILE);
                // SAFETY (all arms): the caller checked the lengths; o is row q0, tile t.
                match rows.len() {
                    1 => block::<T, 1, 4>(rows, &tiles[t..], d, scale, o, w),
                    2 => block::<T, 2, 4>(rows, &tiles[t..], d, scale, o, w),
                    3 => block::<T, 3, 4>(rows, &tiles[t..], d, scale, o, w),
                    _ => block::<T, 4, 4>(rows, &tiles[t..], d, scale, o, w),
                }
                t += 4;
            }
            while t < tiles.len() {
                let two = tiles.len() - t >= 2;
                let o = out.as_mut_ptr().add(q0 * w + t * TILE);
                // SAFETY (all arms): the caller checked the lengths; o is row q0, tile t.
                match (rows.len(), two) {
                    (1, false) => block::<T, 1, 1>(rows, &tiles[t..], d, scale, o, w),
                    (2, false) => block::<T, 2, 1>(rows, &tiles[t..], d, scale, o, w),
                    (3, false) => block::<T, 3, 1>(rows, &tiles[t..], d, scale, o, w),
                    (4, false) => block::<T, 4, 1>(rows, &tiles[t..], d, scale, o, w),
                    (5, false) => block::<T, 5, 1>(rows, &tiles[t..], d, scale, o, w),
                    (6, false) => block::<T, 6, 1>(rows, &tiles[t..], d, scale, o, w),
                    (7, false) => block::<T, 7, 1>(rows, &tiles[t..], d, scale, o, w),
                    (_, false) => block::<T, 8, 1>(rows, &tiles[t..], d, scale, o, w),
                    (1, true) => block::<T, 1, 2>(rows, &tiles[t..], d, scale, o, w),
                    (2, true) => block::<T, 2, 2>(rows, &tiles[t..], d, scale, o, w),
                    (3, true) => block::<T, 3, 2>(rows, &tiles[t..], d, scale, o, w),
                    (4, true) => block::<T, 4, 2>(rows, &tiles[t..], d, scale, o, w),
                    (5, true) => block::<T, 5, 2>(rows, &tiles[t..], d, scale, o, w),
                    (6, true) => block::<T, 6, 2>(rows, &tiles[t..], d, scale, o, w),
                    (7, true) => block::<T, 7, 2>(rows, &tiles[t..], d, scale, o, w),
                    (_, true) => block::<T, 8, 2>(rows, &tiles[t..], d, scale, o, w),
                }
                t += if two { 2 } else { 1 };
            }
        }
    }

    /// `R` query rows by `K` tiles (the first `K` of `tiles`); `o` is the first row's first
    /// tile, rows `w` apart.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn block<T: Stored, const R: usize, const K: usize>(
        rows: &[&[f32]],
        tiles: &[&[T]],
        d: usize,
        scale: f32,
        o: *mut f32,
        w: usize,
    ) {
        let q: [*const f32; R] = std::array::from_fn(|r| rows[r].as_ptr());
        let k: [*const T; K] = std::array::from_fn(|t| tiles[t].as_ptr());
        let next = ahead::<T, K>(tiles);
        let mut acc = [[_mm512_setzero_ps(); K]; R];
        for c in 0..d {
            for n in next.iter().flatten() {
                _mm_prefetch::<_MM_HINT_T0>(n.add(c * TILE).cast());
            }
            let kv: [__m512; K] = std::array::from_fn(|t| load16(k[t].add(c * TILE)));
            for (r, acc) in acc.iter_mut().enumerate() {
                let qv = _mm512_set1_ps(*q[r].add(c));
                for (a, kv) in acc.iter_mut().zip(&kv) {
                    *a = _mm512_fmadd_ps(qv, *kv, *a);
                }
            }
        }
        let s = _mm512_set1_ps(scale);
        for (r, acc) in acc.iter().enumerate() {
            for (t, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(o.add(r * w + t * TILE), _mm512_mul_ps(*a, s));
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weighted_sum<T: Stored>(
        p: &[f32],
        vals: &[&[T]],
        o: &mut [f32],
        heads: usize,
    ) {
        let (n, d) = (vals.len(), o.len() / heads);
        assert!(p.len() >= heads * n);
        // Up to 4 heads by up to 4 vectors of columns: at most 16 accumulators in registers.
        let mut h = 0;
        while h < heads {
            let g = (heads - h).min(4);
            let mut c = 0;
            while c < d {
                let r = ((d - c) / 16).min(4);
                match (g, r) {
                    (1, 1) => columns::<T, 1, 1>(p, vals, o, d, h, c),
                    (1, 2) => columns::<T, 1, 2>(p, vals, o, d, h, c),
                    (1, 3) => columns::<T, 1, 3>(p, vals, o, d, h, c),
                    (1, _) => columns::<T, 1, 4>(p, vals, o, d, h, c),
                    (2, 1) => columns::<T, 2, 1>(p, vals, o, d, h, c),
                    (2, 2) => columns::<T, 2, 2>(p, vals, o, d, h, c),
                    (2, 3) => columns::<T, 2, 3>(p, vals, o, d, h, c),
                    (2, _) => columns::<T, 2, 4>(p, vals, o, d, h, c),
                    (3, 1) => columns::<T, 3, 1>(p, vals, o, d, h, c),
                    (3, 2) => columns::<T, 3, 2>(p, vals, o, d, h, c),
                    (3, 3) => columns::<T, 3, 3>(p, vals, o, d, h, c),
                    (3, _) => columns::<T, 3, 4>(p, vals, o, d, h, c),
                    (_, 1) => columns::<T, 4, 1>(p, vals, o, d, h, c),
                    (_, 2) => columns::<T, 4, 2>(p, vals, o, d, h, c),
                    (_, 3) => columns::<T, 4, 3>(p, vals, o, d, h, c),
                    (_, _) => columns::<T, 4, 4>(p, vals, o, d, h, c),
                }
                c += 16 * r;
            }
            h += g;
        }
    }

    /// Heads `h0..h0 + G`, `R` vectors of columns from `c`, accumulated in registers over all
    /// keys; each value vector is loaded once for the `G` heads.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn columns<T: Stored, const G: usize, const R: usize>(
        p: &[f32],
        vals: &[&[T]],
        o: &mut [f32],
        d: usize,
        h0: usize,
        c: usize,
    ) {
        let n = vals.len();
        let mut acc = [[_mm512_setzero_ps(); R]; G];
        for (j, v) in vals.iter().enumerate() {
            if let Some(a) = vals.get(j + VALUES_AHEAD) {
                for r in 0..R {
                    _mm_prefetch::<_MM_HINT_T0>(a.as_ptr().add(c + 16 * r).cast());
                }
            }
            let v: [__m512; R] = std::array::from_fn(|r| load16(v.as_ptr().add(c + 16 * r)));
            for (g, acc) in acc.iter_mut().enumerate() {
                let pv = _mm512_set1_ps(*p.get_unchecked((h0 + g) * n + j));
                for (a, v) in acc.iter_mut().zip(&v) {
                    *a = _mm512_fmadd_ps(pv, *v, *a);
                }
            }
        }
        for (g, acc) in acc.iter().enumerate() {
            for (r, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(o.as_mut_ptr().add((h0 + g) * d + c + 16 * r), *a);
            }
        }
    }

    /// [`super::int_scores`] with `vpdpbusd`: unsigned times signed bytes, so the keys (streamed)
    /// are made unsigned by adding 128 (a flip of the top bit) and `128 · Σ q` comes off each
    /// sum. Blocks of rows by tiles as [`scores`] cuts them.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub(super) unsafe fn int_scores(
        q: &[i8],
        kw: usize,
        rscale: &[f32],
        tiles: &[&[i8]],
        out: &mut [f32],
    ) {
        let w = tiles.len() * TILE;
        for (q0, q, rs) in super::row_blocks(q, kw, rscale, ROWS) {
            let r = rs.len();
            let off = super::key_offsets::<ROWS>(q, kw);
            let mut t = 0;
            while t < tiles.len() {
                let left = tiles.len() - t;
                let k = if r <= 4 && left >= 4 {
                    4
                } else if left >= 2 {
                    2
                } else {
                    1
                };
                let o = out.as_mut_ptr().add(q0 * w + t * TILE);
                let tl = &tiles[t..];
                // SAFETY (all arms): the caller checked the lengths; o is row q0, tile t.
                match (r, k) {
                    (1, 4) => int_block::<1, 4>(q, kw, rs, &off, tl, o, w),
                    (2, 4) => int_block::<2, 4>(q, kw, rs, &off, tl, o, w),
                    (3, 4) => int_block::<3, 4>(q, kw, rs, &off, tl, o, w),
                    (_, 4) => int_block::<4, 4>(q, kw, rs, &off, tl, o, w),
                    (1, 2) => int_block::<1, 2>(q, kw, rs, &off, tl, o, w),
                    (2, 2) => int_block::<2, 2>(q, kw, rs, &off, tl, o, w),
                    (3, 2) => int_block::<3, 2>(q, kw, rs, &off, tl, o, w),
                    (4, 2) => int_block::<4, 2>(q, kw, rs, &off, tl, o, w),
                    (5, 2) => int_block::<5, 2>(q, kw, rs, &off, tl, o, w),
                    (6, 2) => int_block::<6, 2>(q, kw, rs, &off, tl, o, w),
                    (7, 2) => int_block::<7, 2>(q, kw, rs, &off, tl, o, w),
                    (_, 2) => int_block::<8, 2>(q, kw, rs, &off, tl, o, w),
                    (1, _) => int_block::<1, 1>(q, kw, rs, &off, tl, o, w),
                    (2, _) => int_block::<2, 1>(q, kw, rs, &off, tl, o, w),
                    (3, _) => int_block::<3, 1>(q, kw, rs, &off, tl, o, w),
                    (4, _) => int_block::<4, 1>(q, kw, rs, &off, tl, o, w),
                    (5, _) => int_block::<5, 1>(q, kw, rs, &off, tl, o, w),
                    (6, _) => int_block::<6, 1>(q, kw, rs, &off, tl, o, w),
                    (7, _) => int_block::<7, 1>(q, kw, rs, &off, tl, o, w),
                    (_, _) => int_block::<8, 1>(q, kw, rs, &off, tl, o, w),
                }
                t += k;
            }
        }
    }

    /// `R` int8 query rows (`kw` bytes apart) by `K` tiles; `off[r]`: `128 · Σ q[r]`; `o` as for
    /// [`block`].
    #[target_feature(enable = "avx512f,avx512vnni")]
    #[inline]
    unsafe fn int_block<const R: usize, const K: usize>(
        q: &[i8],
        kw: usize,
        rscale: &[f32],
        off: &[i32],
        tiles: &[&[i8]],
        o: *mut f32,
        w: usize,
    ) {
        let qp: [*const i8; R] = std::array::from_fn(|r| q.as_ptr().add(r * kw));
        let k: [*const i8; K] = std::array::from_fn(|t| tiles[t].as_ptr());
        let next = ahead::<i8, K>(tiles);
        let flip = _mm512_set1_epi8(i8::MIN);
        let mut acc = [[_mm512_setzero_si512(); K]; R];
        for c in 0..kw / super::QUAD {
            let at = c * TILE * super::QUAD;
            for n in next.iter().flatten() {
                _mm_prefetch::<_MM_HINT_T0>(n.add(at).cast());
            }
            let kv: [__m512i; K] = std::array::from_fn(|t| {
                _mm512_xor_si512(_mm512_loadu_si512(k[t].add(at).cast()), flip)
            });
            for (r, acc) in acc.iter_mut().enumerate() {
                let qv =
                    _mm512_set1_epi32(qp[r].add(c * super::QUAD).cast::<i32>().read_unaligned());
                for (a, kv) in acc.iter_mut().zip(&kv) {
                    *a = _mm512_dpbusd_epi32(*a, *kv, qv);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let off = _mm512_set1_epi32(off[r]);
            let s = _mm512_set1_ps(rscale[r]);
            for (t, a) in acc.iter().enumerate() {
                let exact = _mm512_cvtepi32_ps(_mm512_sub_epi32(*a, off));
                _mm512_storeu_ps(o.add(r * w + t * TILE), _mm512_mul_ps(exact, s));
            }
        }
    }
}

/// The AVX-512 routines' arithmetic in 8-lane halves: a tile is a low and a high vector, and only
/// AVX2's 16 registers change how the work is cut up.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::super::ops::Widen;
    use super::{ahead, Stored, TILE, VALUES_AHEAD};

    /// 8 stored values from `p` as f32 lanes (see [`Widen`]).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn load8<T: Stored>(p: *const T) -> __m256 {
        match T::WIDEN {
            Widen::Bf16 => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
                _mm_loadu_si128(p.cast()),
            ))),
            Widen::I8 => _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast()))),
            Widen::F32 => _mm256_loadu_ps(p.cast()),
        }
    }

    /// Query rows per block: two accumulators a row (a tile's halves) make 12 of 16 registers.
    const ROWS: usize = 6;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scores<T: Stored>(
        qs: &[&[f32]],
        tiles: &[&[T]],
        d: usize,
        scale: f32,
        out: &mut [f32],
    ) {
        let w = tiles.len() * TILE;
        for q0 in (0..qs.len()).step_by(ROWS) {
            let rows = &qs[q0..(q0 + ROWS).min(qs.len())];
            for t in 0..tiles.len() {
                let o = out.as_mut_ptr().add(q0 * w + t * TILE);
                // SAFETY (all arms): the caller checked the lengths; o is row q0, tile t.
                match rows.len() {
                    1 => block::<T, 1>(rows, &tiles[t..], d, scale, o, w),
                    2 => block::<T, 2>(rows, &tiles[t..], d, scale, o, w),
                    3 => block::<T, 3>(rows, &tiles[t..], d, scale, o, w),
                    4 => block::<T, 4>(rows, &tiles[t..], d, scale, o, w),
                    5 => block::<T, 5>(rows, &tiles[t..], d, scale, o, w),
                    _ => block::<T, 6>(rows, &tiles[t..], d, scale, o, w),
                }
            }
        }
    }

    /// `R` query rows by one tile (the first of `tiles`); `o` is the first row's scores, rows
    /// `w` apart.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn block<T: Stored, const R: usize>(
        rows: &[&[f32]],
        tiles: &[&[T]],
        d: usize,
        scale: f32,
        o: *mut f32,
        w: usize,
    ) {
        let q: [*const f32; R] = std::array::from_fn(|r| rows[r].as_ptr());
        let k = tiles[0].as_ptr();
        let [next] = ahead::<T, 1>(tiles);
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for c in 0..d {
            if let Some(n) = next {
                _mm_prefetch::<_MM_HINT_T0>(n.add(c * TILE).cast());
            }
            let kv = [load8(k.add(c * TILE)), load8(k.add(c * TILE + 8))];
            for (r, acc) in acc.iter_mut().enumerate() {
                let qv = _mm256_set1_ps(*q[r].add(c));
                for (a, kv) in acc.iter_mut().zip(&kv) {
                    *a = _mm256_fmadd_ps(qv, *kv, *a);
                }
            }
        }
        let s = _mm256_set1_ps(scale);
        for (r, acc) in acc.iter().enumerate() {
            for (h, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(o.add(r * w + 8 * h), _mm256_mul_ps(*a, s));
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weighted_sum<T: Stored>(
        p: &[f32],
        vals: &[&[T]],
        o: &mut [f32],
        heads: usize,
    ) {
        let (n, d) = (vals.len(), o.len() / heads);
        assert!(d.is_multiple_of(16) && p.len() >= heads * n);
        // About 8 accumulators (enough independent additions to hide their latency; 12 for a
        // group of three heads, which still fit in the 16 registers) of up to 4 heads by an even
        // number of vectors: whole 64-byte lines of f32 values.
        let mut h = 0;
        while h < heads {
            let g = (heads - h).min(4);
            let mut c = 0;
            while c < d {
                let r = (d - c) / 8;
                let r = match g {
                    1 => r.min(8),
                    2 => r.min(4),
                    // A GQA group of three (SmolLM2's 9/3 heads): 12 accumulators, each value
                    // row read once per 32 columns rather than per 16.
                    3 if r >= 4 => 4,
                    _ => 2,
                };
                match (g, r) {
                    (1, 2) => columns::<T, 1, 2>(p, vals, o, d, h, c),
                    (1, 4) => columns::<T, 1, 4>(p, vals, o, d, h, c),
                    (1, 6) => columns::<T, 1, 6>(p, vals, o, d, h, c),
                    (1, _) => columns::<T, 1, 8>(p, vals, o, d, h, c),
                    (2, 2) => columns::<T, 2, 2>(p, vals, o, d, h, c),
                    (2, _) => columns::<T, 2, 4>(p, vals, o, d, h, c),
                    (3, 4) => columns::<T, 3, 4>(p, vals, o, d, h, c),
                    (3, _) => columns::<T, 3, 2>(p, vals, o, d, h, c),
                    (_, _) => columns::<T, 4, 2>(p, vals, o, d, h, c),
                }
                c += 8 * r;
            }
            h += g;
        }
    }

    /// Heads `h0..h0 + G`, `R` vectors of columns from `c`, accumulated in registers over all
    /// keys; each value vector is loaded once for the `G` heads.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn columns<T: Stored, const G: usize, const R: usize>(
        p: &[f32],
        vals: &[&[T]],
        o: &mut [f32],
        d: usize,
        h0: usize,
        c: usize,
    ) {
        let n = vals.len();
        let mut acc = [[_mm256_setzero_ps(); R]; G];
        for (j, v) in vals.iter().enumerate() {
            if let Some(a) = vals.get(j + VALUES_AHEAD) {
                for r in (0..R).step_by(2) {
                    _mm_prefetch::<_MM_HINT_T0>(a.as_ptr().add(c + 8 * r).cast());
                }
            }
            let v: [__m256; R] = std::array::from_fn(|r| load8(v.as_ptr().add(c + 8 * r)));
            for (g, acc) in acc.iter_mut().enumerate() {
                let pv = _mm256_set1_ps(*p.get_unchecked((h0 + g) * n + j));
                for (a, v) in acc.iter_mut().zip(&v) {
                    *a = _mm256_fmadd_ps(pv, *v, *a);
                }
            }
        }
        for (g, acc) in acc.iter().enumerate() {
            for (r, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(o.as_mut_ptr().add((h0 + g) * d + c + 8 * r), *a);
            }
        }
    }

    /// Query rows per block of [`int_scores`]: two accumulators a row (a tile's halves), the
    /// tile's bytes and their magnitudes, the ones and a query quad.
    const INT_ROWS: usize = 4;

    /// [`super::int_scores`] with `vpmaddubsw`, unsigned times signed bytes: the keys' magnitudes
    /// times the query bytes carrying the keys' signs (`vpsignb`), the same products. A pair of
    /// them is at most 2 · 127 · 127 = 32,258, inside i16; `vpmaddwd` with ones then adds pairs
    /// into each key's i32 lane.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn int_scores(
        q: &[i8],
        kw: usize,
        rscale: &[f32],
        tiles: &[&[i8]],
        out: &mut [f32],
    ) {
        // SAFETY: forwarded.
        unsafe { int_scores_body::<false>(q, kw, rscale, tiles, out) }
    }

    /// [`int_scores`] with AVX-VNNI's 256-bit `vpdpbusd`, as the AVX-512 routine takes it: the
    /// keys made unsigned by adding 128 and `128 · Σ q` taken off each sum. One instruction a
    /// quad and half tile where the plain kernel spends four.
    #[target_feature(enable = "avx2,fma,avxvnni")]
    pub(super) unsafe fn int_scores_vnni(
        q: &[i8],
        kw: usize,
        rscale: &[f32],
        tiles: &[&[i8]],
        out: &mut [f32],
    ) {
        // SAFETY: forwarded; AVX-VNNI from this function's features.
        unsafe { int_scores_body::<true>(q, kw, rscale, tiles, out) }
    }

    /// The body of both: compiled into each with its features.
    #[inline(always)]
    unsafe fn int_scores_body<const VNNI: bool>(
        q: &[i8],
        kw: usize,
        rscale: &[f32],
        tiles: &[&[i8]],
        out: &mut [f32],
    ) {
        let w = tiles.len() * TILE;
        for (q0, q, rs) in super::row_blocks(q, kw, rscale, INT_ROWS) {
            let r = rs.len();
            let off = if VNNI { super::key_offsets::<INT_ROWS>(q, kw) } else { [0; INT_ROWS] };
            for t in 0..tiles.len() {
                let o = out.as_mut_ptr().add(q0 * w + t * TILE);
                let tl = &tiles[t..];
                // SAFETY (all arms): the caller checked the lengths; o is row q0, tile t.
                match r {
                    1 => int_block::<1, VNNI>(q, kw, rs, &off, tl, o, w),
                    2 => int_block::<2, VNNI>(q, kw, rs, &off, tl, o, w),
                    3 => int_block::<3, VNNI>(q, kw, rs, &off, tl, o, w),
                    _ => int_block::<4, VNNI>(q, kw, rs, &off, tl, o, w),
                }
            }
        }
    }

    /// `R` int8 query rows (`kw` bytes apart) by one tile; `off[r]`: `128 · Σ q[r]` where
    /// `VNNI`; `o` as for [`block`].
    #[inline(always)]
    unsafe fn int_block<const R: usize, const VNNI: bool>(
        q: &[i8],
        kw: usize,
        rscale: &[f32],
        off: &[i32],
        tiles: &[&[i8]],
        o: *mut f32,
        w: usize,
    ) {
        let qp: [*const i8; R] = std::array::from_fn(|r| q.as_ptr().add(r * kw));
        let k = tiles[0].as_ptr();
        let [next] = ahead::<i8, 1>(tiles);
        let ones = _mm256_set1_epi16(1);
        let flip = _mm256_set1_epi8(i8::MIN);
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        for c in 0..kw / super::QUAD {
            let at = c * TILE * super::QUAD;
            if let Some(n) = next {
                _mm_prefetch::<_MM_HINT_T0>(n.add(at).cast());
            }
            let kv: [__m256i; 2] =
                std::array::from_fn(|h| _mm256_loadu_si256(k.add(at + 32 * h).cast()));
            // The unsigned operand: with VNNI the keys plus 128, else their magnitudes.
            let kb = kv.map(|v| if VNNI { _mm256_xor_si256(v, flip) } else { _mm256_abs_epi8(v) });
            for (r, acc) in acc.iter_mut().enumerate() {
                let qv =
                    _mm256_set1_epi32(qp[r].add(c * super::QUAD).cast::<i32>().read_unaligned());
                for h in 0..2 {
                    acc[h] = if VNNI {
                        _mm256_dpbusd_avx_epi32(acc[h], kb[h], qv)
                    } else {
                        let pairs = _mm256_maddubs_epi16(kb[h], _mm256_sign_epi8(qv, kv[h]));
                        _mm256_add_epi32(acc[h], _mm256_madd_epi16(pairs, ones))
                    };
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let s = _mm256_set1_ps(rscale[r]);
            let off = _mm256_set1_epi32(off[r]);
            for (h, a) in acc.iter().enumerate() {
                let exact = if VNNI { _mm256_sub_epi32(*a, off) } else { *a };
                _mm256_storeu_ps(o.add(r * w + 8 * h), _mm256_mul_ps(_mm256_cvtepi32_ps(exact), s));
            }
        }
    }
}

/// [`int_scores`] on NEON: a tile's quad row is four vectors of four keys, each lane four
/// dimensions of one key, which `sdot` (or, without the dot-product extension, `smull` and
/// pairwise adds: `kernels::Plain`) sums against a broadcast quad of a query row, exactly.
#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use super::{row_blocks, QUAD, TILE};
    use crate::kernels::{Dot, Dot4, Plain};

    /// Query rows per block: 4 accumulators a row, 16 of the 32 registers.
    const ROWS: usize = 4;

    /// # Safety
    /// The CPU has the dot-product extension; the lengths as [`super::int_scores`] checks them.
    #[target_feature(enable = "dotprod")]
    pub(super) unsafe fn int_scores_dot(
        q: &[i8],
        kw: usize,
        rscale: &[f32],
        tiles: &[&[i8]],
        out: &mut [f32],
    ) {
        // SAFETY: forwarded; `Dot` is used under its feature.
        unsafe { by::<Dot>(q, kw, rscale, tiles, out) }
    }

    /// The lengths as [`super::int_scores`] checks them.
    pub(super) fn int_scores_plain(
        q: &[i8],
        kw: usize,
        rscale: &[f32],
        tiles: &[&[i8]],
        out: &mut [f32],
    ) {
        // SAFETY: `Plain` needs NEON alone, aarch64's baseline; lengths from the caller.
        unsafe { by::<Plain>(q, kw, rscale, tiles, out) }
    }

    #[inline(always)]
    unsafe fn by<D: Dot4>(q: &[i8], kw: usize, rscale: &[f32], tiles: &[&[i8]], out: &mut [f32]) {
        let w = tiles.len() * TILE;
        for (q0, q, rs) in row_blocks(q, kw, rscale, ROWS) {
            for (t, tile) in tiles.iter().enumerate() {
                // SAFETY (all arms): the caller checked the lengths; o is row q0, tile t.
                unsafe {
                    let o = out.as_mut_ptr().add(q0 * w + t * TILE);
                    match rs.len() {
                        1 => block::<D, 1>(q, kw, rs, tile, o, w),
                        2 => block::<D, 2>(q, kw, rs, tile, o, w),
                        3 => block::<D, 3>(q, kw, rs, tile, o, w),
                        _ => block::<D, 4>(q, kw, rs, tile, o, w),
                    }
                }
            }
        }
    }

    /// `R` query rows (`kw` bytes apart) by one tile; `o` the first row's scores, rows `w` apart.
    #[inline(always)]
    unsafe fn block<D: Dot4, const R: usize>(
        q: &[i8],
        kw: usize,
        rscale: &[f32],
        tile: &[i8],
        o: *mut f32,
        w: usize,
    ) {
        // SAFETY: the caller's lengths: `q` holds R rows of kw, `tile` kw / QUAD quad rows of 64
        // bytes, `o` R rows of w from here.
        unsafe {
            let mut acc = [[vdupq_n_s32(0); 4]; R];
            for c in 0..kw / QUAD {
                let k = tile.as_ptr().add(c * TILE * QUAD);
                let kv: [int8x16_t; 4] =
                    [vld1q_s8(k), vld1q_s8(k.add(16)), vld1q_s8(k.add(32)), vld1q_s8(k.add(48))];
                for (r, acc) in acc.iter_mut().enumerate() {
                    let quad = q.as_ptr().add(r * kw + c * QUAD).cast::<i32>().read_unaligned();
                    let qv = vreinterpretq_s8_s32(vdupq_n_s32(quad));
                    for (a, k) in acc.iter_mut().zip(kv) {
                        *a = D::dot(*a, k, qv);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (v, a) in acc.iter().enumerate() {
                    let s = vmulq_n_f32(vcvtq_f32_s32(*a), rscale[r]);
                    vst1q_f32(o.add(r * w + 4 * v), s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                // Mixed magnitudes and signs, so rounding differs between summation orders.
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 10f32.powi((s % 5) as i32 - 2)
            })
            .collect()
    }

    /// The vector families this CPU runs, each to be compared with the portable twins; says
    /// which are skipped because the CPU lacks them.
    fn vector_isas() -> Vec<Isa> {
        let (run, lack): (Vec<Isa>, Vec<Isa>) =
            Isa::ALL.iter().copied().filter(|&i| i != Isa::Scalar).partition(|i| i.supported());
        for i in lack {
            eprintln!("skipped {}: this CPU lacks it", i.name());
        }
        run
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Keys `[TILE][d]` (token-major, as a model writes them) as the cache's tile `[d][TILE]`.
    fn tile<T: Copy>(keys: &[Vec<T>], d: usize) -> Vec<T> {
        (0..d).flat_map(|c| keys.iter().map(move |k| k[c])).collect()
    }

    /// Scores of `qs` against `tiles` by `isa`.
    fn run_scores<T: Stored>(isa: Isa, qs: &[Vec<f32>], tiles: &[Vec<T>], scale: f32) -> Vec<f32> {
        let q: Vec<&[f32]> = qs.iter().map(|q| q.as_slice()).collect();
        let t: Vec<&[T]> = tiles.iter().map(|t| t.as_slice()).collect();
        let mut out = vec![f32::NAN; qs.len() * tiles.len() * TILE];
        scores(isa, &q, &t, scale, &mut out);
        out
    }

    #[test]
    fn the_vector_scores_are_the_portable_ones_bit_for_bit() {
        for isa in vector_isas() {
            // Dims off the 16 lanes too: a score's lane is a key, not a dimension.
            for d in [8, 16, 24, 64, 80, 128, 256] {
                // Query rows across the blocks of both families (8 and 6), tiles odd and even.
                for (nq, nt) in [(1, 1), (3, 2), (6, 3), (8, 2), (9, 5), (17, 1)] {
                    let qs: Vec<Vec<f32>> = (0..nq).map(|i| values(d, (d + i) as u64)).collect();
                    let keys: Vec<Vec<Vec<f32>>> = (0..nt)
                        .map(|t| (0..TILE).map(|i| values(d, (100 + 16 * t + i) as u64)).collect())
                        .collect();
                    let tiles: Vec<Vec<f32>> = keys.iter().map(|k| tile(k, d)).collect();
                    let fast = run_scores(isa, &qs, &tiles, 0.125);
                    let slow = run_scores(Isa::Scalar, &qs, &tiles, 0.125);
                    assert_eq!(bits(&fast), bits(&slow), "{isa:?}, dim {d}, {nq} rows, {nt} tiles");
                    // And each is its row's dot product with its key: the lanes went to the
                    // right keys and rows.
                    for (i, q) in qs.iter().enumerate() {
                        for (t, keys) in keys.iter().enumerate() {
                            for (l, k) in keys.iter().enumerate() {
                                let terms = q.iter().zip(k).map(|(a, b)| *a as f64 * *b as f64);
                                let want = terms.clone().sum::<f64>() * 0.125;
                                // A chain of d roundings, each within half an ulp of its sum.
                                let bound = terms.map(f64::abs).sum::<f64>()
                                    * 0.125
                                    * d as f64
                                    * f32::EPSILON as f64;
                                let got = fast[i * nt * TILE + t * TILE + l] as f64;
                                assert!(
                                    (got - want).abs() <= bound.max(1e-30),
                                    "{isa:?}, dim {d}, row {i}, tile {t}, key {l}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Signed bytes over the whole range the cache stores (±127), zeros included.
    fn bytes(n: usize, seed: u64) -> Vec<i8> {
        values(n, seed)
            .iter()
            .map(|v| (v * 1e4) as i64 % 128)
            .map(|b| b.clamp(-127, 127) as i8)
            .collect()
    }

    #[test]
    fn the_int8_scores_are_exact_integer_sums_on_every_family() {
        for isa in vector_isas() {
            for kw in [4, 16, 64, 80, 128, 256] {
                // Rows across the blocks (8 and 4 rows, 1/2/4 tiles), tiles odd and even.
                for (nq, nt) in [(1, 1), (3, 4), (3, 7), (4, 2), (6, 5), (9, 3), (17, 1)] {
                    let q = bytes(nq * kw, (kw + nq) as u64);
                    // The extremes too: every product at 127 · 127 or -127 · 127.
                    let mut tiles: Vec<Vec<i8>> =
                        (0..nt).map(|t| bytes(kw * TILE, 50 + t as u64)).collect();
                    tiles[0][..kw * TILE / 2].fill(-127);
                    let mut q = q;
                    q[..kw].fill(127);
                    let rscale: Vec<f32> = (0..nq).map(|i| 0.001 * (i + 1) as f32).collect();
                    let run = |isa: Isa| {
                        let t: Vec<&[i8]> = tiles.iter().map(|t| t.as_slice()).collect();
                        let mut out = vec![f32::NAN; nq * nt * TILE];
                        int_scores(isa, &q, &rscale, &t, &mut out);
                        out
                    };
                    let fast = run(isa);
                    assert_eq!(bits(&fast), bits(&run(Isa::Scalar)), "{isa:?}, {kw}, {nq}x{nt}");
                    for i in 0..nq {
                        for (t, tile) in tiles.iter().enumerate() {
                            for l in 0..TILE {
                                let dot: i64 = (0..kw)
                                    .map(|c| {
                                        let k = tile[(c / QUAD * TILE + l) * QUAD + c % QUAD];
                                        q[i * kw + c] as i64 * k as i64
                                    })
                                    .sum();
                                let want = dot as f32 * rscale[i];
                                let got = fast[i * nt * TILE + t * TILE + l];
                                assert_eq!(got, want, "{isa:?}, {kw}, row {i}, tile {t}, key {l}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_score_is_the_fused_chain_over_the_dimensions_in_order() {
        // The contract every family keeps, written out for one key: any other order or an
        // unfused product gives other bits for these values.
        let d = 64;
        let q = values(d, 5);
        let keys: Vec<Vec<f32>> = (0..TILE).map(|i| values(d, 60 + i as u64)).collect();
        let got = run_scores(Isa::Scalar, std::slice::from_ref(&q), &[tile(&keys, d)], 0.5);
        for (l, k) in keys.iter().enumerate() {
            let chain = q.iter().zip(k).fold(0f32, |a, (x, y)| x.mul_add(*y, a)) * 0.5;
            assert_eq!(got[l].to_bits(), chain.to_bits(), "key {l}");
        }
    }

    #[test]
    fn head_dims_off_the_16_lanes_take_the_portable_weighted_sum_on_every_family() {
        for isa in vector_isas() {
            for d in [8, 24, 40, 72] {
                let rows: Vec<Vec<f32>> = (0..16).map(|i| values(d, 300 + i)).collect();
                let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
                let p = values(2 * 16, 41);
                let (mut fast, mut slow) = (vec![3f32; 2 * d], vec![4f32; 2 * d]);
                // SAFETY: every row holds the head dim.
                unsafe { weighted_sum(isa, &p, &refs, &mut fast, 2) };
                // SAFETY: every row holds the head dim.
                unsafe { weighted_sum(Isa::Scalar, &p, &refs, &mut slow, 2) };
                assert_eq!(bits(&fast), bits(&slow), "{isa:?}, dim {d}");
            }
        }
    }

    #[test]
    fn the_vector_weighted_sums_are_the_portable_one_bit_for_bit() {
        for isa in vector_isas() {
            for d in [16, 48, 64, 96, 128, 144, 256] {
                for n in [0, 1, 7, 40] {
                    for heads in [1, 2, 3, 4, 5, 7] {
                        let p = values(heads * n, 7 + n as u64);
                        let rows: Vec<Vec<f32>> =
                            (0..n).map(|i| values(d, 500 + i as u64)).collect();
                        let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
                        let (mut fast, mut slow) = (vec![1f32; heads * d], vec![2f32; heads * d]);
                        // SAFETY: every row holds the head dim.
                        unsafe { weighted_sum(isa, &p, &refs, &mut fast, heads) };
                        // SAFETY: every row holds the head dim.
                        unsafe { weighted_sum(Isa::Scalar, &p, &refs, &mut slow, heads) };
                        assert_eq!(
                            bits(&fast),
                            bits(&slow),
                            "{isa:?}, dim {d}, {n} keys, {heads} heads"
                        );
                        for h in 0..heads {
                            for c in 0..d {
                                let want: f64 =
                                    (0..n).map(|j| p[h * n + j] as f64 * rows[j][c] as f64).sum();
                                let got = fast[h * d + c] as f64;
                                assert!(
                                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                                    "{isa:?}, dim {d} head {h} col {c}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bf16_rows_read_in_place_give_the_bits_of_their_f32_widening() {
        let to = crate::kernels::to_bf16;
        let from = crate::kernels::from_bf16;
        for isa in vector_isas() {
            for d in [16, 64, 80, 128] {
                let qs: Vec<Vec<f32>> = (0..3).map(|i| values(d, 3 + d as u64 + i)).collect();
                let stored: Vec<Vec<u16>> =
                    (0..16).map(|i| values(d, 900 + i).into_iter().map(to).collect()).collect();
                let wide: Vec<Vec<f32>> =
                    stored.iter().map(|r| r.iter().map(|&b| from(b)).collect()).collect();
                let (st, wt) = (vec![tile(&stored, d)], vec![tile(&wide, d)]);
                let a = run_scores(isa, &qs, &st, 0.5);
                let b = run_scores(Isa::Scalar, &qs, &st, 0.5);
                let c = run_scores(isa, &qs, &wt, 0.5);
                assert_eq!((bits(&a), bits(&b)), (bits(&c), bits(&c)), "{isa:?}, scores, dim {d}");
                let s_refs: Vec<&[u16]> = stored.iter().map(|r| r.as_slice()).collect();
                let w_refs: Vec<&[f32]> = wide.iter().map(|r| r.as_slice()).collect();
                for heads in [1, 2, 3, 4] {
                    let p = values(heads * 16, 11);
                    let (mut a, mut b, mut c) =
                        (vec![0f32; heads * d], vec![0f32; heads * d], vec![0f32; heads * d]);
                    // SAFETY: every row holds the head dim.
                    unsafe { weighted_sum(isa, &p, &s_refs, &mut a, heads) };
                    // SAFETY: every row holds the head dim.
                    unsafe { weighted_sum(Isa::Scalar, &p, &s_refs, &mut b, heads) };
                    // SAFETY: every row holds the head dim.
                    unsafe { weighted_sum(isa, &p, &w_refs, &mut c, heads) };
                    assert_eq!(
                        (bits(&a), bits(&b)),
                        (bits(&c), bits(&c)),
                        "{isa:?}, weighted sum, dim {d}, {heads} heads"
                    );
                }
            }
        }
    }
}
