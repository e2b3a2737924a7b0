#!/usr/bin/env python3
"""transformers' side of benchgen's speed comparison (issue 4): the same measurement as
`cargo run --release --example speed` on the same model shape (SmolLM2-135M: 30 layers, hidden
576, 9/3 heads, vocab 49152, tied embeddings, random weights, f32), the same token ids
(prompt b of length P is (b·7919 + i·104729) mod 49152), the same protocol: one prefill of the
batch's prompts with a KV cache, then NEW−1 greedy decode steps, tokens/s counted across the
batch, median of REPEATS runs. Nothing is downloaded.

    . ~/.venvs/golden/bin/activate          # torch + transformers, see ../shared/docs/tooling.md
    python tools/compare_speed.py --threads 2 --batches 1,8,32
    RAYON_NUM_THREADS=2 cargo run --release --example speed -- --batches 1,8,32

Run both on a quiet machine with the same thread count (tooling.md's fair-timing rules).
"""
import argparse
import statistics
import time

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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, vocab_size=49152, rms_norm_eps=1e-5, rope_theta=100000.0,
        max_position_embeddings=8192, tie_word_embeddings=True, hidden_act="silu",
    )
    model = LlamaForCausalLM(cfg).eval().to(torch.float32)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads, f32")
    print(f"{'batch':>5} {'prefill tok/s':>14} {'decode tok/s':>13}")
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
        print(f"{batch:>5} {batch * args.prompt / p:>14.1f} {batch * (args.new_tokens - 1) / d:>13.1f}")


if __name__ == "__main__":
    main()
