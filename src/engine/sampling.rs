//! Picking the next token from a row of logits.

use super::GenParams;
use crate::rng::SplitMix64;

pub use crate::rng::item_seed;

/// Index of the largest logit; ties go to the lowest index so greedy decoding is deterministic.
/// (A NaN never wins, except as the first logit, which nothing beats.)
pub fn argmax(logits: &[f32]) -> u32 {
    if logits.first().is_none_or(|v| v.is_nan()) {
        return 0;
    }
    // The largest value in independent lanes (a loop that vectorises, where one running index
    // does not), then its first index: the vocabulary is read twice, from cache the second time.
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = logits.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let max = lanes.iter().chain(tail).fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    logits.iter().position(|&v| v == max).unwrap_or(0) as u32
}

/// Greedy when `temperature <= 0`, else temperature / top-k / top-p sampling from `rng`.
pub fn sample(logits: &[f32], params: &GenParams, rng: &mut SplitMix64) -> u32 {
    if params.temperature <= 0.0 || logits.is_empty() {
        return argmax(logits);
    }
    let t = params.temperature as f32;
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if let Some(k) = params.top_k.filter(|&k| k > 0) {
        order.truncate(k);
    }
    let max = logits[order[0]];
    let weights: Vec<f64> = order.iter().map(|&i| (((logits[i] - max) / t) as f64).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut keep = weights.len();
    if let Some(p) = params.top_p.filter(|&p| p < 1.0) {
        let mut acc = 0.0;
        for (n, w) in weights.iter().enumerate() {
            acc += w / total;
            if acc >= p {
                keep = n + 1;
                break;
            }
        }
    }
    let total: f64 = weights[..keep].iter().sum();
    let mut target = rng.unit() * total;
    for (n, w) in weights[..keep].iter().enumerate() {
        if target < *w {
            return order[n] as u32;
        }
        target -= w;
    }
    order[keep - 1] as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f64, top_k: Option<usize>, top_p: Option<f64>) -> GenParams {
        GenParams { max_new_tokens: 1, stop: vec![], temperature, top_k, top_p }
    }

    /// The first index whose logit nothing after it beats, as one running index finds it.
    fn argmax_by_scan(logits: &[f32]) -> u32 {
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        best as u32
    }

    #[test]
    fn argmax_is_the_first_maximum_with_nans_zeros_and_infinities() {
        let mut rng = SplitMix64::new(11);
        for len in [0, 1, 2, 15, 16, 17, 33, 100, 1000] {
            for case in 0..12 {
                let mut v: Vec<f32> =
                    (0..len).map(|_| ((rng.next_u64() % 2001) as f32 - 1000.0) / 8.0).collect();
                if len > 0 {
                    let at = |r: u64| (r % len as u64) as usize;
                    match case {
                        1 => v[at(rng.next_u64())] = f32::NAN,
                        2 => v[0] = f32::NAN,
                        3 => v.iter_mut().for_each(|x| *x = f32::NAN),
                        4 => v.iter_mut().for_each(|x| *x = f32::NEG_INFINITY),
                        5 => v
                            .iter_mut()
                            .for_each(|x| *x = if x.is_sign_negative() { -0.0 } else { 0.0 }),
                        6 => v[at(rng.next_u64())] = f32::INFINITY,
                        7 => v.iter_mut().for_each(|x| *x = x.round() / 100.0),
                        8 => (v[at(rng.next_u64())], v[0]) = (f32::NAN, f32::NEG_INFINITY),
                        _ => {}
                    }
                }
                assert_eq!(argmax(&v), argmax_by_scan(&v), "case {case}: {v:?}");
            }
        }
    }

    #[test]
    fn greedy_takes_first_maximum() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
        let mut rng = SplitMix64::new(0);
        assert_eq!(sample(&[0.0, 5.0, 1.0], &params(0.0, None, None), &mut rng), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_sampling_is_seeded() {
        let logits = [1.0, 2.0, 1.5, 0.5];
        let mut rng = SplitMix64::new(3);
        for _ in 0..20 {
            assert_eq!(sample(&logits, &params(1.0, Some(1), None), &mut rng), 1);
        }
        let draw = |seed| {
            let mut rng = SplitMix64::new(seed);
            (0..32).map(|_| sample(&logits, &params(1.0, None, None), &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(9), draw(9));
        let all = draw(9);
        assert!(all.iter().any(|&t| t != 1), "temperature 1 should not always pick the max");
    }

    #[test]
    fn top_p_excludes_the_tail() {
        // Token 0 holds ~99.99% of the mass; with top_p 0.5 only it may be drawn.
        let logits = [10.0, 0.0, 0.0, 0.0];
        let mut rng = SplitMix64::new(5);
        for _ in 0..50 {
            assert_eq!(sample(&logits, &params(1.0, None, Some(0.5)), &mut rng), 0);
        }
    }
}
