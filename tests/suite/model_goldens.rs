//! The decoder against HuggingFace transformers. `tools/make_goldens.py` made the random-weight
//! checkpoints in `fixtures/models/` and recorded transformers' logits (alone and as a
//! left-padded batch) and 32 greedy tokens for each; benchgen must reproduce them, alone and in
//! its own packed mixed-length batches. Never benchgen compared with itself.

use crate::common;
use std::path::{Path, PathBuf};

use crate::common::decode::{max_diff, packed_greedy, Logits};
use benchgen::device::WeightType;
use benchgen::engine::{split_pair, Generator, LocalEngine, LoglikOutput, LoglikRequest};
use benchgen::model::{Backend, Checkpoint, LoadedModel, MatrixFormat};
use candle_core::{DType, Device};
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    checkpoint: String,
    cases: Vec<Case>,
    loglikelihood: Vec<LoglikCase>,
}

#[derive(Deserialize)]
struct LoglikCase {
    context: String,
    continuation: String,
    context_ids: Vec<u32>,
    continuation_ids: Vec<u32>,
    logprob: f64,
    is_greedy: bool,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    input_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
}

const TOLERANCE: f32 = 1e-4;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The golden's metadata and, per case, (alone logits, left-padded batch logits) from transformers.
fn golden(name: &str) -> (Golden, Vec<(Logits, Logits)>) {
    let dir = repo().join("fixtures/goldens");
    let g: Golden =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap())
            .unwrap();
    let tensors =
        candle_core::safetensors::load(dir.join(format!("{name}.safetensors")), &Device::Cpu)
            .unwrap();
    let get = |k: String| tensors[&k].to_vec2::<f32>().unwrap();
    let logits = (0..g.cases.len())
        .map(|i| (get(format!("case{i}.logits")), get(format!("case{i}.batch_logits"))))
        .collect();
    (g, logits)
}

fn load(checkpoint: &str, backend: Backend) -> LoadedModel {
    let ckpt = Checkpoint::from_dir(&repo().join(checkpoint)).unwrap();
    LoadedModel::load_with(&ckpt, &common::test_device(), DType::F32, backend).unwrap()
}

/// The host kernels (the CPU default) and candle's ops, each against transformers.
const BACKENDS: [Backend; 2] = [Backend::Auto, Backend::Candle];

/// Checks one checkpoint against its golden with each backend.
fn check(name: &str) {
    for backend in BACKENDS {
        check_with(name, backend);
    }
}

/// Checks one checkpoint against its golden; returns the largest logit difference seen.
fn check_with(name: &str, backend: Backend) -> f32 {
    let (g, hf) = golden(name);
    let m = load(&g.checkpoint, backend);
    let name = &format!("{name} [{}]", m.decoder.backend_name());
    for case in &g.cases {
        assert_eq!(
            m.tokenizer.encode(&case.prompt, true).unwrap(),
            case.input_ids,
            "{name}: tokenizer on {:?}",
            case.prompt
        );
    }
    let prompts: Vec<Vec<u32>> = g.cases.iter().map(|c| c.input_ids.clone()).collect();
    let steps = g.cases[0].greedy_ids.len();
    let mut worst = 0f32;
    for ((case, prompt), (alone, _)) in g.cases.iter().zip(&prompts).zip(&hf) {
        let (logits, ids) = packed_greedy(&m, std::slice::from_ref(prompt), steps);
        let d = max_diff(&logits[0], alone);
        worst = worst.max(d);
        assert!(d < TOLERANCE, "{name} {:?} alone: logits differ by {d}", case.prompt);
        assert_eq!(ids[0], case.greedy_ids, "{name} {:?} alone: greedy tokens", case.prompt);
    }
    let (logits, ids) = packed_greedy(&m, &prompts, steps);
    for (((case, ours), ids), (_, batch)) in g.cases.iter().zip(&logits).zip(&ids).zip(&hf) {
        let d = max_diff(ours, batch);
        worst = worst.max(d);
        assert!(
            d < TOLERANCE,
            "{name} {:?} in a mixed batch: logits differ by {d} from transformers' padded batch",
            case.prompt
        );
        assert_eq!(
            ids, &case.greedy_ids,
            "{name} {:?} in a mixed batch: greedy tokens",
            case.prompt
        );
    }
    eprintln!("{name}: largest logit difference vs transformers {worst:.2e}");
    check_loglikelihood(name, &g, backend);
    worst
}

