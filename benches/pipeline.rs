//! Speed of the pipeline's stages on the embedded default:
//!
//!     cargo bench --bench pipeline
//!
//! `generate/*`: the embedded model on the embedded environment's 100 prompts, by batch size
//! (items per second). `score/100k`: the built-in scorer on 100,000 GSM8K-style responses.

use std::hint::black_box;

use benchgen::engine::{GenParams, GenRequest, Generator, LocalEngine, Truncate};
use benchgen::env::Environment;
use benchgen::model::LoadedModel;
use benchgen::prompt::PromptBuilder;
use benchgen::score::{Metric, Normalizer, ScoringConfig};
use candle_core::{DType, Device};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn generate(c: &mut Criterion) {
    let env = Environment::embedded().unwrap();
    let phase = env.phase(None).unwrap().clone();
    let items = env.load_items(&phase).unwrap();
    let builder = PromptBuilder::new(&env.manifest.prompt, &env.origin).unwrap();
    let prompts: Vec<String> =
        items.iter().enumerate().map(|(n, i)| builder.render(n, i, None).unwrap().text).collect();
    let params = GenParams {
        max_new_tokens: env.manifest.generation.max_new_tokens,
        stop: env.manifest.generation.stop.clone(),
        temperature: 0.0,
        top_k: None,
        top_p: None,
    };
    let mut group = c.benchmark_group("generate");
    group.throughput(Throughput::Elements(prompts.len() as u64));
    group.sample_size(10);
    for batch in [1usize, 8, 32] {
        let model = LoadedModel::load(
            &benchgen::model::embedded::model_checkpoint(),
            &Device::Cpu,
            DType::F32,
        )
        .unwrap();
        let mut engine = LocalEngine::new(model, batch);
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, _| {
            b.iter(|| {
                let requests = prompts
                    .iter()
                    .enumerate()
                    .map(|(index, p)| GenRequest {
                        index,
                        id: index.to_string(),
                        prompt: p.clone(),
                        add_special_tokens: true,
                        params: params.clone(),
                        seed: 0,
                        truncate: Truncate::Error,
                        messages: None,
                    })
                    .collect();
                let mut n = 0;
                engine
                    .generate(requests, &mut |o| {
                        n += o.token_ids.len();
                        Ok(())
                    })
                    .unwrap();
                black_box(n)
            })
        });
    }
    group.finish();
}

fn score(c: &mut Criterion) {
    let cfg = ScoringConfig {
        metric: Metric::Numeric,
        extract: vec![r"#### (\-?[0-9\.\,]+)".into(), "last_number".into()],
        target_extract: vec![r"#### (\-?[0-9\.\,]+)".into()],
        normalize: vec![Normalizer::Strip, Normalizer::RemoveCommas, Normalizer::RemoveDollar],
        ..ScoringConfig::default()
    };
    let scorer = cfg.compile().unwrap();
    let data: Vec<(String, String)> = (0..100_000)
        .map(|i| {
            (
                format!("Natalia sold {i} clips in April and half as many in May. In total she sold {} clips.\n#### {}", i + i / 2, i + i / 2),
                format!("She sold {i} + {} = {} clips.\n#### {}", i / 2, i + i / 2, if i % 3 == 0 { i } else { i + i / 2 }),
            )
        })
        .collect();
    let pairs: Vec<(&str, Vec<&str>)> =
        data.iter().map(|(p, t)| (p.as_str(), vec![t.as_str()])).collect();
    let mut group = c.benchmark_group("score");
    group.throughput(Throughput::Elements(pairs.len() as u64));
    group.sample_size(10);
    group.bench_function("100k", |b| b.iter(|| black_box(scorer.score_all(&pairs))));
    group.finish();
}

criterion_group!(benches, generate, score);
criterion_main!(benches);
