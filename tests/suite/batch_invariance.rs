//! Issue 4: an item's result must not depend on the batch size or on what shares its batch.
//! A random-weight model (whose greedy choices flip at the slightest numeric difference) runs
//! prompts of mixed lengths, some stopping early on stop strings, some sharing a long prefix,
//! with continuous batching at batch sizes 1, 3, 8 and 32, where 32 also splits prompts across
//! steps; generations and log-likelihoods must be identical, the latter bit for bit.

use crate::common;
use std::collections::BTreeMap;

use benchgen::device::WeightType;
use benchgen::engine::{
    FinishReason, GenParams, GenRequest, Generator, LocalEngine, LoglikOutput, LoglikRequest,
    Truncate,
};
use benchgen::model::{Checkpoint, KvDtype, LoadedModel};
use candle_core::DType;

const BATCHES: [usize; 4] = [1, 3, 8, 32];

fn engine_with(batch: usize, weights: WeightType, kv: KvDtype) -> LocalEngine {
    let ckpt =
        Checkpoint::from_dir(&common::repo().join("fixtures/models/llama-gqa-untied")).unwrap();
    let mut model = LoadedModel::load(&ckpt, &common::test_device(), weights).unwrap();
    model.decoder.set_kv_dtype(kv).unwrap();
    LocalEngine::new(model, batch)
}

/// Deterministic words of varying length.
fn words(seed: usize, n: usize) -> String {
    const W: [&str; 12] = [
        "alpha", "be", "sea", "delta", "echo", "fox", "golf", "hotel", "in", "juliet", "kilo",
        "lima",
    ];
    (0..n).map(|i| W[(seed * 7 + i * 5 + i * i) % W.len()]).collect::<Vec<_>>().join(" ")
}

fn request(index: usize, prompt: String) -> GenRequest {
    // Half the items stop on two-token strings this model often writes, so they finish early
    // at different steps (others end on EOS or at their token limit).
    let stop = if index.is_multiple_of(2) {
        ["@O", "4V", "GM"].map(String::from).to_vec()
    } else {
        Vec::new()
    };
    GenRequest {
        index,
        id: format!("item-{index}"),
        prompt,
        add_special_tokens: true,
        params: GenParams {
            max_new_tokens: 8 + (index * 13) % 40,
            stop,
            temperature: 0.0,
            top_k: None,
            top_p: None,
        },
        seed: 0,
        truncate: Truncate::Error,
        messages: None,
    }
}

type Generated = BTreeMap<usize, (Vec<u32>, String, FinishReason)>;

fn generate_with(batch: usize, requests: &[GenRequest], kv: KvDtype) -> Generated {
    let mut out = Generated::new();
    engine_with(batch, DType::F32.into(), kv)
        .generate(requests.to_vec(), &mut |o| {
            out.insert(o.index, (o.token_ids, o.text, o.finish_reason));
            Ok(())
        })
        .unwrap();
    assert_eq!(out.len(), requests.len());
    out
}

fn check_generation(name: &str, requests: Vec<GenRequest>) {
    check_generation_with(name, requests, KvDtype::F32);
}

fn check_generation_with(name: &str, requests: Vec<GenRequest>, kv: KvDtype) {
    let runs: Vec<Generated> = BATCHES.iter().map(|&b| generate_with(b, &requests, kv)).collect();
    for (b, run) in BATCHES.iter().zip(&runs).skip(1) {
        for (i, want) in &runs[0] {
            assert_eq!(
                &run[i], want,
                "{name}: item {i} at batch size {b} differs from batch size 1"
            );
        }
    }
    let stopped = runs[0].values().filter(|g| g.2 == FinishReason::Stop).count();
    let full = runs[0].values().filter(|g| g.2 == FinishReason::Length).count();
    assert!(
        stopped >= 3 && full >= 3,
        "{name}: the test needs early stops and full lengths ({stopped} stopped, {full} full)"
    );
}