/// Continuation log-likelihoods, token splits and greedy flags as transformers computes them,
/// packed several to a forward pass; and the same numbers whatever the pack size.
fn check_loglikelihood(name: &str, g: &Golden, backend: Backend) {
    let m = load(&g.checkpoint, backend);
    let bitwise = m.decoder.host_format().is_some();
    for c in &g.loglikelihood {
        let (ctx, cont) = split_pair(&m.tokenizer, &c.context, &c.continuation).unwrap();
        assert_eq!(
            (ctx, cont),
            (c.context_ids.clone(), c.continuation_ids.clone()),
            "{name}: split of {:?}",
            c.context
        );
    }
    let requests: Vec<LoglikRequest> = g
        .loglikelihood
        .iter()
        .enumerate()
        .map(|(index, c)| LoglikRequest {
            index,
            context: c.context.clone(),
            continuation: c.continuation.clone(),
            ..Default::default()
        })
        .collect();
    let run = |batch: usize| {
        let mut engine = LocalEngine::new(load(&g.checkpoint, backend), batch);
        let mut out: Vec<Option<LoglikOutput>> = vec![None; requests.len()];
        engine
            .loglikelihood(requests.clone(), &mut |o| {
                let i = o.index;
                out[i] = Some(o);
                Ok(())
            })
            .unwrap();
        out.into_iter().map(Option::unwrap).collect::<Vec<_>>()
    };
    let (one, packed) = (run(1), run(4));
    let mut worst = 0f64;
    for ((c, a), b) in g.loglikelihood.iter().zip(&one).zip(&packed) {
        let d = (a.logprob - c.logprob).abs();
        worst = worst.max(d);
        assert!(
            d < 1e-4 * c.logprob.abs().max(1.0),
            "{name} {:?}+{:?}: logprob {} vs transformers {}",
            c.context,
            c.continuation,
            a.logprob,
            c.logprob
        );
        assert_eq!(a.is_greedy, c.is_greedy, "{name} {:?}: is_greedy", c.context);
        assert_eq!(a.continuation_tokens, c.continuation_ids.len());
        // candle's matmul blocking depends on the pack (float rounding only); the host kernels'
        // reduction order does not, so there the numbers are identical.
        let drift = (a.logprob - b.logprob).abs();
        if bitwise {
            assert_eq!(
                a.logprob.to_bits(),
                b.logprob.to_bits(),
                "{name} {:?}: pack size moved the logprob by {drift}",
                c.context
            );
        }
        assert!(
            drift < 1e-5 * a.logprob.abs().max(1.0),
            "{name} {:?}: pack size moved the logprob by {drift}",
            c.context
        );
        assert_eq!(a.is_greedy, b.is_greedy, "{name} {:?}: pack size changed is_greedy", c.context);
    }
    eprintln!("{name}: largest log-likelihood difference vs transformers {worst:.2e}");

    // Each pair beside a decoy option of the same context: continuations of one context share
    // its forward pass and a copy of its KV cache (the multiple-choice path). The real option
    // must still agree with transformers, the decoy with its score computed alone, and both bit
    // for bit whatever the batch size, since each context runs on its own.
    let decoy = |c: &LoglikCase| format!("{} and then some more", c.continuation);
    let grouped: Vec<LoglikRequest> = g
        .loglikelihood
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            [
                LoglikRequest {
                    index: 2 * i,
                    context: c.context.clone(),
                    continuation: c.continuation.clone(),
                    ..Default::default()
                },
                LoglikRequest {
                    index: 2 * i + 1,
                    context: c.context.clone(),
                    continuation: decoy(c),
                    ..Default::default()
                },
            ]
        })
        .collect();
    let score = |requests: Vec<LoglikRequest>, batch: usize| {
        let mut engine = LocalEngine::new(load(&g.checkpoint, backend), batch);
        let mut out: std::collections::BTreeMap<usize, LoglikOutput> = Default::default();
        engine
            .loglikelihood(requests, &mut |o| {
                out.insert(o.index, o);
                Ok(())
            })
            .unwrap();
        out.into_values().collect::<Vec<_>>()
    };
    let (one, packed) = (score(grouped.clone(), 1), score(grouped.clone(), 16));
    assert_eq!(one, packed, "{name}: shared-context scores depend on the batch size");
    for (i, c) in g.loglikelihood.iter().enumerate() {
        let o = &one[2 * i];
        let d = (o.logprob - c.logprob).abs();
        assert!(
            d < 1e-4 * c.logprob.abs().max(1.0),
            "{name} {:?}+{:?}: shared-context logprob {} vs transformers {}",
            c.context,
            c.continuation,
            o.logprob,
            c.logprob
        );
        assert_eq!(o.is_greedy, c.is_greedy, "{name} {:?}: shared-context is_greedy", c.context);
        assert_eq!(o.continuation_tokens, c.continuation_ids.len());
        let alone = score(
            vec![LoglikRequest {
                index: 0,
                context: c.context.clone(),
                continuation: decoy(c),
                ..Default::default()
            }],
            1,
        )
        .remove(0);
        let d = (one[2 * i + 1].logprob - alone.logprob).abs();
        assert!(
            d < 1e-5 * alone.logprob.abs().max(1.0),
            "{name} {:?}: the decoy scores {} beside the real option, {} alone",
            c.context,
            one[2 * i + 1].logprob,
            alone.logprob
        );
    }
}

