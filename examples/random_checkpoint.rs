//! Writes a random-weight checkpoint with the SmolLM2-135M architecture in HF layout, with the
//! tokenizer of an existing model folder, so that whole evaluations can be timed end to end
//! without downloading a model (the GSM8K and ARC-Easy timings).
//!
//!     cargo run --release --example random_checkpoint -- --tokenizer ../shared/data/tokenizers/gpt2 --out /tmp/smollm2-random
//!
//! The vocabulary grows to the tokenizer's size if that is larger than SmolLM2's 49,152.

use std::path::PathBuf;

use anyhow::{Context, Result};
use benchgen::model::random::{initial_weights, smollm2_135m_config};
use benchgen::model::TextTokenizer;
use benchgen::rng::SplitMix64;
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// A folder with tokenizer.json (tokenizer_config.json and generation_config.json are copied too).
    #[arg(long)]
    tokenizer: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let tok_path = args.tokenizer.join("tokenizer.json");
    let bytes =
        std::fs::read(&tok_path).with_context(|| format!("reading {}", tok_path.display()))?;
    let tokenizer = TextTokenizer::from_bytes(&bytes, &tok_path.display().to_string())?;
    let mut cfg = smollm2_135m_config();
    cfg.vocab_size = cfg.vocab_size.max(tokenizer.vocab_size());
    std::fs::create_dir_all(&args.out)?;
    let weights = initial_weights(&cfg, &mut SplitMix64::new(args.seed))?;
    candle_core::safetensors::save(
        &weights.into_iter().collect(),
        args.out.join("model.safetensors"),
    )?;
    let mut config = serde_json::to_value(&cfg)?;
    config["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
    std::fs::write(args.out.join("config.json"), serde_json::to_string_pretty(&config)?)?;
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        if args.tokenizer.join(f).is_file() {
            std::fs::copy(args.tokenizer.join(f), args.out.join(f))?;
        }
    }
    println!("wrote {} (vocab {})", args.out.display(), cfg.vocab_size);
    Ok(())
}
