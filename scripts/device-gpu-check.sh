#!/usr/bin/env bash
# The one prepared GPU check for the lent H100 machine (see ../shared/device/README.md), run
# with `carry: [".device"]` after scripts/device-pack.sh has filled .device here:
#   1. the architectures of issue 17 against llama.cpp: the synthetic files of
#      tests/data/synth/llama_cpp.json rebuilt byte for byte, `perplexity --kl-divergence`
#      against llama.cpp's recorded distributions on cpu, cuda and wgpu ($OUT/arch_kld.jsonl),
#   2. greedy parity of every synthetic preset: tests/synth.rs (cuda and wgpu vs the f64 reference),
#   3. per-op parity: tests/backend_ops.rs and tests/backend_attention_ops.rs (cuda and wgpu on
#      the GPU vs the f64 reference; the CPU backend on the same inputs) and
#      tests/backend_batch_ops.rs,
#   then, unless BENCH=0:
#   4. `tokenfab bench` on synthetic llama-3.2-1b and llama-3.1-8b Q4_K files, cuda then wgpu,
#      with NVML energy (llama-bench's -p 512 -n 128 -r 3, and a decode-only -p 0 -n 256 -r 5
#      like the energy rows of ../shared/oracle/gpu.md),
#   5. per-op / per-kernel profiles of 8B decode (and wgpu prefill) on both,
#   6. wgpu only: `tokenfab bench --kernels` (every matrix shape of both presets, Q4_K and Q6_K,
#      1 and 512 tokens) into $OUT/kernels.jsonl, and decode with TOKENFAB_WGPU_KERNELS=legacy
#      (the matmul kernel before matvec/gemm) for an A/B in the same sitting.
# A WGPU_ONLY=1 pack (.device/build = wgpu) runs the wgpu stages only.
# Each stage has its own timeout and the script goes on after a failure. Results: $OUT/log.txt
# (everything readable), $OUT/bench.jsonl (one JSON line per bench test), $OUT/probe.json.
set -uo pipefail
OUT=${OUT:-./device-out}
mkdir -p "$OUT"
T=/tmp/tokenfab-device
M=/tmp/tokenfab-models
mkdir -p "$T" "$M"
export LD_LIBRARY_PATH="$PWD/.device/lib:/usr/local/nvidia/lib64:/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib:${LD_LIBRARY_PATH:-}"
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
export XDG_RUNTIME_DIR=/tmp RUST_BACKTRACE=1
LOG="$OUT/log.txt"
# the whole check ends within DEADLINE seconds (the device call's limit is 600): each stage's
# timeout is cut to what is left
DEADLINE=${DEADLINE:-530}
limit() { local left=$((DEADLINE - SECONDS)); echo $(($1 < left ? $1 : (left > 5 ? left : 5))); }
log() { echo "::: $* ($(date +%T), ${SECONDS}s)" | tee -a "$LOG"; }
stage() { # stage SECONDS NAME CMD... : output into the log
  local t=$1 name=$2
  shift 2
  log "$name"
  timeout "$(limit "$t")" "$@" >> "$LOG" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || log "$name: exit $rc"
}

log "unpack"
python3 - <<'EOF' >> "$LOG" 2>&1
import lzma, os, shutil
for f in sorted(os.listdir(".device")):
    if f.endswith(".xz"):
        dst = os.path.join("/tmp/tokenfab-device", f[:-3])
        with lzma.open(os.path.join(".device", f)) as i, open(dst, "wb") as o:
            shutil.copyfileobj(i, o)
        os.chmod(dst, 0o755)
        print(dst, os.path.getsize(dst))