#[test]
fn embedded_model() {
    check("embedded");
}

#[test]
fn llama_gqa_untied() {
    check("llama-gqa-untied");
}

#[test]
fn llama_nine_heads_tied() {
    check("llama-9heads-tied");
}

#[test]
fn llama3_rope_scaling_mqa() {
    check("llama3-rope-mqa");
}

#[test]
fn mistral_sliding_window() {
    // The window (6) is shorter than most prompts plus 32 generated tokens, so it matters.
    check("mistral-window");
}

#[test]
fn qwen2_bias_from_bf16_weights() {
    check("qwen2-bias-bf16");
}

#[test]
fn qwen3_qk_norm_from_sharded_weights() {
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/models/qwen3-qknorm-sharded/model.safetensors.index.json")
        .is_file());
    check("qwen3-qknorm-sharded");
}

/// Attention is computed per sequence. With the host kernels every reduction order is fixed by
/// the shapes alone, so an item's logits are bit for bit the same alone and in a batch; with
/// candle's ops the matmuls' blocking depends on the batch, so they agree to float rounding.
#[test]
fn gemma2_softcapping_and_alternating_windows() {
    check("gemma2-softcap-window");
}

#[test]
fn gemma3_local_and_global_layers() {
    check("gemma3-local-global");
}

#[test]
fn phi3_fused_projections_longrope_and_partial_rotary() {
    check("phi3-longrope-partial");
}

#[test]
fn olmo2_post_norms_and_whole_qk_norm() {
    check("olmo2-postnorm");
}

#[test]
fn gpt_neox_parallel_residual_and_partial_rotary() {
    check("gptneox-parallel-partial");
}

#[test]
fn gpt2_learned_positions_and_conv1d_weights() {
    check("gpt2-learned-pos");
}

#[test]
fn mixtral_top2_experts() {
    check("mixtral-top2");
}

#[test]
fn qwen2_moe_with_its_gated_shared_expert() {
    check("qwen2moe-shared");
}

#[test]
fn qwen3_moe_renormalised_top_k() {
    check("qwen3moe-normtopk");
}

#[test]
fn olmoe_experts_and_whole_qk_norm() {
    check("olmoe-top2");
}

