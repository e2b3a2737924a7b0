#!/usr/bin/env python3
"""transformers' generate() on a CUDA device, for the speed table of tools/gpu_check.sh: the
same random SmolLM2-135M-shaped checkpoint in bf16, 64-token prompts and 64 new tokens (greedy,
no early stop) at batch 1, 32 and 256, tokens/s counted across the batch.

    python3 tools/hf_generate_speed.py MODEL_DIR

Prints one line per batch size, or a line saying why it was skipped (no torch, transformers or
GPU on this machine). Unlike examples/gpu_speed.rs's decode figures these include the
64-token prefill and every step's host round trip, as HF generate runs.
"""
import sys
import time

try:
    import torch
    import transformers
except ImportError as e:
    print(f"HF generate: skipped ({e})")
    sys.exit(0)
if not torch.cuda.is_available():
    print("HF generate: skipped (torch sees no CUDA device)")
    sys.exit(0)

model = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1])
model = model.to(device="cuda", dtype=torch.bfloat16).eval()
print(f"HF generate: torch {torch.__version__}, transformers {transformers.__version__}")
for batch in (1, 32, 256):
    ids = torch.randint(100, 49000, (batch, 64), device="cuda", generator=None)
    mask = torch.ones_like(ids)
    args = dict(attention_mask=mask, do_sample=False, pad_token_id=0)
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=4, min_new_tokens=4, **args)
        torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=64, min_new_tokens=64, **args)
        torch.cuda.synchronize()
    secs = time.perf_counter() - start
    print(f"HF generate batch {batch:>4}: {batch * 64 / secs:>10.1f} tokens/s ({secs:.3f} s)")
