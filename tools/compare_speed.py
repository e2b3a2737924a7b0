#!/usr/bin/env python3
"""transformers' side of benchgen's speed comparison (issue 4): the same measurement as
`cargo run --release --example speed` on the same model shape (SmolLM2-135M: 30 layers, hidden
576, 9/3 heads, vocab 49152, tied embeddings, random weights, f32), the same token ids
(prompt b of length P is (b·7919 + i·104729) mod 49152), the same protocol: one prefill of the
batch's prompts with a KV cache, then NEW−1 greedy decode steps, tokens/s counted across the
batch, median of REPEATS runs. Nothing is downloaded.

    . ~/.venvs/golden/bin/activate          # torch + transformers, see ../shared/docs/tooling.md
    cargo build --release --example speed
    python tools/compare_speed.py --threads 2 --batches 1,8,32

It runs transformers, then benchgen's speed example (target/release/examples/speed, with
RAYON_NUM_THREADS set to the same thread count; `--no-benchgen` skips it), one after the other,
and prints both rows and benchgen's ratios in the layout of issue 4's table. Run it on a quiet
machine (tooling.md's fair-timing rules).
"""
import argparse
import os
import re
import statistics
import subprocess
import time
from pathlib import Path

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.cache_utils import DynamicCache


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32", help="weights (and, in transformers, activations)")
    ap.add_argument("--no-benchgen", action="store_true", help="measure transformers only")
    ap.add_argument("--speed-binary", default=str(Path(__file__).resolve().parent.parent / "target/release/examples/speed"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, vocab_size=49152, rms_norm_eps=1e-5, rope_theta=100000.0,
        max_position_embeddings=8192, tie_word_embeddings=True, hidden_act="silu",
    )
    model = LlamaForCausalLM(cfg).eval().to(torch.float32 if args.dtype == "f32" else torch.bfloat16)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads, {args.dtype}")
    print(f"{'batch':>5} {'prefill tok/s':>14} {'decode tok/s':>13}")
    batches = [int(b) for b in args.batches.split(",")]
    hf = {}
    for batch in [int(b) for b in args.batches.split(",")]:
        ids = torch.tensor([[(b * 7919 + i * 104729) % 49152 for i in range(args.prompt)] for b in range(batch)])
        prefills, decodes = [], []
        for _ in range(args.repeats):
            with torch.inference_mode():
                cache = DynamicCache()
                t = time.perf_counter()
                out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                prefills.append(time.perf_counter() - t)
                t = time.perf_counter()
                for _ in range(args.new_tokens - 1):
                    out = model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True)
                    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                decodes.append(time.perf_counter() - t)
        p, d = statistics.median(prefills), statistics.median(decodes)
        hf[batch] = (batch * args.prompt / p, batch * (args.new_tokens - 1) / d)
        print(f"{batch:>5} {hf[batch][0]:>14.1f} {hf[batch][1]:>13.1f}", flush=True)
    if args.no_benchgen:
        return
    del model
    ours = benchgen(args, batches)
    table(args, batches, [(f"transformers, {args.dtype}", hf), (f"benchgen, {args.dtype}", ours)])


def benchgen(args, batches):
    """{batch: (prefill, decode)} from benchgen's speed example on the same shapes."""
    cmd = [args.speed_binary, "--batches", ",".join(map(str, batches)), "--repeats", str(args.repeats),
           "--prompt", str(args.prompt), "--new-tokens", str(args.new_tokens), "--dtype", args.dtype]
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    print(out, end="")
    rows = {}
    for m in re.finditer(r"batch\s+(\d+): decode\s+([\d.]+) tokens/s\s+prefill\s+([\d.]+)", out):
        rows[int(m.group(1))] = (float(m.group(3)), float(m.group(2)))
    return rows


def table(args, batches, rows):
    """Issue 4's layout: decode tokens/s per batch, then prefill at the largest batch."""
    big = max(batches)
    head = " | ".join(f"batch {b}" for b in batches)
    print(f"\n| tool, weights | {head} | prefill, {big} x {args.prompt} |")
    print("|---" * (len(batches) + 2) + "|")
    for name, r in rows:
        print(f"| {name} | " + " | ".join(f"{r[b][1]:.1f}" for b in batches) + f" | {r[big][0]:.1f} |")
    (_, base), (_, ours) = rows[0], rows[-1]
    print("| benchgen / transformers | " + " | ".join(f"{ours[b][1] / base[b][1]:.2f}x" for b in batches)
          + f" | {ours[big][0] / base[big][0]:.2f}x |")


if __name__ == "__main__":
    main()
