//! The kernel families (`BENCHGEN_ISA`: portable, AVX2, AVX-512; portable, NEON) are specified
//! to give the same bits, so a decoder's logits must not depend on which one packed its weights
//! and ran its products, attention and element-wise ops. The family is process-wide, so this
//! binary holds a single test, the only code here that switches it.

use benchgen::device::WeightType;
use benchgen::kernels::isa::{self, Isa};
use benchgen::model::random::random_decoder;
use benchgen::model::{KvDtype, ModelConfig, Segment, SeqCache};
use candle_core::{DType, Device, Tensor};

/// Small random-weight models: GQA with a head dim of 32 (the vector attention kernels), and a
/// sliding window with a head dim of 40 (off the 16 lanes: the portable attention loops compiled
/// for each family). Intermediate sizes off every vector width.
fn configs() -> Vec<ModelConfig> {
    let llama = serde_json::json!({
        "model_type": "llama", "hidden_size": 128, "intermediate_size": 200, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": false
    });
    let mistral = serde_json::json!({
        "model_type": "mistral", "hidden_size": 80, "intermediate_size": 100, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 300, "sliding_window": 20,
        "tie_word_embeddings": true
    });
    [llama, mistral].into_iter().map(|c| serde_json::from_value(c).unwrap()).collect()
}

/// The bits of every logit of a prefill of two prompts (37 and 5 tokens: keys in whole blocks of
/// 16 and a tail) and then four decode steps of both.
fn logits_bits(cfg: &ModelConfig, weights: WeightType, kv: KvDtype) -> Vec<u32> {
    let mut m = random_decoder(cfg, weights, &Device::Cpu, 11).unwrap();
    m.set_kv_dtype(kv).unwrap();
    let mut caches: Vec<SeqCache> = (0..2).map(|_| m.new_cache(48)).collect();
    let mut bits = Vec::new();
    let mut pending: Vec<Vec<u32>> =
        vec![(0..37).map(|i| (i * 37 + 5) % 300).collect(), vec![7, 250, 3, 99, 42]];
    for step in 0..5u32 {
        let segs: Vec<Segment> = pending
            .iter()
            .zip(&caches)
            .map(|(p, c)| Segment { len: p.len(), offset: c.len() })
            .collect();
        let flat: Vec<u32> = pending.concat();
        let tokens = Tensor::new(flat.as_slice(), &Device::Cpu).unwrap();
        let mut refs: Vec<&mut SeqCache> = caches.iter_mut().collect();
        let hidden = m.forward(&tokens, &segs, Some(&mut refs)).unwrap();
        bits.extend(m.logits_f32(&hidden).unwrap().into_iter().map(f32::to_bits));
        pending = (0..2).map(|s| vec![(step * 31 + s * 17 + 1) % 300]).collect();
    }
    bits
}

#[test]
fn every_kernel_family_gives_the_same_logits() {
    let families: Vec<Isa> = Isa::ALL.iter().copied().filter(|i| i.supported()).collect();
    for i in Isa::ALL.iter().filter(|i| !i.supported()) {
        eprintln!("skipped {}: this CPU lacks it", i.name());
    }
    for cfg in configs() {
        for weights in [
            WeightType::Float(DType::F32),
            WeightType::Float(DType::BF16),
            WeightType::Float(DType::F16),
            WeightType::Q8_0,
        ] {
            for kv in [KvDtype::F32, KvDtype::Bf16, KvDtype::Int8] {
                let runs: Vec<Vec<u32>> = families
                    .iter()
                    .map(|&isa| {
                        isa::select(isa).unwrap();
                        logits_bits(&cfg, weights, kv)
                    })
                    .collect();
                for (isa, run) in families.iter().zip(&runs) {
                    assert!(run.len() == (37 + 5 + 8) * 300, "every step's logits");
                    assert!(
                        *run == runs[0],
                        "{isa:?} differs from {:?}: {} model, {weights:?} weights, {kv:?} KV cache",
                        families[0],
                        cfg.model_type.as_deref().unwrap_or("llama"),
                    );
                }
            }
        }
    }
    // Leave the CPU's best in force, as a process would start.
    isa::select(Isa::detect()).unwrap();
}
