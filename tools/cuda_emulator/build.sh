#!/usr/bin/env bash
# Builds the CPU CUDA driver (emulator.cpp, see its header) into OUT_DIR as libcuda.so.1 (and
# libcuda.so): with OUT_DIR first on LD_LIBRARY_PATH, cudarc loads it as the driver and the CUDA
# step runs its kernels on the CPU. Needs g++ (C++17) on x86-64; about 20 s.
#
#   bash tools/cuda_emulator/build.sh OUT_DIR [DRIVER_STUB]
#
# A binary built with candle's cuda feature links libcuda and binds every driver function it
# names when it starts, so the library also defines, as functions that report themselves and
# return CUDA_ERROR_NOT_SUPPORTED, every other function of DRIVER_STUB (default: the stub
# libcuda.so that tools/cuda_toolkit.sh builds, $CUDA_ROOT/lib64/libcuda.so).
set -euo pipefail
out=${1:?usage: build.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
kernels="$here/../../src/model/gpu/kernels.cu"
[ "$(uname -m)" = x86_64 ] || { echo "the CUDA emulator's fibers are written for x86-64" >&2; exit 2; }
command -v g++ > /dev/null || { echo "the CUDA emulator needs g++" >&2; exit 2; }
mkdir -p "$out"
# Every extern "C" kernel of kernels.cu and its __launch_bounds__ (0: none), for the driver's
# table of functions by name.
grep -oE 'extern "C" __global__ void (__launch_bounds__\([0-9]+\) )?[A-Za-z_0-9]+' "$kernels" |
    sed -E 's/.*void __launch_bounds__\(([0-9]+)\) ([A-Za-z_0-9]+)$/KERNEL(\2, \1)/; s/.*void ([A-Za-z_0-9]+)$/KERNEL(\1, 0)/' \
    > "$out/kernel_list.inc"
[ -s "$out/kernel_list.inc" ] || { echo "no kernels found in $kernels" >&2; exit 1; }
stub=${2:-${CUDA_ROOT:-}/lib64/libcuda.so}
[ -e "$stub" ] || { echo "no driver stub at '$stub' to take the driver's function names from" >&2; exit 2; }
grep -oE '^API cu[A-Za-z0-9_]+' "$here/emulator.cpp" | awk '{print $2}' | sort -u > "$out/emulated.txt"
nm -D --defined-only "$stub" | awk '$2 == "T" && $3 ~ /^cu[A-Z]/ {print $3}' | sort -u |
    comm -23 - "$out/emulated.txt" | awk '{print "UNEMULATED(" $1 ")"}' > "$out/unemulated.inc"
# -ffp-contract=off: no fused multiply-adds but the kernels' own fmaf, as NVRTC's --fmad=false.
# UBSan's alignment check stands for the device's fault on a misaligned vector load.
g++ -std=c++17 -O2 -g -fPIC -shared -ffp-contract=off -fno-fast-math -fvisibility=hidden \
    -fsanitize=alignment -fno-sanitize-recover=alignment -static-libubsan \
    -I "$(dirname "$kernels")" -I "$out" -o "$out/libcuda.so.1.tmp" "$here/emulator.cpp"
mv "$out/libcuda.so.1.tmp" "$out/libcuda.so.1"
ln -sf libcuda.so.1 "$out/libcuda.so"
echo "built $out/libcuda.so.1 ($(wc -l < "$out/kernel_list.inc") kernels)"
