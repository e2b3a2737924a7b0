//! Attention's two inner loops: the scores of 16 keys at once (q·k for each, summed in the same
//! lane tree as [`dot`]) and the probability-weighted sum of value rows. Long few-shot contexts
//! spend most of a decode step here. Each AVX-512 routine performs the IEEE operations of its
//! portable twin in the same order (multiply, then add; never fused), so the bits do not depend
//! on the instruction set, and the portable twins are the code attention used before: the same
//! bits as ever. Keys and values are read as the cache stores them, f32 or bf16 (widened in
//! registers, exactly), so a bf16 cache is never copied out as f32.

use super::ops::{dot, Stored};

/// Where the AVX-512 routines run: head dims that are whole 16-lane vectors.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only the x86 paths ask
pub(super) fn simd_dim(dim: usize) -> bool {
    dim.is_multiple_of(16)
}

/// `out[i] = (q · keys[i]) * scale` for 16 keys.
#[inline(always)]
pub(super) fn scores16<T: Stored>(simd: bool, q: &[f32], keys: &[&[T]; 16], scale: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd && simd_dim(q.len()) {
        // SAFETY: `simd` is only set where avx512f was detected; the lengths are checked inside.
        unsafe { avx512::scores16(q, keys, scale, out) };
        return;
    }
    let _ = simd;
    for (o, k) in out[..16].iter_mut().zip(keys) {
        *o = dot(q, k) * scale;
    }
}

