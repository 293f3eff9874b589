#!/usr/bin/env bash
# tokenfab against llama.cpp on this machine, in one sitting: issue 18's benchmark table.
#
#   scripts/bench-vs-llama.sh [ROUNDS] [MODEL...]     (default: 2 rounds, the three real models)
#
# For each round and model, alternated: llama-bench (built here by
# ../shared/reference/llama-cpp.sh, native ISA), `tokenfab bench` (native ISA) and
# `TOKENFAB_ISA=avx2 tokenfab bench`, all `-p 512 -n 128 -r 3 -t $THREADS` (default 2). Prints
# one markdown row per round and model (ratios ours ÷ llama.cpp, then tok/s means), and keeps
# the raw JSON under $OUTDIR (default /tmp/bench-vs-llama).
#
# The page cache matters: a mapped model decodes fastest when the kernel caches the file in
# 2 MiB folios and maps them whole (FilePmdMapped in /proc/self/smaps; one TLB entry per
# 2 MiB; src/gguf/page_cache.rs has the measurements). How a file sits in the cache depends
# on its history (a file written on this machine, or read in pieces, stays in small pages),
# and both runtimes map the same file, so they meet the same cache state. To make that state
# the same every time, each model is evicted from the cache (GNU dd's `iflag=nocache`, which
# is posix_fadvise DONTNEED; no root needed) and read back with `cat`, which caches it in
# large folios; `tokenfab bench` records the share it found mapped 2 MiB at a time
# (model_huge_pages_pct in its JSON).
# DROP_CACHES=1 (root) drops the whole cache first as well. LLAMA_AVX2=path/to/llama-bench
# adds an AVX2-only llama.cpp build for the AVX2 columns' second ratio. REPACK=1 adds
# `tokenfab bench --repack` (native ISA) to each round, as the last columns.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds=${1:-2}; shift || true
models=("$@")
[ ${#models[@]} -gt 0 ] || models=("$here/models/gemma-3-270m-q4_k_m.gguf"
  "$here/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
  "$here/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
threads=${THREADS:-2}
out=${OUTDIR:-/tmp/bench-vs-llama}; mkdir -p "$out"
llama_bin=$("$here/../shared/reference/llama-cpp.sh" "${LLAMA_DIR:-$HOME/.cache/llama.cpp-ref}" llama-bench | tail -1)
tf="$here/target/release/tokenfab"
[ -x "$tf" ] || cargo build --release --manifest-path "$here/Cargo.toml" >&2
if [ "${DROP_CACHES:-0}" = 1 ]; then
  sync; echo 1 > /proc/sys/vm/drop_caches
fi
for m in "${models[@]}"; do
  dd if="$m" iflag=nocache count=0 status=none
  cat "$m" > /dev/null
done
grep -E 'FileHugePages' /proc/meminfo >&2 || true
args=(-p 512 -n 128 -r 3 -t "$threads")
la=${LLAMA_AVX2:-}
repack=${REPACK:-0}
echo "| round | model | pp512 ÷ llama | tg128 ÷ llama | AVX2: pp512 ÷ llama | AVX2: tg128 ÷ llama | AVX2: pp512 ÷ llama AVX2 | AVX2: tg128 ÷ llama AVX2 | llama pp / tg | ours pp / tg | ours AVX2 pp / tg | llama AVX2 pp / tg | repack: pp512 ÷ llama | repack: tg128 ÷ llama | ours repack pp / tg |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for r in $(seq 1 "$rounds"); do
  for m in "${models[@]}"; do
    n=$(basename "$m" .gguf)
    "$llama_bin/llama-bench" -m "$m" "${args[@]}" -o json > "$out/$n.r$r.llama.json" 2>/dev/null
    "$tf" bench -m "$m" "${args[@]}" -o json --no-progress > "$out/$n.r$r.ours.json" 2>/dev/null
    TOKENFAB_ISA=avx2 "$tf" bench -m "$m" "${args[@]}" -o json --no-progress > "$out/$n.r$r.avx2.json" 2>/dev/null
    [ -z "$la" ] || "$la" -m "$m" "${args[@]}" -o json > "$out/$n.r$r.llama-avx2.json" 2>/dev/null
    [ "$repack" != 1 ] || "$tf" bench -m "$m" "${args[@]}" --repack -o json --no-progress > "$out/$n.r$r.repack.json" 2>/dev/null
    python3 - "$r" "$n" "$out/$n.r$r" <<'EOF2'
import json, os, sys
r, n, base = sys.argv[1:]
def rates(kind):
    p = f"{base}.{kind}.json"
    if not os.path.exists(p):
        return None
    return [x.get("avg_ts") or x.get("tok_s_mean") for x in json.load(open(p))]
l, o, a, la, rp = rates("llama"), rates("ours"), rates("avx2"), rates("llama-avx2"), rates("repack")
ratio = lambda x, y, i: f"{x[i] / y[i]:.2f}×" if x and y else "-"
pair = lambda x: f"{x[0]:.0f} / {x[1]:.1f}" if x else "-"
print(f"| {r} | {n} | {ratio(o, l, 0)} | {ratio(o, l, 1)} | {ratio(a, l, 0)} | {ratio(a, l, 1)} "
      f"| {ratio(a, la, 0)} | {ratio(a, la, 1)} | {pair(l)} | {pair(o)} | {pair(a)} | {pair(la)} "
      f"| {ratio(rp, l, 0)} | {ratio(rp, l, 1)} | {pair(rp)} |")
EOF2
  done
done
