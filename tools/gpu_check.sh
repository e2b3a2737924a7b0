#!/usr/bin/env bash
# Issue 16's CUDA checks, in three modes:
#
#   bash tools/gpu_check.sh check   # no GPU: `cargo clippy --features cuda --all-targets` against a
#                                   # CUDA 13 toolkit from PyPI (tools/cuda_toolkit.sh): the CUDA
#                                   # build compiles, warning-free (what CI runs; exit 2 when the
#                                   # toolkit cannot be fetched)
#   bash tools/gpu_check.sh build   # no GPU: the CUDA test and speed binaries, stripped and
#                                   # compressed into gpu-check/ (about 30 MB)
#   bash tools/gpu_check.sh run     # on the GPU machine, with gpu-check/ carried there: builds
#                                   # nothing; runs the packed step's tests on the device (its
#                                   # kernels against their CPU references, bit for bit; seeded
#                                   # sampling; batch invariance; launches per step), the model
#                                   # goldens and batch-invariance suites on the device, and the
#                                   # speed table (examples/gpu_speed.rs)
#
# The toolkit goes to $CUDA_TOOLKIT (default ~/.cache/benchgen-cuda13), the build to
# $CARGO_TARGET_DIR (default target/cuda). On the GPU machine the CUDA 13 runtime libraries
# (libcudart, libcurand, libnvrtc: PyTorch's CUDA wheels have them) are looked up on disk and put
# on LD_LIBRARY_PATH. Each run step has its own time limit; the script goes on after a failure
# and exits non-zero if any step failed.
set -uo pipefail
mode=${1:?usage: gpu_check.sh check|build|run}
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
out=gpu-check

toolkit() {
    local tk=${CUDA_TOOLKIT:-$HOME/.cache/benchgen-cuda13}
    [ -e "$tk/env.sh" ] || bash tools/cuda_toolkit.sh "$tk" 90 || return 1
    # shellcheck disable=SC1091
    . "$tk/env.sh"
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target/cuda}
}

case "$mode" in
check)
    set -e
    toolkit || { echo "the CUDA 13 toolkit could not be installed from PyPI" >&2; exit 2; }
    cargo clippy --release --features cuda --all-targets -- -D warnings
    ;;
build)
    set -e
    toolkit
    mkdir -p "$out"
    cargo build --release --features cuda --example gpu_speed
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
    strip -o "$out/gpu_speed" "$CARGO_TARGET_DIR/release/examples/gpu_speed" && xz -T0 -6 -f "$out/gpu_speed"
    # The suites find their fixtures under the checkout they were built in.
    echo "$repo" > "$out/manifest_dir"
    git rev-parse HEAD > "$out/commit" 2>/dev/null || true
    ls -la "$out"
    ;;
run)
    [ -d "$out" ] || { echo "no $out/: run 'gpu_check.sh build' here first and carry $out" >&2; exit 2; }
    bin=$(mktemp -d)
    for f in lib-tests suite gpu_speed; do
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
    step 240 "$bin/lib-tests" model::gpu --test-threads 1
    step 240 "$bin/suite" model_goldens:: batch_invariance:: gguf::
    step 240 "$bin/gpu_speed"
    exit $failed
    ;;
*)
    echo "usage: gpu_check.sh check|build|run" >&2
    exit 2
    ;;
esac