#[test]
fn a_sequence_gets_the_same_answer_whatever_shares_its_batch() {
    let llama = ["llama-gqa-untied", "qwen2-bias-bf16", "mistral-window"];
    for name in llama.into_iter().chain(common::FAMILY_FIXTURES) {
        let (g, _) = golden(name);
        for backend in BACKENDS {
            let m = load(&g.checkpoint, backend);
            let bitwise = m.decoder.host_format().is_some();
            let prompts: Vec<Vec<u32>> = g.cases.iter().map(|c| c.input_ids.clone()).collect();
            let (batched, batched_ids) = packed_greedy(&m, &prompts, 8);
            for i in 0..prompts.len() {
                let (alone, alone_ids) = packed_greedy(&m, &prompts[i..=i], 8);
                if bitwise {
                    assert_eq!(
                        alone[0], batched[i],
                        "{name} prompt {i}: prefill logits differ between alone and batched"
                    );
                }
                let d = max_diff(&alone[0], &batched[i]);
                assert!(
                    d < 1e-5,
                    "{name} prompt {i}: prefill logits differ by {d} between alone and batched"
                );
                assert_eq!(alone_ids[0], batched_ids[i], "{name} prompt {i}: greedy ids");
            }
        }
    }
}

/// Every family's checkpoint split into shards (as `save_pretrained(max_shard_size=…)` writes
/// them: several files and `model.safetensors.index.json`) gives the logits of the single file,
/// bit for bit.
#[test]
fn every_family_loads_from_shards_as_from_one_file() {
    let tmp = tempfile::tempdir().unwrap();
    for name in common::FAMILY_FIXTURES {
        let single = repo().join("fixtures/models").join(name);
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(single.join(f), dir.join(f)).unwrap();
        }
        let tensors =
            candle_core::safetensors::load(single.join("model.safetensors"), &Device::Cpu).unwrap();
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        let mut weight_map = serde_json::Map::new();
        for (i, part) in names.chunks(names.len().div_ceil(3)).enumerate() {
            let file = format!("model-{:05}-of-00003.safetensors", i + 1);
            let shard: std::collections::HashMap<String, candle_core::Tensor> =
                part.iter().map(|n| ((*n).clone(), tensors[*n].clone())).collect();
            candle_core::safetensors::save(&shard, dir.join(&file)).unwrap();
            for n in part {
                weight_map.insert((*n).clone(), file.clone().into());
            }
        }
        let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
        let a = load(&format!("fixtures/models/{name}"), Backend::Auto);
        let b = load(dir.to_str().unwrap(), Backend::Auto);
        let prompts: Vec<Vec<u32>> =
            golden(name).0.cases.iter().map(|c| c.input_ids.clone()).collect();
        let (la, ia) = packed_greedy(&a, &prompts, 4);
        let (lb, ib) = packed_greedy(&b, &prompts, 4);
        assert!(la == lb && ia == ib, "{name}: sharded and single-file logits differ");
    }
}

/// A Gemma 3 checkpoint with its vision tower (`Gemma3ForConditionalGeneration`: the text model's
/// settings under `text_config`, its tensors under `model.language_model.` or, before
/// transformers 5, `language_model.model.`, beside the tower's) runs its text model.
#[test]
fn gemma3_text_model_of_a_vision_checkpoint() {
    let name = "gemma3-local-global";
    let text = load(&format!("fixtures/models/{name}"), Backend::Auto);
    let single = repo().join("fixtures/models").join(name);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(single.join("config.json")).unwrap())
            .unwrap();
    let tensors =
        candle_core::safetensors::load(single.join("model.safetensors"), &Device::Cpu).unwrap();
    let prompts: Vec<Vec<u32>> = golden(name).0.cases.iter().map(|c| c.input_ids.clone()).collect();
    let (want, want_ids) = packed_greedy(&text, &prompts, 4);
    let tmp = tempfile::tempdir().unwrap();
    for prefix in ["model.language_model.", "language_model.model."] {
        let dir = tmp.path().join(prefix.trim_end_matches('.'));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(single.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
        let nested = serde_json::json!({"model_type": "gemma3", "eos_token_id": cfg["eos_token_id"],
            "bos_token_id": cfg["bos_token_id"], "text_config": cfg,
            "vision_config": {"model_type": "siglip_vision_model"}});
        std::fs::write(dir.join("config.json"), nested.to_string()).unwrap();
        let mut renamed: std::collections::HashMap<String, candle_core::Tensor> = tensors
            .iter()
            .map(|(k, v)| (format!("{prefix}{}", k.strip_prefix("model.").unwrap()), v.clone()))
            .collect();
        renamed.insert(
            "vision_tower.vision_model.post_layernorm.weight".into(),
            candle_core::Tensor::ones(8, DType::F32, &Device::Cpu).unwrap(),
        );
        candle_core::safetensors::save(&renamed, dir.join("model.safetensors")).unwrap();
        let m = load(dir.to_str().unwrap(), Backend::Auto);
        let (got, ids) = packed_greedy(&m, &prompts, 4);
        assert!(got == want && ids == want_ids, "{prefix}: logits differ from the text model's");
    }
}

