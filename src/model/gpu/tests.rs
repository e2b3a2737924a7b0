//! The references against the host path's operations (which the transformers goldens test):
//! bit for bit where both do the same operations in the same order, within the rounding of a
//! different summation order where they do not.

use super::reference::{self, Heads, RowAt};
use super::{KERNELS, SOURCE};
use crate::engine::sampling;
use crate::kernels::{from_bf16, to_bf16, Kernel};
use crate::model::host;
use crate::rng::SplitMix64;

fn normal(seed: u64, len: usize, scale: f64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..len).map(|_| (rng.normal() * scale) as f32).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every kernel the Rust side names is defined in the source (with or without
/// `__launch_bounds__`), and nothing else is exported.
#[test]
fn the_named_kernels_are_the_sources() {
    let mut defined: Vec<&str> = SOURCE
        .split("extern \"C\" __global__ void ")
        .skip(1)
        .map(|rest| {
            let rest = match rest.strip_prefix("__launch_bounds__(") {
                Some(r) => r.split_once(") ").expect("__launch_bounds__(N) name").1,
                None => rest,
            };
            rest.split('(').next().unwrap()
        })
        .collect();
    let mut want: Vec<&str> = KERNELS.to_vec();
    want.sort_unstable();
    defined.sort_unstable();
    assert_eq!(defined, want, "kernels.cu's extern \"C\" kernels and mod.rs's KERNELS");
}

#[test]
fn add_rms_norm_is_the_hosts_within_summation_order() {
    for (hidden, threads) in [(576, 128), (576, 1024), (2048, 256), (100, 32)] {
        let (x0, delta) = (normal(1, hidden, 1.0), normal(2, hidden, 0.5));
        let weight = normal(3, hidden, 1.0);
        let mut x = x0.clone();
        let mut out = vec![0f32; hidden];
        reference::add_rms_norm(&mut x, Some(&delta), &weight, &mut out, 1e-5, threads);
        let summed: Vec<f32> = x0.iter().zip(&delta).map(|(a, b)| a + b).collect();
        assert_eq!(bits(&x), bits(&summed), "the residual is written back, one add each");
        let mut want = vec![0f32; hidden];
        host::rms_norm(Kernel::Scalar, &summed, &weight, 1e-5, &mut want);
        for (i, (g, w)) in out.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 4.0 * f32::EPSILON * w.abs(),
                "[{hidden}/{threads}] {i}: {g} vs {w}"
            );
        }
    }
}

/// The kernel's sum of squares is a butterfly over the block: for data whose sum is exact in
/// f32 the order cannot show, so the norm is exactly the formula's.
#[test]
fn block_sum_is_exact_on_exact_data() {
    let partials: Vec<f32> = (0..256).map(|i| (i % 17) as f32 - 8.0).collect();
    let want: f32 = partials.iter().sum();
    assert_eq!(reference::block_sum(&partials), want);
    // One large value and many small ones: the butterfly pairs lanes 16 apart first, so the
    // small values meet each other before they meet the large one.
    let mut p = vec![1.0f32; 64];
    p[0] = 16_777_216.0; // 2^24: adding a single 1 to it is lost
    assert_eq!(reference::block_sum(&p), 16_777_216.0 + 62.0);
}

#[test]
fn rope_kv_write_rotates_as_the_host_and_fills_one_cache_position() {
    let heads = Heads { q: 9, kv: 3, dim: 64, half: 32, max_len: 40 };
    let (positions, slots) = (40, 4);
    let inv: Vec<f32> =
        (0..heads.half).map(|j| 10000f32.powf(-(j as f32) / heads.half as f32)).collect();
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for p in 0..positions {
        for &f in &inv {
            cos.push((p as f32 * f).cos());
            sin.push((p as f32 * f).sin());
        }
    }
    let qkv0 = normal(4, heads.qkv_width(), 1.0);
    let at = RowAt { slot: 2, pos: 17 };
    let mut qkv = qkv0.clone();
    let cache_len = slots * heads.kv * heads.max_len * heads.dim;
    let (mut kc, mut vc) = (vec![0xdead; cache_len], vec![0xbeef; cache_len]);
    reference::rope_kv_write(&mut qkv, &cos, &sin, at, heads, &mut kc, &mut vc);

    let mut want = qkv0.clone();
    let (c, s) =
        (&cos[at.pos * heads.half..][..heads.half], &sin[at.pos * heads.half..][..heads.half]);
    host::rope_in_place(
        Kernel::Scalar,
        &mut want[..(heads.q + heads.kv) * heads.dim],
        heads.dim,
        c,
        s,
    );
    assert_eq!(bits(&qkv), bits(&want), "q and k rotated as the host rotates them; v untouched");

    let mut written = 0;
    for h in 0..heads.kv {
        let i = heads.cache_at(at.slot, h, at.pos);
        for d in 0..heads.dim {
            assert_eq!(kc[i + d], to_bf16(want[(heads.q + h) * heads.dim + d]));
            assert_eq!(vc[i + d], to_bf16(qkv0[(heads.q + heads.kv + h) * heads.dim + d]));
            written += 1;
        }
    }
    let untouched = kc.iter().filter(|&&b| b == 0xdead).count();
    assert_eq!(untouched, cache_len - written, "only the row's slot and position are written");
    assert_eq!(vc.iter().filter(|&&b| b == 0xbeef).count(), cache_len - written);
}

