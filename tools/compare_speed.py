#!/usr/bin/env python3
"""transformers' and llama.cpp's side of benchgen's speed comparison (issue 4): the same
measurement as `cargo run --release --example speed` on the same model shape (SmolLM2-135M:
30 layers, hidden 576, 9/3 heads, vocab 49152, tied embeddings, random weights), the same token
ids (prompt b of length P is (b·7919 + i·104729) mod 49152), the same protocol: one prefill of
the batch's prompts with a KV cache, then NEW−1 greedy decode steps, tokens/s counted across the
batch, median of REPEATS runs. Nothing is downloaded.

    . ~/.venvs/golden/bin/activate          # torch + transformers, see ../shared/docs/tooling.md
    cargo build --release --example speed
    python tools/compare_speed.py --threads 2 --batches 1,8,32 [--dtype f32,bf16,q8_0]
        [--llama-cpp /work/llamacpp/build] [--no-transformers] [--no-benchgen]

For each `--dtype` it runs transformers (not for q8_0), llama.cpp's `llama-batched-bench` if
`--llama-cpp` names a llama.cpp build folder (see llama_cpp() for how its numbers map onto
ours), then benchgen's speed example (target/release/examples/speed, with RAYON_NUM_THREADS set
to the same thread count), one after the other, and prints the rows and benchgen's ratio to the
best other tool in the layout of issue 4's table. Run it on a quiet machine (tooling.md's
fair-timing rules).

llama.cpp runs a GGUF of the same random weights (seed 0, as transformers'), converted once by
the build's own convert_hf_to_gguf.py and cached under ~/.cache/benchgen-compare/. The converter
wants a tokenizer it knows; there is no SmolLM2 tokenizer offline, so the checkpoint gets GPT-2's
(../shared/data/tokenizers/gpt2) cut to SmolLM2's 49,152 ids, declared as GPT-2's pre-tokenizer.
Speed depends on the shapes only.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.cache_utils import DynamicCache

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "benchgen-compare"
GPT2_TOKENIZER = REPO.parent / "shared/data/tokenizers/gpt2"
DTYPES = ("f32", "bf16", "q8_0")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="f32",
                    help="weights, comma-separated from f32,bf16,q8_0, one table each (transformers then "
                         "computes in that dtype; it has no q8_0 row)")
    ap.add_argument("--no-transformers", action="store_true", help="skip transformers")
    ap.add_argument("--no-benchgen", action="store_true", help="skip benchgen")
    ap.add_argument("--llama-cpp", metavar="DIR",
                    help="llama.cpp build folder with bin/llama-batched-bench (../shared/docs/tooling.md)")
    ap.add_argument("--llama-cpp-fa", choices=["off", "on"], default="off",
                    help="llama.cpp's flash attention: off (issue 4's table) or on; tooling.md: compare both")
    ap.add_argument("--speed-binary", default=str(REPO / "target/release/examples/speed"))
    args = ap.parse_args()
    dtypes = args.dtype.split(",")
    if not set(dtypes) <= set(DTYPES):
        ap.error(f"--dtype: each of {dtypes} must be one of {', '.join(DTYPES)}")
    if args.llama_cpp and not (Path(args.llama_cpp) / "bin/llama-batched-bench").exists():
        ap.error(f"--llama-cpp: no bin/llama-batched-bench in {args.llama_cpp} (../shared/docs/tooling.md)")
    if not args.llama_cpp:
        print("no llama.cpp rows: build llama-batched-bench (../shared/docs/tooling.md, 'llama.cpp for "
              "side-by-side numbers'; docs/benchmarks.md) and pass --llama-cpp BUILD_DIR")
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    for dtype in dtypes:
        rows = []
        if not args.no_transformers and dtype != "q8_0":
            rows.append((f"transformers, {dtype}", hf_speed(args, batches, dtype)))
        if args.llama_cpp:
            rows.append((f"llama.cpp, {dtype}", llama_cpp(args, batches, dtype)))
        if not args.no_benchgen:
            rows.append((f"benchgen, {dtype}", benchgen(args, batches, dtype)))
        table(args, batches, rows)


def hf_model(dtype):
    """The random SmolLM2-135M-shaped model, seed 0: the same weights on every call."""
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, vocab_size=49152, rms_norm_eps=1e-5, rope_theta=100000.0,
        max_position_embeddings=8192, tie_word_embeddings=True, hidden_act="silu",
    )
    return LlamaForCausalLM(cfg).eval().to(torch.float32 if dtype == "f32" else torch.bfloat16)


def hf_speed(args, batches, dtype):
    """{batch: (prefill, decode)} from transformers."""
    model = hf_model(dtype)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads, {dtype}")
    print(f"{'batch':>5} {'prefill tok/s':>14} {'decode tok/s':>13}")
    hf = {}
    for batch in batches:
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
    return hf


def llama_cpp(args, batches, dtype):
    """{batch: (prefill, decode)} from llama.cpp's llama-batched-bench on a GGUF of the same model.

    For each npl = B it clears the KV cache, decodes B separate P-token prompts in one batch (-b 2048,
    -ub 512; logits for each prompt's last token only) and reports S_PP = B·P / t_pp: our prefill.
    Then NTG steps of one token for each of the B sequences (logits for all): S_TG = B·NTG / t_tg,
    our decode counted across the batch. Differences, all small: random token ids, NTG = NEW
    steps rather than NEW−1 (positions P..P+NEW−1), no argmax between steps (sampling untimed), one
    16-token warm-up decode per process. Medians of REPEATS processes.
    """
    bench = Path(args.llama_cpp) / "bin/llama-batched-bench"
    model = gguf_model(Path(args.llama_cpp), dtype)
    ctx = max(8192, max(batches) * (args.prompt + args.new_tokens))
    cmd = [str(bench), "-m", str(model), "-c", str(ctx), "-b", "2048", "-ub", "512",
           "-npp", str(args.prompt), "-ntg", str(args.new_tokens), "-npl", ",".join(map(str, batches)),
           "-t", str(args.threads), "-tb", str(args.threads), "-fa", args.llama_cpp_fa, "--output-format", "jsonl"]
    print(" ".join(cmd))
    runs = []
    for _ in range(args.repeats):
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        runs.append({r["pl"]: (r["speed_pp"], r["speed_tg"]) for r in rows})
        print("  " + "  ".join(f"batch {b}: decode {runs[-1][b][1]:.1f} prefill {runs[-1][b][0]:.1f}" for b in batches),
              flush=True)
    return {b: tuple(statistics.median(run[b][k] for run in runs) for k in (0, 1)) for b in batches}


def gguf_model(build, dtype):
    """The GGUF of hf_model()'s weights in `dtype`, made once with the build's own converter."""
    out = CACHE / f"smollm2-shape-{dtype}.gguf"
    if out.exists():
        return out
    hf_dir = CACHE / "hf"
    if not (hf_dir / "tokenizer.json").exists():
        hf_model("f32").save_pretrained(hf_dir)
        truncated_gpt2_tokenizer(hf_dir, 49152)
    cache = (build / "CMakeCache.txt").read_text()
    src = Path(re.search(r"^CMAKE_HOME_DIRECTORY:INTERNAL=(.*)$", cache, re.M).group(1))
    sys.path[:0] = [p for p in (str(src / "gguf-py"), str(src)) if p not in sys.path]  # the converter, its gguf-py
    import convert_hf_to_gguf
    import conversion.base
    import gguf
    # The converter names the pre-tokenizer by hashing a test string's tokens; ours (GPT-2's, cut)
    # is unknown to it, and is GPT-2's.
    conversion.base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
    tmp = out.with_suffix(".part")
    argv, sys.argv = sys.argv, ["convert_hf_to_gguf.py", str(hf_dir), "--outtype", dtype, "--outfile", str(tmp)]
    try:
        convert_hf_to_gguf.main()
    finally:
        sys.argv = argv
    tensors = {t.name: list(t.shape) for t in gguf.GGUFReader(tmp).tensors}
    assert tensors["token_embd.weight"] == [576, 49152] and "output.weight" not in tensors, tensors["token_embd.weight"]
    tmp.rename(out)
    return out


def truncated_gpt2_tokenizer(dst, vocab_size):
    """GPT-2's tokenizer.json without the ids >= vocab_size and the merges that use them."""
    tok = json.loads((GPT2_TOKENIZER / "tokenizer.json").read_text())
    vocab = {t: i for t, i in tok["model"]["vocab"].items() if i < vocab_size}
    pairs = [m.split(" ") if isinstance(m, str) else m for m in tok["model"]["merges"]]
    tok["model"].update(type="BPE", vocab=vocab)  # GPT-2's file leaves the type out; the converter reads it
    tok["model"]["merges"] = [p for p in pairs if p[0] in vocab and p[1] in vocab and p[0] + p[1] in vocab]
    tok["added_tokens"] = []
    (dst / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    (dst / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast",
                                                           "model_max_length": 8192}))


