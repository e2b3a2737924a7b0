use super::*;

/// xorshift32 in [-1, 1): deterministic data without a crate.
fn rand_vec(seed: u32, len: usize) -> Vec<f32> {
    let mut s = seed.max(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

fn reference(x: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for kk in 0..k {
                s += x[i * k + kk] as f64 * w[j * k + kk] as f64;
            }
            out[i * n + j] = s + bias.map_or(0.0, |b| b[j] as f64);
        }
    }
    out
}

#[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
fn kernels() -> Vec<Kernel> {
    let mut v = vec![Kernel::Scalar];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        v.push(Kernel::Avx2);
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        v.push(Kernel::Avx512);
    }
    v
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

#[test]
fn matches_f64_reference() {
    let shapes = [(1, 7), (31, 577), (33, 64), (960, 7), (1000, 577)];
    let ms = [1, 3, 8, 12, 13, 32, 100, 300];
    for (si, &(n, k)) in shapes.iter().enumerate() {
        let w = rand_vec(11 + si as u32, n * k);
        let b = rand_vec(99 + si as u32, n);
        for with_bias in [false, true] {
            let bias = with_bias.then_some(b.as_slice());
            let pm = PackedMatrix::pack(&w, n, k, bias);
            for &m in &ms {
                // The biggest shape only on a subset of m: the f64 reference is O(mnk).
                if n * k > 100_000 && m > 32 && m != 300 {
                    continue;
                }
                let x = rand_vec(7 + m as u32, m * k);
                let want = reference(&x, &w, bias, m, n, k);
                // Sum of |terms| bounds the rounding error of a length-k FMA chain.
                let tol = 2.0 * k as f64 * f32::EPSILON as f64;
                for kernel in kernels() {
                    let mut out = vec![f32::NAN; m * n];
                    pm.matmul_with(kernel, &x, m, &mut out);
                    for i in 0..m {
                        for j in 0..n {
                            let mag: f64 = (0..k).map(|kk| (x[i * k + kk] * w[j * k + kk]).abs() as f64).sum::<f64>()
                                + bias.map_or(0.0, |b| b[j].abs() as f64);
                            let (got, exp) = (out[i * n + j] as f64, want[i * n + j]);
                            assert!(
                                (got - exp).abs() <= tol * mag.max(1e-30),
                                "{kernel:?} n={n} k={k} m={m} bias={with_bias} [{i},{j}]: {got} vs {exp}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn bitwise_batch_invariant() {
    let (n, k, m) = (1000, 577, 300);
    let w = rand_vec(3, n * k);
    let b = rand_vec(4, n);
    let x = rand_vec(5, m * k);
    let pm = PackedMatrix::pack(&w, n, k, Some(&b));
    for kernel in kernels() {
        let run = |x: &[f32], m: usize| {
            let mut out = vec![0.0; m * n];
            pm.matmul_with(kernel, x, m, &mut out);
            bits(&out)
        };
        let full = run(&x, m);
        // One row at a time.
        for i in 0..m {
            assert_eq!(run(&x[i * k..(i + 1) * k], 1), full[i * n..(i + 1) * n], "{kernel:?} row {i} alone");
        }
        // Sub-batches at other offsets and sizes.
        for (lo, hi) in [(5, 13), (0, 32), (7, 300), (290, 300), (1, 3), (2, 5)] {
            assert_eq!(run(&x[lo * k..hi * k], hi - lo), full[lo * n..hi * n], "{kernel:?} rows {lo}..{hi}");
        }
        // Rows in reverse order, i.e. every row with different neighbours.
        let rev: Vec<f32> = (0..m).rev().flat_map(|i| x[i * k..(i + 1) * k].iter().copied()).collect();
        let out = run(&rev, m);
        for (r, i) in (0..m).rev().enumerate() {
            assert_eq!(out[r * n..(r + 1) * n], full[i * n..(i + 1) * n], "{kernel:?} reversed row {i}");
        }
        // Pool sizes.
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            assert_eq!(pool.install(|| run(&x, m)), full, "{kernel:?} {threads} threads");
        }
    }
}

#[test]
fn kernels_agree_bitwise() {
    // Same per-element order in every kernel, so not just close: identical.
    for &(n, k, m) in &[(33, 577, 13), (1000, 64, 300), (64, 1, 5), (5, 0, 3), (200, 33, 1), (300, 65, 2), (129, 9, 3)]
    {
        let w = rand_vec(21, n * k);
        let b = rand_vec(22, n);
        let x = rand_vec(23, m * k);
        for bias in [None, Some(b.as_slice())] {
            let pm = PackedMatrix::pack(&w, n, k, bias);
            let mut want = vec![0.0; m * n];
            pm.matmul_with(Kernel::Scalar, &x, m, &mut want);
            for kernel in kernels() {
                let mut got = vec![0.0; m * n];
                pm.matmul_with(kernel, &x, m, &mut got);
                assert_eq!(bits(&got), bits(&want), "{kernel:?} n={n} k={k} m={m}");
            }
        }
    }
}

#[test]
fn row_returns_original_rows() {
    for &(n, k) in &[(1, 7), (33, 5), (70, 577)] {
        let w = rand_vec(31, n * k);
        let pm = PackedMatrix::pack(&w, n, k, None);
        assert_eq!((pm.n(), pm.k()), (n, k));
        let mut out = vec![0.0; k];
        for r in 0..n {
            pm.row(r, &mut out);
            assert_eq!(bits(&out), bits(&w[r * k..(r + 1) * k]), "row {r}");
        }
    }
}

#[test]
fn holds_one_padded_copy() {
    let (n, k) = (33, 10);
    let pm = PackedMatrix::pack(&rand_vec(1, n * k), n, k, Some(&rand_vec(2, n)));
    assert_eq!(pm.bytes(), (2 * NR * k + 2 * NR) * 4);
}

#[test]
fn edge_shapes() {
    // k = 0: the product is just the bias; m = 0: nothing to do.
    let pm = PackedMatrix::pack(&[], 3, 0, Some(&[1.0, -2.0, 3.5]));
    let mut out = vec![0.0; 6];
    pm.matmul(&[], 2, &mut out);
    assert_eq!(out, [1.0, -2.0, 3.5, 1.0, -2.0, 3.5]);
    pm.matmul(&[], 0, &mut []);
}

#[test]
#[should_panic(expected = "x.len()")]
fn wrong_x_len_panics() {
    let pm = PackedMatrix::pack(&[1.0; 6], 2, 3, None);
    pm.matmul(&[1.0; 5], 2, &mut [0.0; 4]);
}