#[test]
fn attention_is_softmax_attention_over_the_rows_own_cache() {
    let heads = Heads { q: 9, kv: 3, dim: 64, half: 32, max_len: 300 };
    let cache_len = 3 * heads.kv * heads.max_len * heads.dim;
    let kc: Vec<u16> = normal(5, cache_len, 1.0).into_iter().map(to_bf16).collect();
    let vc: Vec<u16> = normal(6, cache_len, 1.0).into_iter().map(to_bf16).collect();
    let qkv = normal(7, heads.qkv_width(), 1.0);
    let scale = 1.0 / (heads.dim as f32).sqrt();
    for (at, threads) in [
        (RowAt { slot: 1, pos: 0 }, 32),
        (RowAt { slot: 2, pos: 255 }, 128),
        (RowAt { slot: 0, pos: 299 }, 64),
    ] {
        let mut out = vec![f32::NAN; heads.q * heads.dim];
        reference::attention(&qkv, &kc, &vc, at, heads, scale, &mut out, threads);
        for h in 0..heads.q {
            let base = heads.cache_at(at.slot, h / 3, 0);
            let q = &qkv[h * heads.dim..][..heads.dim];
            let scores: Vec<f64> = (0..=at.pos)
                .map(|t| {
                    (0..heads.dim)
                        .map(|d| q[d] as f64 * from_bf16(kc[base + t * heads.dim + d]) as f64)
                        .sum::<f64>()
                        * scale as f64
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..heads.dim {
                let want: f64 = (0..=at.pos)
                    .map(|t| e[t] * from_bf16(vc[base + t * heads.dim + d]) as f64)
                    .sum::<f64>()
                    / z;
                let got = out[h * heads.dim + d] as f64;
                assert!(
                    (got - want).abs() <= 2e-5 * (1.0 + want.abs()),
                    "{at:?} head {h} dim {d}: {got} vs {want}"
                );
            }
        }
    }
}

/// Other slots' contents never reach a row: changing them leaves its output's bits alone.
#[test]
fn attention_reads_only_its_slot() {
    let heads = Heads { q: 4, kv: 2, dim: 32, half: 16, max_len: 50 };
    let cache_len = 4 * heads.kv * heads.max_len * heads.dim;
    let mut kc: Vec<u16> = normal(8, cache_len, 1.0).into_iter().map(to_bf16).collect();
    let mut vc: Vec<u16> = normal(9, cache_len, 1.0).into_iter().map(to_bf16).collect();
    let qkv = normal(10, heads.qkv_width(), 1.0);
    let at = RowAt { slot: 2, pos: 30 };
    let run = |kc: &[u16], vc: &[u16]| {
        let mut out = vec![0f32; heads.q * heads.dim];
        reference::attention(&qkv, kc, vc, at, heads, 0.17, &mut out, 64);
        bits(&out)
    };
    let before = run(&kc, &vc);
    let mine = heads.cache_at(2, 0, 0)..heads.cache_at(3, 0, 0);
    for i in (0..cache_len).filter(|i| !mine.contains(i)) {
        kc[i] = to_bf16(1e3);
        vc[i] = to_bf16(-1e3);
    }
    // Positions past the row's own are not read either.
    for h in 0..heads.kv {
        for p in at.pos + 1..heads.max_len {
            let i = heads.cache_at(2, h, p);
            kc[i..i + heads.dim].fill(to_bf16(50.0));
        }
    }
    assert_eq!(run(&kc, &vc), before);
}

#[test]
fn silu_mul_is_the_hosts_bit_for_bit() {
    let inter = 1536;
    let mut gu = normal(11, 2 * inter, 3.0);
    gu[0] = -100.0; // past exp's clamp
    gu[1] = 90.0;
    let mut out = vec![0f32; inter];
    reference::silu_mul(&gu, &mut out);
    let mut want = vec![0f32; inter];
    host::silu_mul(Kernel::Scalar, &gu, inter, &mut want);
    assert_eq!(bits(&out), bits(&want));
}

#[test]
fn argmax_is_greedy_sampling_and_takes_the_first_of_ties() {
    for seed in 0..20 {
        let mut logits: Vec<f32> =
            normal(12 + seed, 49152, 2.0).into_iter().map(|v| (v * 4.0).round()).collect();
        logits[(seed as usize * 977) % 49152] = 100.0;
        logits[(seed as usize * 977 + 5000) % 49152] = 100.0;
        assert_eq!(reference::argmax(&logits), sampling::argmax(&logits), "seed {seed}");
    }
    assert_eq!(reference::argmax(&[f32::NEG_INFINITY; 4]), 0);
    assert_eq!(reference::argmax(&[f32::NAN, f32::NAN]), 0);
    // NaN never wins, even first (where the host's argmax keeps index 0).
    assert_eq!(reference::argmax(&[f32::NAN, -1.0, 2.0, 2.0]), 2);
}

/// `gemm_*`'s fixed order is a dot product: within the rounding of k fused steps and the
/// butterfly of an f64 sum, on lengths around the lanes' 8-value chunks and 256-value rounds.
#[test]
fn gemm_dot_is_the_dot_product_within_rounding() {
    for (n, k) in [1, 7, 8, 9, 255, 256, 257, 576, 1000, 2048].into_iter().enumerate() {
        let (x, w) = (normal(40 + n as u64, k, 1.0), normal(60 + n as u64, k, 1.0));
        let want: f64 = x.iter().zip(&w).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
        let size: f64 = x.iter().zip(&w).map(|(&a, &b)| f64::from(a * b).abs()).sum();
        let got = f64::from(reference::gemm_dot(&x, &w));
        assert!((got - want).abs() <= 1e-6 * size, "k {k}: {got} vs {want}");
    }
    // Exact data: any order gives the formula's value, so a dropped or doubled term shows.
    let x: Vec<f32> = (0..777).map(|i| (i % 13) as f32 - 6.0).collect();
    let w: Vec<f32> = (0..777).map(|i| (i % 7) as f32 - 3.0).collect();
    let want: f32 = x.iter().zip(&w).map(|(a, b)| a * b).sum();
    assert_eq!(reference::gemm_dot(&x, &w), want);
}

/// The tensor-core product's reference is the dot product of x rounded to bf16 with w, within
/// the rounding of its additions, on lengths around the 16-value chunks; x's rounding is the
/// host's `to_bf16` (an x already in bf16 is exact data for it).
#[test]
fn gemm_mma_dot_is_the_dot_product_of_bf16_x_within_rounding() {
    use crate::kernels::{from_bf16, to_bf16};
    for (n, k) in [1, 15, 16, 17, 100, 576, 1536].into_iter().enumerate() {
        let (x, w) = (normal(80 + n as u64, k, 1.0), normal(90 + n as u64, k, 1.0));
        let w: Vec<f32> = w.iter().map(|&v| from_bf16(to_bf16(v))).collect();
        let xb: Vec<f64> = x.iter().map(|&v| f64::from(from_bf16(to_bf16(v)))).collect();
        let want: f64 = xb.iter().zip(&w).map(|(&a, &b)| a * f64::from(b)).sum();
        let size: f64 = xb.iter().zip(&w).map(|(&a, &b)| (a * f64::from(b)).abs()).sum();
        let got = f64::from(reference::gemm_mma_dot(&x, &w));
        assert!((got - want).abs() <= 1e-6 * size, "k {k}: {got} vs {want}");
        // x unrounded would be a different product: the rounding is part of the definition.
        let unrounded: f64 = x.iter().zip(&w).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
        assert!(k < 16 || (unrounded - want).abs() > 1e-6 * size, "k {k}: x was not rounded");
    }
    let x: Vec<f32> = (0..777).map(|i| (i % 13) as f32 - 6.0).collect();
    let w: Vec<f32> = (0..777).map(|i| (i % 7) as f32 - 3.0).collect();
    let want: f32 = x.iter().zip(&w).map(|(a, b)| a * b).sum();
    assert_eq!(reference::gemm_mma_dot(&x, &w), want);
}

/// The counter-based draw is the sequence's own generator's: draw n of a seed is the (n+1)-th
/// `unit()` of `SplitMix64::new(seed)`, as the CPU sampler consumes it, one per token.
#[test]
fn the_nth_draw_is_the_cpu_streams_nth() {
    for seed in [0u64, 1, 0xdead_beef, u64::MAX] {
        let mut rng = SplitMix64::new(seed);
        for n in 0..50 {
            assert_eq!(reference::unit_draw(seed, n).to_bits(), rng.unit().to_bits());
        }
    }
}

/// The GPU sampler finds by key-bit searches the token the CPU sampler finds by sorting and
/// walking: the same token on every case, over temperatures, top-k (off, 1, small, past the
/// vocabulary), top-p (off, tight, loose, next to 1), tied logits, vocabularies from 1 to
/// 49,152, greedy rows, and the draws of several tokens of a sequence.
#[test]
fn sampling_picks_the_cpu_samplers_token() {
    use super::reference::SampleParams;
    use crate::generation::GenParams;
    let mut cases = 0;
    let mut not_greedy = 0;
    for (c, &vocab) in [1usize, 2, 7, 300, 5000, 49152].iter().enumerate() {
        for t in [0.0, 0.3, 0.8, 1.0, 1.7] {
            for top_k in [None, Some(1), Some(5), Some(vocab + 3)] {
                for top_p in [None, Some(0.2), Some(0.9), Some(0.999_999)] {
                    let seed = (c * 1000 + cases) as u64;
                    let scale = if cases % 3 == 0 { 0.5 } else { 3.0 };
                    let mut logits = normal(seed, vocab, scale);
                    if cases % 2 == 0 {
                        // Ties: logits on a coarse grid.
                        logits.iter_mut().for_each(|v| *v = (*v * 2.0).round() / 2.0);
                    }
                    let params =
                        GenParams { max_new_tokens: 1, stop: vec![], temperature: t, top_k, top_p };
                    let mut rng = SplitMix64::new(seed);
                    let threads = if vocab > 1000 { 1024 } else { 64 };
                    for draw in 0..3 {
                        let want = sampling::sample(&logits, &params, &mut rng);
                        let p = SampleParams {
                            temperature: t as f32,
                            top_k: top_k.unwrap_or(0),
                            top_p: top_p.unwrap_or(1.0),
                            seed,
                            draw,
                        };
                        let got = reference::sample(&logits, p, threads);
                        assert_eq!(
                            got, want,
                            "vocab {vocab} t {t} k {top_k:?} p {top_p:?} draw {draw}"
                        );
                        not_greedy += usize::from(t > 0.0 && got != sampling::argmax(&logits));
                    }
                    cases += 1;
                }
            }
        }
    }
    assert!(not_greedy > 200, "only {not_greedy} draws left the top token");
}

/// `score_rows`'s reference is the CPU engine's log softmax (`engine::loglik`: the max, then
/// the f64 sum of exp(v - max) in order) within the rounding of its tree-shaped sum, and its
/// greedy flag is the host's argmax.
#[test]
fn scoring_is_log_softmax_at_the_target() {
    for (n, &vocab) in [1usize, 5, 300, 49152].iter().enumerate() {
        let logits = normal(70 + n as u64, vocab, 4.0);
        let max = f64::from(logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)));
        let sum: f64 = logits.iter().map(|&v| (f64::from(v) - max).exp()).sum();
        for target in [0, vocab / 2, vocab - 1, sampling::argmax(&logits) as usize] {
            let (got, greedy) = reference::score(&logits, target as u32, 1024);
            let want = f64::from(logits[target]) - max - sum.ln();
            assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "{got} vs {want}");
            assert_eq!(greedy, sampling::argmax(&logits) == target as u32);
        }
    }
}

