#!/usr/bin/env bash
# A CUDA 13.0 build toolkit for `cargo build --features cuda` from PyPI wheels alone (no system
# CUDA install, no GPU needed to build), as used to build the binaries checked on an H200.
#
#   bash tools/cuda_toolkit.sh /opt/cuda13            # once
#   . /opt/cuda13/env.sh && cargo build --release --features cuda
#
# On the GPU machine, put the CUDA 13 runtime libraries (libcudart, libcublas, libcublasLt,
# libcurand; torch's nvidia/cu13/lib has them) on LD_LIBRARY_PATH. nvcc must be no newer than the
# driver's CUDA version: candle loads its kernels as PTX, which an older driver refuses.
set -euo pipefail
root=${1:?usage: cuda_toolkit.sh DIR [COMPUTE_CAP]}
cap=${2:-90}
pkgs="$root/pkgs"
python3 -m pip install -q --no-deps --target "$pkgs" \
    "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-crt==13.0.*" \
    "nvidia-cuda-cccl==13.0.*" "nvidia-cublas==13.0.*" "nvidia-curand==10.4.0.*" "nvidia-cuda-nvrtc==13.0.*"
cu="$pkgs/nvidia/cu13"
mkdir -p "$root/lib64"
for d in bin include nvvm; do ln -sfn "$cu/$d" "$root/$d"; done
for f in "$cu"/lib/lib*.so.*; do
    b=$(basename "$f"); ln -sf "$f" "$root/lib64/$b"; ln -sf "$f" "$root/lib64/${b%%.so.*}.so"
done
# cudarc (through candle) links libcuda.so, which only a driver install has. Build against a
# stub with the driver API's symbols and the driver's soname; the real one is used at run time.
if [ ! -e "$root/lib64/libcuda.so" ]; then
    # Every cuXxx( the driver headers mention, and every versioned name a macro maps one to: a
    # superset of what cudarc links is harmless in a stub.
    { grep -ohE "\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(" "$cu"/include/*.h | tr -d '( \t'
      grep -ohE "^#define[[:space:]]+cu[A-Za-z0-9_]+[[:space:]]+cu[A-Za-z0-9_]+" "$cu"/include/*.h | awk '{print $3}'
      echo cuProfilerInitialize   # gone from CUDA 13's headers, still bound by cudarc 0.19
    } | sort -u | awk '{print "void " $1 "(void) {}"}' > "$root/cuda_stub.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib64/libcuda.so" "$root/cuda_stub.c"
fi
cat > "$root/env.sh" <<ENV
export CUDA_ROOT=$root CUDA_PATH=$root CUDA_HOME=$root CUDA_TOOLKIT_ROOT_DIR=$root CUDA_COMPUTE_CAP=$cap
export PATH=$root/bin:\$PATH LIBRARY_PATH=$root/lib64\${LIBRARY_PATH:+:\$LIBRARY_PATH}
ENV
echo "toolkit in $root; . $root/env.sh before cargo build --features cuda"
