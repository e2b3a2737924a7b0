//! Trains the embedded default model: a tiny Llama that does addition and
//! subtraction, in HF layout, with candle's autograd on CPU. Deterministic: the same flags give
//! the same bytes.
//!
//!     cargo run --release --example train_fixture
//!
//! Writes `fixtures/embedded/model/` (config.json, model.safetensors, tokenizer.json,
//! tokenizer_config.json, generation_config.json) and the held-out items of the embedded
//! environment, `fixtures/embedded/env/data/test.jsonl`, which training never sees.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use benchgen::model::random::initial_weights;
use benchgen::model::{Backend, Decoder, ModelConfig, Segment};
use benchgen::rng::SplitMix64 as Rng;
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 5000)]
    steps: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    #[arg(long, default_value_t = 1234)]
    seed: u64,
    #[arg(long, default_value_t = 100)]
    test_items: usize,
    /// Operands have 1 to this many digits.
    #[arg(long, default_value_t = 2)]
    max_digits: u32,
    #[arg(long, default_value = "fixtures/embedded/model")]
    out_model: PathBuf,
    #[arg(long, default_value = "fixtures/embedded/env/data/test.jsonl")]
    out_test: PathBuf,
}

/// A problem "a+b=" or "a-b=" with its answer; operands have 1 to `max_digits` digits.
fn problem(rng: &mut Rng, max_digits: u32) -> (String, String) {
    let digits = |rng: &mut Rng| -> u64 {
        let d = 1 + rng.below(u64::from(max_digits)) as u32;
        rng.below(10u64.pow(d))
    };
    let (a, b) = (digits(rng), digits(rng));
    if rng.below(2) == 0 {
        (format!("{a}+{b}="), (a + b).to_string())
    } else {
        let (a, b) = (a.max(b), a.min(b));
        (format!("{a}-{b}="), (a - b).to_string())
    }
}

/// GPT-2's byte ↔ printable-character table, so the byte-level BPE covers any text.
fn byte_chars() -> Vec<char> {
    let mut printable: Vec<u32> = ('!' as u32..='~' as u32).collect();
    printable.extend('¡' as u32..='¬' as u32);
    printable.extend('®' as u32..='ÿ' as u32);
    let mut extra = 0;
    (0u32..256)
        .map(|b| {
            if printable.contains(&b) {
                char::from_u32(b).unwrap_or('?')
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap_or('?')
            }
        })
        .collect()
}

const BOS: u32 = 256;
const EOS: u32 = 257;

fn tokenizer_json() -> serde_json::Value {
    let vocab: serde_json::Map<String, serde_json::Value> =
        byte_chars().into_iter().enumerate().map(|(i, c)| (c.to_string(), json!(i))).collect();
    let special = |id: u32, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                            "trim_offsets": true, "use_regex": true});
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(BOS, "<s>"), special(EOS, "</s>")],
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [BOS], "tokens": ["<s>"]}}
        },
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []}
    })
}

fn config() -> serde_json::Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "vocab_size": 260,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 512,
        "tie_word_embeddings": true,
        "attention_bias": false,
        "mlp_bias": false,
        "hidden_act": "silu",
        "bos_token_id": BOS,
        "eos_token_id": EOS,
        "torch_dtype": "float32"
    })
}

/// Token ids of "<s>prompt answer</s>" and which positions are supervised (answer and EOS).
fn encode(prompt: &str, answer: &str) -> (Vec<u32>, usize) {
    // Digits and operators are single ASCII bytes, so byte id == token id.
    let mut ids = vec![BOS];
    ids.extend(prompt.bytes().map(u32::from));
    let answer_start = ids.len();
    ids.extend(answer.bytes().map(u32::from));
    ids.push(EOS);
    (ids, answer_start)
}

struct Batch {
    inputs: Tensor,
    targets: Tensor,
    mask: Tensor,
    segs: Vec<Segment>,
    count: f64,
}