mod packed_step {
    use std::collections::HashMap;

    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarBuilder;

    use super::super::reference::RowAt;
    use super::super::step::{Launches, ReferenceStep};
    use crate::device::WeightType;
    use crate::engine::sampling;
    use crate::model::random::initial_weights;
    use crate::model::{Backend, Decoder, KvDtype, ModelConfig, Segment, SeqCache};
    use crate::rng::SplitMix64;

    fn config(extra: serde_json::Value) -> ModelConfig {
        let mut json = serde_json::json!({
            "model_type": "llama", "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 300, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "max_position_embeddings": 256, "tie_word_embeddings": true, "hidden_act": "silu"
        });
        json.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(json).unwrap()
    }

    /// Seeded weights, the matrices scaled up from the initial N(0, 0.02) so that logits spread.
    fn weights(cfg: &ModelConfig) -> HashMap<String, Tensor> {
        initial_weights(cfg, &mut SplitMix64::new(7))
            .unwrap()
            .into_iter()
            .map(|(name, t)| {
                let t = if name.contains("norm") { t } else { (t * 15.0).unwrap() };
                (name, t)
            })
            .collect()
    }

    /// Three prompts in slots 3, 0 and 2 (not in order), all prefilled in one step.
    const PROMPTS: [&[u32]; 3] = [&[5, 17, 250, 3, 99], &[42], &[7, 7, 8, 120, 33, 299, 1]];
    const SLOTS: [usize; 3] = [3, 0, 2];

