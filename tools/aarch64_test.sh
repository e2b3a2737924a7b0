#!/usr/bin/env bash
# Cross-builds benchgen for aarch64 (ARM64 Linux: Graviton; the same code as Apple silicon) and
# runs its kernel and model tests under qemu user-mode emulation on an x86-64 Linux machine.
#
# Installs (only what is missing; apt needs root or sudo):
#   - Debian/Ubuntu packages gcc-aarch64-linux-gnu, libc6-dev-arm64-cross (cross linker and
#     aarch64 glibc in /usr/aarch64-linux-gnu) and qemu-user (qemu-aarch64);
#   - rustup's std for the target: `rustup target add aarch64-unknown-linux-gnu`.
# Configures cargo through environment variables only (no .cargo/config.toml, so x86 builds are
# untouched): the linker, the runner `qemu-aarch64 -L /usr/aarch64-linux-gnu`, and CC for crates
# that build C. BENCHGEN_TEST_RUNNER makes tests that spawn the `benchgen` binary run it through
# qemu too (see tests/suite/common/mod.rs); no binfmt_misc handler is needed.
#
# Runs, for --target aarch64-unknown-linux-gnu --release, on qemu's `max` CPU (ARMv8.x with the
# dot-product extension, as Apple silicon and Graviton 2+ have):
#   cargo test --lib kernels isa    kernel unit tests: every weight type on the portable and NEON
#                                   families, bit for bit (44 tests with the attention ones the
#                                   filter matches), and the BENCHGEN_ISA names
#   cargo test --lib model::host    attention and element-wise ops
#   cargo test --test isa_equivalence, and --test suite -- model_goldens:: gguf:: batch_invariance::
#                                   logits equal on both families (f32, bf16, f16, Q8_0 weights),
#                                   transformers goldens, GGUF, bit-for-bit batch invariance
# and then, on a `cortex-a72` (ARMv8.0, no dot product), the tests of the only code that takes
# another path without it: the int8 products (`kernels::int8`, `kernels::tests::int8`) and the
# attention kernels (`model::host::attn_kernels`), whose int8 scores use `smull` there instead of
# `sdot`, and the ISA names. The other kernels check no feature beyond NEON, so a second run of
# them (about two and a half minutes of emulation) would repeat the first.
# With BENCHGEN_DATA_DIR (default: ../shared/data beside the repository, if it exists) the gguf
# tests that need real files (stories260K.gguf, reference tokenizers) run too; without it they
# say they are skipped and pass.
#
# Time on the 2-core x86-64 machine it was written on (shared, run under `nice -n 10`): from
# cold, about 12 min to build the lib tests and 2.5 min more for the integration tests and the
# binary. Emulation alone, with the machine otherwise quiet: kernels 58 s, model::host <1 s,
# model_goldens 54 s, gguf 171 s, batch_invariance 73 s, about 6 min in all. Measured end to end
# under a load average of 8 from other jobs (3 min of it rebuilding test crates): 14 min 50 s.
# The gguf tests are the slowest (quantized_gguf_runs_as_stored_bit_for_bit and
# quantized_gguf_is_batch_invariant run over 60 s each under qemu).
#
# Usage: tools/aarch64_test.sh [--no-install | --install-only] [--quick]
#   --install-only     install what is missing and stop (non-zero exit if something could not be)
#   --quick            the kernel, ISA and host-op unit tests and isa_equivalence only (what CI
#                      runs: every NEON kernel against the portable one, on both CPUs), not the
#                      slower goldens, GGUF and batch-invariance runs
#   CARGO_TARGET_DIR   where to build (default: cargo's, target/ in the repository)
#   NICE               prefix for the cargo commands, e.g. NICE="nice -n 10" on a shared machine
set -euo pipefail

TARGET=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

install=1
quick=0
for arg in "$@"; do
    case $arg in
        --no-install) install=0 ;;
        --install-only) install=2 ;;
        --quick) quick=1 ;;
        *) echo "aarch64_test: unknown option $arg (see the header of $0)" >&2; exit 2 ;;
    esac
done

if ((install)); then
    if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null \
        || [[ ! -e $SYSROOT/lib/ld-linux-aarch64.so.1 ]]; then
        sudo=""
        [[ $(id -u) -ne 0 ]] && sudo=sudo
        $sudo apt-get update
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
    fi
    if ! rustup target list --installed | grep -qx "$TARGET"; then
        rustup target add "$TARGET"
    fi
    ((install == 2)) && exit 0
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
runner() { export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu $1 -L $SYSROOT" BENCHGEN_TEST_RUNNER="qemu-aarch64 -cpu $1 -L $SYSROOT"; }
runner max
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
if [[ -z "${BENCHGEN_DATA_DIR:-}" && -d "$repo/../shared/data" ]]; then
    BENCHGEN_DATA_DIR=$(cd "$repo/../shared/data" && pwd)
    export BENCHGEN_DATA_DIR
fi
echo "aarch64_test: BENCHGEN_DATA_DIR=${BENCHGEN_DATA_DIR:-<unset: real-data tests skip>}"

NICE=${NICE:-}
cargo_test() { $NICE cargo test --release --target "$TARGET" "$@"; }

start=$SECONDS
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
run() {
    local t0=$SECONDS
    echo "== cargo test --target $TARGET $*"
    if cargo_test "$@" 2>&1 | tee -a "$log"; then :; else status=1; fi
    echo "== $* : $((SECONDS - t0)) s"
}

# Build everything first, so the timings below are emulation alone.
suite=(--test suite)
((quick)) && suite=()
$NICE cargo test --release --target "$TARGET" --lib --test isa_equivalence "${suite[@]}" --no-run
echo "== build: $((SECONDS - start)) s"

echo "== cargo clippy --target $TARGET (the NEON code is compiled out of the x86 lint)"
$NICE cargo clippy --release --target "$TARGET" --all-targets --quiet -- -D warnings || status=1
run --lib -- kernels isa
run --lib model::host
run --test isa_equivalence
((quick)) || run --test suite -- model_goldens:: gguf:: batch_invariance::
runner cortex-a72
run --lib -- kernels::int8 kernels::tests::int8 model::host::attn_kernels isa

echo "== summary (aarch64 under qemu, $((SECONDS - start)) s in all)"
grep -E '^test result:|^test .* FAILED$' "$log" || true
exit $status
