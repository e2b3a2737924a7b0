#!/usr/bin/env python3
"""benchgen against lm-evaluation-harness on lm-eval's own GSM8K workload: 5-shot prompts drawn
by lm-eval's default sampler (benchgen's `sampler = "lm_eval"`, seed 1234), so no two items
share a few-shot prefix; greedy, up to 256 new tokens, until "Question:". The few-shot pool is
the test split (shared/data has no train split; the same pool for both tools, so the prompts
are byte-identical). Whole processes one after the other, wall time and peak RSS by
`/usr/bin/time -v`; the script also counts the items whose generations are identical.
Standard library only (lm-eval runs from the venv given).

    cargo build --release              # the binary under $CARGO_TARGET_DIR (or ./target)
    python tools/compare_gsm8k.py --model DIR --lm-eval VENV/bin/lm_eval \
        [--limit 64] [--batch-size 32] [--configs f32,f32/bf16,bf16/bf16] [--isas native,avx2] \
        [--lm-dtypes float32,bfloat16] [--lm-avx2]

DIR is a HF checkpoint directory (e.g. the random SmolLM2-135M-shaped one make_llama1b.py or
`cargo run --release --example random_checkpoint` writes). A config is WEIGHTS/KV[@BUDGET] for
benchgen's `--dtype`/`--kv-dtype`[/`--kv-budget`] (e.g. `bf16/bf16@600MB`); `--isas avx2` runs benchgen with BENCHGEN_ISA=avx2;
`--lm-avx2` adds lm-eval runs with torch held to AVX2 (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA,
MKL_ENABLE_INSTRUCTIONS). lm-eval 0.4.13 needs `pip install lm-eval==0.4.13 accelerate`.
Needs BENCHGEN_DATA_DIR (or ../shared/data) for benchmarks/gsm8k/test.jsonl.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCHGEN = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "release/benchgen"

LM_TASK = """task: gsm8k_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {test}
output_type: generate_until
fewshot_split: test
test_split: test
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: false
    regexes_to_ignore: [",", "\\\\$", "(?s).*#### ", "\\\\.$"]
generation_kwargs:
  until: ["Question:", "</s>", "<|im_end|>"]
  do_sample: false
  temperature: 0.0
repeats: 1
num_fewshot: 5
filter_list:
  - name: "strict-match"
    filter:
      - function: "regex"
        regex_pattern: "#### (\\\\-?[0-9\\\\.\\\\,]+)"
      - function: "take_first"
metadata:
  version: 3.0