    fn prefill_rows(prompts: &[&[u32]], slots: &[usize]) -> (Vec<u32>, Vec<RowAt>) {
        let tokens = prompts.concat();
        let at = prompts
            .iter()
            .zip(slots)
            .flat_map(|(p, &slot)| (0..p.len()).map(move |pos| RowAt { slot, pos }))
            .collect();
        (tokens, at)
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 2e-5 * scale, "{what} [{i}]: {g} vs {w} (scale {scale})");
        }
    }

    /// The host decoder (golden-tested against transformers) with a bf16 KV cache, as the step
    /// keeps one: the same logits within the rounding of other summation orders, on a prefill
    /// of three prompts in one step and then four decode steps of the three sequences.
    #[test]
    fn the_packed_step_is_the_host_decoder() {
        let cfg = config(serde_json::json!({}));
        let tensors = weights(&cfg);
        let mut step = ReferenceStep::new(&cfg, &tensors, 4, 64).unwrap();
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let mut host =
            Decoder::load_with(vb, &cfg, Backend::Auto, WeightType::Float(DType::F32)).unwrap();
        host.set_kv_dtype(KvDtype::Bf16).unwrap();
        let mut caches: Vec<SeqCache> = PROMPTS.iter().map(|_| host.new_cache(64)).collect();
        let host_step = |tokens: &[u32], segs: &[Segment], caches: &mut [SeqCache]| {
            let ids = Tensor::new(tokens, &Device::Cpu).unwrap();
            let mut refs: Vec<&mut SeqCache> = caches.iter_mut().collect();
            let hidden = host.forward(&ids, segs, Some(&mut refs)).unwrap();
            host.logits_f32(&hidden).unwrap()
        };

        let (tokens, at) = prefill_rows(&PROMPTS, &SLOTS);
        let (logits, next, _) = step.step(&tokens, &at);
        let segs: Vec<Segment> =
            PROMPTS.iter().map(|p| Segment { len: p.len(), offset: 0 }).collect();
        assert_close(&logits, &host_step(&tokens, &segs, &mut caches), "prefill");
        let ends: Vec<usize> = PROMPTS
            .iter()
            .scan(0, |n, p| {
                *n += p.len();
                Some(*n - 1)
            })
            .collect();
        let mut last: Vec<u32> = ends.iter().map(|&e| next[e]).collect();
        let mut pos: Vec<usize> = PROMPTS.iter().map(|p| p.len()).collect();
        let mut decided = 0;
        for s in 0..4 {
            let at: Vec<RowAt> =
                SLOTS.iter().zip(&pos).map(|(&slot, &pos)| RowAt { slot, pos }).collect();
            let (logits, next, _) = step.step(&last, &at);
            let segs: Vec<Segment> = pos.iter().map(|&offset| Segment { len: 1, offset }).collect();
            let want = host_step(&last, &segs, &mut caches);
            assert_close(&logits, &want, &format!("decode step {s}"));
            // Greedy tokens agree wherever the host's top two are apart by more than rounding.
            for (row, (w, &n)) in want.chunks_exact(cfg.vocab_size).zip(&next).enumerate() {
                let mut sorted = w.to_vec();
                sorted.sort_by(|a, b| b.total_cmp(a));
                if sorted[0] - sorted[1] > 1e-3 {
                    assert_eq!(n, sampling::argmax(w), "decode step {s} row {row}");
                    decided += 1;
                }
            }
            last = next;
            pos.iter_mut().for_each(|p| *p += 1);
        }
        assert!(decided >= 10, "only {decided} of 12 greedy tokens were clear");
    }

    /// A sequence's logits are the same bits alone and among others, in prefill and decode.
    #[test]
    fn a_rows_logits_do_not_depend_on_its_batch() {
        let cfg = config(serde_json::json!({}));
        let tensors = weights(&cfg);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let vocab = cfg.vocab_size;

        let mut alone = ReferenceStep::new(&cfg, &tensors, 4, 64).unwrap();
        let (tokens, at) = prefill_rows(&PROMPTS[2..], &SLOTS[2..]);
        let (solo_prefill, solo_next, _) = alone.step(&tokens, &at);
        let t = *solo_next.last().unwrap();
        let (solo_decode, _, _) =
            alone.step(&[t], &[RowAt { slot: SLOTS[2], pos: PROMPTS[2].len() }]);

        let mut shared = ReferenceStep::new(&cfg, &tensors, 4, 64).unwrap();
        let (tokens, at) = prefill_rows(&PROMPTS, &SLOTS);
        let (prefill, _, _) = shared.step(&tokens, &at);
        let first = PROMPTS[0].len() + PROMPTS[1].len();
        assert_eq!(bits(&prefill[first * vocab..]), bits(&solo_prefill));
        // Decode with the others, this sequence's row in the middle.
        let rows = [
            (11, RowAt { slot: SLOTS[0], pos: PROMPTS[0].len() }),
            (t, RowAt { slot: SLOTS[2], pos: PROMPTS[2].len() }),
            (12, RowAt { slot: SLOTS[1], pos: PROMPTS[1].len() }),
        ];
        let (decode, _, _) = shared.step(&rows.map(|r| r.0), &rows.map(|r| r.1));
        assert_eq!(bits(&decode[vocab..2 * vocab]), bits(&solo_decode));
    }

    /// The launches a step enqueues are a fixed number per layer, whatever the rows: the
    /// embedding gather, seven per layer (each RMSNorm and residual add fused into a product;
    /// six with bf16 weights), the LM head and the sampling.
    #[test]
    fn launches_per_step_do_not_grow_with_the_batch() {
        let cfg = config(serde_json::json!({}));
        let mut step = ReferenceStep::new(&cfg, &weights(&cfg), 40, 8).unwrap();
        let want = Launches(1 + 7 * cfg.num_hidden_layers + 2);
        for rows in [1, 8, 40] {
            let at: Vec<RowAt> = (0..rows).map(|slot| RowAt { slot, pos: 0 }).collect();
            let (_, _, launches) = step.step(&vec![1; rows], &at);
            assert_eq!(launches, want, "{rows} rows");
        }
        let (tokens, at) = prefill_rows(&[&[1, 2, 3, 4, 5, 6, 7, 8]], &[5]);
        assert_eq!(step.step(&tokens, &at).2, want, "a prefill of 8 positions");
        // bf16 weights: SiLU·mul rides in the gate/up product, one launch a layer fewer.
        let bf16: std::collections::HashMap<_, _> = weights(&cfg)
            .into_iter()
            .map(|(name, t)| (name, t.to_dtype(candle_core::DType::BF16).unwrap()))
            .collect();
        let mut step = ReferenceStep::new(&cfg, &bf16, 40, 8).unwrap();
        let (_, _, launches) =
            step.step(&[1, 2], &[RowAt { slot: 0, pos: 0 }, RowAt { slot: 1, pos: 0 }]);
        assert_eq!(launches, Launches(1 + 6 * cfg.num_hidden_layers + 2), "bf16");
    }

    #[test]
    fn other_architectures_are_refused_with_the_reason() {
        let cfg = config(serde_json::json!({"attention_bias": true}));
        let tensors = weights(&cfg);
        let err = ReferenceStep::new(&cfg, &tensors, 1, 8).err().expect("refused").to_string();
        assert!(err.contains("Llama-style") && err.contains("biases"), "{err}");
    }
}

