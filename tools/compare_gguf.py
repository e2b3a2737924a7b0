#!/usr/bin/env python3
"""benchgen against llama.cpp on one GGUF file, same thread count, same protocol as
compare_speed.py (P-token prompts, NEW new tokens; decode tokens/s counted across the batch,
prefill tokens/s of B·P prompt tokens), for each kernel family given: benchgen with
BENCHGEN_ISA=<isa> and the llama.cpp build made for it. Standard library only.

    cargo build --release --example speed
    python tools/compare_gguf.py ~/.cache/benchgen-compare/llama1b/llama1b-shape-q4_k_m.gguf \
        --llama-cpp avx512=/work/llama-build-native --llama-cpp avx2=/work/llama-build-avx2 \
        [--batches 1,8,32] [--prompt 64] [--new-tokens 32] [--threads 2] [--repeats 3] [--dtype auto]

Besides the speed table it times one whole process per tool for batch 8 (load, P-token prefill,
NEW decode steps) with its peak RSS (`/usr/bin/time -v`): llama-batched-bench `-npl 8` and
benchgen's speed example `--batches 8 --repeats 1`. make_llama1b.py makes the Llama-3.2-1B-shaped
files; see tooling.md for the llama.cpp builds (the AVX2 one with GGML_NATIVE=OFF, AVX-512 off;
for `avxvnni`, a CPU with AVX-VNNI, the same with -DGGML_AVX_VNNI=ON).
Run on a quiet machine; medians of --repeats processes.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEED = REPO / "target/release/examples/speed"


def llama_cpp(build, args, batches):
    """{batch: (prefill, decode)} from llama-batched-bench (see compare_speed.py's llama_cpp)."""
    ctx = max(8192, max(batches) * (args.prompt + args.new_tokens))
    cmd = [str(Path(build) / "bin/llama-batched-bench"), "-m", args.gguf, "-c", str(ctx), "-b", "2048", "-ub", "512",
           "-npp", str(args.prompt), "-ntg", str(args.new_tokens), "-npl", ",".join(map(str, batches)),
           "-t", str(args.threads), "-tb", str(args.threads), "-fa", "off", "--output-format", "jsonl"]
    runs = []
    for _ in range(args.repeats):
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        runs.append({r["pl"]: (r["speed_pp"], r["speed_tg"]) for r in rows})
    return {b: tuple(statistics.median(r[b][k] for r in runs) for k in (0, 1)) for b in batches}


def benchgen(isa, args, batches):
    """{batch: (prefill, decode)} from the speed example on the file, kernels `isa`."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), BENCHGEN_ISA=isa)
    cmd = [str(SPEED), "--model", args.gguf, "--dtype", args.dtype, "--batches", ",".join(map(str, batches)),
           "--repeats", str(args.repeats), "--prompt", str(args.prompt), "--new-tokens", str(args.new_tokens)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    found = re.findall(r"batch\s+(\d+): decode\s+([\d.]+) tokens/s\s+prefill\s+([\d.]+)", out)
    return {int(b): (float(p), float(d)) for b, d, p in found}


def whole_process(cmd, env=None):
    """(wall seconds, peak RSS MB) of one run of `cmd` under /usr/bin/time -v."""
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env, check=True)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", r.stderr)
    secs = int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1)) / 1024
    return secs, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--llama-cpp", action="append", default=[], metavar="ISA=BUILD",
                    help="a llama.cpp build for kernel family ISA (avx512, avxvnni, avx2); repeatable")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="auto", help="benchgen's --dtype: auto (= stored: int8 activations) or stored-exact")
    args = ap.parse_args()
    args.gguf = str(Path(args.gguf).expanduser())
    batches = [int(b) for b in args.batches.split(",")]
    cols = [f"batch {b}" for b in batches] + [f"prefill {max(batches)} x {args.prompt}", "batch 8 process", "peak RSS"]
    print(f"{Path(args.gguf).name} ({os.path.getsize(args.gguf) / 1e6:.0f} MB), {args.threads} threads, "
          f"{args.prompt}-token prompts, {args.new_tokens} new tokens, median of {args.repeats}")
    print("| tool | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for spec in args.llama_cpp:
        isa, build = spec.split("=", 1)
        ours, theirs = benchgen(isa, args, batches), llama_cpp(build, args, batches)
        env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), BENCHGEN_ISA=isa)
        ours_proc = whole_process([str(SPEED), "--model", args.gguf, "--dtype", args.dtype, "--batches", "8", "--repeats", "1",
                                   "--prompt", str(args.prompt), "--new-tokens", str(args.new_tokens)], env)
        theirs_proc = whole_process([str(Path(build) / "bin/llama-batched-bench"), "-m", args.gguf, "-c", "2048", "-b", "2048",
                                     "-ub", "512", "-npp", str(args.prompt), "-ntg", str(args.new_tokens), "-npl", "8",
                                     "-t", str(args.threads), "-tb", str(args.threads), "-fa", "off"])
        rows = [(f"llama.cpp ({isa} build)", theirs, theirs_proc), (f"benchgen {args.dtype} (BENCHGEN_ISA={isa})", ours, ours_proc)]
        for name, r, (wall, rss) in rows:
            cells = [f"{r[b][1]:.1f}" for b in batches] + [f"{r[max(batches)][0]:.1f}", f"{wall:.1f} s", f"{rss:.0f} MB"]
            print(f"| {name} | " + " | ".join(cells) + " |")
        ratio = [f"{ours[b][1] / theirs[b][1]:.2f}x" for b in batches] + [
            f"{ours[max(batches)][0] / theirs[max(batches)][0]:.2f}x", f"{ours_proc[0] / theirs_proc[0]:.2f}x time",
            f"{ours_proc[1] / theirs_proc[1]:.2f}x"]
        print(f"| benchgen / llama.cpp ({isa}) | " + " | ".join(ratio) + " |", flush=True)


if __name__ == "__main__":
    main()
