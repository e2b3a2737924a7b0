use super::*;

mod bf16;
mod f16;
mod int8;

/// xorshift32 in [-1, 1): deterministic data without a crate.
pub(super) fn rand_vec(seed: u32, len: usize) -> Vec<f32> {
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

/// Every kernel family this CPU runs.
fn kernels() -> Vec<Kernel> {
    Kernel::ALL.iter().copied().filter(|k| k.supported()).collect()
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
                            let mag: f64 = (0..k)
                                .map(|kk| (x[i * k + kk] * w[j * k + kk]).abs() as f64)
                                .sum::<f64>()
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

/// Row i of `run(x, m)` (output bits) must be the same alone, in sub-batches at other offsets
/// and sizes, among the rows in reverse order (other neighbours) and on pools of 1–3 threads.
fn assert_batch_invariant(
    what: &str,
    x: &[f32],
    m: usize,
    n: usize,
    k: usize,
    run: impl Fn(&[f32], usize) -> Vec<u32> + Sync,
) {
    let full = run(x, m);
    for i in 0..m {
        assert_eq!(
            run(&x[i * k..(i + 1) * k], 1),
            full[i * n..(i + 1) * n],
            "{what} row {i} alone"
        );
    }
    for (lo, hi) in [(5, 13), (0, 32), (7, 300), (290, 300), (1, 3), (2, 5), (10, 14)] {
        assert_eq!(
            run(&x[lo * k..hi * k], hi - lo),
            full[lo * n..hi * n],
            "{what} rows {lo}..{hi}"
        );
    }
    let rev: Vec<f32> = (0..m).rev().flat_map(|i| x[i * k..(i + 1) * k].iter().copied()).collect();
    let out = run(&rev, m);
    for (r, i) in (0..m).rev().enumerate() {
        assert_eq!(out[r * n..(r + 1) * n], full[i * n..(i + 1) * n], "{what} reversed row {i}");
    }
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        assert_eq!(pool.install(|| run(x, m)), full, "{what} {threads} threads");
    }
}

#[test]
fn bitwise_batch_invariant() {
    let (n, k, m) = (1000, 577, 300);
    let pm = PackedMatrix::pack(&rand_vec(3, n * k), n, k, Some(&rand_vec(4, n)));
    let x = rand_vec(5, m * k);
    for kernel in kernels() {
        assert_batch_invariant(&format!("{kernel:?}"), &x, m, n, k, |x, m| {
            let mut out = vec![0.0; m * n];
            pm.matmul_with(kernel, x, m, &mut out);
            bits(&out)
        });
    }
}

#[test]
fn kernels_agree_bitwise() {
    // Same per-element order in every kernel, so not just close: identical.
    for &(n, k, m) in &[
        (33, 577, 13),
        (1000, 64, 300),
        (64, 1, 5),
        (5, 0, 3),
        (200, 33, 1),
        (300, 65, 2),
        (129, 9, 3),
    ] {
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

// ---- Q8_0 weights ----

/// W quantised block by block with `quantize_block` and dequantised (`q · d`): the f32 values
/// the Q8_0 kernels must multiply by.
fn q8_dequantized(w: &[f32], n: usize, k: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * k);
    let mut q = [0i8; q8::QK];
    for r in 0..n {
        for src in w[r * k..(r + 1) * k].chunks(q8::QK) {
            let d = q8::quantize_block(src, &mut q);
            out.extend(q[..src.len()].iter().map(|&v| v as f32 * d));
        }
    }
    out
}

#[test]
fn q8_quantizes_blocks_like_llama_cpp() {
    // amax 127: d = 1 (exact in f16), so q = roundf(w): halves away from zero (2.5 -> 3, not 2).
    let mut a = [0f32; 32];
    a[..8].copy_from_slice(&[127.0, -3.5, 2.5, -0.5, 0.49, 100.4, 0.5, -126.6]);
    let mut q = [0i8; 32];
    assert_eq!(q8::quantize_block(&a, &mut q), 1.0);
    assert_eq!(q[..8], [127, -4, 3, -1, 0, 100, 1, -127]);
    assert!(q[8..].iter().all(|&v| v == 0));
    // amax 1: d = 1/127 = 0.0078740157 in f32 = 1.00787 · 2^-7, whose f16 (10 mantissa bits)
    // is 1032/1024 · 2^-7 = 1032/131072 (1.00787·1024 = 1032.06 rounds down); q uses the
    // unrounded d: -0.25·127 = -31.75 -> -32, 0.1·127 = 12.7 -> 13.
    let mut b = [0f32; 32];
    b[..5].copy_from_slice(&[1.0, -0.25, 0.1, 0.0, -1.0]);
    let d = q8::quantize_block(&b, &mut q);
    assert_eq!(d, 1032.0 / 131072.0);
    assert_ne!(d, 1.0 / 127.0);
    assert_eq!(q[..5], [127, -32, 13, 0, -127]);
    // All zeros: d = 0 and q = 0 (no division by zero).
    assert_eq!(q8::quantize_block(&[0.0; 32], &mut q), 0.0);
    assert!(q.iter().all(|&v| v == 0));

    // A row of k = 40 is a whole block and a short one of 8, scaled by its own 8 values only:
    // amax 2 -> d = 2 · 0.00787353515625 (f16 scales by 2 exactly); 0.25·63.5 = 15.875 -> 16,
    // -0.75·63.5 = -47.625 -> -48.
    let mut w = a.to_vec();
    w.extend([2.0, 0.25, -0.75, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let pm = PackedMatrix::pack_q8_0(&w, 1, 40, None);
    let mut row = vec![0.0; 40];
    pm.row(0, &mut row);
    let mut want: Vec<f32> = [127.0, -4.0, 3.0, -1.0, 0.0, 100.0, 1.0, -127.0].to_vec();
    want.extend([0.0; 24]);
    let d2 = 1032.0f32 / 65536.0;
    want.extend([127.0 * d2, 16.0 * d2, -48.0 * d2, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(bits(&row), bits(&want));
}

#[test]
fn q8_equals_f32_on_dequantized_weights_bitwise() {
    // Model shapes (k = 576, 1536), an lm_head-like tail (n = 100: three panels and 4 columns),
    // k with a short last block (40, 31, 577) and tiny ones.
    let shapes = [(100, 576), (64, 1536), (33, 40), (7, 31), (1, 1), (130, 577), (960, 64)];
    for (si, &(n, k)) in shapes.iter().enumerate() {
        let w = rand_vec(101 + si as u32, n * k);
        let b = rand_vec(111 + si as u32, n);
        let deq = q8_dequantized(&w, n, k);
        for bias in [None, Some(b.as_slice())] {
            let q8m = PackedMatrix::pack_q8_0(&w, n, k, bias);
            assert!(q8m.is_q8_0() && !q8m.is_bf16());
            let f32m = PackedMatrix::pack(&deq, n, k, bias);
            let mut row = vec![0.0; k];
            for r in 0..n {
                q8m.row(r, &mut row);
                assert_eq!(bits(&row), bits(&deq[r * k..(r + 1) * k]), "n={n} k={k} row {r}");
            }
            for m in [1, 2, 3, 12, 13, 40] {
                let x = rand_vec(121 + m as u32, m * k);
                let mut scalar = vec![0.0; m * n];
                q8m.matmul_with(Kernel::Scalar, &x, m, &mut scalar);
                for kernel in kernels() {
                    let (mut got, mut want) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
                    q8m.matmul_with(kernel, &x, m, &mut got);
                    f32m.matmul_with(kernel, &x, m, &mut want);
                    let what = format!("{kernel:?} n={n} k={k} m={m} bias={}", bias.is_some());
                    assert_eq!(bits(&got), bits(&want), "{what}: Q8_0 vs f32 on the dequantised W");
                    assert_eq!(bits(&got), bits(&scalar), "{what}: vs the scalar Q8_0 kernel");
                }
            }
        }
    }
}

#[test]
fn q8_bitwise_batch_invariant() {
    let (n, k, m) = (1000, 577, 300);
    let pm = PackedMatrix::pack_q8_0(&rand_vec(3, n * k), n, k, Some(&rand_vec(4, n)));
    let x = rand_vec(5, m * k);
    for kernel in kernels() {
        assert_batch_invariant(&format!("q8 {kernel:?}"), &x, m, n, k, |x, m| {
            let mut out = vec![0.0; m * n];
            pm.matmul_with(kernel, x, m, &mut out);
            bits(&out)
        });
    }
}

#[test]
fn q8_bytes_and_edges() {
    // Two panels × 40 k steps × 32 int8, two panels × 2 blocks × 32 f32 scales, 64 f32 of bias.
    let (n, k) = (33, 40);
    let pm = PackedMatrix::pack_q8_0(&rand_vec(1, n * k), n, k, Some(&rand_vec(2, n)));
    assert_eq!(pm.bytes(), 2 * 40 * 32 + 2 * 2 * 32 * 4 + 64 * 4);
    // A model-sized matrix holds under 30% of f32's bytes.
    let (n, k) = (576, 1536);
    let w = rand_vec(3, n * k);
    let (q, f) = (
        PackedMatrix::pack_q8_0(&w, n, k, None).bytes(),
        PackedMatrix::pack(&w, n, k, None).bytes(),
    );
    assert!(q * 10 < f * 3, "{q} vs f32 {f}");
    // k = 0: just the bias.
    let pm = PackedMatrix::pack_q8_0(&[], 3, 0, Some(&[1.0, -2.0, 3.5]));
    let mut out = vec![0.0; 6];
    for kernel in kernels() {
        pm.matmul_with(kernel, &[], 2, &mut out);
        assert_eq!(out, [1.0, -2.0, 3.5, 1.0, -2.0, 3.5]);
    }
}

/// Every stored bit of `pm`'s weights and bias, padding included.
fn raw_bits(pm: &PackedMatrix) -> Vec<u32> {
    let mut v = match &pm.data {
        Packed::F32(d) | Packed::F16(d) => bits(lines(d)),
        Packed::Bf16(b) => b.raw_bits(),
        Packed::Q8_0(q) => q.raw_bits(),
        Packed::Quant(_) | Packed::Int8(_) => {
            unreachable!("quantised weights are packed from GGUF rows only")
        }
    };
    v.extend(pm.bias.iter().flatten().map(|b| b.to_bits()));
    v
}

/// Pushes `w` to `packer` in uneven blocks of rows (1, 2, 3, … rows), as loading does from a
/// checkpoint's tensor.
fn push_in_blocks(mut packer: Packer, w: &[f32], k: usize) -> PackedMatrix {
    let (mut r, mut len) = (0, 1);
    while r * k < w.len() {
        let end = (r + len).min(w.len() / k);
        packer.push(&w[r * k..end * k]);
        (r, len) = (end, len + 1);
    }
    packer.finish()
}

#[test]
fn streamed_packing_equals_whole() {
    // n not a multiple of NR (a padded last panel; blocks cross panels), odd k (bf16's half
    // pair, Q8_0's short last block). Every weight type's bits, padding and bf16's per-panel
    // exponents included, are the same streamed as whole.
    let (n, k) = (75, 37);
    let w = rand_vec(5, n * k);
    let b = rand_vec(6, n);
    for bias in [None, Some(b.as_slice())] {
        let whole = PackedMatrix::pack(&w, n, k, bias);
        let streamed = push_in_blocks(PackedMatrix::packer(n, k, bias), &w, k);
        assert_eq!(raw_bits(&streamed), raw_bits(&whole), "f32");
        assert!(!streamed.is_bf16() && !streamed.is_q8_0());

        let whole = PackedMatrix::pack_q8_0(&w, n, k, bias);
        let streamed = push_in_blocks(PackedMatrix::packer_q8_0(n, k, bias), &w, k);
        assert_eq!(raw_bits(&streamed), raw_bits(&whole), "q8_0");
        assert!(streamed.is_q8_0());

        let whole = PackedMatrix::pack_bf16(&w, n, k, bias);
        let streamed = push_in_blocks(PackedMatrix::packer_bf16(n, k, bias), &w, k);
        assert_eq!(raw_bits(&streamed), raw_bits(&whole), "bf16");
        assert!(streamed.is_bf16());

        let whole = PackedMatrix::pack_f16(&w, n, k, bias);
        let streamed = push_in_blocks(PackedMatrix::packer_f16(n, k, bias), &w, k);
        assert_eq!(raw_bits(&streamed), raw_bits(&whole), "f16");
        assert!(streamed.is_f16() && !streamed.is_bf16());
    }
}

/// Rows pushed as stored bf16 or f16 bit patterns (a GGUF's, read straight from the file) pack
/// exactly as their f32 values pushed: every bit, bf16's per-panel exponents included, with
/// denormals (flushed), infinities and NaNs among them, odd k and a padded last panel.
#[test]
fn packing_stored_half_bits_equals_packing_their_values() {
    let (n, k) = (75, 37);
    let mut bits: Vec<u16> = rand_vec(7, n * k).iter().map(|&v| to_bf16(v)).collect();
    bits[..8].copy_from_slice(&[0x0001, 0x8040, 0x7f80, 0xff80, 0x7fc1, 0x0080, 0x8000, 0x3f80]);
    let widened: Vec<f32> = bits.iter().map(|&b| from_bf16(b)).collect();
    let mut packer = PackedMatrix::packer_bf16(n, k, None);
    packer.push_bits(&bits[..10 * k]);
    packer.push_bits(&bits[10 * k..]);
    let from_bits = packer.finish();
    let from_values = PackedMatrix::pack_bf16(&widened, n, k, None);
    assert_eq!(raw_bits(&from_bits), raw_bits(&from_values), "bf16");

    let halves: Vec<u16> =
        rand_vec(8, n * k).iter().map(|&v| half::f16::from_f32(v).to_bits()).collect();
    let mut halves = halves;
    halves[..6].copy_from_slice(&[0x0001, 0x8200, 0x7c00, 0xfc00, 0x3c00, 0x0000]);
    let widened: Vec<f32> = halves.iter().map(|&b| half::f16::from_bits(b).to_f32()).collect();
    let mut packer = PackedMatrix::packer_f16(n, k, None);
    packer.push_bits(&halves);
    assert_eq!(
        raw_bits(&packer.finish()),
        raw_bits(&PackedMatrix::pack_f16(&widened, n, k, None)),
        "f16"
    );
}

#[test]
#[should_panic(expected = "push_bits on a packer for neither")]
fn push_bits_refuses_f32_packers() {
    PackedMatrix::packer(3, 2, None).push_bits(&[0; 6]);
}

#[test]
#[should_panic(expected = "rows pushed")]
fn packer_refuses_missing_rows() {
    let mut p = PackedMatrix::packer(3, 2, None);
    p.push(&[1.0, 2.0, 3.0, 4.0]);
    p.finish();
}

/// Every GGUF quantised type: the product is bit for bit the f32 product on candle's
/// dequantisation of the same blocks, with every kernel family, and the families agree.
#[test]
fn quantised_types_equal_f32_on_dequantized_weights_bitwise() {
    use super::quant::tests::quantised;
    // Three panels and a 4-column tail; k of one 256 block and of several.
    for (i, t) in QuantType::ALL.into_iter().enumerate() {
        for (n, k) in [(100, 256), (33, 768)] {
            let (raw, deq) = quantised(t, n, k, 31 + i as u64);
            let b = rand_vec(7 + i as u32, n);
            for bias in [None, Some(b.as_slice())] {
                let qm = PackedMatrix::pack_quant(t, &raw, n, k, bias);
                assert_eq!(qm.quant_type(), Some(t));
                let f32m = PackedMatrix::pack(&deq, n, k, bias);
                for m in [1, 2, 3, 5, 12, 13, 40] {
                    let x = rand_vec(121 + m as u32, m * k);
                    let mut scalar = vec![0.0; m * n];
                    qm.matmul_with(Kernel::Scalar, &x, m, &mut scalar);
                    for kernel in kernels() {
                        let (mut got, mut want) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
                        qm.matmul_with(kernel, &x, m, &mut got);
                        f32m.matmul_with(kernel, &x, m, &mut want);
                        let what = format!(
                            "{} {kernel:?} n={n} k={k} m={m} bias={}",
                            t.name(),
                            bias.is_some()
                        );
                        assert_eq!(bits(&got), bits(&want), "{what}: vs f32 on the dequantised W");
                        assert_eq!(bits(&got), bits(&scalar), "{what}: vs the scalar kernel");
                    }
                }
            }
        }
    }
}

#[test]
fn quantised_types_are_bitwise_batch_invariant() {
    use super::quant::tests::quantised;
    let (n, k, m) = (70, 256, 300);
    for (i, t) in QuantType::ALL.into_iter().enumerate() {
        let (raw, _) = quantised(t, n, k, 5 + i as u64);
        let pm = PackedMatrix::pack_quant(t, &raw, n, k, Some(&rand_vec(4, n)));
        let x = rand_vec(5, m * k);
        for kernel in kernels() {
            assert_batch_invariant(&format!("{} {kernel:?}", t.name()), &x, m, n, k, |x, m| {
                let mut out = vec![0.0; m * n];
                pm.matmul_with(kernel, x, m, &mut out);
                bits(&out)
            });
        }
    }
}

/// GGUF Q8_0 blocks are held as they are: the same bits as candle's dequantisation.
#[test]
fn gguf_q8_0_rows_are_kept_as_stored() {
    use candle_core::quantized::{GgmlDType, QTensor};
    let (n, k) = (70, 320);
    let w = candle_core::Tensor::from_vec(rand_vec(9, n * k), (n, k), &candle_core::Device::Cpu)
        .unwrap();
    let qt = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
    let deq = qt
        .dequantize(&candle_core::Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mut p = PackedMatrix::packer_gguf(GgufType::Q8_0, n, k, None);
    p.push_gguf(&qt.data().unwrap()[..40 * GgufType::Q8_0.row_bytes(k)]);
    p.push_gguf(&qt.data().unwrap()[40 * GgufType::Q8_0.row_bytes(k)..]);
    let m = p.finish();
    assert!(m.is_q8_0());
    let mut row = vec![0.0; k];
    for r in 0..n {
        m.row(r, &mut row);
        assert_eq!(bits(&row), bits(&deq[r * k..(r + 1) * k]), "row {r}");
    }
}

#[test]
fn a_block_packs_k_major_as_the_kernels_read_it() {
    for (rows, k) in [(1, 5), (3, 17), (12, 64), (7, 1)] {
        let src = rand_vec(rows as u32 * 31 + k as u32, rows * k);
        // [k][rows]: element (row i, column kk) at kk * rows + i.
        let mut by_rows = vec![f32::NAN; rows * k];
        for i in 0..rows {
            for kk in 0..k {
                by_rows[kk * rows + i] = src[i * k + kk];
            }
        }
        let mut whole = vec![f32::NAN; rows * k];
        pack_f32_block(&src, k, &mut whole, rows);
        assert_eq!(by_rows, whole, "{rows} rows of {k}");
    }
}

/// Packed storage starts as zeros whether one thread writes it or all do (small and large
/// matrices), at exactly the length asked for.
#[test]
fn zeroed_lines_are_zeros_either_way() {
    for n in [0, 1, PARALLEL_ZERO_LINES - 1, PARALLEL_ZERO_LINES + 3] {
        let v = Line::zeroed(n);
        assert_eq!(v.len(), n);
        assert!(v.iter().all(|l| l.0.iter().all(|x| x.to_bits() == 0)), "{n} lines");
    }
}

/// Decode's later passes over a panel ask for every cache line of the next panel exactly once,
/// in order, each pass only its own share and within its own steps, and the first pass none:
/// a line missed would be waited on by the next panel's first pass, one asked twice costs a
/// load slot for nothing.
#[cfg(target_arch = "x86_64")]
#[test]
fn later_passes_ask_for_the_next_panel_once() {
    let base = 0x10_0000usize;
    for (bytes, steps, passes) in [(1024 * 128, 1024, 4), (288 * 128, 288, 2), (64 * 1024, 64, 4)] {
        for passes in [1, 2, passes, 5] {
            let mut asked = Vec::new();
            for pass in 0..passes {
                let mut pf = NextPanel::for_pass(base as *const u8, bytes, steps, pass, passes);
                let mut per_step = Vec::new();
                for _ in 0..steps {
                    let before = asked.len();
                    pf.step_with(|line| asked.push(line as usize));
                    per_step.push(asked.len() - before);
                }
                let share = per_step.iter().sum::<usize>();
                if pass == 0 {
                    assert_eq!(share, 0, "pass 0 of {passes}");
                } else {
                    let even = bytes / 64 / (passes - 1);
                    assert!(share.abs_diff(even) <= 1, "pass {pass}: {share} lines, {even} due");
                    // Spread: no step asks for more than its fair share rounded up.
                    let most = share.div_ceil(steps);
                    assert!(per_step.iter().all(|&n| n <= most), "pass {pass} bunches");
                }
            }
            let want: Vec<usize> =
                if passes == 1 { vec![] } else { (0..bytes / 64).map(|l| base + 64 * l).collect() };
            assert_eq!(asked, want, "{bytes} bytes, {steps} steps, {passes} passes");
        }
    }
}
