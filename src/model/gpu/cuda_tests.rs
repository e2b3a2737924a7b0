//! The CUDA step on a GPU against its CPU reference ([`ReferenceStep`]): the same bits. They
//! run where `BENCHGEN_TEST_DEVICE` names a CUDA device (`cuda`, `cuda:N`), as
//! `tools/gpu_check.sh` sets it on a GPU machine (`run tests`) and without one (`emulate`:
//! the CPU driver of `tools/cuda_emulator`), and say that they were skipped otherwise.

use std::collections::HashMap;

use candle_core::{DType, Tensor};

use super::cuda::CudaStep;
use super::reference::{RowAt, SampleParams};
use super::step::{DeviceRow, Feed, Launches, PackedStep, ReferenceStep};
use crate::model::random::initial_weights;
use crate::model::ModelConfig;
use crate::rng::SplitMix64;

fn ordinal() -> Option<usize> {
    let got = super::test_cuda_ordinal();
    if got.is_none() {
        eprintln!("skipped: the CUDA step's tests need BENCHGEN_TEST_DEVICE=cuda[:N] and a GPU");
    }
    got
}

fn config() -> ModelConfig {
    serde_json::from_value(serde_json::json!({
        "model_type": "llama", "hidden_size": 128, "intermediate_size": 200,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": 1000, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": 256, "tie_word_embeddings": false, "hidden_act": "silu"
    }))
    .unwrap()
}

