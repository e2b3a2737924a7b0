//! Decoder speed on a random model with the SmolLM2-135M shape (f32, nothing downloaded):
//!
//!     RAYON_NUM_THREADS=2 cargo bench --bench decode
//!
//! `decode/B`: one decode step for B sequences that already hold 64 tokens (throughput in
//! tokens = B per step). `prefill/32x64`: 32 prompts of 64 tokens in one packed pass.
//! `prefill/1x1024`: one 1024-token prompt in two steps of 512, as the engine feeds it (causal
//! attention over the long context is a fifth of it).
//! `decode_fewshot/{f32,bf16}-kv`: one decode step for 32 sequences of GSM8K 5-shot's shape, a
//! 704-token prefix they share plus 64 tokens each, with f32 or bf16 KV caches; attention over
//! the long context is most of such a step.
//! `decode_long/{f32,bf16,int8}-kv`: one decode step for 32 sequences that each hold their own
//! 1,000-token prompt (lm-eval's GSM8K prompts share no prefix), so a step streams 32 whole
//! caches from memory (0.74 GB in bf16, 0.39 GB in int8); attention is about half of it.
//! `examples/speed.rs` prints the same numbers as the project's comparison table.

use std::hint::black_box;

use benchgen::model::random::{random_decoder, smollm2_135m_config};
use benchgen::model::{Decoder, KvDtype, Segment, SeqCache};
use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn prompts(batch: usize, len: usize) -> Vec<Vec<u32>> {
    (0..batch)
        .map(|b| (0..len).map(|i| ((b * 7919 + i * 104729) % 49152) as u32).collect())
        .collect()
}

fn forward(m: &Decoder, caches: &mut [SeqCache], pending: &[Vec<u32>]) -> Tensor {
    let segs: Vec<Segment> = pending
        .iter()
        .zip(caches.iter())
        .map(|(p, c)| Segment { len: p.len(), offset: c.len() })
        .collect();
    let flat: Vec<u32> = pending.iter().flatten().copied().collect();
    let tokens = Tensor::new(flat.as_slice(), &Device::Cpu).unwrap();
    let mut refs: Vec<&mut SeqCache> = caches.iter_mut().collect();
    m.forward(&tokens, &segs, Some(&mut refs)).unwrap()
}

/// One decode step of every sequence in `caches` (each grows by a token per iteration).
fn step(
    group: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>,
    name: &str,
    m: &Decoder,
    caches: &mut [SeqCache],
) {
    group.bench_function(name, |b| {
        b.iter(|| {
            let next: Vec<Vec<u32>> = (0..caches.len()).map(|i| vec![i as u32]).collect();
            let h = forward(m, caches, &next);
            black_box(m.logits(&h).unwrap())
        })
    });
}

fn bench(c: &mut Criterion) {
    // BENCHGEN_ISA=avxvnni|avx2|scalar measures another kernel family on this CPU.
    let vars = benchgen::vars::ProcessVars::from_process();
    benchgen::kernels::isa::select_named(vars.get_str(benchgen::kernels::isa::ENV_VAR))
        .expect("BENCHGEN_ISA");
    let m = random_decoder(&smollm2_135m_config(), DType::F32, &Device::Cpu, 1).unwrap();
    let mut group = c.benchmark_group("decode");
    group.sample_size(10);
    for batch in [1usize, 8, 32] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            let p = prompts(batch, 64);
            b.iter_batched_ref(
                || {
                    // Fresh caches holding the 64-token prompts: each iteration is one step at
                    // the same context length.
                    let mut caches: Vec<SeqCache> =
                        p.iter().map(|q| m.new_cache(q.len() + 1)).collect();
                    forward(&m, &mut caches, &p);
                    caches
                },
                |caches| {
                    let next: Vec<Vec<u32>> = (0..batch).map(|i| vec![i as u32]).collect();
                    let h = forward(&m, caches, &next);
                    black_box(m.logits(&h).unwrap())
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
    let mut group = c.benchmark_group("prefill");
    group.sample_size(10);
    group.throughput(Throughput::Elements(32 * 64));
    group.bench_function("32x64", |b| {
        let p = prompts(32, 64);
        b.iter(|| {
            let mut caches: Vec<SeqCache> = p.iter().map(|q| m.new_cache(q.len())).collect();
            black_box(forward(&m, &mut caches, &p))
        })
    });
    group.throughput(Throughput::Elements(1024));
    group.bench_function("1x1024", |b| {
        let p = &prompts(1, 1024)[0];
        b.iter(|| {
            let mut cache = vec![m.new_cache(p.len())];
            for chunk in p.chunks(512) {
                black_box(forward(&m, &mut cache, &[chunk.to_vec()]));
            }
        })
    });
    group.finish();
    let mut group = c.benchmark_group("decode_fewshot");
    group.sample_size(10);
    group.throughput(Throughput::Elements(32));
    let mut m = m;
    for kv in [KvDtype::F32, KvDtype::Bf16] {
        m.set_kv_dtype(kv).unwrap();
        let prefix = &prompts(1, 704)[0];
        let mut shared = m.new_cache(prefix.len());
        forward(&m, std::slice::from_mut(&mut shared), std::slice::from_ref(prefix));
        let shared = shared.into_shared();
        let own = prompts(32, 64);
        // Room for the prompt and every step criterion takes: the context grows by one token per
        // iteration (768 → about 800), which changes a step's work by a few percent at most.
        let mut caches: Vec<SeqCache> =
            own.iter().map(|_| shared.continuation(704 + 64 + 256).unwrap()).collect();
        forward(&m, &mut caches, &own);
        step(&mut group, &format!("{}-kv", kv.name()), &m, &mut caches);
    }
    group.finish();
    let mut group = c.benchmark_group("decode_long");
    group.sample_size(10);
    group.throughput(Throughput::Elements(32));
    for kv in [KvDtype::F32, KvDtype::Bf16, KvDtype::Int8] {
        m.set_kv_dtype(kv).unwrap();
        let own = prompts(32, 1000);
        // Room for every step criterion takes (the context grows by one token per iteration,
        // 1,000 to about 1,110); the prompts prefill four at a time.
        let mut caches: Vec<SeqCache> = own.iter().map(|p| m.new_cache(p.len() + 256)).collect();
        for (c, p) in caches.chunks_mut(4).zip(own.chunks(4)) {
            forward(&m, c, p);
        }
        step(&mut group, &format!("{}-kv", kv.name()), &m, &mut caches);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
