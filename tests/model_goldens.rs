//! The decoder against HuggingFace transformers: logits and greedy tokens recorded by
//! `tools/make_goldens.py` (never benchgen compared with itself).

use benchgen::model::{LoadedModel, Segment, SeqCache};
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    input_ids: Vec<u32>,
    logits: Vec<Vec<f32>>,
    greedy_ids: Vec<u32>,
}

fn golden(name: &str) -> Golden {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/goldens").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn embedded() -> LoadedModel {
    LoadedModel::load(&benchgen::embedded::model_checkpoint(), &Device::Cpu, DType::F32).unwrap()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

/// Prefill every prompt as one packed batch, then decode `steps` greedy tokens for all together.
/// Returns each sequence's prefill logits and its greedy ids.
fn packed_greedy(m: &LoadedModel, prompts: &[Vec<u32>], steps: usize) -> (Vec<Vec<Vec<f32>>>, Vec<Vec<u32>>) {
    let mut caches: Vec<SeqCache> = prompts.iter().map(|p| m.model.new_cache(p.len() + steps)).collect();
    let mut pending: Vec<Vec<u32>> = prompts.to_vec();
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    let mut prefill_logits = Vec::new();
    for step in 0..=steps {
        let segs: Vec<Segment> =
            pending.iter().zip(&caches).map(|(p, c)| Segment { len: p.len(), offset: c.len() }).collect();
        let flat: Vec<u32> = pending.iter().flatten().copied().collect();
        let tokens = Tensor::new(flat.as_slice(), &Device::Cpu).unwrap();
        let mut refs: Vec<&mut SeqCache> = caches.iter_mut().collect();
        let hidden = m.model.forward(&tokens, &segs, Some(&mut refs)).unwrap();
        let logits = m.model.logits(&hidden).unwrap().to_vec2::<f32>().unwrap();
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

#[test]
fn embedded_model_matches_transformers_alone_and_batched() {
    let g = golden("embedded");
    let m = embedded();
    for case in &g.cases {
        assert_eq!(m.tokenizer.encode(&case.prompt).unwrap(), case.input_ids, "tokenizer: {:?}", case.prompt);
    }
    let prompts: Vec<Vec<u32>> = g.cases.iter().map(|c| c.input_ids.clone()).collect();
    let steps = g.cases[0].greedy_ids.len();

    let mut worst = 0f32;
    for (case, prompt) in g.cases.iter().zip(&prompts) {
        let (logits, ids) = packed_greedy(&m, std::slice::from_ref(prompt), steps);
        let d = max_diff(&logits[0], &case.logits);
        worst = worst.max(d);
        assert!(d < 1e-4, "{:?}: logits differ by {d}", case.prompt);
        assert_eq!(ids[0], case.greedy_ids, "{:?}: greedy tokens", case.prompt);
    }
    let (logits, ids) = packed_greedy(&m, &prompts, steps);
    for ((case, l), ids) in g.cases.iter().zip(&logits).zip(&ids) {
        let d = max_diff(l, &case.logits);
        assert!(d < 1e-4, "{:?} in a mixed batch: logits differ by {d}", case.prompt);
        assert_eq!(ids, &case.greedy_ids, "{:?} in a mixed batch: greedy tokens", case.prompt);
    }
    eprintln!("embedded: largest logit difference vs transformers {worst:e}");
}

#[test]
fn a_sequence_gets_bitwise_identical_logits_whatever_shares_its_batch() {
    let g = golden("embedded");
    let m = embedded();
    let prompts: Vec<Vec<u32>> = g.cases.iter().map(|c| c.input_ids.clone()).collect();
    let (alone, alone_ids) = packed_greedy(&m, &prompts[..1], 8);
    let (batched, batched_ids) = packed_greedy(&m, &prompts, 8);
    assert_eq!(alone[0], batched[0]);
    assert_eq!(alone_ids[0], batched_ids[0]);
}
