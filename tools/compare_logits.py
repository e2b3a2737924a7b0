#!/usr/bin/env python3
"""How far each way of running a quantised GGUF moves the logits from f32 on the same
dequantised weights (benchgen `--dtype f32` on the file: it dequantises every tensor when
loading and matches transformers). Compares benchgen `--dtype stored` (int8 activations, the
default), `--dtype stored-exact` (f32 activations) and llama.cpp on the same file and prompt
(64 ids spread over the vocabulary, as the speed example makes them).

Build first:
    cargo build --release --example speed
    g++ -O2 -std=c++17 tools/llama_logits.cpp -I$SRC/include -I$SRC/ggml/include \\
        -L$BUILD/bin -lllama -lggml -lggml-base -Wl,-rpath,$BUILD/bin -o /tmp/llama-logits
    python3 tools/compare_logits.py --gguf m-q4_k_m.gguf --llama-logits /tmp/llama-logits

Needs numpy. Prints one row per method: the largest |Δ logit|, its ratio to the largest
reference logit, the mean |Δ|, and how often the top token agrees with the reference's.
"""
import argparse
import os
import subprocess
import tempfile

import numpy as np


def benchgen(speed, gguf, dtype, prompt, out, env):
    subprocess.run([speed, "--model", gguf, "--dtype", dtype, "--prompt", str(prompt), "--logits", out],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return np.fromfile(out, dtype="<f4")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--speed", default="target/release/examples/speed")
    ap.add_argument("--llama-logits", help="tools/llama_logits.cpp built against llama.cpp")
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--isa", help="BENCHGEN_ISA for benchgen's runs")
    a = ap.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    if a.isa:
        env["BENCHGEN_ISA"] = a.isa
    with tempfile.TemporaryDirectory() as tmp:
        ref = benchgen(a.speed, a.gguf, "f32", a.prompt, f"{tmp}/f32", env).reshape(a.prompt, -1)
        vocab = ref.shape[1]
        runs = {f"benchgen {d}": benchgen(a.speed, a.gguf, d, a.prompt, f"{tmp}/{d}", env).reshape(a.prompt, -1)
                for d in ("stored", "stored-exact")}
        if a.llama_logits:
            ids = ",".join(str((i * 104729) % min(vocab, 49152)) for i in range(a.prompt))
            for fa in ("off", "on"):
                out = f"{tmp}/llama-{fa}"
                subprocess.run([a.llama_logits, a.gguf, ids, out, str(a.threads), fa], check=True,
                               stderr=subprocess.DEVNULL)
                runs[f"llama.cpp -fa {fa}"] = np.fromfile(out, dtype="<f4").reshape(a.prompt, -1)[:, :vocab]
    scale = np.abs(ref).max()
    print(f"{os.path.basename(a.gguf)}: {a.prompt} positions × {vocab} logits, largest |f32 logit| {scale:.3f}")
    print(f"{'method':24} {'max |Δ|':>10} {'of max':>8} {'mean |Δ|':>10} {'top-1 =':>8}")
    for name, got in runs.items():
        d = np.abs(got - ref)
        top = (got.argmax(1) == ref.argmax(1)).mean()
        print(f"{name:24} {d.max():10.4f} {d.max() / scale:8.2%} {d.mean():10.5f} {top:8.1%}")


if __name__ == "__main__":
    main()