#[test]
fn generations_do_not_depend_on_the_batch() {
    // Prompts of 20 to 150 tokens: at batch 32 one step would exceed the per-step token budget,
    // so prompts are also fed in pieces.
    let requests = (0..40).map(|i| request(i, words(i, 4 + (i * 11) % 26))).collect();
    check_generation("mixed prompts", requests);
}

#[test]
fn generations_sharing_a_prefix_do_not_depend_on_the_batch() {
    // Few-shot style: every prompt starts with the same long preamble, computed once and shared.
    let preamble = format!("{}\n\n", words(99, 20));
    let requests =
        (0..40).map(|i| request(i, format!("{preamble}{}", words(i, 1 + i % 7)))).collect();
    check_generation("shared prefix", requests);
}

#[test]
fn narrow_kv_caches_keep_generations_independent_of_the_batch() {
    // The host path only: the candle decoder (GPUs) keeps its cache in the model's dtype.
    if !common::test_device().is_cpu() {
        eprintln!("SKIPPED: bf16 and int8 KV caches are a CPU host-path feature");
        return;
    }
    let preamble = format!("{}\n\n", words(99, 20));
    let requests: Vec<GenRequest> =
        (0..40).map(|i| request(i, format!("{preamble}{}", words(i, 1 + i % 7)))).collect();
    check_generation_with("shared prefix, bf16 KV", requests.clone(), KvDtype::Bf16);
    check_generation_with("shared prefix, int8 KV", requests, KvDtype::Int8);
    // The setting reaches the cache: logits move, by about the rounding of the keys and values.
    use benchgen::model::Segment;
    use candle_core::Tensor;
    let ckpt =
        Checkpoint::from_dir(&common::repo().join("fixtures/models/llama-gqa-untied")).unwrap();
    let last_logits = |kv: KvDtype| -> Vec<f32> {
        let mut lm = LoadedModel::load(&ckpt, &common::test_device(), DType::F32).unwrap();
        lm.decoder.set_kv_dtype(kv).unwrap();
        let m = &lm.decoder;
        let prompt = lm.tokenizer.encode(&words(3, 30), true).unwrap();
        let mut cache = m.new_cache(prompt.len());
        let tokens = Tensor::new(prompt.as_slice(), m.device()).unwrap();
        let hidden = m
            .forward(&tokens, &[Segment { len: prompt.len(), offset: 0 }], Some(&mut [&mut cache]))
            .unwrap();
        m.logits(&hidden).unwrap().to_vec2::<f32>().unwrap().pop().unwrap()
    };
    let exact = last_logits(KvDtype::F32);
    let scale = exact.iter().map(|a| a.abs()).fold(0f32, f32::max);
    for (kv, bound) in [(KvDtype::Bf16, 0.02), (KvDtype::Int8, 0.02)] {
        let narrow = last_logits(kv);
        let diff = exact.iter().zip(&narrow).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!("{kv:?}: largest logit difference {diff}, largest logit {scale}");
        assert!(
            diff > 0.0 && diff < bound * scale,
            "{kv:?}: largest logit difference {diff}, largest logit {scale}"
        );
    }
}

