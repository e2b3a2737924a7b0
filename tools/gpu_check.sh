#!/usr/bin/env bash
# Issue 16's CUDA checks, in four modes:
#
#   bash tools/gpu_check.sh check   # no GPU: `cargo clippy --features cuda --all-targets` against a
#                                   # CUDA 13 toolkit from PyPI (tools/cuda_toolkit.sh): the CUDA
#                                   # build compiles, warning-free (what CI runs; exit 2 when the
#                                   # toolkit cannot be fetched)
#   bash tools/gpu_check.sh emulate # no GPU: the CUDA step's device tests (model::gpu,
#                                   # engine::packed with BENCHGEN_TEST_DEVICE=cuda) against
#                                   # tools/cuda_emulator's CPU driver, which runs kernels.cu's
#                                   # kernels on the CPU (what CI runs; exit 2 when the toolkit
#                                   # or g++ is missing)
#   bash tools/gpu_check.sh build   # no GPU: the CUDA binaries (tests, benchgen, the speed and
#                                   # random-checkpoint examples), stripped and compressed, and
#                                   # the GSM8K / ARC-Easy files and a tokenizer from
#                                   # $BENCHGEN_DATA_DIR, into gpu-check/ (about 45 MB)
#   bash tools/gpu_check.sh run [tests|speed|evals|all]
#                                   # on the GPU machine, with gpu-check/ carried there: builds
#                                   # nothing. tests: the packed step on the device against its
#                                   # CPU reference, bit for bit (f32/bf16 weights, graphs on and
#                                   # off, seeded sampling, batch invariance, launches per step),
#                                   # and the model goldens and batch-invariance suites on the
#                                   # device; speed: examples/gpu_speed.rs's table (and
#                                   # transformers' generate() where it imports); evals:
#                                   # `benchgen eval` of all of GSM8K (5-shot, 256 new tokens) and
#                                   # ARC-Easy on a random SmolLM2-135M-shaped model in bf16,
#                                   # process start to end. Each part fits one 10-minute command.
#
# The toolkit goes to $CUDA_TOOLKIT (default ~/.cache/benchgen-cuda13), the build to
# $CARGO_TARGET_DIR: by default target/ for check and emulate, so that they reuse a CPU build's
# dependencies (only candle's crates, cudarc, benchgen and the build scripts' dependencies change
# with the `cuda` feature), and target/cuda for build, whose `--bin benchgen` would otherwise
# replace the CPU binary in target/release. On the GPU machine the CUDA 13 runtime libraries
# (libcudart, libcurand, libnvrtc: PyTorch's CUDA wheels have them) are looked up on disk and put
# on LD_LIBRARY_PATH. Each run step has its own time limit; the script goes on after a failure
# and exits non-zero if any step failed.
set -uo pipefail
mode=${1:?usage: gpu_check.sh check|emulate|build|run}
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
out=gpu-check

# $1: the target directory to use when CARGO_TARGET_DIR is unset.
toolkit() {
    local tk=${CUDA_TOOLKIT:-$HOME/.cache/benchgen-cuda13}
    [ -e "$tk/env.sh" ] || bash tools/cuda_toolkit.sh "$tk" 90 || return 1
    # shellcheck disable=SC1091
    . "$tk/env.sh"
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$1}
    # candle-kernels' build script compiles its CUDA sources with nvcc through cudaforge, which
    # uses half the cores unless told otherwise: on 2 cores one file at a time, with a core idle
    # (the `check` step took 9 minutes in CI that way, 4 1/2 on both cores).
    export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc)}
}

case "$mode" in
check)
    set -e
    toolkit "$repo/target" || { echo "the CUDA 13 toolkit could not be installed from PyPI" >&2; exit 2; }
    cargo clippy --release --features cuda --all-targets -- -D warnings
    ;;
emulate)
    set -e
    toolkit "$repo/target" || { echo "the CUDA 13 toolkit could not be installed from PyPI" >&2; exit 2; }
    emu="$CARGO_TARGET_DIR/cuda-emulator"
    bash tools/cuda_emulator/build.sh "$emu" "$CUDA_ROOT/lib64/libcuda.so" || exit $?
    exe=$(cargo test --release --features cuda --lib --no-run --message-format=json |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])
')
    # The emulator first, so cudarc takes it for the driver; NVRTC from the toolkit.
    LD_LIBRARY_PATH="$emu:$CUDA_ROOT/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        BENCHGEN_TEST_DEVICE=cuda "$exe" model::gpu engine::packed
    ;;