mod scheduling {
    use std::collections::{HashMap, VecDeque};

    use super::super::schedule::{Input, Row, Scheduler};
    use crate::rng::SplitMix64;

    /// What the simulated device samples for a sequence at a position, and the token that ends
    /// a sequence.
    fn token(seq: usize, pos: usize) -> u32 {
        (SplitMix64::new((seq * 1000 + pos) as u64).next_u64() % 9) as u32
    }
    const EOS: u32 = 0;

    /// Runs `prompts` (id, prompt length, max_new) through a scheduler and a simulated device
    /// whose results are read one step late, checking every step's rows; returns each
    /// sequence's tokens and the rows launched in vain.
    fn run(
        slots: usize,
        step_rows: usize,
        seqs: &[(usize, usize, usize)],
    ) -> (HashMap<usize, Vec<u32>>, usize) {
        let mut s = Scheduler::new(slots, step_rows);
        for &(id, len, max_new) in seqs {
            s.add(id, (0..len as u32).map(|t| t + 100).collect(), max_new);
        }
        let stops = |_: usize, t: &[u32]| t.last() == Some(&EOS);
        // Per slot, its sequence and the last step that wrote it; per sequence, its next position.
        let (mut owner, mut next_pos) = (HashMap::<usize, (usize, usize)>::new(), HashMap::new());
        let (mut in_flight, mut out, mut wasted) = (VecDeque::new(), HashMap::new(), 0);
        let mut read = 0;
        for iteration in 0.. {
            assert!(iteration < 10_000, "the scheduler never finished");
            let rows: Vec<Row> = s.plan();
            assert!(rows.len() <= step_rows);
            let this = s.planned_steps().wrapping_sub(1);
            for r in &rows {
                if let Some(&(seq, last)) = owner.get(&r.slot) {
                    // A slot changes hands only once every step that wrote it has been read.
                    assert!(
                        seq == r.seq || last < read,
                        "step {this}: slot {} reused while step {last} of {seq} is in flight",
                        r.slot
                    );
                }
                owner.insert(r.slot, (r.seq, this));
                let pos = next_pos.entry(r.seq).or_insert(0);
                assert_eq!(r.pos, *pos, "step {this}: positions of {} are contiguous", r.seq);
                *pos += 1;
                let len = seqs.iter().find(|q| q.0 == r.seq).unwrap().1;
                match r.input {
                    Input::Prompt(t) => assert!(r.pos < len && t == r.pos as u32 + 100),
                    Input::Sampled => assert!(r.pos >= len),
                }
                assert_eq!(r.samples, r.pos + 1 >= len);
                // The draw counter is the sequence's sampled tokens before this one.
                assert_eq!(r.draw, if r.samples { r.pos + 1 - len } else { 0 });
            }
            let sampled: Vec<(usize, u32)> =
                rows.iter().filter(|r| r.samples).map(|r| (r.seq, token(r.seq, r.pos))).collect();
            if !rows.is_empty() {
                in_flight.push_back((this, sampled));
            }
            // The host reads a step's tokens while the next one runs.
            if in_flight.len() > 1 || (rows.is_empty() && !in_flight.is_empty()) {
                let (st, sampled) = in_flight.pop_front().unwrap();
                s.read(st, &sampled, stops);
                read += 1;
                for (id, tokens) in s.take_finished() {
                    let launched = next_pos[&id];
                    let len = seqs.iter().find(|q| q.0 == id).unwrap().1;
                    wasted += launched - (len - 1) - tokens.len();
                    out.insert(id, tokens);
                }
            }
            if rows.is_empty() && in_flight.is_empty() && s.is_done() {
                break;
            }
        }
        (out, wasted)
    }