EOF
BIN=$T/tokenfab
# Vulkan: the loader and glvnd (the NVIDIA ICD needs libGLdispatch) from .device/gl, unpacked
# into / as the device notes say; the ICD file wherever the driver put it
for f in .device/gl/*.deb; do dpkg -x "$f" /; done
ldconfig
if [ ! -e "$VK_DRIVER_FILES" ]; then
  icd=$(find / -name 'nvidia_icd*.json' -not -path '/proc/*' 2>/dev/null | head -1)
  [ -n "$icd" ] && export VK_DRIVER_FILES=$icd
fi
log "Vulkan ICD: $VK_DRIVER_FILES"
RUN_CUDA=${RUN_CUDA:-1}
if [ "$(cat .device/build 2>/dev/null)" = wgpu ]; then
  RUN_CUDA=0
fi
log "build: $(cat .device/build 2>/dev/null), commit $(cat .device/commit 2>/dev/null)"
RUN_WGPU=${RUN_WGPU:-1}
nvidia-smi --query-gpu=name,driver_version,memory.used,power.draw,temperature.gpu,clocks.sm,clocks.mem --format=csv >> "$LOG" 2>&1
log "probe"
VK_LOADER_DEBUG=error,warn timeout 90 "$BIN" probe --json > "$OUT/probe.json" 2>> "$LOG" || log "probe failed"
if ! grep -q '"name"' "$OUT/probe.json"; then
  log "no wgpu adapter: per-op parity without wgpu"
  export TOKENFAB_TEST_SKIP_WGPU=1
  RUN_WGPU=0
fi

BACKENDS=""
[ "$RUN_CUDA" = 1 ] && BACKENDS="cuda"
[ "$RUN_WGPU" = 1 ] && BACKENDS="$BACKENDS wgpu"

# issue 17: the architectures no real file has, against llama.cpp's recorded distributions on
# every backend here — each synthetic file rebuilt byte for byte from its recorded `synth`
# command (.device/tokenizer.gguf carries the Qwen file's tokenizer), its sha256 checked against
# the recording, then `perplexity --kl-divergence` per backend: one JSON line per (preset,
# backend) in $OUT/arch_kld.jsonl
if [ "${ARCH:-1}" = 1 ] && [ -e "$T/tokenizer.gguf" ]; then
  python3 - tests/data/synth/llama_cpp.json > "$T/arch.txt" <<'EOF'
import json, sys
for p, v in json.load(open(sys.argv[1]))["presets"].items():
    a = v["synth"].split()[1:]
    i = a.index("--tokenizer-from")
    del a[i:i + 2]
    print(p, v["sha256"], " ".join(a))
EOF
  while read -r p sha args <&3; do
    # shellcheck disable=SC2086
    stage 120 "synth $p as recorded" "$BIN" $args --tokenizer-from "$T/tokenizer.gguf" -o "$M/$p.gguf" --force
    got=$(sha256sum "$M/$p.gguf" 2>/dev/null | cut -d' ' -f1)
    if [ "$got" != "$sha" ]; then
      log "$p: sha256 $got, recorded $sha: not llama.cpp's file, skipped"
      continue
    fi
    for b in cpu $BACKENDS; do
      log "kld $p $b"
      timeout "$(limit 120)" "$BIN" perplexity -m "$M/$p.gguf" --backend "$b" -f tests/data/oracle/eval.txt \
        -c 128 --chunks 4 --kl-divergence "tests/data/synth/$p.tfkld" --json > "$T/kld.json" 2>> "$LOG" \
        || { log "kld $p $b: failed"; continue; }
      python3 - "$p" "$b" "$T/kld.json" >> "$OUT/arch_kld.jsonl" <<'EOF'
import json, sys
p, b, f = sys.argv[1:]
r = json.load(open(f))
print(json.dumps({"preset": p, "backend": b, "ppl": r["perplexity"]["ppl"], **r["kl_divergence"]}))
EOF
      tail -n 1 "$OUT/arch_kld.jsonl" >> "$LOG"
    done
    rm -f "$M/$p.gguf"
  done 3< "$T/arch.txt"
fi
# the synthetic parity tests of every architecture (cuda and wgpu against exact arithmetic)
[ "$RUN_CUDA" = 1 ] && stage 150 "greedy parity, synthetic presets, cuda" "$T/synth" should_match_reference_on_cuda --nocapture
[ "$RUN_WGPU" = 1 ] && stage 150 "greedy parity, synthetic presets, wgpu" "$T/synth" should_match_reference_on_wgpu --nocapture
stage 180 "per-op parity (cuda, wgpu, cpu)" "$T/backend_ops" --test-threads 1 --nocapture
stage 90 "RoPE and attention parity (cuda, wgpu, cpu)" "$T/backend_attention_ops" --test-threads 1 --nocapture
stage 60 "several sequences in one batch (cuda, wgpu, cpu)" "$T/backend_batch_ops"
if [ "${BENCH:-1}" = 0 ]; then
  nvidia-smi --query-gpu=name,memory.used,power.draw,temperature.gpu --format=csv >> "$LOG" 2>&1
  log done
  exit 0
fi

if [ "$RUN_WGPU" = 1 ]; then
  log "kernels"
  timeout "$(limit 150)" "$BIN" bench --kernels llama-3.2-1b,llama-3.1-8b --kernel-types q4_K,q6_K \
    -p 512 -o jsonl > "$OUT/kernels.jsonl" 2>> "$LOG" || log "kernels: failed"
fi
for p in llama-3.2-1b llama-3.1-8b; do
  stage 120 "synth $p" "$BIN" synth --preset $p --type q4_k -o $M/$p.gguf --force
done
bench() { # bench LIMIT NAME ARGS... : json lines into bench.jsonl, stderr into the log
  local t=$1 name=$2
  shift 2
  log "bench $name"
  timeout "$(limit "$t")" "$BIN" bench --no-progress -o jsonl "$@" >> "$OUT/bench.jsonl" 2>> "$LOG" || log "bench $name: failed"
}
for b in $BACKENDS; do
  for p in llama-3.2-1b llama-3.1-8b; do
    bench 150 "$b $p pp512 tg128" --backend $b -m $M/$p.gguf -p 512 -n 128 -r 3 --energy nvml
  done
done
for b in $BACKENDS; do
  for p in llama-3.2-1b llama-3.1-8b; do
    bench 120 "$b $p decode-only energy" --backend $b -m $M/$p.gguf -p 0 -n 256 -r 5 --energy nvml
  done
done
# the same decode with cudarc's per-slice CUDA events kept (what candle does by default)
if [ "${AB_EVENTS:-0}" = 1 ] && [ "$RUN_CUDA" = 1 ]; then
  for p in llama-3.2-1b llama-3.1-8b; do
    TOKENFAB_CUDA_EVENTS=1 bench 90 "cuda $p tg128, CUDA events on" --backend cuda -m $M/$p.gguf -p 0 -n 128 -r 3 --energy nvml
    bench 90 "cuda $p tg128, CUDA events off" --backend cuda -m $M/$p.gguf -p 0 -n 128 -r 3 --energy nvml
  done
fi
if [ "$RUN_WGPU" = 1 ]; then
  for p in llama-3.2-1b llama-3.1-8b; do
    TOKENFAB_WGPU_KERNELS=legacy bench 60 "wgpu $p tg32, legacy kernels" --backend wgpu -m $M/$p.gguf -p 0 -n 32 -r 2
    bench 60 "wgpu $p tg32, fast kernels" --backend wgpu -m $M/$p.gguf -p 0 -n 32 -r 2
  done
  bench 60 "wgpu 8b prefill profile" --backend wgpu -m $M/llama-3.1-8b.gguf -p 512 -n 0 -r 1 --profile
  bench 60 "wgpu 1b decode profile" --backend wgpu -m $M/llama-3.2-1b.gguf -p 0 -n 32 -r 1 --profile
fi
for b in $BACKENDS; do
  bench 120 "$b 8b profile" --backend $b -m $M/llama-3.1-8b.gguf -p 0 -n 32 -r 1 --profile
done
nvidia-smi --query-gpu=name,memory.used,power.draw,temperature.gpu --format=csv >> "$LOG" 2>&1
log done