build)
    set -e
    toolkit "$repo/target/cuda"
    mkdir -p "$out"
    cargo build --release --features cuda --example gpu_speed --example random_checkpoint --bin benchgen
    exes=$(cargo test --release --features cuda --no-run --lib --test suite --message-format=json |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        kind = m["target"]["kind"][0]
        print(("lib-tests" if kind == "lib" else m["target"]["name"]) + " " + m["executable"])
')
    echo "$exes" | while read -r name exe; do
        strip -o "$out/$name" "$exe" && xz -T0 -6 -f "$out/$name"
    done
    for exe in examples/gpu_speed examples/random_checkpoint benchgen; do
        name=$(basename "$exe")
        strip -o "$out/$name" "$CARGO_TARGET_DIR/release/$exe" && xz -T0 -6 -f "$out/$name"
    done
    # The evals' data (no network there): GSM8K's test split, also as the few-shot pool (the
    # train split is not in shared/data), ARC-Easy, and GPT-2's tokenizer for the random model.
    data=${BENCHGEN_DATA_DIR:?set BENCHGEN_DATA_DIR to shared/data: the evals need its files}
    mkdir -p "$out/data/benchmarks/gsm8k" "$out/data/benchmarks/arc" "$out/data/tokenizers"
    cp "$data/benchmarks/gsm8k/test.jsonl" "$out/data/benchmarks/gsm8k/test.jsonl"
    cp "$data/benchmarks/gsm8k/test.jsonl" "$out/data/benchmarks/gsm8k/train.jsonl"
    cp "$data/benchmarks/arc/ARC-Easy-Test.jsonl" "$out/data/benchmarks/arc/"
    cp -r "$data/tokenizers/gpt2" "$out/data/tokenizers/"
    chmod -R u+w "$out/data"
    # The suites find their fixtures under the checkout they were built in.
    echo "$repo" > "$out/manifest_dir"
    git rev-parse HEAD > "$out/commit" 2>/dev/null || true
    ls -la "$out"
    ;;
run)
    [ -d "$out" ] || { echo "no $out/: run 'gpu_check.sh build' here first and carry $out" >&2; exit 2; }
    part=${2:-all}
    bin=$(mktemp -d)
    for f in lib-tests suite gpu_speed random_checkpoint benchgen; do
        if command -v xz > /dev/null; then
            xz -dc "$out/$f.xz" > "$bin/$f"
        else
            python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$out/$f.xz" "$bin/$f"
        fi
        chmod +x "$bin/$f"
    done
    libdirs=""
    for lib in libnvrtc.so.13 libcudart.so.13 libcurand.so.10; do
        found=$(find / -name "$lib" -not -path '/proc/*' 2> /dev/null | head -1)
        [ -n "$found" ] || { echo "no $lib on this machine" >&2; exit 2; }
        libdirs="$libdirs$(dirname "$found"):"
    done
    export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:-}"
    manifest=$(cat "$out/manifest_dir")
    if [ "$manifest" != "$repo" ] && [ ! -e "$manifest" ]; then
        mkdir -p "$(dirname "$manifest")" && ln -s "$repo" "$manifest"
    fi
    echo "commit $(cat "$out/commit" 2> /dev/null)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    export BENCHGEN_TEST_DEVICE=${BENCHGEN_TEST_DEVICE:-cuda}
    failed=0
    step() {
        local limit=$1
        shift
        echo "== $*"
        timeout "$limit" "$@" || { echo "FAILED ($?): $*"; failed=1; }
    }
    if [ "$part" = tests ] || [ "$part" = all ]; then
        step 240 "$bin/lib-tests" model::gpu engine::packed --test-threads 1
        step 240 "$bin/suite" model_goldens:: batch_invariance:: gguf::
    fi
    work=$(mktemp -d)
    if [ "$part" != tests ]; then
        "$bin/random_checkpoint" --tokenizer "$out/data/tokenizers/gpt2" --out "$work/model" > /dev/null
    fi
    if [ "$part" = speed ] || [ "$part" = all ]; then
        step 240 "$bin/gpu_speed"
        # transformers' generate() on the same model, where torch and transformers import.
        step 240 python3 tools/hf_generate_speed.py "$work/model"
    fi
    if [ "$part" = evals ] || [ "$part" = all ]; then
        for env in gsm8k arc-easy; do
            start=$(date +%s%N)
            BENCHGEN_DATA_DIR="$repo/$out/data" step 280 "$bin/benchgen" eval --env "$env" \
                --model "$work/model" --device cuda --dtype bf16 --batch-size 256 \
                --runs-dir "$work/runs"
            echo "$env: $((($(date +%s%N) - start) / 1000000)) ms, process start to end"
        done
        python3 -c 'import json, sys
for f in sys.argv[1:]:
    r = json.load(open(f))
    print(r.get("environment", {}).get("name"), "memory", json.dumps(r.get("memory")))' "$work"/runs/*/run.json || true
    fi
    exit $failed
    ;;
*)
    echo "usage: gpu_check.sh check|emulate|build|run" >&2
    exit 2
    ;;
esac
