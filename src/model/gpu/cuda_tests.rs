//! The CUDA step on a GPU against its CPU reference ([`ReferenceStep`]): the same bits. They
//! run where `BENCHGEN_TEST_DEVICE` names a CUDA device (`cuda`, `cuda:N`), as
//! `tools/gpu_check.sh` sets it on a GPU machine (`run tests`) and without one (`emulate`:
//! the CPU driver of `tools/cuda_emulator`), and say that they were skipped otherwise.

use std::collections::HashMap;

use candle_core::{DType, Tensor};

use super::cuda::{CudaStep, Out};
use super::reference::{self, RowAt, SampleParams};
use super::step::{DeviceRow, Feed, Launches, PackedStep, ReferenceStep, THREADS};
use super::table::{attention_tiles, tile_rows};
use crate::kernels::{from_bf16, to_bf16};
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
    config_with(128, 4, 2)
}

fn config_with(hidden: usize, heads: usize, kv_heads: usize) -> ModelConfig {
    serde_json::from_value(serde_json::json!({
        "model_type": "llama", "hidden_size": hidden, "intermediate_size": 200,
        "num_hidden_layers": 2, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "vocab_size": 1000, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": 512, "tie_word_embeddings": false, "hidden_act": "silu"
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

/// Prompts longer than a tile of positions (128) and than a tile of rows, prefilled in steps
/// of up to 64 rows that mix three sequences' chunks (some steps sampling nothing), then
/// decoded: the reference's bits and launches (f32 weights).
#[test]
fn long_prompts_cut_into_steps_and_tiles_are_the_reference() {
    let Some(ordinal) = ordinal() else { return };
    let prompts: Vec<Vec<u32>> = [140usize, 3, 30]
        .iter()
        .enumerate()
        .map(|(s, &n)| (0..n).map(|i| ((i * 31 + s * 7 + 1) % 1000) as u32).collect())
        .collect();
    let slots = [2usize, 0, 1];
    let cfg = config();
    let tensors = weights(&cfg, DType::F32);
    let mut dev = CudaStep::new(&cfg, &tensors, 3, 160, 64, ordinal).unwrap();
    let mut cpu = ReferenceStep::new(&cfg, &tensors, 3, 160).unwrap();
    let mut done = [0usize; 3];
    let mut last = vec![0u32; 3];
    while done.iter().zip(&prompts).any(|(&d, p)| d < p.len()) {
        let (mut rows, mut samples, mut tokens, mut at) = (vec![], vec![], vec![], vec![]);
        for s in 0..3 {
            let end = (done[s] + 24).min(prompts[s].len());
            for (pos, &t) in prompts[s].iter().enumerate().take(end).skip(done[s]) {
                let a = RowAt { slot: slots[s], pos };
                rows.push(DeviceRow { feed: Feed::Token(t), at: a });
                tokens.push(t);
                at.push(a);
            }
            if end == prompts[s].len() && done[s] < end {
                samples.push((rows.len() - 1, greedy(s, 0)));
            }
            done[s] = end;
        }
        // Steps whose prompts all go on in the next step sample nothing (and stop before
        // the LM head).
        let launches = dev.enqueue(&rows, &samples).unwrap();
        let (want, next, cpu_launches) = cpu.step_sampled(&tokens, &at, &samples);
        assert_eq!(launches, cpu_launches, "launches");
        assert_eq!(dev.tokens().unwrap(), next, "prefill tokens");
        assert_eq!(bits(&dev.logits().unwrap()), bits(&want), "prefill logits");
        for (&(row, _), t) in samples.iter().zip(next) {
            let s = slots.iter().position(|&sl| sl == at[row].slot).unwrap();
            last[s] = t;
        }
    }
    for step in 0..2 {
        let at: Vec<RowAt> =
            (0..3).map(|s| RowAt { slot: slots[s], pos: prompts[s].len() + step }).collect();
        let rows: Vec<DeviceRow> =
            at.iter().map(|&at| DeviceRow { feed: Feed::Sampled, at }).collect();
        let samples: Vec<_> = (0..3).map(|s| (s, greedy(s, 0))).collect();
        dev.enqueue(&rows, &samples).unwrap();
        let (want, next, _) = cpu.step_sampled(&last, &at, &samples);
        assert_eq!(dev.tokens().unwrap(), next, "decode step {step} tokens");
        assert_eq!(bits(&dev.logits().unwrap()), bits(&want), "decode step {step}");
        last = next;
    }
}

/// The `attention` kernel alone against `reference::attention`, bit for bit, on every row: a
/// prompt's chunk continuing past a tile of positions (cut into tiles of rows), a decode row at
/// a long context, a fresh prompt, with GQA groups of 2, of 32 (more queries than a block holds
/// at once) and one 128-dim head. Every cache position past the furthest row of its slot holds
/// NaN, so a query that reads beyond its own positions shows. (The step's tests see a row's
/// attention only through the bf16 caches of the next layer, which round small errors away.)
#[test]
fn attention_is_its_reference_on_every_row() {
    let Some(ordinal) = ordinal() else { return };
    let mut rng = SplitMix64::new(5);
    let mut uniform = move || (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
    // (slot, positions) of each run of rows, in row order.
    let runs: [(usize, std::ops::Range<usize>); 4] =
        [(0, 150..171), (1, 260..261), (2, 0..10), (0, 171..172)];
    for (hidden, heads, kv) in [(128, 4, 2), (64, 32, 1), (128, 1, 1)] {
        let cfg = config_with(hidden, heads, kv);
        let dev = CudaStep::new(&cfg, &weights(&cfg, DType::F32), 3, 300, 64, ordinal).unwrap();
        let (h, scale) = (dev.model().heads, dev.model().scale);
        let what = format!("{heads} heads of {} dims, {kv} kv heads", h.dim);
        let at: Vec<RowAt> = runs
            .iter()
            .flat_map(|(slot, r)| r.clone().map(|pos| RowAt { slot: *slot, pos }))
            .collect();
        let cache_len = 3 * h.kv * h.max_len * h.dim;
        let (mut kc, mut vc) = (vec![0x7fc0u16; cache_len], vec![0x7fc0u16; cache_len]);
        for slot in 0..3 {
            let furthest = at.iter().filter(|a| a.slot == slot).map(|a| a.pos).max().unwrap();
            for kvh in 0..h.kv {
                let i = h.cache_at(slot, kvh, 0);
                for j in i..i + (furthest + 1) * h.dim {
                    kc[j] = to_bf16(uniform() * 3.0);
                    vc[j] = to_bf16(uniform());
                }
            }
        }
        let qkv: Vec<f32> = (0..at.len() * h.qkv_width()).map(|_| uniform() * 3.0).collect();
        let slots: Vec<u32> = at.iter().map(|a| a.slot as u32).collect();
        // The step's tile rows, and 3 where that is one (a group of 32 holds a row's queries
        // alone): a kernel's result never depends on how rows are cut into tiles.
        let tiles = attention_tiles(&slots, tile_rows(&h).max(3));
        assert!(tiles.iter().any(|t| t.1 > 1), "{what}: tiles of several rows");
        let pos: Vec<i32> = at.iter().map(|a| a.pos as i32).collect();
        let slot: Vec<i32> = at.iter().map(|a| a.slot as i32).collect();
        let got = dev.attention_alone(&qkv, (&kc, &vc), (&pos, &slot), &tiles).unwrap();
        let width = h.q * h.dim;
        for (r, &a) in at.iter().enumerate() {
            let mut want = vec![0f32; width];
            let row = &qkv[r * h.qkv_width()..][..h.qkv_width()];
            reference::attention(row, &kc, &vc, a, h, scale, &mut want, THREADS);
            assert!(want.iter().all(|v| v.is_finite()), "{what}: row {r} of the reference");
            let got = &got[r * width..][..width];
            assert_eq!(bits(got), bits(&want), "{what}: row {r} at {a:?}");
        }
    }
}

/// Each product alone (`gemm_f32`; `gemm_bf16` at every row count's geometry) against its
/// reference on every output (see [`assert_logits`] for bf16 on a GPU): row counts around the
/// tiles' sizes, k not a multiple of 16, rows picked out of x (the LM head's sampling rows),
/// the fused RMSNorm, the residual add, and SiLU·mul over interleaved gate/up rows.
#[test]
fn each_product_is_its_reference_on_every_output() {
    let Some(ordinal) = ordinal() else { return };
    let cfg = config();
    let dev = CudaStep::new(&cfg, &weights(&cfg, DType::F32), 2, 16, 16, ordinal).unwrap();
    let eps = dev.model().eps;
    let mut rng = SplitMix64::new(9);
    let mut uniform = move || (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
    for bf16 in [false, true] {
        for (rows, n, k) in [(1, 8, 16), (17, 40, 40), (64, 24, 200), (130, 136, 264), (200, 64, 8)]
        {
            let modes: &[Out] =
                if bf16 { &[Out::Write, Out::Add, Out::SiluMul] } else { &[Out::Write, Out::Add] };
            for (&mode, norm) in modes.iter().flat_map(|m| [(m, false), (m, true)]) {
                let what = format!("bf16 {bf16}, {rows} x {n} x {k}, {mode:?}, norm {norm}");
                // x holds three rows more than the product reads; with the norm, its rows are
                // picked in reverse.
                let x: Vec<f32> = (0..(rows + 3) * k).map(|_| uniform() * 2.0).collect();
                let xrows: Option<Vec<i32>> =
                    norm.then(|| (0..rows).map(|r| (rows + 2 - r) as i32).collect());
                // Values bf16 holds exactly, so either conversion to bf16 keeps them.
                let w: Vec<f32> = (0..n * k).map(|_| from_bf16(to_bf16(uniform()))).collect();
                let nw: Vec<f32> = (0..k).map(|_| 1.0 + uniform() * 0.5).collect();
                let width = if mode == Out::SiluMul { n / 2 } else { n };
                let prior: Vec<f32> = (0..rows * width).map(|_| uniform()).collect();
                let tensor = Tensor::from_vec(w.clone(), (n, k), &candle_core::Device::Cpu);
                let got = dev
                    .gemm_alone(
                        &x,
                        xrows.as_deref(),
                        rows,
                        (tensor.unwrap(), bf16),
                        norm.then_some(&nw[..]),
                        (&prior, mode),
                        (n, k),
                    )
                    .unwrap();
                let dot = if bf16 { reference::gemm_mma_dot } else { reference::gemm_dot };
                let mut want = Vec::with_capacity(rows * width);
                for r in 0..rows {
                    let xr = xrows.as_ref().map_or(r, |v| v[r] as usize);
                    let mut input = x[xr * k..][..k].to_vec();
                    if norm {
                        let mut normed = vec![0f32; k];
                        reference::add_rms_norm(&mut input, None, &nw, &mut normed, eps, THREADS);
                        input = normed;
                    }
                    let sums: Vec<f32> = w.chunks_exact(k).map(|wc| dot(&input, wc)).collect();
                    match mode {
                        Out::Write => want.extend(sums),
                        Out::Add => {
                            want.extend(sums.iter().zip(&prior[r * n..][..n]).map(|(s, p)| p + s))
                        }
                        Out::SiluMul => want.extend(sums.chunks_exact(2).map(|p| {
                            let mut o = [0f32];
                            reference::silu_mul(p, &mut o);
                            o[0]
                        })),
                    }
                }
                assert_logits(&dev, bf16, &got, &want, &what);
            }
        }
    }
}

/// A sequence's logits are the same bits alone and among 40 others (another graph bucket; and
/// a prefill of 204 rows, whose bf16 products run `gemm_bf16_tiled` where the sequence's own 4
/// rows run `gemm_bf16`).
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