/// The parameter count a run records is the checkpoint's: every tensor's elements, for every
/// family (the fixtures hold parameters only, no buffers).
#[test]
fn parameter_counts_are_the_checkpoints_tensors() {
    let models = std::fs::read_dir(repo().join("fixtures/models")).unwrap();
    let mut checked = 0;
    for dir in models.map(|e| e.unwrap().path()) {
        if dir.join("adapter_config.json").exists() {
            continue;
        }
        let mut elements = 0;
        for f in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
            if f.extension().is_some_and(|e| e == "safetensors") {
                let tensors = candle_core::safetensors::load(&f, &Device::Cpu).unwrap();
                elements += tensors.values().map(|t| t.elem_count()).sum::<usize>();
            }
        }
        let m = LoadedModel::load(&Checkpoint::from_dir(&dir).unwrap(), &Device::Cpu, DType::F32)
            .unwrap();
        assert_eq!(m.num_parameters, elements, "{}", dir.display());
        checked += 1;
    }
    assert!(checked >= 16, "{checked} checkpoints");
}

#[test]
fn unsupported_architecture_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(repo().join("fixtures/models/llama-gqa-untied").join(f), dir.path().join(f))
            .unwrap();
    }
    let cfg = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    let as_type = |model_type: &str| {
        let text =
            cfg.replace("\"llama\"", &format!("\"{model_type}\"")).replace("\"silu\"", "\"gelu\"");
        std::fs::write(dir.path().join("config.json"), text).unwrap();
        let ckpt = Checkpoint::from_dir(dir.path()).unwrap();
        LoadedModel::load(&ckpt, &Device::Cpu, DType::F32).err().unwrap().to_string()
    };
    let err = as_type("mamba");
    assert!(err.contains("mamba") && err.contains("llama, mistral, qwen2, qwen3, gemma2"), "{err}");
    // A family this build runs, over weights of another: the missing tensor is named.
    assert!(as_type("llama").contains("hidden_act \"gelu\" is not supported for llama"));
    let err = as_type("gpt_neox");
    assert!(err.contains("cannot find tensor gpt_neox.embed_in.weight"), "{err}");
}

/// bf16 weights on the host kernels (where the CPU has AVX-512 BF16): every product takes bf16
/// inputs and accumulates in f32, so logits move from transformers' f32 ones by bf16 rounding
/// only, greedy tokens mostly agree, and an item's logits are still the same bits alone and in
/// a batch.
#[test]
fn bf16_weights_on_the_host_kernels() {
    for name in ["qwen2-bias-bf16", "llama-gqa-untied", "qwen3-qknorm-sharded", "embedded"] {
        let (g, hf) = golden(name);
        let ckpt = Checkpoint::from_dir(&repo().join(&g.checkpoint)).unwrap();
        let m = LoadedModel::load(&ckpt, &Device::Cpu, DType::BF16).unwrap();
        if m.decoder.host_format() != Some(MatrixFormat::Bf16) {
            eprintln!(
                "SKIPPED: this CPU has no AVX-512 BF16, so bf16 weights run on candle ({})",
                m.decoder.backend_name()
            );
            return;
        }
        let prompts: Vec<Vec<u32>> = g.cases.iter().map(|c| c.input_ids.clone()).collect();
        let steps = g.cases[0].greedy_ids.len();
        let (batched, batched_ids) = packed_greedy(&m, &prompts, steps);
        let (mut worst, mut scale, mut same_tokens, mut tokens) = (0f32, 0f32, 0, 0);
        for (i, case) in g.cases.iter().enumerate() {
            let (alone, alone_ids) = packed_greedy(&m, &prompts[i..=i], steps);
            assert_eq!(
                alone[0], batched[i],
                "{name} prompt {i}: bf16 logits differ between alone and batched"
            );
            assert_eq!(
                alone_ids[0], batched_ids[i],
                "{name} prompt {i}: bf16 greedy ids differ between alone and batched"
            );
            worst = worst.max(max_diff(&alone[0], &hf[i].0));
            scale = scale.max(hf[i].0.iter().flatten().fold(0f32, |a, v| a.max(v.abs())));
            same_tokens +=
                alone_ids[0].iter().zip(&case.greedy_ids).take_while(|(a, b)| a == b).count();
            tokens += steps;
        }
        eprintln!("{name} [bf16 host]: largest logit difference vs transformers f32 {worst:.2e} (largest logit {scale:.2e}); greedy prefix agreement {same_tokens}/{tokens}");
        // bf16 keeps 8 significant bits: a few roundings per layer move a logit by a few
        // hundredths of the largest one, not more.
        assert!(
            worst < 0.05 * scale.max(1.0),
            "{name}: bf16 logits differ by {worst} (largest logit {scale})"
        );
    }
}