    /// Each sequence's tokens are what it would sample alone: up to and including EOS, or
    /// `max_new` of them; a sequence ended by EOS costs at most one row launched in vain.
    #[test]
    fn one_step_late_reads_give_every_sequence_its_own_tokens() {
        let mut rng = SplitMix64::new(3);
        let seqs: Vec<(usize, usize, usize)> = (0..40)
            .map(|id| (id, 1 + rng.below(30) as usize, 1 + rng.below(12) as usize))
            .collect();
        for (slots, step_rows) in [(1, 1), (1, 8), (4, 16), (8, 8), (16, 64)] {
            let (out, wasted) = run(slots, step_rows, &seqs);
            let mut by_eos = 0;
            for &(id, len, max_new) in &seqs {
                let mut want = Vec::new();
                for pos in len - 1.. {
                    want.push(token(id, pos));
                    if want.len() == max_new || want.last() == Some(&EOS) {
                        break;
                    }
                }
                by_eos += usize::from(want.last() == Some(&EOS) && want.len() < max_new);
                assert_eq!(out[&id], want, "{slots} slots, {step_rows} rows: sequence {id}");
            }
            assert!(wasted <= by_eos, "{wasted} rows in vain for {by_eos} sequences ended by EOS");
            assert!(by_eos > 5, "the workload must end sequences by EOS");
        }
    }
}

