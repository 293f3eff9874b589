#!/usr/bin/env bash
# Records llama.cpp on seeded synthetic models of the architectures no real test model has, for
# tests/synth_llama_cpp.rs. Per preset: `tokenfab synth --preset P --type q8_0 --qk-gain 2
# --seed 7 --tokenizer-from` the Qwen 0.5B file (so llama.cpp can tokenize; q8_0 because its
# random blocks are zero-mean, which k-quant random blocks are not, and a Q/K gain of 2 so
# attention is peaked and a RoPE or norm mistake changes the top token — see README "Models"),
# then the file's sha256 (the record applies to exactly those bytes), llama-perplexity's PPL on
# tests/data/oracle/eval.txt (-c 128, 4 chunks) with its distributions
# (--kl-divergence-base, reduced to top-32 + rest by scripts/llama-kld-to-tfkld.py into
# tests/data/synth/P.tfkld), and llama-simple's greedy 12 tokens.
# Presets: llama-3.2-1b (Llama 3 RoPE divisors, rope_freqs.weight), qwen3-0.6b (per-head Q/K
# norms), gemma-2-2b with 4 of its 26 layers and a 32-token window so the windowed layers
# differ within a chunk (soft-capped scores and logits, alternating windows), phi-3.5-mini with
# 2 of its 32 layers (fused QKV and gate/up, LongRoPE's short divisors), phi-4-mini with 2 of
# its 32 layers (grouped KV heads, partial rotary: RoPE over 96 of 128 dimensions). Writes
# tests/data/synth/llama_cpp.json. Needs llama.cpp's tools
# (../shared/reference/llama-cpp.sh) and numpy.
#
#   scripts/record-synth-llama-oracle.sh [LLAMA_BIN_DIR]
source "$(dirname "${BASH_SOURCE[0]}")/record-common.sh"
presets=(llama-3.2-1b qwen3-0.6b gemma-2-2b phi-3.5-mini phi-4-mini)
synth_args="--type q8_0 --qk-gain 2 --seed 7"
declare -A extra=([gemma-2-2b]="--layers 4 --sliding-window 32" [phi-3.5-mini]="--layers 2"
  [phi-4-mini]="--layers 2")
for p in "${presets[@]}"; do
  # shellcheck disable=SC2086
  "$tf" synth --preset "$p" $synth_args ${extra[$p]:-} -o "$work/$p.gguf" \
    --tokenizer-from models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf 2>/dev/null
  "$bin/llama-perplexity" -m "$work/$p.gguf" -f tests/data/oracle/eval.txt -c 128 --chunks 4 -t 2 \
    --kl-divergence-base "$work/$p.llkld" >"$work/$p.ppl.txt" 2>&1
  python3 scripts/llama-kld-to-tfkld.py "$work/$p.llkld" "tests/data/synth/$p.tfkld" 32
  "$bin/llama-simple" -m "$work/$p.gguf" -n 12 "The capital of France is" >"$work/$p.simple.txt" 2>/dev/null
  sha256sum "$work/$p.gguf" | cut -d' ' -f1 >"$work/$p.sha"
  rm "$work/$p.gguf" "$work/$p.llkld"
done
for p in "${presets[@]}"; do echo "${extra[$p]:-}" >"$work/$p.extra"; done
python3 - "$work" "$synth_args" "${presets[@]}" <<'PY'
import json, re, sys
work, synth_args, presets = sys.argv[1], sys.argv[2], sys.argv[3:]
out = {
    "command": "scripts/record-synth-llama-oracle.sh (llama.cpp 0c1e570 from llama-cpp-python 0.3.36): "
               "llama-perplexity -f tests/data/oracle/eval.txt -c 128 --chunks 4 --kl-divergence-base "
               "(-> synth/PRESET.tfkld); llama-simple -n 12",
    "prompt": "The capital of France is",
    "presets": {},
}
for p in presets:
    ppl = open(f"{work}/{p}.ppl.txt").read()
    # llama-simple prints token pieces: a multi-byte character split across tokens is
    # invalid UTF-8 on its own (kept as U+FFFD; the test compares up to the first one)
    simple = open(f"{work}/{p}.simple.txt", "rb").read().decode("utf-8", errors="replace")
    out["presets"][p] = {
        "synth": " ".join(f"tokenfab synth --preset {p} {synth_args} {open(f'{work}/{p}.extra').read().strip()} "
                          "--tokenizer-from qwen2.5-coder-0.5b-instruct-q4_k_m.gguf".split()),
        "sha256": open(f"{work}/{p}.sha").read().strip(),
        "ppl": float(re.search(r"Final estimate: PPL = ([\d.]+)", ppl).group(1)),
        "chunk_ppl": [float(x) for x in re.findall(r"\[\d+\]([\d.]+),", ppl)],
        "llama_simple_greedy": simple.removeprefix(out["prompt"]).rstrip("\n"),
    }
json.dump(out, open("tests/data/synth/llama_cpp.json", "w"), indent=1, ensure_ascii=False)
print(json.dumps(out, indent=1, ensure_ascii=False))
PY