/// For each of `o.len() / d` heads `h` (`d = o.len() / heads`, rows of `o` and of `p`):
/// `o[h] = Σ_j p[h][j] · vals[j]`, summed in key order from zero (`o` is overwritten). The heads
/// share `vals`, so each value row is read once for all of them.
#[inline(always)]
pub(super) fn weighted_sum<T: Stored>(simd: bool, p: &[f32], vals: &[&[T]], o: &mut [f32], heads: usize) {
    let (n, d) = (vals.len(), o.len() / heads.max(1));
    #[cfg(target_arch = "x86_64")]
    if simd && simd_dim(d) {
        // SAFETY: as for `scores16`.
        unsafe { avx512::weighted_sum(p, vals, o, heads) };
        return;
    }
    let _ = simd;
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
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()))))
        } else {
            _mm512_loadu_ps(p.cast())
        }
    }

    /// 16 dot products as 16 vectors of lane sums, then the 16 lane trees of [`super::dot`]
    /// (`l + l+8`, `+ l+4`, `(0+2) + (1+3)`) done together by shuffles: 4 shuffle pairs
    /// per level instead of a horizontal sum per key.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scores16<T: Stored>(q: &[f32], keys: &[&[T]; 16], scale: f32, out: &mut [f32]) {
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
            *z = _mm512_add_ps(_mm512_shuffle_f32x4::<0x44>(a, b), _mm512_shuffle_f32x4::<0xEE>(a, b));
        }
        // Level 2, + l+4: w[j]'s 128-bit block b holds key 4j+b's 4 sums.
        let mut w = [_mm512_setzero_ps(); 4];
        for (j, w) in w.iter_mut().enumerate() {
            let (a, b) = (z[2 * j], z[2 * j + 1]);
            *w = _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(a, b), _mm512_shuffle_f32x4::<0xDD>(a, b));
        }
        // Level 3, (0+2) and (1+3) within each block, two keys per block.
        let mut u = [_mm512_setzero_ps(); 2];
        for (j, u) in u.iter_mut().enumerate() {
            let (a, b) = (w[2 * j], w[2 * j + 1]);
            *u = _mm512_add_ps(_mm512_shuffle_ps::<0x44>(a, b), _mm512_shuffle_ps::<0xEE>(a, b));
        }
        // Level 4, (0+2) + (1+3): lane 4b+p holds key 4p+b.
        let r = _mm512_add_ps(_mm512_shuffle_ps::<0x88>(u[0], u[1]), _mm512_shuffle_ps::<0xDD>(u[0], u[1]));
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        let s = _mm512_mul_ps(_mm512_permutexvar_ps(order, r), _mm512_set1_ps(scale));
        _mm512_storeu_ps(out.as_mut_ptr(), s);
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weighted_sum<T: Stored>(p: &[f32], vals: &[&[T]], o: &mut [f32], heads: usize) {
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
    unsafe fn columns<T: Stored, const G: usize, const R: usize>(p: &[f32], vals: &[&[T]], o: &mut [f32], d: usize, h0: usize, c: usize) {
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

    /// True (and says so) where the AVX-512 routines cannot run, so there is nothing to compare.
    fn no_avx512() -> bool {
        #[cfg(target_arch = "x86_64")]
        let have = std::arch::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let have = false;
        if !have {
            eprintln!("skipped: this CPU has no AVX-512");
        }
        !have
    }

    #[test]
    fn the_avx512_scores_are_the_portable_ones_bit_for_bit() {
        if no_avx512() {
            return;
        }
        for d in [16, 32, 64, 80, 128, 256] {
            let q = values(d, d as u64);
            let keys: Vec<Vec<f32>> = (0..16).map(|i| values(d, 100 + i)).collect();
            let refs: [&[f32]; 16] = std::array::from_fn(|i| keys[i].as_slice());
            let (mut fast, mut slow) = ([0f32; 16], [0f32; 16]);
            scores16(true, &q, &refs, 0.125, &mut fast);
            scores16(false, &q, &refs, 0.125, &mut slow);
            assert_eq!(fast.map(f32::to_bits), slow.map(f32::to_bits), "dim {d}");
            // And each is the key's own dot product: the lanes went to the right keys.
            for (i, k) in keys.iter().enumerate() {
                let want: f64 = q.iter().zip(k).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() * 0.125;
                assert!((fast[i] as f64 - want).abs() <= 1e-5 * want.abs().max(1.0), "dim {d} key {i}");
            }
        }
    }

    #[test]
    fn the_avx512_weighted_sum_is_the_portable_one_bit_for_bit() {
        if no_avx512() {
            return;
        }
        for d in [16, 48, 64, 96, 128, 144] {
            for n in [1, 7, 40] {
                for heads in [1, 3, 4, 7] {
                    let p = values(heads * n, 7 + n as u64);
                    let rows: Vec<Vec<f32>> = (0..n).map(|i| values(d, 500 + i as u64)).collect();
                    let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
                    let (mut fast, mut slow) = (vec![1f32; heads * d], vec![2f32; heads * d]);
                    weighted_sum(true, &p, &refs, &mut fast, heads);
                    weighted_sum(false, &p, &refs, &mut slow, heads);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&fast), bits(&slow), "dim {d}, {n} keys, {heads} heads");
                    for h in 0..heads {
                        for c in 0..d {
                            let want: f64 = (0..n).map(|j| p[h * n + j] as f64 * rows[j][c] as f64).sum();
                            let got = fast[h * d + c] as f64;
                            assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "dim {d} head {h} col {c}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bf16_rows_read_in_place_give_the_bits_of_their_f32_widening() {
        if no_avx512() {
            return;
        }
        let to = crate::kernels::to_bf16;
        let from = crate::kernels::from_bf16;
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for d in [16, 64, 80, 128] {
            let q = values(d, 3 + d as u64);
            let stored: Vec<Vec<u16>> = (0..16).map(|i| values(d, 900 + i).into_iter().map(to).collect()).collect();
            let wide: Vec<Vec<f32>> = stored.iter().map(|r| r.iter().map(|&b| from(b)).collect()).collect();
            let s_refs: [&[u16]; 16] = std::array::from_fn(|i| stored[i].as_slice());
            let w_refs: [&[f32]; 16] = std::array::from_fn(|i| wide[i].as_slice());
            let (mut a, mut b, mut c) = ([0f32; 16], [0f32; 16], [0f32; 16]);
            scores16(true, &q, &s_refs, 0.5, &mut a);
            scores16(false, &q, &s_refs, 0.5, &mut b);
            scores16(true, &q, &w_refs, 0.5, &mut c);
            assert_eq!((bits(&a), bits(&b)), (bits(&c), bits(&c)), "scores, dim {d}");
            let p = values(3 * 16, 11);
            let (mut a, mut b, mut c) = (vec![0f32; 3 * d], vec![0f32; 3 * d], vec![0f32; 3 * d]);
            weighted_sum(true, &p, &s_refs, &mut a, 3);
            weighted_sum(false, &p, &s_refs, &mut b, 3);
            weighted_sum(true, &p, &w_refs, &mut c, 3);
            assert_eq!((bits(&a), bits(&b)), (bits(&c), bits(&c)), "weighted sum, dim {d}");
        }
    }
}
