//! Decode and prefill speed of the decoder on a random model with the SmolLM2-135M shape
//! (nothing is downloaded), or on `--model` (a checkpoint folder or a `.gguf` file, whose types
//! `--dtype auto` keeps as stored), in the units of the project's targets: decode tokens/s
//! counted across the batch, 64-token prompts, 64 new tokens; prefill tokens/s for 32 × 64.
//! `BENCHGEN_ISA=avxvnni|avx2|scalar` measures another kernel family.
//!
//!     RAYON_NUM_THREADS=2 cargo run --release --example speed [-- --batches 1,8,32 --repeats 3 --dtype q8_0]
//!     RAYON_NUM_THREADS=2 cargo run --release --example speed -- --dtype bf16 --kv-dtype bf16 --prompt 1000   # long contexts
//!     RAYON_NUM_THREADS=2 cargo run --release --example speed -- --model m-q4_k_m.gguf --dtype auto
//!
//! Prints the median of `--repeats` runs per row. `--logits FILE` instead writes the logits of
//! every position of the first prompt (f32, little-endian, [prompt][vocab]) for
//! `tools/compare_logits.py`, which feeds llama.cpp the same ids.

use std::time::Instant;

use anyhow::Result;
use benchgen::device::WeightType;
use benchgen::engine::sampling::argmax;
use benchgen::model::random::{random_decoder, smollm2_135m_config};
use benchgen::model::{Decoder, KvDtype, Segment, SeqCache};
use candle_core::{DType, Tensor};
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    batches: Vec<usize>,
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    #[arg(long, default_value_t = 64)]
    prompt: usize,
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// KV cache storage: f32 or bf16.
    #[arg(long, default_value = "f32")]
    kv_dtype: String,
    /// auto, f32, bf16, f16 or q8_0.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// cpu, cuda[:N] or metal (GPU builds only).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// A model (folder or .gguf) instead of the random SmolLM2-135M-shaped one.
    #[arg(long)]
    model: Option<String>,
    /// Write the first prompt's logits here and exit.
    #[arg(long)]
    logits: Option<std::path::PathBuf>,
}

/// The ids of prompt `b`: spread over the vocabulary, the same on every run.
fn prompt_ids(b: usize, len: usize, vocab: usize) -> Vec<u32> {
    (0..len).map(|i| ((b * 7919 + i * 104729) % vocab) as u32).collect()
}

/// Every position's logits for prompt 0, as raw f32.
fn dump_logits(m: &Decoder, args: &Args, out: &std::path::Path) -> Result<()> {
    let ids = prompt_ids(0, args.prompt, m.config().vocab_size.min(49152));
    let mut cache = m.new_cache(ids.len());
    let tokens = Tensor::new(ids.as_slice(), m.device())?;
    let hidden =
        m.forward(&tokens, &[Segment { len: ids.len(), offset: 0 }], Some(&mut [&mut cache]))?;
    let rows = m.logits(&hidden)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let bytes: Vec<u8> = rows.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(out, bytes)?;
    eprintln!(
        "{} × {} logits written to {}",
        rows.len(),
        rows.first().map_or(0, Vec::len),
        out.display()
    );
    Ok(())
}

fn step(m: &Decoder, caches: &mut [SeqCache], pending: &[Vec<u32>]) -> Result<Vec<u32>> {
    let segs: Vec<Segment> = pending
        .iter()
        .zip(caches.iter())
        .map(|(p, c)| Segment { len: p.len(), offset: c.len() })
        .collect();
    let flat: Vec<u32> = pending.iter().flatten().copied().collect();
    let tokens = Tensor::new(flat.as_slice(), m.device())?;
    let mut refs: Vec<&mut SeqCache> = caches.iter_mut().collect();
    let hidden = m.forward(&tokens, &segs, Some(&mut refs))?;
    let mut last = Vec::new();
    let mut end = 0u32;
    for s in &segs {
        end += s.len as u32;
        last.push(end - 1);
    }
    let logits = m.logits(&hidden.index_select(&Tensor::new(last.as_slice(), m.device())?, 0)?)?;
    let rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    Ok(rows.iter().map(|r| argmax(r)).collect())
}

/// (prefill seconds, decode seconds) for `batch` prompts.
fn run(m: &Decoder, batch: usize, args: &Args) -> Result<(f64, f64)> {
    let vocab = m.config().vocab_size.min(49152);
    let prompts: Vec<Vec<u32>> = (0..batch).map(|b| prompt_ids(b, args.prompt, vocab)).collect();
    let mut caches: Vec<SeqCache> =
        prompts.iter().map(|p| m.new_cache(p.len() + args.new_tokens)).collect();
    let t = Instant::now();
    let mut next = step(m, &mut caches, &prompts)?;
    let prefill = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 1..args.new_tokens {
        let pending: Vec<Vec<u32>> = next.iter().map(|&x| vec![x]).collect();
        next = step(m, &mut caches, &pending)?;
    }
    Ok((prefill, t.elapsed().as_secs_f64()))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let vars = benchgen::vars::ProcessVars::from_process();
    let isa = benchgen::kernels::isa::select_named(vars.get_str(benchgen::kernels::isa::ENV_VAR))?;
    eprintln!("kernels: {}", isa.name());
    let device = benchgen::device::parse_device(&args.device)?;
    let mut m = match &args.model {
        Some(model) => {
            let sources = benchgen::model::spec::SourceOptions::from_vars(&vars);
            let gguf = benchgen::model::spec::preflight(Some(model), &sources)?.gguf;
            let weights = WeightType::for_model(args.dtype.parse()?, &device, gguf)?;
            let ckpt = benchgen::model::spec::resolve(Some(model), &sources)?;
            benchgen::model::LoadedModel::load(&ckpt, &device, weights)?.decoder
        }
        None => random_decoder(
            &smollm2_135m_config(),
            WeightType::parse(args.dtype.parse()?, &device)?,
            &device,
            1,
        )?,
    };
    let kv = KvDtype::parse(&args.kv_dtype).ok_or_else(|| {
        anyhow::anyhow!("--kv-dtype {}: one of {:?}", args.kv_dtype, KvDtype::NAMES)
    })?;
    m.set_kv_dtype(kv)?;
    if let Some(out) = &args.logits {
        return dump_logits(&m, &args, out);
    }
    println!(
        "benchgen, {} ({}, {} cache) on {}, {} threads, prompt {} + {} new tokens",
        args.dtype,
        m.backend_name(),
        args.kv_dtype,
        args.device,
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into()),
        args.prompt,
        args.new_tokens
    );
    for &b in &args.batches {
        let runs: Vec<(f64, f64)> =
            (0..args.repeats).map(|_| run(&m, b, &args)).collect::<Result<_>>()?;
        let decode =
            median(runs.iter().map(|r| (b * (args.new_tokens - 1)) as f64 / r.1).collect());
        let prefill = median(runs.iter().map(|r| (b * args.prompt) as f64 / r.0).collect());
        println!("batch {b:>3}: decode {decode:8.1} tokens/s   prefill {prefill:8.1} tokens/s");
    }
    Ok(())
}
