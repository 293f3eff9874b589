#!/usr/bin/env bash
# Records llama.cpp's greedy continuations on Qwen2.5-Coder-1.5B-Instruct Q4_K_M (the third real
# model: scripts/fetch-models.sh qwen-1.5b) for tests/greedy_qwen15.rs: llama-simple, 24
# tokens, a few prompts. Writes tests/data/qwen15/llama_cpp.json. Needs llama.cpp's tools
# (../shared/reference/llama-cpp.sh … llama-simple).
#
#   scripts/record-qwen15-oracle.sh [LLAMA_BIN_DIR]
source "$(dirname "${BASH_SOURCE[0]}")/record-common.sh"
model=models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
scripts/fetch-models.sh qwen-1.5b >&2
prompts=("The capital of France is" "def fibonacci(n):" "Once upon a time")
for i in "${!prompts[@]}"; do
  "$bin/llama-simple" -m "$model" -n 24 "${prompts[$i]}" >"$work/$i.out" 2>/dev/null
done
python3 - "$work" "${prompts[@]}" <<'PY'
import json, sys
work, prompts = sys.argv[1], sys.argv[2:]
cases = []
for i, p in enumerate(prompts):
    text = open(f"{work}/{i}.out").read()
    assert text.startswith(p), (p, text)
    cases.append({"prompt": p, "llama_simple_greedy": text[len(p):].rstrip("\n")})
out = {"command": "scripts/record-qwen15-oracle.sh: llama-simple -n 24 PROMPT (llama.cpp 0c1e570 "
                  "from llama-cpp-python 0.3.36), greedy", "model": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
       "cases": cases}
json.dump(out, open("tests/data/qwen15/llama_cpp.json", "w"), indent=1)
print(json.dumps(out, indent=1))
PY
