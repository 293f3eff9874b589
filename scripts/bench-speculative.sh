#!/usr/bin/env bash
# Speculative decoding against llama.cpp on this machine, in one sitting (issue 16):
# Qwen2.5-Coder-1.5B (target) with the 0.5B model as draft on the 5 code and 5 prose prompts,
# and prompt lookup on the 5 rewrite prompts of benches/data/speculative_prompts.json; greedy,
# N tokens (default 64), 2 threads.
#   tokenfab:  bench --prompts … --draft/--lookup (adaptive draft length, and --draft-fixed)
#   llama.cpp: llama-bench tg N at depth 64 (plain decode; its speed does not depend on the
#              text), llama-speculative-simple and llama-lookup with --spec-draft-n-max 8
#              (their "decoded N tokens … speed" lines)
# Writes docs/speculative/{tokenfab-*.json,llama-cpp.tsv} and prints both.
#   scripts/bench-speculative.sh [LLAMA_BIN_DIR] [N]      (SKIP_TF=1: keep tokenfab's JSON)
source "$(dirname "${BASH_SOURCE[0]}")/record-common.sh"
n=${2:-64}
out=docs/speculative; mkdir -p "$out"
prompts=benches/data/speculative_prompts.json
target=models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
draft=models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
python3 - "$prompts" "$work" <<'PY'
import json, sys
for p in json.load(open(sys.argv[1])):
    open(f"{sys.argv[2]}/{p['kind']}__{p['name']}.txt", "w").write(p["prompt"])
    json.dump([p], open(f"{sys.argv[2]}/{p['kind']}__{p['name']}.json", "w"))
PY
python3 -c "import json,sys; d=json.load(open('$prompts')); json.dump([p for p in d if p['kind']!='rewrite'], open('$work/draft.json','w')); json.dump([p for p in d if p['kind']=='rewrite'], open('$work/lookup.json','w'))"
run_tf() { # name, prompts, flags...
  local name=$1 file=$2; shift 2
  [ "${SKIP_TF:-0}" = 1 ] && [ -s "$out/tokenfab-$name.json" ] && return
  $tf bench -m $target --prompts "$file" -n "$n" -r 1 -t 2 --no-progress -o json "$@" > "$out/tokenfab-$name.json"
}
run_tf draft-adaptive "$work/draft.json" --draft $draft
run_tf draft-fixed8 "$work/draft.json" --draft $draft --draft-fixed --draft-max 8
run_tf lookup-adaptive "$work/lookup.json" --lookup 3
run_tf lookup-fixed8 "$work/lookup.json" --lookup 3 --draft-fixed --draft-max 8
speed() { { grep -oE "decoded +[0-9]+ tokens in +[0-9.]+ seconds, speed: +[0-9.]+" || true; } | tail -1 | awk '{print $NF}'; }
plain=$("$bin/llama-bench" -m $target -p 0 -n "$n" -d 64 -t 2 -r 3 -o json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['avg_ts'])")
printf "prompt\tllama_plain_tok_s\tllama_spec_tok_s\tmode\tn_drafted\tn_accept\n" > "$out/llama-cpp.tsv"
for f in "$work"/*.txt; do
  b=$(basename "$f" .txt); kind=${b%%__*}; name=${b#*__}
  if [ "$kind" = rewrite ]; then
    mode=lookup
    log=$("$bin/llama-lookup" -m $target -f "$f" -n "$n" -t 2 -c 2048 --temp 0 --spec-draft-n-max 8 2>&1)
  else
    mode=draft
    log=$("$bin/llama-speculative-simple" -m $target -md $draft -f "$f" -n "$n" -t 2 -td 2 -c 2048 --temp 0 --spec-type draft-simple --spec-draft-n-max 8 2>&1)
  fi
  spec=$(echo "$log" | speed)
  drafted=$(echo "$log" | { grep -oE "n_drafted *= *[0-9]+" || true; } | grep -oE "[0-9]+$" | tail -1 || true)
  accepted=$(echo "$log" | { grep -oE "n_accept *= *[0-9]+" || true; } | grep -oE "[0-9]+$" | tail -1 || true)
  printf "%s\t%s\t%s\t%s\t%s\t%s\n" "$name" "$plain" "$spec" "$mode" "${drafted:-}" "${accepted:-}" >> "$out/llama-cpp.tsv"
done
python3 - "$out" <<'PY'
import json, sys, glob, csv
out = sys.argv[1]
ll = {r["prompt"]: r for r in csv.DictReader(open(f"{out}/llama-cpp.tsv"), delimiter="\t")}
f = lambda x: float(x) if x else float("nan")
print("| prompt | tokenfab plain | adaptive | fixed 8 | llama.cpp plain | llama.cpp spec (8) | speed-up: adaptive / fixed 8 / llama.cpp | J/token plain → adaptive / fixed 8 |")
print("|---|---|---|---|---|---|---|---|")
for mode in ["draft", "lookup"]:
    ad = {r["speculative"]["prompt"]: r for r in json.load(open(f"{out}/tokenfab-{mode}-adaptive.json"))}
    fx = {r["speculative"]["prompt"]: r for r in json.load(open(f"{out}/tokenfab-{mode}-fixed8.json"))}
    for name, a in ad.items():
        s, x, l = a["speculative"], fx[name]["speculative"], ll.get(name, {})
        lp, ls = f(l.get("llama_plain_tok_s")), f(l.get("llama_spec_tok_s"))
        print(f"| {name} ({mode}) | {s['plain_decode_tok_s']:.1f} | {a['decode_tok_s']:.1f} | {fx[name]['decode_tok_s']:.1f} | {lp:.1f} | {ls:.1f} | "
              f"{s['speedup']:.2f}x / {x['speedup']:.2f}x / {ls/lp:.2f}x | {s['plain_j_per_token']:.3f} → {s['j_per_accepted_token']:.3f} / {x['j_per_accepted_token']:.3f} |")
PY
