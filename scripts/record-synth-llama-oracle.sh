#!/usr/bin/env bash
# Records llama.cpp on a seeded synthetic Llama (`tokenfab synth --preset llama-3.2-1b --type q4_k
# --seed 7 --tokenizer-from` the Qwen 0.5B file, so llama.cpp can tokenize), for tests/synth.rs:
# the file's sha256 (the record applies to exactly those bytes), llama-perplexity's PPL on
# tests/data/oracle/eval.txt (-c 128, 4 chunks) and llama-simple's greedy 12 tokens.
# Writes tests/data/synth/llama_cpp.json. Needs llama.cpp's tools (../shared/reference/llama-cpp.sh).
#
#   scripts/record-synth-llama-oracle.sh [LLAMA_BIN_DIR]
source "$(dirname "${BASH_SOURCE[0]}")/record-common.sh"
"$tf" synth --preset llama-3.2-1b --type q4_k --seed 7 -o "$work/llama.gguf" \
  --tokenizer-from models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf 2>/dev/null
"$bin/llama-perplexity" -m "$work/llama.gguf" -f tests/data/oracle/eval.txt -c 128 --chunks 4 -t 2 \
  >"$work/ppl.txt" 2>&1
"$bin/llama-simple" -m "$work/llama.gguf" -n 12 "The capital of France is" >"$work/simple.txt" 2>/dev/null
python3 - "$work" <<'PY'
import hashlib, json, re, sys
work = sys.argv[1]
ppl = open(f"{work}/ppl.txt").read()
simple = open(f"{work}/simple.txt").read()
out = {
    "command": "scripts/record-synth-llama-oracle.sh (llama.cpp 0c1e570 from llama-cpp-python 0.3.36): "
               "llama-perplexity -f tests/data/oracle/eval.txt -c 128 --chunks 4; llama-simple -n 12",
    "synth": "tokenfab synth --preset llama-3.2-1b --type q4_k --seed 7 --tokenizer-from qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    "sha256": hashlib.sha256(open(f"{work}/llama.gguf", "rb").read()).hexdigest(),
    "ppl": float(re.search(r"Final estimate: PPL = ([\d.]+)", ppl).group(1)),
    "chunk_ppl": [float(x) for x in re.findall(r"\[\d+\]([\d.]+),", ppl)],
    "prompt": "The capital of France is",
    "llama_simple_greedy": simple.removeprefix("The capital of France is").rstrip("\n"),
}
json.dump(out, open("tests/data/synth/llama_cpp.json", "w"), indent=1, ensure_ascii=False)
print(json.dumps(out, indent=1, ensure_ascii=False))
PY
