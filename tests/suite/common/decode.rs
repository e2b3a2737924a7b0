//! Greedy decoding through the library's packed forward pass, and logit comparison, shared by
//! the golden tests.

use benchgen::model::{LoadedModel, Segment, SeqCache};
use candle_core::Tensor;

/// Logits `[positions][vocab]` of one prompt.
pub type Logits = Vec<Vec<f32>>;

/// Prefills every prompt as one packed batch, then decodes `steps` greedy tokens for all
/// together, through the KV caches. Returns each sequence's prefill logits and greedy ids.
pub fn packed_greedy(
    m: &LoadedModel,
    prompts: &[Vec<u32>],
    steps: usize,
) -> (Vec<Logits>, Vec<Vec<u32>>) {
    let mut caches: Vec<SeqCache> =
        prompts.iter().map(|p| m.decoder.new_cache(p.len() + steps)).collect();
    let mut pending: Vec<Vec<u32>> = prompts.to_vec();
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    let mut prefill_logits = Vec::new();
    for step in 0..=steps {
        let segs: Vec<Segment> = pending
            .iter()
            .zip(&caches)
            .map(|(p, c)| Segment { len: p.len(), offset: c.len() })
            .collect();
        let flat: Vec<u32> = pending.iter().flatten().copied().collect();
        let tokens = Tensor::new(flat.as_slice(), m.decoder.device()).unwrap();
        let mut refs: Vec<&mut SeqCache> = caches.iter_mut().collect();
        let hidden = m.decoder.forward(&tokens, &segs, Some(&mut refs)).unwrap();
        let logits = m.decoder.logits(&hidden).unwrap().to_vec2::<f32>().unwrap();
        let mut start = 0;
        for (i, s) in segs.iter().enumerate() {
            let rows = &logits[start..start + s.len];
            if step == 0 {
                prefill_logits.push(rows.to_vec());
            }
            let next = benchgen::engine::sampling::argmax(&rows[s.len - 1]);
            if step < steps {
                out[i].push(next);
            }
            pending[i] = vec![next];
            start += s.len;
        }
    }
    (prefill_logits, out)
}

/// The largest absolute difference between two logit matrices of the same shape.
pub fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}
