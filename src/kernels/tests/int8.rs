//! Int8 products (`int8.rs`): the integer arithmetic against a float reference on the same
//! quantised x and dequantised W, bit-identical kernel families, batch invariance, and the error
//! against the f32 product that int8 activations cost.

use super::super::quant::tests::quantised;
use super::*;

/// Every GGUF type held as stored (each has int8 kernels), with the QuantType candle quantises to.
fn int8_types() -> Vec<(GgufType, Option<QuantType>)> {
    let quant = QuantType::ALL;
    std::iter::once((GgufType::Q8_0, None))
        .chain(quant.map(|t| (GgufType::Quant(t), Some(t))))
        .collect()
}

/// W ([n, k]) of type `t` as GGUF bytes and candle's dequantisation.
fn gguf(t: (GgufType, Option<QuantType>), n: usize, k: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
    match t.1 {
        Some(q) => quantised(q, n, k, seed),
        None => {
            use candle_core::quantized::{GgmlDType, QTensor};
            let w = candle_core::Tensor::from_vec(
                rand_vec(seed as u32, n * k),
                (n, k),
                &candle_core::Device::Cpu,
            )
            .unwrap();
            let qt = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
            let deq = qt
                .dequantize(&candle_core::Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            (qt.data().unwrap().to_vec(), deq)
        }
    }
}

fn pack(t: GgufType, raw: &[u8], n: usize, k: usize, bias: Option<&[f32]>) -> PackedMatrix {
    let mut p = PackedMatrix::packer_gguf_int8(t, n, k, bias);
    // In two pushes, the first ending inside a panel, as streamed loading does.
    let split = (n / 2).max(1).min(n) * t.row_bytes(k);
    p.push_gguf(&raw[..split]);
    p.push_gguf(&raw[split..]);
    p.finish()
}

/// x rounded as the int8 products round it (blocks of 32, d = amax / 127), in f64.
fn x_as_int8(x: &[f32]) -> Vec<f64> {
    x.chunks(32)
        .flat_map(|b| {
            let d = b.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            b.iter()
                .map(move |&v| (v * id).round().clamp(-127.0, 127.0) as f64 * d as f64)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn int8_rows_dequantise_to_candles_values_and_memory_is_the_files() {
    for (i, t) in int8_types().into_iter().enumerate() {
        let (n, k) = (45, 512);
        let (raw, deq) = gguf(t, n, k, 3 + i as u64);
        let m = pack(t.0, &raw, n, k, None);
        assert_eq!(m.int8_type(), Some(t.0));
        let mut row = vec![0.0; k];
        for r in 0..n {
            m.row(r, &mut row);
            assert_eq!(bits(&row), bits(&deq[r * k..(r + 1) * k]), "{} row {r}", t.0.name());
        }
        let big = gguf(t, 256, 1024, 9).0;
        let ratio = pack(t.0, &big, 256, 1024, None).bytes() as f64 / big.len() as f64;
        assert!((0.99..1.06).contains(&ratio), "{}: {ratio} × the file's bytes", t.0.name());
    }
}

/// The product is Σ x̂·w over the int8-rounded x̂ and the dequantised w up to the float steps'
/// rounding; every family gives the scalar kernel's bits.
#[test]
fn int8_products_are_the_rounded_x_times_w_and_families_agree_bitwise() {
    for (i, t) in int8_types().into_iter().enumerate() {
        for (n, k) in [(100, 256), (33, 768)] {
            let (raw, deq) = gguf(t, n, k, 31 + i as u64);
            let b = rand_vec(7 + i as u32, n);
            for bias in [None, Some(b.as_slice())] {
                let qm = pack(t.0, &raw, n, k, bias);
                for m in [1, 2, 3, 4, 5, 12, 13, 40] {
                    // Rows of different scales, one all zero: x's block scales differ.
                    let mut x = rand_vec(121 + m as u32, m * k);
                    for (r, row) in x.chunks_mut(k).enumerate() {
                        row.iter_mut().for_each(|v| *v *= [1.0, 0.01, 30.0, 0.0][r % 4]);
                    }
                    let xr = x_as_int8(&x);
                    let mut scalar = vec![0.0; m * n];
                    qm.matmul_with(Kernel::Scalar, &x, m, &mut scalar);
                    for r in 0..m {
                        for j in 0..n {
                            let (mut want, mut mag) = (bias.map_or(0.0, |b| b[j] as f64), 0.0f64);
                            for kk in 0..k {
                                let p = xr[r * k + kk] * deq[j * k + kk] as f64;
                                want += p;
                                mag += p.abs();
                            }
                            let got = scalar[r * n + j] as f64;
                            assert!(
                                (got - want).abs() <= 1e-5 * mag + 1e-6,
                                "{} n={n} k={k} m={m} [{r},{j}]: {got} vs {want}",
                                t.0.name()
                            );
                        }
                    }
                    for kernel in kernels() {
                        let mut got = vec![f32::NAN; m * n];
                        qm.matmul_with(kernel, &x, m, &mut got);
                        assert_eq!(
                            bits(&got),
                            bits(&scalar),
                            "{} {kernel:?} n={n} k={k} m={m}: vs the scalar kernel",
                            t.0.name()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn int8_products_are_bitwise_batch_invariant() {
    // (k = 1024: a block of 8 or more rows is quantized by several threads, one row alone by one.)
    let (n, k, m) = (70, 1024, 300);
    for (i, t) in int8_types().into_iter().enumerate() {
        let (raw, _) = gguf(t, n, k, 5 + i as u64);
        let pm = pack(t.0, &raw, n, k, Some(&rand_vec(4, n)));
        let x = rand_vec(5, m * k);
        for kernel in kernels() {
            assert_batch_invariant(
                &format!("{} int8 {kernel:?}", t.0.name()),
                &x,
                m,
                n,
                k,
                |x, m| {
                    let mut out = vec![0.0; m * n];
                    pm.matmul_with(kernel, x, m, &mut out);
                    bits(&out)
                },
            );
        }
    }
}

/// What int8 activations cost against the f32 product on the same dequantised W: the largest
/// error relative to the output's scale stays about 1/127 of a block's range over √k blocks.
#[test]
fn int8_error_against_the_f32_product_is_small() {
    for (i, t) in int8_types().into_iter().enumerate() {
        let (n, k, m) = (64, 2048, 8);
        let (raw, deq) = gguf(t, n, k, 41 + i as u64);
        let (qm, fm) = (pack(t.0, &raw, n, k, None), PackedMatrix::pack(&deq, n, k, None));
        let x = rand_vec(77, m * k);
        let (mut got, mut want) = (vec![0.0; m * n], vec![0.0; m * n]);
        qm.matmul(&x, m, &mut got);
        fm.matmul(&x, m, &mut want);
        let scale = (want.iter().map(|v| v * v).sum::<f32>() / want.len() as f32).sqrt();
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(
            worst > 0.0,
            "{}: int8 products equal the f32 ones exactly: is x quantised?",
            t.0.name()
        );
        assert!(
            worst < 0.02 * scale,
            "{}: worst error {worst} against an output scale {scale}",
            t.0.name()
        );
    }
}
