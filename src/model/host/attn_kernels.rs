//! Attention's two inner loops: the scores of 16 keys at once (q·k for each, summed in the same
//! lane tree as [`dot`]) and the probability-weighted sum of value rows. Long few-shot contexts
//! spend most of a decode step here. Each AVX-512 and AVX2 routine performs the IEEE operations
//! of its portable twin in the same order (multiply, then add; never fused), so the bits do not
//! depend on the instruction set, and the portable twins are the code attention used before: the
//! same bits as ever. Keys and values are read as the cache stores them, f32 or bf16 (widened in
//! registers, exactly), so a bf16 cache is never copied out as f32.

use super::ops::{dot, Stored};
use crate::kernels::isa::Isa;

/// Where the vector routines run: head dims that are whole 16-lane groups (the lanes of [`dot`]).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only the x86 paths ask
pub(super) fn simd_dim(dim: usize) -> bool {
    dim.is_multiple_of(16)
}

/// `out[i] = (q · keys[i]) * scale` for 16 keys, by `isa`'s routine (one this CPU runs).
#[inline(always)]
pub(super) fn scores16<T: Stored>(
    isa: Isa,
    q: &[f32],
    keys: &[&[T]; 16],
    scale: f32,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if simd_dim(q.len()) {
        match isa {
            // SAFETY: callers pass a family this CPU runs (avx512f); lengths are checked inside.
            Isa::Avx512 => return unsafe { avx512::scores16(q, keys, scale, out) },
            // SAFETY: as above, with avx2 and fma.
            Isa::Avx2 => return unsafe { avx2::scores16(q, keys, scale, out) },
            Isa::Scalar => {}
        }
    }
    let _ = isa;
    for (o, k) in out[..16].iter_mut().zip(keys) {
        *o = dot(q, k) * scale;
    }
}

