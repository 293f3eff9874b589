#!/usr/bin/env bash
# The one prepared GPU check for the lent H100 machine (see ../shared/device/README.md):
# synthetic Llama 3.2 1B and 3.1 8B Q4_K files, then `tokenfab bench` on wgpu (Vulkan) and, when
# the binary was built with --features cuda, on cuda, with NVML energy; per-kernel wgpu profile.
# Everything lands in $OUT (default ./device-out). Carry: target/release/tokenfab (or
# target/cuda/release/tokenfab as $TOKENFAB) and .device/lib/libvulkan.so.1.
set -uo pipefail
OUT=${OUT:-./device-out}
BIN=${TOKENFAB:-./target/release/tokenfab}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/.device/lib:/usr/local/nvidia/lib64:/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib:${LD_LIBRARY_PATH:-}"
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
export XDG_RUNTIME_DIR=/tmp
M=/tmp/tokenfab-models; mkdir -p $M
log() { echo "::: $* ($(date +%T))" | tee -a "$OUT/log.txt"; }
log probe
timeout 60 "$BIN" probe --json > "$OUT/probe.json" 2>> "$OUT/log.txt"
for p in llama-3.2-1b llama-3.1-8b; do
  log "synth $p"
  timeout 120 "$BIN" synth --preset $p --type q4_k -o $M/$p.gguf --force 2>> "$OUT/log.txt"
done
for b in wgpu cuda; do
  for p in llama-3.2-1b llama-3.1-8b; do
    log "bench $b $p"
    timeout 150 "$BIN" bench --backend $b -m $M/$p.gguf -p 512 -n 128 -r 3 --energy auto -o json \
      > "$OUT/bench-$b-$p.json" 2>> "$OUT/log.txt"
  done
done
log "profile wgpu 8b"
timeout 90 "$BIN" bench --backend wgpu -m $M/llama-3.1-8b.gguf -n 32 -r 1 -o md > "$OUT/bench-wgpu-8b.md" 2>> "$OUT/log.txt"
log done
