//! f16 weights: bit for bit the f32 product on the f16-rounded W, with every kernel family.

use super::*;

/// Values rounded to f16 and widened back: what the f16 kernels multiply.
fn f16_round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

/// Random weights with some of f16's subnormals and values near its largest among them, so the
/// widening is checked over f16's whole range.
fn f16_weights(seed: u32, len: usize) -> Vec<f32> {
    let mut w = rand_vec(seed, len);
    for (i, v) in w.iter_mut().enumerate() {
        match i % 11 {
            3 => *v *= 2f32.powi(-18),
            7 => *v *= 60000.0,
            _ => {}
        }
    }
    w
}

#[test]
fn f16_equals_f32_on_rounded_weights_bitwise() {
    // Model shapes, panel tails, odd k, tiny ones; m on every kernel (1..=3: AVX-512's wide ones).
    let shapes = [(100, 576), (64, 1536), (33, 40), (7, 31), (1, 1), (130, 577), (960, 64)];
    for (si, &(n, k)) in shapes.iter().enumerate() {
        let w = f16_weights(401 + si as u32, n * k);
        let b = rand_vec(411 + si as u32, n);
        let wr = f16_round(&w);
        assert!(
            wr.iter().any(|v| v.is_subnormal() || (v.abs() < 6.2e-5 && *v != 0.0)) || n * k < 11
        );
        for bias in [None, Some(b.as_slice())] {
            let f16m = PackedMatrix::pack_f16(&w, n, k, bias);
            assert!(f16m.is_f16() && !f16m.is_bf16() && !f16m.is_q8_0());
            let f32m = PackedMatrix::pack(&wr, n, k, bias);
            for m in [1, 2, 3, 12, 13, 40] {
                let x = rand_vec(421 + m as u32, m * k);
                let mut scalar = vec![0.0; m * n];
                f16m.matmul_with(Kernel::Scalar, &x, m, &mut scalar);
                for kernel in kernels() {
                    let (mut got, mut want) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
                    f16m.matmul_with(kernel, &x, m, &mut got);
                    f32m.matmul_with(kernel, &x, m, &mut want);
                    let what = format!("{kernel:?} n={n} k={k} m={m} bias={}", bias.is_some());
                    assert_eq!(bits(&got), bits(&want), "{what}: f16 vs f32 on the rounded W");
                    assert_eq!(bits(&got), bits(&scalar), "{what}: vs the scalar f16 kernel");
                }
            }
        }
    }
}

#[test]
fn f16_bitwise_batch_invariant() {
    let (n, k, m) = (1000, 577, 300);
    let pm = PackedMatrix::pack_f16(&f16_weights(3, n * k), n, k, Some(&rand_vec(4, n)));
    let x = rand_vec(5, m * k);
    for kernel in kernels() {
        assert_batch_invariant(&format!("f16 {kernel:?}"), &x, m, n, k, |x, m| {
            let mut out = vec![0.0; m * n];
            pm.matmul_with(kernel, x, m, &mut out);
            bits(&out)
        });
    }
}

#[test]
fn f16_rows_bytes_and_edges() {
    for &(n, k) in &[(1, 7), (33, 5), (70, 577)] {
        let w = f16_weights(81, n * k);
        let pm = PackedMatrix::pack_f16(&w, n, k, None);
        assert_eq!((pm.n(), pm.k()), (n, k));
        let wr = f16_round(&w);
        let mut out = vec![0.0; k];
        for r in 0..n {
            pm.row(r, &mut out);
            assert_eq!(bits(&out), bits(&wr[r * k..(r + 1) * k]), "f16 row {r}");
        }
    }
    // Two panels × 10 k steps × 32 halves, plus 64 f32 of bias: half of f32's weight bytes.
    let (n, k) = (33, 10);
    let pm = PackedMatrix::pack_f16(&rand_vec(1, n * k), n, k, Some(&rand_vec(2, n)));
    assert_eq!(pm.bytes(), 2 * 10 * 32 * 2 + 64 * 4);
    // Rounding is to nearest even, overflow to infinity, as IEEE conversions do.
    let pm = PackedMatrix::pack_f16(
        &[1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11), 70000.0, -1e-8],
        1,
        4,
        None,
    );
    let mut row = vec![0.0; 4];
    pm.row(0, &mut row);
    assert_eq!(row, [1.0, 1.0 + 2f32.powi(-9), f32::INFINITY, -0.0]);
    assert!(row[3].is_sign_negative());
    // k = 0: just the bias.
    let pm = PackedMatrix::pack_f16(&[], 3, 0, Some(&[1.0, -2.0, 3.5]));
    for kernel in kernels() {
        let mut out = vec![0.0; 6];
        pm.matmul_with(kernel, &[], 2, &mut out);
        assert_eq!(out, [1.0, -2.0, 3.5, 1.0, -2.0, 3.5], "{kernel:?}");
    }
}