"""

AVX2_TORCH = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def timed(cmd, env):
    """(wall seconds, peak RSS MB) of one run of `cmd` under /usr/bin/time -v."""
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", r.stderr)
    secs = int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1)) / 1024
    return secs, rss


def environment(dst):
    """The shipped gsm8k environment with lm-eval's sampler over the test split."""
    src = REPO / "environments/gsm8k"
    text = (src / "environment.toml").read_text()
    text = text.replace('name = "gsm8k"', 'name = "gsm8k-lmeval"', 1)
    text = text.replace('[fewshot]\nphase = "train"', '[fewshot]\nphase = "test"')
    text = text.replace('sampler = "first_n"', 'sampler = "lm_eval"\nseed = 1234')
    assert 'sampler = "lm_eval"' in text and 'phase = "test"\nn = 5' in text, "gsm8k environment changed shape"
    dst.mkdir(parents=True)
    (dst / "environment.toml").write_text(text)
    (dst / "README.md").write_text((src / "README.md").read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--lm-eval", help="lm_eval executable (omit to run benchgen only)")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--configs", default="f32,f32/bf16,bf16/bf16")
    ap.add_argument("--isas", default="native,avx2")
    ap.add_argument("--lm-dtypes", default="float32,bfloat16")
    ap.add_argument("--lm-avx2", action="store_true")
    args = ap.parse_args()
    data = os.environ.get("BENCHGEN_DATA_DIR") or str(REPO.parent / "shared/data")
    test = Path(data) / "benchmarks/gsm8k/test.jsonl"
    if not test.exists():
        raise SystemExit(f"{test} not found: set BENCHGEN_DATA_DIR to the shared data directory")
    work = Path(tempfile.mkdtemp(prefix="compare-gsm8k-"))
    environment(work / "env")
    rows, outputs = [], {}
    for isa in args.isas.split(","):
        for cfg in args.configs.split(","):
            cfg, _, budget = cfg.partition("@")
            weights, _, kv = cfg.partition("/")
            runs = work / f"runs-{isa}-{weights}-{kv or 'f32'}-{budget or 'unbounded'}"
            cmd = [str(BENCHGEN), "eval", "--env", str(work / "env"), "--model", args.model, "--limit", str(args.limit),
                   "--batch-size", str(args.batch_size), "--runs-dir", str(runs), "--dtype", weights,
                   "--kv-dtype", kv or "f32"] + (["--kv-budget", budget] if budget else [])
            env = dict(os.environ, BENCHGEN_DATA_DIR=data)
            if isa != "native":
                env["BENCHGEN_ISA"] = isa
            secs, rss = timed(cmd, env)
            preds = [json.loads(line) for line in open(next(runs.glob("*/predictions.jsonl")))]
            outputs[f"benchgen {isa} {cfg}{'@' + budget if budget else ''}"] = {int(p["id"]): p["prediction"] for p in preds}
            rows.append((f"benchgen, {isa}, --dtype {weights} --kv-dtype {kv or 'f32'}"
                         + (f" --kv-budget {budget}" if budget else ""), secs, rss))
    if args.lm_eval:
        (work / "task").mkdir()
        (work / "task/gsm8k_local.yaml").write_text(LM_TASK.format(test=test))
        lm_runs = [(d, False) for d in args.lm_dtypes.split(",")]
        if args.lm_avx2:
            lm_runs += [(d, True) for d in args.lm_dtypes.split(",")]
        for dtype, avx2 in lm_runs:
            out = work / f"lm-{dtype}{'-avx2' if avx2 else ''}"
            env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
            if avx2:
                env.update(AVX2_TORCH)
            cmd = [args.lm_eval, "--model", "hf", "--model_args", f"pretrained={args.model},dtype={dtype}",
                   "--tasks", "gsm8k_local", "--include_path", str(work / "task"), "--limit", str(args.limit),
                   "--batch_size", str(args.batch_size), "--device", "cpu", "--log_samples", "--output_path", str(out)]
            secs, rss = timed(cmd, env)
            samples = glob.glob(str(out / "*/samples_gsm8k_local_*.jsonl"))[0]
            outputs[f"lm-eval {dtype}"] = {json.loads(l)["doc_id"]: json.loads(l)["resps"][0][0] for l in open(samples)}
            rows.append((f"lm-eval 0.4.13 (HF), dtype={dtype}{', torch held to AVX2' if avx2 else ''}", secs, rss))
    print(f"\nGSM8K, lm-eval's prompts, {args.limit} items, batch {args.batch_size} ({work}):\n")
    print("| run | time | peak RSS |\n|---|---|---|")
    for name, secs, rss in rows:
        print(f"| {name} | {secs:.1f} s | {rss:.0f} MB |")
    # benchgen f32 with an f32 cache generates lm-eval float32's text token for token (measured
    # on this workload), so it stands in for lm-eval where lm-eval did not run.
    ref_name = next((n for n in ["lm-eval float32"] + [f"benchgen {i} f32" for i in args.isas.split(",")]
                     if n in outputs), None)
    if ref_name:
        ref = outputs[ref_name]
        for name, out in outputs.items():
            same = sum(1 for i, text in out.items() if ref.get(i) == text)
            print(f"{name}: {same}/{len(out)} generations identical to {ref_name}'s")


if __name__ == "__main__":
    main()