/// For each of `o.len() / d` heads `h` (`d = o.len() / heads`, rows of `o` and of `p`):
/// `o[h] = Σ_j p[h][j] · vals[j]`, summed in key order from zero (`o` is overwritten). The heads
/// share `vals`, so each value row is read once for all of them. `isa`: as for [`scores16`].
#[inline(always)]
pub(super) fn weighted_sum<T: Stored>(
    isa: Isa,
    p: &[f32],
    vals: &[&[T]],
    o: &mut [f32],
    heads: usize,
) {
    let (n, d) = (vals.len(), o.len() / heads.max(1));
    #[cfg(target_arch = "x86_64")]
    if simd_dim(d) {
        match isa {
            // SAFETY: as for `scores16`.
            Isa::Avx512 => return unsafe { avx512::weighted_sum(p, vals, o, heads) },
            // SAFETY: as for `scores16`.
            Isa::Avx2 => return unsafe { avx2::weighted_sum(p, vals, o, heads) },
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
                *o += p * v.f32();
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::Stored;

    /// 16 stored values from `p` as f32 lanes (bf16: the bits shifted into the high half).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load16<T: Stored>(p: *const T) -> __m512 {
        if T::BF16 {
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(
                p.cast(),
            ))))
        } else {
            _mm512_loadu_ps(p.cast())
        }
    }

    /// 16 dot products as 16 vectors of lane sums, then the 16 lane trees of [`super::dot`]
    /// (`l + l+8`, `+ l+4`, `(0+2) + (1+3)`) done together by shuffles: 4 shuffle pairs
    /// per level instead of a horizontal sum per key.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scores16<T: Stored>(
        q: &[f32],
        keys: &[&[T]; 16],
        scale: f32,
        out: &mut [f32],
    ) {
        let d = q.len();
        assert!(keys.iter().all(|k| k.len() >= d) && out.len() >= 16);
        let mut acc = [_mm512_setzero_ps(); 16];
        for c in (0..d).step_by(16) {
            let qv = _mm512_loadu_ps(q.as_ptr().add(c));
            for (a, k) in acc.iter_mut().zip(keys) {
                *a = _mm512_add_ps(*a, _mm512_mul_ps(qv, load16(k.as_ptr().add(c))));
            }
        }
        // Level 1, lanes l + l+8: z[j] holds key 2j's 8 sums in its low half, 2j+1's in the high.
        let mut z = [_mm512_setzero_ps(); 8];
        for (j, z) in z.iter_mut().enumerate() {
            let (a, b) = (acc[2 * j], acc[2 * j + 1]);
            *z = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x44>(a, b),
                _mm512_shuffle_f32x4::<0xEE>(a, b),
            );
        }
        // Level 2, + l+4: w[j]'s 128-bit block b holds key 4j+b's 4 sums.
        let mut w = [_mm512_setzero_ps(); 4];
        for (j, w) in w.iter_mut().enumerate() {
            let (a, b) = (z[2 * j], z[2 * j + 1]);
            *w = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x88>(a, b),
                _mm512_shuffle_f32x4::<0xDD>(a, b),
            );
        }
        // Level 3, (0+2) and (1+3) within each block, two keys per block.
        let mut u = [_mm512_setzero_ps(); 2];
        for (j, u) in u.iter_mut().enumerate() {
            let (a, b) = (w[2 * j], w[2 * j + 1]);
            *u = _mm512_add_ps(_mm512_shuffle_ps::<0x44>(a, b), _mm512_shuffle_ps::<0xEE>(a, b));
        }
        // Level 4, (0+2) + (1+3): lane 4b+p holds key 4p+b.
        let r = _mm512_add_ps(
            _mm512_shuffle_ps::<0x88>(u[0], u[1]),
            _mm512_shuffle_ps::<0xDD>(u[0], u[1]),
        );
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        let s = _mm512_mul_ps(_mm512_permutexvar_ps(order, r), _mm512_set1_ps(scale));
        _mm512_storeu_ps(out.as_mut_ptr(), s);
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weighted_sum<T: Stored>(
        p: &[f32],
        vals: &[&[T]],
        o: &mut [f32],
        heads: usize,
    ) {
        let (n, d) = (vals.len(), o.len() / heads);
        assert!(p.len() >= heads * n && vals.iter().all(|v| v.len() >= d));
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
            let v: [__m512; R] = std::array::from_fn(|r| load16(v.as_ptr().add(c + 16 * r)));
            for (g, acc) in acc.iter_mut().enumerate() {
                let pv = _mm512_set1_ps(*p.get_unchecked((h0 + g) * n + j));
                for (a, v) in acc.iter_mut().zip(&v) {
                    *a = _mm512_add_ps(*a, _mm512_mul_ps(pv, *v));
                }
            }
        }
        for (g, acc) in acc.iter().enumerate() {
            for (r, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(o.as_mut_ptr().add((h0 + g) * d + c + 16 * r), *a);
            }
        }
    }
}