/// `--kv-budget`: a sequence waits until its whole cache fits, so the caches' peak stays under
/// the budget, and every output is the one an unbounded run gives. A budget smaller than one
/// sequence's cache runs the sequences one at a time.
#[test]
fn a_kv_budget_bounds_the_caches_and_changes_no_output() {
    let preamble = format!("{}\n\n", words(98, 12));
    let requests: Vec<GenRequest> =
        (0..24).map(|i| request(i, format!("{preamble}{}", words(i, 2 + (i * 11) % 30)))).collect();
    let run = |batch: usize, budget: Option<u64>| {
        let mut engine = engine_with(batch, DType::F32.into(), KvDtype::F32).with_kv_budget(budget);
        let mut out = Generated::new();
        engine
            .generate(requests.clone(), &mut |o| {
                out.insert(o.index, (o.token_ids, o.text, o.finish_reason));
                Ok(())
            })
            .unwrap();
        assert_eq!(out.len(), requests.len());
        (out, engine.kv_cache_peak_bytes().unwrap() as u64)
    };
    let (free, free_peak) = run(8, None);
    let (_, one_at_a_time) = run(1, None);
    for budget in [free_peak / 2, free_peak / 3, 1] {
        let (bounded, peak) = run(8, Some(budget));
        for (i, want) in &free {
            assert_eq!(&bounded[i], want, "item {i} with a KV budget of {budget} bytes");
        }
        if budget == 1 {
            assert_eq!(peak, one_at_a_time, "a budget below every cache runs them one at a time");
        } else {
            assert!(
                peak <= budget && peak > one_at_a_time,
                "KV peak {peak} bytes with a budget of {budget} (unbounded: {free_peak}, alone: {one_at_a_time})"
            );
        }
    }
}

#[test]
fn loglikelihoods_do_not_depend_on_the_batch_bit_for_bit() {
    check_loglikelihoods(DType::F32.into());
}

/// The same with `--dtype q8_0` (8-bit weights on the host kernels, CPU only).
#[test]
fn q8_0_loglikelihoods_do_not_depend_on_the_batch_bit_for_bit() {
    if !common::test_device().is_cpu() {
        eprintln!("SKIPPED: q8_0 runs on the CPU only");
        return;
    }
    check_loglikelihoods(WeightType::Q8_0);
}

fn check_loglikelihoods(weights: WeightType) {
    let requests: Vec<LoglikRequest> = (0..40)
        .map(|i| LoglikRequest {
            index: i,
            context: words(i, 2 + (i * 7) % 25),
            continuation: format!(" {}", words(i + 3, 1 + i % 6)),
            ..Default::default()
        })
        .collect();
    let run = |batch: usize| {
        let mut out = BTreeMap::new();
        engine_with(batch, weights, KvDtype::F32)
            .loglikelihood(requests.clone(), &mut |o: LoglikOutput| {
                out.insert(o.index, o);
                Ok(())
            })
            .unwrap();
        out
    };
    let one = run(1);
    assert_eq!(one.len(), requests.len());
    for b in &BATCHES[1..] {
        let other = run(*b);
        for (i, want) in &one {
            let got = &other[i];
            assert_eq!(
                got.logprob.to_bits(),
                want.logprob.to_bits(),
                "item {i}: logprob {} at batch {b}, {} at batch 1",
                got.logprob,
                want.logprob
            );
            assert_eq!(got, want, "item {i} at batch {b}");
        }
    }
}

/// Options of one question continue its context's cache, read in place; each option scored on
/// its own (the context fed afresh) gets the same bits, with f32, bf16 and int8 caches.
#[test]
fn options_sharing_a_context_score_as_they_would_alone_bit_for_bit() {
    for kv in [KvDtype::F32, KvDtype::Bf16, KvDtype::Int8] {
        let requests: Vec<LoglikRequest> = (0..12)
            .map(|i| LoglikRequest {
                index: i,
                context: words(i / 4, 20 + 9 * (i / 4)),
                continuation: format!(" {}", words(i + 7, 1 + i % 4)),
                ..Default::default()
            })
            .collect();
        let mut shared = BTreeMap::new();
        engine_with(8, DType::F32.into(), kv)
            .loglikelihood(requests.clone(), &mut |o: LoglikOutput| {
                shared.insert(o.index, o);
                Ok(())
            })
            .unwrap();
        assert_eq!(shared.len(), requests.len());
        let mut alone = engine_with(8, DType::F32.into(), kv);
        for r in &requests {
            let mut got = None;
            alone
                .loglikelihood(vec![r.clone()], &mut |o: LoglikOutput| {
                    got = Some(o);
                    Ok(())
                })
                .unwrap();
            let got = got.unwrap();
            let want = &shared[&r.index];
            assert!(
                got.continuation_tokens > 1 || r.index % 4 == 0,
                "item {}: options of several tokens",
                r.index
            );
            assert_eq!(
                got.logprob.to_bits(),
                want.logprob.to_bits(),
                "item {} ({kv:?}): {} alone, {} shared",
                r.index,
                got.logprob,
                want.logprob
            );
            assert_eq!(&got, want);
        }
    }
}

