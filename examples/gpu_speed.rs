//! Speed of the packed CUDA step (issue 16's table) on random SmolLM2-135M-shaped weights in
//! bf16 (nothing is downloaded): decode tokens/s counted across the batch with 64-token prompts
//! and 64 new tokens at each `--batches` size, tokens read back one step late as a run does;
//! and a prefill of `--prefill` prompts of 512 tokens. Needs `--features cuda` and a GPU.
//!
//!     cargo run --release --features cuda --example gpu_speed [-- --batches 1,32,256 --device 0]
//!
//! The first decode step of a batch size captures its CUDA graph and is not timed; the other
//! 63 are. Prints one line per measurement and the device memory the step holds.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;
use benchgen::model::gpu::cuda::CudaStep;
use benchgen::model::gpu::reference::{RowAt, SampleParams};
use benchgen::model::gpu::step::{DeviceRow, Feed, PackedStep};
use benchgen::model::random::{initial_weights, smollm2_135m_config};
use benchgen::rng::SplitMix64;
use candle_core::{DType, Tensor};
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, value_delimiter = ',', default_value = "1,32,256")]
    batches: Vec<usize>,
    #[arg(long, default_value_t = 64)]
    prompt: usize,
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Prompts of 512 tokens in the prefill measurement (0: none).
    #[arg(long, default_value_t = 256)]
    prefill: usize,
    /// Rows a prefill step takes at most.
    #[arg(long, default_value_t = 4096)]
    step_rows: usize,
    #[arg(long, default_value_t = 0)]
    device: usize,
}

const GREEDY: SampleParams =
    SampleParams { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0, draw: 0 };

fn prompt_token(seq: usize, pos: usize) -> u32 {
    ((seq * 7919 + pos * 104_729) % 49_000) as u32 + 100
}

/// Prefills `seqs` prompts of `len` tokens in steps of at most `step_rows` rows, each prompt's
/// last row sampling; returns the seconds it took (every step read back).
fn prefill(step: &mut CudaStep, seqs: usize, len: usize, step_rows: usize) -> Result<f64> {
    let rows: Vec<DeviceRow> = (0..seqs)
        .flat_map(|s| {
            (0..len).map(move |pos| DeviceRow {
                feed: Feed::Token(prompt_token(s, pos)),
                at: RowAt { slot: s, pos },
            })
        })
        .collect();
    let start = Instant::now();
    for chunk in rows.chunks(step_rows) {
        let samples: Vec<(usize, SampleParams)> = chunk
            .iter()
            .enumerate()
            .filter(|(_, r)| r.at.pos + 1 == len)
            .map(|(i, _)| (i, GREEDY))
            .collect();
        step.enqueue(chunk, &samples)?;
        step.tokens()?;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let cfg = smollm2_135m_config();
    let weights: HashMap<String, Tensor> = initial_weights(&cfg, &mut SplitMix64::new(1))?
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_dtype(DType::BF16)?)))
        .collect::<Result<_>>()?;
    let len = args.prompt + args.new_tokens;
    for &batch in &args.batches {
        let mut step =
            CudaStep::new(&cfg, &weights, batch, len, batch.max(args.step_rows), args.device)?;
        prefill(&mut step, batch, args.prompt, args.step_rows)?;
        let decode_rows = |i: usize| -> Vec<DeviceRow> {
            (0..batch)
                .map(|s| DeviceRow {
                    feed: Feed::Sampled,
                    at: RowAt { slot: s, pos: args.prompt + i },
                })
                .collect()
        };
        let samples: Vec<(usize, SampleParams)> = (0..batch).map(|r| (r, GREEDY)).collect();
        // Step 0 captures the bucket's graph.
        step.enqueue(&decode_rows(0), &samples)?;
        step.tokens()?;
        let start = Instant::now();
        step.enqueue(&decode_rows(1), &samples)?;
        for i in 2..args.new_tokens {
            step.enqueue(&decode_rows(i), &samples)?;
            step.tokens()?;
        }
        step.tokens()?;
        let secs = start.elapsed().as_secs_f64();
        let timed = (args.new_tokens - 1) * batch;
        let mem = step.memory();
        println!(
            "decode batch {batch:>4}: {:>10.1} tokens/s ({timed} tokens in {secs:.4} s); device \
             MB: weights {:.1}, KV {:.1}, scratch {:.1}, in use {:.1}",
            timed as f64 / secs,
            mem.weights as f64 / 1e6,
            mem.kv_cache as f64 / 1e6,
            mem.scratch as f64 / 1e6,
            mem.device_used as f64 / 1e6,
        );
    }
    if args.prefill > 0 {
        let mut step =
            CudaStep::new(&cfg, &weights, args.prefill, 512, args.step_rows, args.device)?;
        prefill(&mut step, 1, 512, args.step_rows)?; // warm-up
        let secs = prefill(&mut step, args.prefill, 512, args.step_rows)?;
        println!(
            "prefill {} x 512: {secs:.3} s ({:.0} tokens/s)",
            args.prefill,
            (args.prefill * 512) as f64 / secs
        );
    }
    Ok(())
}
