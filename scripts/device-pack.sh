#!/usr/bin/env bash
# Fills .device (git-ignored) for scripts/device-gpu-check.sh: the `cuda` build of tokenfab and
# of the GPU test binaries (tests/backend_ops.rs, tests/backend_attention_ops.rs, tests/backend_batch_ops.rs, tests/synth.rs), stripped and xz-compressed
# (~10 MB each; what travels to the device machine is capped at 64 MiB), the Qwen 0.5B file's
# tokenizer metadata alone (examples/tokenizer_gguf.rs; needs scripts/fetch-models.sh), and Debian's Vulkan
# loader with glvnd (the device machine has the NVIDIA Vulkan driver but neither).
# WGPU_ONLY=1 packs the plain build instead (no CUDA toolkit, minutes instead of ~25 on two
# cores): the check then runs the wgpu stages only (.device/build says which).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo fetch >/dev/null
if [ "${WGPU_ONLY:-0}" = 1 ]; then
  features=()
  target=target
  build=wgpu
else
  source <(bash scripts/cuda-toolkit.sh)
  features=(--features cuda)
  target=target/cuda
  build=cuda
fi
cargo build --release "${features[@]}" --target-dir "$target"
mkdir -p .device/lib
pack() { strip -o ".device/$2" "$1" && xz -T0 -6 -f ".device/$2"; }
pack "$target/release/tokenfab" tokenfab
# the Qwen file's tokenizer without its weights, for the synthetic files llama.cpp was recorded
# on (tests/data/synth/llama_cpp.json): the model itself does not fit the bundle
cargo run --release --example tokenizer_gguf -- models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
  .device/tokenizer.gguf
xz -T0 -6 -f .device/tokenizer.gguf
echo "$build" > .device/build
git rev-parse --short HEAD > .device/commit
for t in backend_ops backend_attention_ops backend_batch_ops synth; do
  exe=$(cargo test --release "${features[@]}" --no-run --target-dir "$target" --test "$t" \
    --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("executable") and m.get("target", {}).get("kind") == ["test"]: print(m["executable"])')
  pack "$exe" "$t"
done
# the Vulkan loader and glvnd as .deb files, unpacked into / there (the NVIDIA ICD needs
# libGLdispatch; the loader alone found no adapter on that machine image)
if ! ls .device/gl/libglvnd0_*.deb >/dev/null 2>&1; then
  mkdir -p .device/gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  apt-get $o update >/dev/null
  # shellcheck disable=SC2086
  (cd .device/gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
fi
if [ ! -e .device/lib/libvulkan.so.1 ]; then
  d=$(mktemp -d)
  (cd "$d" && apt-get download libvulkan1 >/dev/null && dpkg-deb -x libvulkan1_*.deb x)
  cp -L "$d"/x/usr/lib/x86_64-linux-gnu/libvulkan.so.1 .device/lib/
  rm -rf "$d"
fi
du -sh .device/*