def benchgen(args, batches, dtype):
    """{batch: (prefill, decode)} from benchgen's speed example on the same shapes."""
    cmd = [args.speed_binary, "--batches", ",".join(map(str, batches)), "--repeats", str(args.repeats),
           "--prompt", str(args.prompt), "--new-tokens", str(args.new_tokens), "--dtype", dtype]
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    print(out, end="")
    rows = {}
    for m in re.finditer(r"batch\s+(\d+): decode\s+([\d.]+) tokens/s\s+prefill\s+([\d.]+)", out):
        rows[int(m.group(1))] = (float(m.group(3)), float(m.group(2)))
    return rows


def table(args, batches, rows):
    """Issue 4's layout: decode tokens/s per batch, then prefill at the largest batch; benchgen's
    ratio to the best other row in each column."""
    big = max(batches)
    head = " | ".join(f"batch {b}" for b in batches)
    print(f"\n| tool, weights | {head} | prefill, {big} x {args.prompt} |")
    print("|---" * (len(batches) + 2) + "|")
    for name, r in rows:
        print(f"| {name} | " + " | ".join(f"{r[b][1]:.1f}" for b in batches) + f" | {r[big][0]:.1f} |")
    if args.no_benchgen or len(rows) < 2:
        return
    ours, others = rows[-1][1], [r for _, r in rows[:-1]]
    cols = [(b, 1) for b in batches] + [(big, 0)]
    print("| benchgen / best other | " + " | ".join(f"{ours[b][k] / max(o[b][k] for o in others):.2f}x" for b, k in cols)
          + " |")


if __name__ == "__main__":
    main()