/// Q8_0 weights on the host kernels (`--dtype q8_0`): every linear layer in llama.cpp's 8-bit
/// blocks, f32 activations. Logits move from benchgen's own f32 ones by the weights' 8-bit
/// rounding only, and an item's logits (prefill, then every greedy step through the KV cache)
/// are the same bits alone and in a batch.
#[test]
fn q8_0_weights_on_the_host_kernels() {
    for name in [
        "qwen2-bias-bf16",
        "llama-gqa-untied",
        "llama-9heads-tied",
        "qwen3-qknorm-sharded",
        "embedded",
    ] {
        let (g, _) = golden(name);
        let ckpt = Checkpoint::from_dir(&repo().join(&g.checkpoint)).unwrap();
        let m = LoadedModel::load(&ckpt, &Device::Cpu, WeightType::Q8_0).unwrap();
        assert_eq!(m.decoder.host_format(), Some(MatrixFormat::Q8_0));
        let f32m = LoadedModel::load(&ckpt, &Device::Cpu, DType::F32).unwrap();
        let prompts: Vec<Vec<u32>> = g.cases.iter().map(|c| c.input_ids.clone()).collect();
        let steps = g.cases[0].greedy_ids.len();
        let (batched, batched_ids) = packed_greedy(&m, &prompts, steps);
        let (reference, _) = packed_greedy(&f32m, &prompts, 0);
        let (mut worst, mut scale) = (0f32, 0f32);
        for i in 0..prompts.len() {
            let (alone, alone_ids) = packed_greedy(&m, &prompts[i..=i], steps);
            let bits = |l: &Logits| l.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&alone[0]),
                bits(&batched[i]),
                "{name} prompt {i}: q8_0 logits differ between alone and batched"
            );
            assert_eq!(
                alone_ids[0], batched_ids[i],
                "{name} prompt {i}: q8_0 greedy ids differ between alone and batched"
            );
            worst = worst.max(max_diff(&alone[0], &reference[i]));
            scale = scale.max(reference[i].iter().flatten().fold(0f32, |a, v| a.max(v.abs())));
        }
        eprintln!("{name} [q8_0 host]: largest logit difference vs benchgen f32 {worst:.2e} (largest logit {scale:.2e})");
        // Each weight moves by at most half its block's step (amax/254); through the layers of
        // these small random models that is up to about 5% of the largest logit (measured:
        // 0.26 of 5.0 on qwen2-bias-bf16; tests/gguf.rs sees the same from Q8_0 GGUF files), while
        // a layout or scale mistake moves logits by their own size.
        assert!(
            worst < 0.1 * scale.max(1.0),
            "{name}: q8_0 logits differ from f32 by {worst} (largest logit {scale})"
        );
    }
}

#[test]
fn q8_0_needs_the_host_kernels() {
    let ckpt = Checkpoint::from_dir(&repo().join("fixtures/models/llama-gqa-untied")).unwrap();
    let err = LoadedModel::load_with(&ckpt, &Device::Cpu, WeightType::Q8_0, Backend::Candle)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("q8_0 runs on the CPU host kernels only"), "{err}");
}