/// Seeded weights (matrices scaled up so logits spread), in `dtype`.
fn weights(cfg: &ModelConfig, dtype: DType) -> HashMap<String, Tensor> {
    initial_weights(cfg, &mut SplitMix64::new(11))
        .unwrap()
        .into_iter()
        .map(|(name, t)| {
            let t = if name.contains("norm") { t } else { (t * 15.0).unwrap() };
            (name, t.to_dtype(dtype).unwrap())
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The device's logits are the reference's: bit for bit with f32 weights (CUDA cores, every
/// operation as the reference rounds it) and on `tools/cuda_emulator`, whose tensor-core
/// products add in the reference's order; with bf16 weights on a GPU, whose tensor cores add
/// each chunk of 16 products their own way, within 1e-3 of the logits' scale (a wrong fragment
/// layout or a dropped chunk moves them by the scale itself).
fn assert_logits(dev: &CudaStep, bf16: bool, got: &[f32], want: &[f32], what: &str) {
    let emulated = dev.device_name().unwrap().contains("emulator");
    if !bf16 || emulated {
        assert_eq!(bits(got), bits(want), "{what}");
        return;
    }
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got.iter().zip(want).fold(0f32, |m, (g, w)| m.max((g - w).abs()));
    assert!(worst <= 1e-3 * scale, "{what}: |Δ| up to {worst} of logits up to {scale}");
}

const PROMPTS: [&[u32]; 3] = [&[5, 17, 250, 3, 99], &[42], &[7, 7, 8, 120, 33, 999, 1]];
const SLOTS: [usize; 3] = [3, 0, 2];

/// Prefill of the three prompts in one step, then `decode` steps of all three fed on the
/// device, with `params` for every sampled row: each step's logits and tokens from the device
/// and from the reference.
fn run_both(
    dev: &mut CudaStep,
    cpu: &mut ReferenceStep,
    bf16: bool,
    params: impl Fn(usize, u64) -> SampleParams,
    decode: usize,
) {
    let mut rows = Vec::new();
    let mut samples = Vec::new();
    let (mut tokens, mut at) = (Vec::new(), Vec::new());
    for (s, (p, &slot)) in PROMPTS.iter().zip(&SLOTS).enumerate() {
        for (pos, &t) in p.iter().enumerate() {
            rows.push(DeviceRow { feed: Feed::Token(t), at: RowAt { slot, pos } });
            tokens.push(t);
            at.push(RowAt { slot, pos });
        }
        samples.push((rows.len() - 1, params(s, 0)));
    }
    let launches = dev.enqueue(&rows, &samples).unwrap();
    let (want, mut last, cpu_launches) = cpu.step_sampled(&tokens, &at, &samples);
    assert_eq!(launches, cpu_launches);
    // Tokens first, as the engine reads them: `logits` waits for the whole stream, `tokens`
    // only for its own copy.
    assert_eq!(dev.tokens().unwrap(), last, "prefill tokens");
    assert_logits(dev, bf16, &dev.logits().unwrap(), &want, "prefill logits");
    let mut pos: Vec<usize> = PROMPTS.iter().map(|p| p.len()).collect();
    for step in 0..decode {
        let at: Vec<RowAt> =
            SLOTS.iter().zip(&pos).map(|(&slot, &pos)| RowAt { slot, pos }).collect();
        let rows: Vec<DeviceRow> =
            at.iter().map(|&at| DeviceRow { feed: Feed::Sampled, at }).collect();
        let samples: Vec<(usize, SampleParams)> =
            (0..3).map(|s| (s, params(s, step as u64 + 1))).collect();
        dev.enqueue(&rows, &samples).unwrap();
        let (want, next, _) = cpu.step_sampled(&last, &at, &samples);
        assert_eq!(dev.tokens().unwrap(), next, "decode step {step} tokens");
        let what = format!("decode step {step} logits");
        assert_logits(dev, bf16, &dev.logits().unwrap(), &want, &what);
        last = next;
        pos.iter_mut().for_each(|p| *p += 1);
    }
}

fn greedy(_: usize, _: u64) -> SampleParams {
    SampleParams { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0, draw: 0 }
}

/// Greedy decoding with f32 and with bf16 weights, decode steps replayed from graphs (three
/// rows padded to four) and launched one by one: the reference's logits (see
/// [`assert_logits`]: bit for bit but for bf16's tensor cores on a GPU).
#[test]
fn the_device_step_is_the_reference_bit_for_bit() {
    let Some(ordinal) = ordinal() else { return };
    let cfg = config();
    for dtype in [DType::F32, DType::BF16] {
        for graphs in [true, false] {
            let tensors = weights(&cfg, dtype);
            let mut dev = CudaStep::new(&cfg, &tensors, 4, 64, 64, ordinal).unwrap();
            dev.set_graphs(graphs);
            let mut cpu = ReferenceStep::new(&cfg, &tensors, 4, 64).unwrap();
            run_both(&mut dev, &mut cpu, dtype == DType::BF16, greedy, 6);
        }
    }
}

/// Seeded sampling (temperature, top-k, top-p, per-sequence seeds and draw counters) on the
/// device draws the reference's tokens.
#[test]
fn seeded_sampling_on_the_device_is_the_references() {
    let Some(ordinal) = ordinal() else { return };
    let cfg = config();
    let tensors = weights(&cfg, DType::BF16);
    let mut dev = CudaStep::new(&cfg, &tensors, 4, 64, 64, ordinal).unwrap();
    let mut cpu = ReferenceStep::new(&cfg, &tensors, 4, 64).unwrap();
    let params = |s: usize, draw: u64| SampleParams {
        temperature: [0.7, 1.0, 1.3][s],
        top_k: [0, 50, 5][s],
        top_p: [0.9, 1.0, 0.5][s],
        seed: 1000 + s as u64,
        draw,
    };
    run_both(&mut dev, &mut cpu, true, params, 8);
}

/// A sequence's logits are the same bits alone and among 40 others (another graph bucket).
#[test]
fn a_rows_logits_on_the_device_do_not_depend_on_its_batch() {
    let Some(ordinal) = ordinal() else { return };
    let cfg = config();
    let tensors = weights(&cfg, DType::BF16);
    let prompt: Vec<u32> = vec![9, 8, 7, 6];
    let logits_of = |others: usize| -> (Vec<u32>, Launches) {
        let mut dev = CudaStep::new(&cfg, &tensors, 48, 32, 256, ordinal).unwrap();
        let mut rows = Vec::new();
        for s in 0..=others {
            let p: Vec<u32> = if s == others {
                prompt.clone()
            } else {
                (0..3 + s % 5).map(|i| ((s * 37 + i * 11) % 1000) as u32).collect()
            };
            for (pos, &t) in p.iter().enumerate() {
                rows.push(DeviceRow { feed: Feed::Token(t), at: RowAt { slot: s, pos } });
            }
        }
        let last = rows.len() - 1;
        dev.enqueue(&rows, &[(last, greedy(0, 0))]).unwrap();
        let prefill = bits(&dev.logits().unwrap());
        dev.tokens().unwrap();
        // One decode step of every sequence (the one under test last).
        let decode: Vec<DeviceRow> = (0..=others)
            .map(|s| {
                let pos = if s == others { prompt.len() } else { 3 + s % 5 };
                DeviceRow { feed: Feed::Sampled, at: RowAt { slot: s, pos } }
            })
            .collect();
        let samples: Vec<_> = (0..decode.len()).map(|r| (r, greedy(0, 0))).collect();
        let launches = dev.enqueue(&decode, &samples).unwrap();
        let all = dev.logits().unwrap();
        dev.tokens().unwrap();
        let mine = bits(&all[others * cfg.vocab_size..]);
        ([prefill, mine].concat(), launches)
    };
    let (alone, l1) = logits_of(0);
    let (among, l41) = logits_of(40);
    assert_eq!(alone, among);
    assert_eq!(l1, l41, "launches per step grow with the batch");
}

/// Multiple-choice scoring on the device (f32 weights, so the logits are the reference's bits):
/// the reference's log-probabilities (up to the last bits of f64 `exp` and `log`, whose device
/// versions may round differently) and greedy flags.
#[test]
fn scoring_on_the_device_is_the_references() {
    let Some(ordinal) = ordinal() else { return };
    let cfg = config();
    let tensors = weights(&cfg, DType::F32);
    let mut dev = CudaStep::new(&cfg, &tensors, 4, 64, 64, ordinal).unwrap();
    let mut cpu = ReferenceStep::new(&cfg, &tensors, 4, 64).unwrap();
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (p, &slot) in PROMPTS.iter().zip(&SLOTS) {
        for (pos, &t) in p.iter().enumerate() {
            rows.push(DeviceRow { feed: Feed::Token(t), at: RowAt { slot, pos } });
        }
        targets.push((rows.len() - 1, (p[0] * 7) % 1000));
    }
    let got = dev.score(&rows, &targets).unwrap();
    let want = cpu.score(&rows, &targets).unwrap();
    for ((g, gg), (w, wg)) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{g} vs {w}");
        assert_eq!(gg, wg);
    }
}
