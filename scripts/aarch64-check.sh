#!/usr/bin/env bash
# The aarch64 build under emulation: cross-compiles for aarch64-unknown-linux-gnu and runs,
# under qemu-user, the library's tests (every kernel, NEON with and without the dot-product
# extension against the portable ones, bit for bit) and Gemma 3's greedy decoding against
# llama.cpp's oracle on the NEON kernels, with `--repack`'s eight-row kernel too. Correctness
# only: emulated speed means nothing.
#
#   scripts/aarch64-check.sh setup   the target, a cross gcc and qemu-user (apt), if missing
#   scripts/aarch64-check.sh         setup, then build and test (CI runs this; ~8 min on 2 cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGET=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu

setup() {
  rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
  if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu \
      g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null
  fi
}

check() {
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
  export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
  export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
  # qemu's default CPU ("max") has dotprod: Isa::detect picks neon+dotprod and the kernel
  # tests run both NEON levels
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $SYSROOT"
  cargo test --release --target "$TARGET" --lib
  cargo test --release --target "$TARGET" --test greedy_oracle gemma_greedy_should_match_llama_cpp
  # `--repack`'s eight-row kernel (`sdot`) on Gemma's Q4_K matrices
  cargo test --release --target "$TARGET" --test greedy_oracle gemma_greedy_with_repack_should_match_llama_cpp
  # a CPU without dotprod gets the baseline kernels
  local bin=target/$TARGET/release/tokenfab
  cargo build --release --target "$TARGET"
  qemu-aarch64 -cpu cortex-a53 -L "$SYSROOT" "$bin" probe --no-bandwidth | grep -q '(.*neon)' ||
    { echo "a Cortex-A53 must run the baseline NEON kernels" >&2; exit 1; }
}

case "${1:-all}" in
  setup) setup ;;
  all) setup; check ;;
  *) echo "usage: $0 [setup]" >&2; exit 2 ;;
esac
