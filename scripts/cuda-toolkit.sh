#!/usr/bin/env bash
# Installs a CUDA 13.0 build toolkit from PyPI wheels so the `cuda` feature (candle-core's CUDA
# backend) can be COMPILED on a machine without a GPU or a system CUDA, then prints the
# environment to build with. The binary runs on the lent H100 (driver 580 = CUDA 13.0).
# Verified 2026-11-26: candle-core 0.11.1 + cudarc 0.19.10 built here in ~15 min (2 cores) and
# its CUDA matmul / QMatMul (Q4K mmvq, mmq) ran correctly on the H100.
# Usage: source <(bash scripts/cuda-toolkit.sh [DIR])      (DIR default: ~/.cache/cuda13-toolkit)
# Needs: `cargo fetch` done in the project first (the libcuda link stub is made from the
# symbol list of the cudarc version the project resolved).
set -euo pipefail
W=${1:-$HOME/.cache/cuda13-toolkit}
mkdir -p "$W/wheels" && cd "$W/wheels"
# 13.0 on purpose: its PTX (ISA 9.0) is what driver 580 can JIT; nvcc 13.5+ is rejected by cudarc.
if [ ! -e "$W/unz/nvidia/cu13/bin/nvcc" ]; then
  python3 -m pip download -q --no-deps -d . \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 \
    nvidia-cuda-nvrtc==13.0.88 nvidia-curand==10.4.0.35 nvidia-cublas==13.0.2.14 >&2
  mkdir -p "$W/unz" && for w in *.whl; do unzip -q -o "$w" -d "$W/unz"; done
fi
T="$W/unz/nvidia/cu13"
chmod +x "$T"/bin/* "$T"/nvvm/bin/* 2>/dev/null || true
# Link-time names: the wheels ship only versioned sonames.
cd "$T/lib"
for l in cudart.so.13 cublas.so.13 cublasLt.so.13 curand.so.10 nvrtc.so.13; do ln -sf "lib$l" "lib${l%.*}"; done
# No wheel ships libcuda (the driver does). Link against a stub exporting every cu* symbol that
# cudarc declares; the real driver library is used at run time. Never ship the stub.
mkdir -p stubs
SYS=$(ls -d "$HOME"/.cargo/registry/src/*/cudarc-*/src/driver/sys/mod.rs 2>/dev/null | sort -V | tail -1)
[ -n "$SYS" ] || { echo "cuda-toolkit.sh: run 'cargo fetch' with the cuda feature first (cudarc sources not found)" >&2; exit 1; }
grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$SYS" | awk '{print $4}' | sort -u \
  | awk '{print "void " $1 "(void){}"}' > stubs/libcuda_stub.c
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o stubs/libcuda.so stubs/libcuda_stub.c
cat <<ENV
export PATH="$T/bin:\$PATH"
export CUDA_HOME="$T"
export CUDA_COMPUTE_CAP=90
ENV
