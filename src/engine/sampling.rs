//! Picking the next token from a row of logits.

use super::GenParams;
use crate::rng::SplitMix64;

pub use crate::rng::item_seed;

/// Index of the largest logit; ties go to the lowest index so greedy decoding is deterministic.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
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
