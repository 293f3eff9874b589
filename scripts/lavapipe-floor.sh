#!/usr/bin/env bash
# The wgpu floor check that needs no GPU: tokenfab's wgpu backend against llama.cpp's Vulkan
# backend on the same software Vulkan device (Mesa's lavapipe), on Gemma 3 270M (tg16, pp64)
# and a synthetic Llama 3.2 1B Q4_K (tg8, pp32), alternated tool by tool, ROUNDS rounds, in
# one sitting. lavapipe runs shaders on CPU threads: it cannot show coalescing or local-memory
# spills, but being behind llama.cpp on it is a sure sign of a problem.
#   VULKAN=1 ../shared/reference/llama-cpp.sh      # builds llama.cpp's Vulkan llama-bench
#   scripts/lavapipe-floor.sh > floor.txt          # results: one line per run, then medians
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${LLAMA_BIN:-$HOME/.cache/llama.cpp-ref/llama_cpp_python-0.3.36/vendor/llama.cpp/build-vk/bin}
ROUNDS=${ROUNDS:-2}
REPS=${REPS:-1}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp} GGML_VK_VISIBLE_DEVICES=0
[ -x "$BIN/llama-bench" ] || { echo "no $BIN/llama-bench: run VULKAN=1 ../shared/reference/llama-cpp.sh" >&2; exit 1; }
TF=./target/release/tokenfab
LLAMA=/tmp/tokenfab-floor-llama-3.2-1b.gguf
[ -e "$LLAMA" ] || "$TF" synth --preset llama-3.2-1b --type q4_k -o "$LLAMA" >&2
GEMMA=models/gemma-3-270m-q4_k_m.gguf
out=$(mktemp)
for round in $(seq "$ROUNDS"); do
  for m in "gemma $GEMMA 64 16" "llama-1b $LLAMA 32 8"; do
    set -- $m
    "$BIN/llama-bench" -m "$2" -ngl 99 -p "$3" -n "$4" -r "$REPS" -o json 2>/dev/null \
      | python3 -c 'import json,sys
for r in json.load(sys.stdin):
    t = "pp" if r["n_prompt"] else "tg"
    print("'"$1"'", "llama.cpp-vulkan", t + str(r["n_prompt"] or r["n_gen"]), round(r["avg_ts"], 3))' | tee -a "$out"
    "$TF" bench --backend wgpu --no-progress -m "$2" -p "$3" -n "$4" -r "$REPS" -o jsonl 2>/dev/null \
      | python3 -c 'import json,sys
for l in sys.stdin:
    r = json.loads(l)
    print("'"$1"'", "tokenfab-wgpu", r["test"], round(r["tok_s_mean"], 3))' | tee -a "$out"
  done
done
echo "medians (tok/s) and tokenfab / llama.cpp:"
python3 - "$out" <<'PY'
import statistics, sys, collections
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    model, tool, test, v = line.split()
    d[(model, test, tool)].append(float(v))
for (model, test) in sorted({(m, t) for m, t, _ in d}):
    a = statistics.median(d[(model, test, "tokenfab-wgpu")])
    b = statistics.median(d[(model, test, "llama.cpp-vulkan")])
    print(f"{model} {test}: tokenfab {a:.3f}, llama.cpp {b:.3f}, ratio {a / b:.2f}x")
PY