fn make_batch(problems: &[(String, String)], device: &Device) -> Result<Batch> {
    let encoded: Vec<(Vec<u32>, usize)> = problems.iter().map(|(p, a)| encode(p, a)).collect();
    let t = encoded.iter().map(|(ids, _)| ids.len()).max().unwrap_or(1) - 1;
    let (mut inputs, mut targets, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    for (ids, answer_start) in &encoded {
        for i in 0..t {
            inputs.push(*ids.get(i).unwrap_or(&EOS));
            targets.push(*ids.get(i + 1).unwrap_or(&EOS));
            let supervised = i + 1 >= *answer_start && i + 1 < ids.len();
            mask.push(if supervised { 1f32 } else { 0f32 });
        }
    }
    let count = mask.iter().map(|&m| m as f64).sum();
    let n = inputs.len();
    Ok(Batch {
        inputs: Tensor::from_vec(inputs, n, device)?,
        targets: Tensor::from_vec(targets, (n, 1), device)?,
        mask: Tensor::from_vec(mask, (n, 1), device)?,
        segs: vec![Segment { len: t, offset: 0 }; problems.len()],
        count,
    })
}

/// Masked mean cross-entropy, and how many problems have every answer token as the argmax
/// (under teacher forcing that is exactly "greedy decoding gets it right").
fn loss_and_correct(model: &Decoder, batch: &Batch) -> Result<(Tensor, usize)> {
    let hidden = model.forward(&batch.inputs, &batch.segs, None)?;
    let logits = model.logits(&hidden)?;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let picked = logp.gather(&batch.targets, 1)?;
    let loss = ((picked * &batch.mask)?.sum_all()?.neg()? / batch.count)?;

    let argmax = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let targets = batch.targets.flatten_all()?.to_vec1::<u32>()?;
    let mask = batch.mask.flatten_all()?.to_vec1::<f32>()?;
    let t = batch.segs[0].len;
    let correct = (0..batch.segs.len())
        .filter(|b| {
            (0..t).all(|i| mask[b * t + i] == 0.0 || argmax[b * t + i] == targets[b * t + i])
        })
        .count();
    Ok((loss, correct))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = Device::Cpu;
    let cfg_json = config();
    let cfg: ModelConfig = serde_json::from_value(cfg_json.clone())?;

    // Held-out items first, from their own stream, so they never depend on --steps.
    let mut test_rng = Rng::new(args.seed ^ 0x7E57);
    let mut held_out = Vec::new();
    let mut seen = HashSet::new();
    while held_out.len() < args.test_items {
        let p = problem(&mut test_rng, args.max_digits);
        if seen.insert(p.0.clone()) {
            held_out.push(p);
        }
    }

    let mut rng = Rng::new(args.seed);
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().map_err(|_| anyhow::anyhow!("varmap poisoned"))?;
        // The same stream then draws the training problems: its position matters.
        for (name, t) in initial_weights(&cfg, &mut rng)? {
            data.insert(name, Var::from_tensor(&t)?);
        }
    }
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let model = Decoder::load_with(vb, &cfg, Backend::CandleDifferentiable, DType::F32.into())?;
    let params = ParamsAdamW { lr: args.lr, weight_decay: 0.01, ..Default::default() };
    let mut opt = AdamW::new(varmap.all_vars(), params)?;

    let eval_batch = make_batch(&held_out, &device)?;
    let started = Instant::now();
    for step in 1..=args.steps {
        let problems: Vec<(String, String)> =
            std::iter::from_fn(|| Some(problem(&mut rng, args.max_digits)))
                .filter(|p| !seen.contains(&p.0))
                .take(args.batch)
                .collect();
        let batch = make_batch(&problems, &device)?;
        // Linear warm-up then cosine decay: stable from a random start, sharp at the end.
        let warm = 100.0;
        let s = step as f64;
        let lr = if s < warm {
            args.lr * s / warm
        } else {
            let progress = (s - warm) / (args.steps as f64 - warm).max(1.0);
            args.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        };
        opt.set_learning_rate(lr);
        let (loss, _) = loss_and_correct(&model, &batch)?;
        opt.backward_step(&loss)?;
        if step % 250 == 0 || step == args.steps {
            let (eval_loss, correct) = loss_and_correct(&model, &eval_batch)?;
            eprintln!(
                "step {step:5}  loss {:.4}  held-out loss {:.4}  held-out greedy {}/{}  {:.0}s",
                loss.to_scalar::<f32>()?,
                eval_loss.to_scalar::<f32>()?,
                correct,
                held_out.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }

    std::fs::create_dir_all(&args.out_model)
        .with_context(|| format!("creating {}", args.out_model.display()))?;
    let tensors: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("varmap poisoned"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    candle_core::safetensors::save(&tensors, args.out_model.join("model.safetensors"))?;
    let write_json = |name: &str, v: &serde_json::Value| -> Result<()> {
        let path = args.out_model.join(name);
        std::fs::write(&path, serde_json::to_string_pretty(v)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    };
    write_json("config.json", &cfg_json)?;
    write_json("tokenizer.json", &tokenizer_json())?;
    write_json(
        "tokenizer_config.json",
        &json!({"bos_token": "<s>", "eos_token": "</s>", "model_max_length": 512,
                "tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": false}),
    )?;
    write_json(
        "generation_config.json",
        &json!({"bos_token_id": BOS, "eos_token_id": EOS, "do_sample": false}),
    )?;

    if let Some(dir) = args.out_test.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let lines: Vec<String> = held_out
        .iter()
        .enumerate()
        .map(|(i, (q, a))| {
            json!({"id": format!("arith-{i:03}"), "question": q, "answer": a}).to_string()
        })
        .collect();
    std::fs::write(&args.out_test, lines.join("\n") + "\n")?;
    eprintln!(
        "wrote {} and {} in {:.0}s",
        args.out_model.display(),
        args.out_test.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
