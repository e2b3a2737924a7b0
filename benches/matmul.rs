//! `PackedMatrix::matmul` with f32 weights (`packed`), bf16 weights (`bf16`: `vdpbf16ps` where
//! the CPU has AVX-512 BF16, its emulation elsewhere), f16 weights (`f16`) and Q8_0 weights
//! (`q8_0`) against candle's f32 `x.matmul(&w.t())` on the
//! SmolLM2-135M linear shapes (CPU), throughput in FLOP (2·m·n·k per product):
//!
//!     RAYON_NUM_THREADS=2 cargo bench --bench matmul
//!
//! m = 1 is a batch-1 decode step, 8 and 32 batched decode, 2048 a prefill. `matmul/*_1b`:
//! GGUF quantised types as stored on Llama-3.2-1B's MLP shapes.

use std::hint::black_box;
use std::time::Duration;

use benchgen::kernels::PackedMatrix;
use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn data(seed: u64, len: usize) -> Vec<f32> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    // BENCHGEN_ISA=avxvnni|avx2|scalar measures another kernel family on this CPU.
    let vars = benchgen::vars::ProcessVars::from_process();
    benchgen::kernels::isa::select_named(vars.get_str(benchgen::kernels::isa::ENV_VAR))
        .expect("BENCHGEN_ISA");
    let shapes = [
        ("qkv", 960, 576),
        ("o_proj", 576, 576),
        ("gate_up", 3072, 576),
        ("down", 576, 1536),
        ("lm_head", 49152, 576),
    ];
    for (name, n, k) in shapes {
        let w = data(n as u64 * 31 + k as u64, n * k);
        let packed = PackedMatrix::pack(&w, n, k, None);
        let bf16 = PackedMatrix::pack_bf16(&w, n, k, None);
        let f16 = PackedMatrix::pack_f16(&w, n, k, None);
        let q8 = PackedMatrix::pack_q8_0(&w, n, k, None);
        let wt = Tensor::from_slice(&w, (n, k), &Device::Cpu).unwrap();
        let mut g = c.benchmark_group(format!("matmul/{name}_{n}x{k}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_millis(1500));
        let ms: &[usize] = if name == "lm_head" { &[1, 8, 32] } else { &[1, 8, 32, 2048] };
        for &m in ms {
            let x = data(m as u64 + 7, m * k);
            let xt = Tensor::from_slice(&x, (m, k), &Device::Cpu).unwrap();
            let mut out = vec![0.0f32; m * n];
            g.throughput(Throughput::Elements((2 * m * n * k) as u64));
            g.bench_with_input(BenchmarkId::new("packed", m), &m, |b, &m| {
                b.iter(|| packed.matmul(black_box(&x), m, black_box(&mut out)))
            });
            g.bench_with_input(BenchmarkId::new("bf16", m), &m, |b, &m| {
                b.iter(|| bf16.matmul(black_box(&x), m, black_box(&mut out)))
            });
            g.bench_with_input(BenchmarkId::new("f16", m), &m, |b, &m| {
                b.iter(|| f16.matmul(black_box(&x), m, black_box(&mut out)))
            });
            g.bench_with_input(BenchmarkId::new("q8_0", m), &m, |b, &m| {
                b.iter(|| q8.matmul(black_box(&x), m, black_box(&mut out)))
            });
            g.bench_with_input(BenchmarkId::new("candle", m), &m, |b, _| {
                b.iter(|| black_box(xt.matmul(&wt.t().unwrap()).unwrap()))
            });
        }
        g.finish();
    }
}

/// GGUF types held as stored, on f32 activations (`TYPE`, bit for bit f32 on the dequantised
/// weights) and on int8-rounded ones (`TYPE-int8`, what `--dtype auto` runs), against f32 (`f32`)
/// on Llama-3.2-1B's MLP shapes: decode at m = 1, 8, 32 and a 512-row prefill chunk.
fn bench_gguf(c: &mut Criterion) {
    use benchgen::kernels::{GgufType, QuantType};
    use candle_core::quantized::{GgmlDType, QTensor};
    let types = [
        (GgufType::Quant(QuantType::Q4_K), GgmlDType::Q4K),
        (GgufType::Quant(QuantType::Q6_K), GgmlDType::Q6K),
        (GgufType::Quant(QuantType::Q5_K), GgmlDType::Q5K),
        (GgufType::Quant(QuantType::Q4_0), GgmlDType::Q4_0),
        (GgufType::Quant(QuantType::Q5_0), GgmlDType::Q5_0),
        (GgufType::Quant(QuantType::Q3_K), GgmlDType::Q3K),
        (GgufType::Quant(QuantType::Q2_K), GgmlDType::Q2K),
        (GgufType::Q8_0, GgmlDType::Q8_0),
    ];
    for (name, n, k) in [("gate_up_1b", 16384, 2048), ("down_1b", 2048, 8192)] {
        let w = data(n as u64 * 17 + k as u64, n * k);
        let f32m = PackedMatrix::pack(&w, n, k, None);
        let wt = Tensor::from_slice(&w, (n, k), &Device::Cpu).unwrap();
        let quant: Vec<_> = types
            .iter()
            .flat_map(|&(t, g)| {
                let raw = QTensor::quantize(&wt, g).unwrap().data().unwrap().to_vec();
                let mut exact = PackedMatrix::packer_gguf(t, n, k, None);
                exact.push_gguf(&raw);
                let mut int8 = PackedMatrix::packer_gguf_int8(t, n, k, None);
                int8.push_gguf(&raw);
                [
                    (t.name().to_string(), exact.finish()),
                    (format!("{}-int8", t.name()), int8.finish()),
                ]
            })
            .collect();
        let mut g = c.benchmark_group(format!("matmul/{name}_{n}x{k}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_millis(2000));
        for m in [1, 8, 32, 512] {
            let x = data(m as u64 + 7, m * k);
            let mut out = vec![0.0f32; m * n];
            g.throughput(Throughput::Elements((2 * m * n * k) as u64));
            g.bench_with_input(BenchmarkId::new("f32", m), &m, |b, &m| {
                b.iter(|| f32m.matmul(black_box(&x), m, black_box(&mut out)))
            });
            for (t, q) in &quant {
                g.bench_with_input(BenchmarkId::new(t.as_str(), m), &m, |b, &m| {
                    b.iter(|| q.matmul(black_box(&x), m, black_box(&mut out)))
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench, bench_gguf);
criterion_main!(benches);