/// The numbers under the engine's scheduling: a prompt's last logits are the same bits whether
/// it is fed whole, in pieces, after a shared prefix's cache, or beside other sequences.
#[test]
fn chunked_shared_and_batched_prefill_give_the_same_bits() {
    use benchgen::model::{Segment, SeqCache};
    use candle_core::Tensor;
    let ckpt =
        Checkpoint::from_dir(&common::repo().join("fixtures/models/llama-gqa-untied")).unwrap();
    let lm = LoadedModel::load(&ckpt, &common::test_device(), DType::F32).unwrap();
    let m = &lm.decoder;
    let prompt = lm.tokenizer.encode(&words(5, 30), true).unwrap();
    let short = lm.tokenizer.encode(&words(8, 12), true).unwrap();
    // Long enough that a pass beside it is over 256 tokens, which the MLP takes in row chunks.
    let long = lm.tokenizer.encode(&words(9, 38), true).unwrap();
    assert!(prompt.len() > 60 && long.len() > 200 && long.len() < 256, "{}", long.len());
    let run =
        |chunks: &[(usize, usize)], prefix: Option<usize>, beside: Option<&Vec<u32>>| -> Vec<f32> {
            let other = beside.map_or(&short, |o| o);
            let mut cache = match prefix {
                Some(p) => {
                    let mut c = m.new_cache(p);
                    let tokens = Tensor::new(&prompt[..p], m.device()).unwrap();
                    m.forward(&tokens, &[Segment { len: p, offset: 0 }], Some(&mut [&mut c]))
                        .unwrap();
                    c.into_shared().continuation(prompt.len()).unwrap()
                }
                None => m.new_cache(prompt.len()),
            };
            let mut side = m.new_cache(other.len());
            let mut hidden = None;
            for &(a, b) in chunks {
                let mut segs = vec![Segment { len: b - a, offset: cache.len() }];
                let mut flat = prompt[a..b].to_vec();
                let mut caches: Vec<&mut SeqCache> = vec![&mut cache];
                if beside.is_some() && side.is_empty() {
                    segs.insert(0, Segment { len: other.len(), offset: 0 });
                    flat.splice(0..0, other.iter().copied());
                    caches.insert(0, &mut side);
                }
                let tokens = Tensor::new(flat.as_slice(), m.device()).unwrap();
                let h = m.forward(&tokens, &segs, Some(&mut caches)).unwrap();
                hidden = Some(h.narrow(0, flat.len() - 1, 1).unwrap());
            }
            m.logits(&hidden.unwrap()).unwrap().to_vec2::<f32>().unwrap().remove(0)
        };
    let n = prompt.len();
    let whole = run(&[(0, n)], None, None);
    let cases = [
        ("in pieces", run(&[(0, 7), (7, 30), (30, n)], None, None)),
        ("after a shared prefix", run(&[(25, n)], Some(25), None)),
        ("shared prefix, then pieces", run(&[(25, 40), (40, n)], Some(25), None)),
        ("beside another sequence", run(&[(0, n)], None, Some(&short))),
        ("in pieces beside another", run(&[(0, 9), (9, n)], None, Some(&short))),
        ("beside a long sequence, across the MLP's row chunks", run(&[(0, n)], None, Some(&long))),
    ];
    let bitwise = m.host_format().is_some();
    for (name, got) in cases {
        if bitwise {
            assert_eq!(got, whole, "{name}: logits differ from the whole prompt's");
        }
        let d = got.iter().zip(&whole).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(d < 1e-5, "{name}: logits differ by {d}");
    }
}