/// The row table as the kernels read it: each array's entry i at its byte offset plus 4i (8i
/// for top-p and seeds), little-endian, for an odd number of rows in a table of more (so the
/// half-words next to each entry matter); padding rows are inert (token 0, position 0, the pad
/// slot) and padding samples greedy, from the padding rows, into the pad slot.
mod row_table {
    use super::super::reference::{RowAt, SampleParams};
    use super::super::step::{DeviceRow, Feed};
    use super::super::table::{Array, Layout};

    fn read32(bytes: &[u8], lay: &Layout, array: Array, i: usize) -> u32 {
        let at = lay.byte_offset(array) as usize + 4 * i;
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    fn read64(bytes: &[u8], lay: &Layout, array: Array, i: usize) -> u64 {
        let at = lay.byte_offset(array) as usize + 8 * i;
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn the_kernels_read_what_the_host_wrote() {
        let lay = Layout::new(9);
        let mut words = vec![u64::MAX; lay.words()];
        let rows: Vec<DeviceRow> = (0..5)
            .map(|i| DeviceRow {
                feed: if i % 2 == 0 { Feed::Token(100 + i as u32) } else { Feed::Sampled },
                at: RowAt { slot: 4 - i, pos: 10 * i },
            })
            .collect();
        let p = |i: u64| SampleParams {
            temperature: 0.5 + i as f32,
            top_k: 7 * i as usize,
            top_p: 0.25 * i as f64,
            seed: u64::MAX - i,
            draw: 3 + i,
        };
        let samples: Vec<(usize, SampleParams)> = (0..5).map(|r| (r, p(r as u64))).collect();
        lay.fill(&mut words, &rows, 7, &samples, 7, &[], 99, 4);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        for i in 0..7 {
            let (input, pos, slot) = match rows.get(i) {
                Some(r) => (
                    if let Feed::Token(t) = r.feed { t } else { u32::MAX },
                    r.at.pos as u32,
                    r.at.slot as u32,
                ),
                None => (0, 0, 99),
            };
            assert_eq!(read32(&bytes, &lay, Array::Input, i), input, "input {i}");
            assert_eq!(read32(&bytes, &lay, Array::Pos, i), pos, "pos {i}");
            assert_eq!(read32(&bytes, &lay, Array::Slot, i), slot, "slot {i}");
            let want = samples.get(i).map_or(
                (i as u32, 0f32.to_bits(), 0, 1f64.to_bits(), 0, 0, 99),
                |&(r, p)| {
                    let slot = rows[r].at.slot as u32;
                    let (t, k, tp) = (p.temperature.to_bits(), p.top_k as u32, p.top_p.to_bits());
                    (r as u32, t, k, tp, p.seed, p.draw as u32, slot)
                },
            );
            let got = (
                read32(&bytes, &lay, Array::LogitRow, i),
                read32(&bytes, &lay, Array::Temperature, i),
                read32(&bytes, &lay, Array::TopK, i),
                read64(&bytes, &lay, Array::TopP, i),
                read64(&bytes, &lay, Array::Seed, i),
                read32(&bytes, &lay, Array::Draw, i),
                read32(&bytes, &lay, Array::SampleSlot, i),
            );
            assert_eq!(got, want, "sample {i}");
        }
        // A scoring step's targets, and no array reaching into the next one.
        lay.fill(&mut words, &rows, 5, &[], 0, &[(4, 77), (2, 66), (0, 55)], 99, 4);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        for (i, (row, token)) in [(4, 77), (2, 66), (0, 55)].into_iter().enumerate() {
            assert_eq!(read32(&bytes, &lay, Array::LogitRow, i), row);
            assert_eq!(read32(&bytes, &lay, Array::Target, i), token);
        }
        let ends: Vec<u64> = Array::ALL.iter().map(|&a| lay.byte_offset(a)).collect();
        for pair in ends.windows(2) {
            assert!(pair[1] - pair[0] >= 4 * 9, "each array holds 9 entries: {ends:?}");
        }
        assert!(8 * lay.words() as u64 - ends[ends.len() - 1] >= 4 * 9);
        assert_eq!(lay.byte_offset(Array::TopP) % 8, 0);
    }

    /// Attention's tiles: every padded row in exactly one tile, in order; a tile's rows of one
    /// slot and at most `most`; a tile cut short only where the slot changes; the entries past
    /// the last tile empty.
    #[test]
    fn tiles_are_the_longest_runs_of_one_slot() {
        let lay = Layout::new(12);
        let mut words = vec![u64::MAX; lay.words()];
        let row =
            |slot: usize, pos: usize| DeviceRow { feed: Feed::Sampled, at: RowAt { slot, pos } };
        // A 5-row prompt, a decode row, a 2-row prompt, a decode row; padded with two rows of
        // the pad slot (99).
        let slots = [3, 3, 3, 3, 3, 0, 2, 2, 5];
        let rows: Vec<DeviceRow> = slots.iter().enumerate().map(|(i, &s)| row(s, i)).collect();
        for (most, want) in [
            (2, vec![(0, 2), (2, 2), (4, 1), (5, 1), (6, 2), (8, 1), (9, 2)]),
            (4, vec![(0, 4), (4, 1), (5, 1), (6, 2), (8, 1), (9, 2)]),
            (1, (0..11).map(|i| (i, 1)).collect()),
        ] {
            let tiles = lay.fill(&mut words, &rows, 11, &[], 0, &[], 99, most);
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let got: Vec<(u32, u32)> = (0..11)
                .map(|i| {
                    (
                        read32(&bytes, &lay, Array::TileRow, i),
                        read32(&bytes, &lay, Array::TileLen, i),
                    )
                })
                .collect();
            assert_eq!(tiles, want.len(), "tiles of at most {most}");
            assert_eq!(&got[..tiles], &want[..], "tiles of at most {most}");
            assert!(got[tiles..].iter().all(|&(_, len)| len == 0), "empty past the last: {got:?}");
        }
    }
}