/// The AVX-512 routines' arithmetic in 8-lane halves: `dot`'s 16 lanes are a low and a high
/// vector per key, and only AVX2's 16 registers change how the work is cut up.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::Stored;

    /// 8 stored values from `p` as f32 lanes (bf16: the bits shifted into the high half).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn load8<T: Stored>(p: *const T) -> __m256 {
        if T::BF16 {
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(
                p.cast(),
            ))))
        } else {
            _mm256_loadu_ps(p.cast())
        }
    }

    /// Keys per pass over q: two accumulators each (lanes 0-7 and 8-15 of `dot`'s 16) make 8,
    /// which with q's two halves and the loads fit in 16 registers; 16 keys at once would spill.
    const KEYS: usize = 4;

    /// 16 dot products, then the 16 lane trees of [`super::dot`] done together by shuffles:
    /// level 1 (`l + l+8`) is the low half plus the high half, then `+ l+4` across 128-bit
    /// halves, then `(0+2)`, `(1+3)` and their sum within 128-bit blocks.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scores16<T: Stored>(
        q: &[f32],
        keys: &[&[T]; 16],
        scale: f32,
        out: &mut [f32],
    ) {
        let d = q.len();
        assert!(d.is_multiple_of(16) && keys.iter().all(|k| k.len() >= d) && out.len() >= 16);
        // Level 1: s8[i] is key i's 8 sums `acc[l] + acc[l+8]`.
        let mut s8 = [_mm256_setzero_ps(); 16];
        for (s8, keys) in s8.chunks_exact_mut(KEYS).zip(keys.chunks_exact(KEYS)) {
            let (mut lo, mut hi) = ([_mm256_setzero_ps(); KEYS], [_mm256_setzero_ps(); KEYS]);
            for c in (0..d).step_by(16) {
                let (q0, q1) =
                    (_mm256_loadu_ps(q.as_ptr().add(c)), _mm256_loadu_ps(q.as_ptr().add(c + 8)));
                for ((lo, hi), k) in lo.iter_mut().zip(&mut hi).zip(keys) {
                    let k = k.as_ptr().add(c);
                    *lo = _mm256_add_ps(*lo, _mm256_mul_ps(q0, load8(k)));
                    *hi = _mm256_add_ps(*hi, _mm256_mul_ps(q1, load8(k.add(8))));
                }
            }
            for ((s, lo), hi) in s8.iter_mut().zip(lo).zip(hi) {
                *s = _mm256_add_ps(lo, hi);
            }
        }
        // Level 2, + l+4: z[j]'s low 128 bits hold key 2j's 4 sums, its high 128 bits key 2j+1's.
        let z: [__m256; 8] = std::array::from_fn(|j| {
            let (a, b) = (s8[2 * j], s8[2 * j + 1]);
            _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>(a, b),
                _mm256_permute2f128_ps::<0x31>(a, b),
            )
        });
        // Level 3, (0+2) and (1+3): w[j]'s block b holds key 4j+b's two sums, then key 4j+b+2's.
        let w: [__m256; 4] = std::array::from_fn(|j| {
            let (a, b) = (z[2 * j], z[2 * j + 1]);
            _mm256_add_ps(_mm256_shuffle_ps::<0x44>(a, b), _mm256_shuffle_ps::<0xEE>(a, b))
        });
        // Level 4, (0+2) + (1+3): lane 4b+p of r[t] holds key 8t+b+2p.
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for t in 0..2 {
            let (a, b) = (w[2 * t], w[2 * t + 1]);
            let r = _mm256_add_ps(_mm256_shuffle_ps::<0x88>(a, b), _mm256_shuffle_ps::<0xDD>(a, b));
            let s = _mm256_mul_ps(_mm256_permutevar8x32_ps(r, order), _mm256_set1_ps(scale));
            _mm256_storeu_ps(out.as_mut_ptr().add(8 * t), s);
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
        assert!(d.is_multiple_of(16) && p.len() >= heads * n && vals.iter().all(|v| v.len() >= d));
        // About 8 accumulators (enough independent additions to hide their latency) of up to 4
        // heads by an even number of vectors: whole 64-byte lines of f32 values.
        let mut h = 0;
        while h < heads {
            let g = (heads - h).min(4);
            let mut c = 0;
            while c < d {
                let r = (d - c) / 8;
                let r = match g {
                    1 => r.min(8),
                    2 => r.min(4),
                    _ => 2,
                };
                match (g, r) {
                    (1, 2) => columns::<T, 1, 2>(p, vals, o, d, h, c),
                    (1, 4) => columns::<T, 1, 4>(p, vals, o, d, h, c),
                    (1, 6) => columns::<T, 1, 6>(p, vals, o, d, h, c),
                    (1, _) => columns::<T, 1, 8>(p, vals, o, d, h, c),
                    (2, 2) => columns::<T, 2, 2>(p, vals, o, d, h, c),
                    (2, _) => columns::<T, 2, 4>(p, vals, o, d, h, c),
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
            let v: [__m256; R] = std::array::from_fn(|r| load8(v.as_ptr().add(c + 8 * r)));
            for (g, acc) in acc.iter_mut().enumerate() {
                let pv = _mm256_set1_ps(*p.get_unchecked((h0 + g) * n + j));
                for (a, v) in acc.iter_mut().zip(&v) {
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(pv, *v));
                }
            }
        }
        for (g, acc) in acc.iter().enumerate() {
            for (r, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(o.as_mut_ptr().add((h0 + g) * d + c + 8 * r), *a);
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

    #[test]
    fn the_vector_scores_are_the_portable_ones_bit_for_bit() {
        for isa in vector_isas() {
            // 80: a multiple of 16 but not of 32 (one 16-lane group past the 64 block).
            for d in [16, 32, 48, 64, 80, 128, 256] {
                let q = values(d, d as u64);
                let keys: Vec<Vec<f32>> = (0..16).map(|i| values(d, 100 + i)).collect();
                let refs: [&[f32]; 16] = std::array::from_fn(|i| keys[i].as_slice());
                let (mut fast, mut slow) = ([0f32; 16], [0f32; 16]);
                scores16(isa, &q, &refs, 0.125, &mut fast);
                scores16(Isa::Scalar, &q, &refs, 0.125, &mut slow);
                assert_eq!(bits(&fast), bits(&slow), "{isa:?}, dim {d}");
                // And each is the key's own dot product: the lanes went to the right keys.
                for (i, k) in keys.iter().enumerate() {
                    let want: f64 =
                        q.iter().zip(k).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() * 0.125;
                    assert!(
                        (fast[i] as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                        "{isa:?}, dim {d} key {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn head_dims_off_the_16_lanes_take_the_portable_path_on_every_family() {
        for isa in vector_isas() {
            for d in [8, 24, 40, 72] {
                let q = values(d, 40 + d as u64);
                let keys: Vec<Vec<f32>> = (0..16).map(|i| values(d, 300 + i)).collect();
                let refs: [&[f32]; 16] = std::array::from_fn(|i| keys[i].as_slice());
                let (mut fast, mut slow) = ([0f32; 16], [0f32; 16]);
                scores16(isa, &q, &refs, 0.25, &mut fast);
                scores16(Isa::Scalar, &q, &refs, 0.25, &mut slow);
                assert_eq!(bits(&fast), bits(&slow), "{isa:?}, dim {d}");
                let p = values(2 * 16, 41);
                let (mut fast, mut slow) = (vec![3f32; 2 * d], vec![4f32; 2 * d]);
                weighted_sum(isa, &p, &refs, &mut fast, 2);
                weighted_sum(Isa::Scalar, &p, &refs, &mut slow, 2);
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
                        weighted_sum(isa, &p, &refs, &mut fast, heads);
                        weighted_sum(Isa::Scalar, &p, &refs, &mut slow, heads);
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
                let q = values(d, 3 + d as u64);
                let stored: Vec<Vec<u16>> =
                    (0..16).map(|i| values(d, 900 + i).into_iter().map(to).collect()).collect();
                let wide: Vec<Vec<f32>> =
                    stored.iter().map(|r| r.iter().map(|&b| from(b)).collect()).collect();
                let s_refs: [&[u16]; 16] = std::array::from_fn(|i| stored[i].as_slice());
                let w_refs: [&[f32]; 16] = std::array::from_fn(|i| wide[i].as_slice());
                let (mut a, mut b, mut c) = ([0f32; 16], [0f32; 16], [0f32; 16]);
                scores16(isa, &q, &s_refs, 0.5, &mut a);
                scores16(Isa::Scalar, &q, &s_refs, 0.5, &mut b);
                scores16(isa, &q, &w_refs, 0.5, &mut c);
                assert_eq!((bits(&a), bits(&b)), (bits(&c), bits(&c)), "{isa:?}, scores, dim {d}");
                for heads in [1, 2, 3, 4] {
                    let p = values(heads * 16, 11);
                    let (mut a, mut b, mut c) =
                        (vec![0f32; heads * d], vec![0f32; heads * d], vec![0f32; heads * d]);
                    weighted_sum(isa, &p, &s_refs, &mut a, heads);
                    weighted_sum(Isa::Scalar, &p, &s_refs, &mut b, heads);
                    weighted_sum(isa, &p, &w_refs, &mut c, heads);
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
