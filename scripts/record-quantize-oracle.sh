#!/usr/bin/env bash
# Records what llama.cpp says about `tokenfab quantize`'s mixes, for tests/quantize.rs:
#   - llama-quantize's per-tensor types for every mix, requantizing each real model (the plan
#     tokenfab's must reproduce);
#   - for the files tokenfab quantize writes from the default model: their sha256 (so the record
#     applies to exactly those bytes), the tensor-type counts llama.cpp's loader reports, and
#     llama-simple's greedy 8-token continuation of "Once upon a time" on them.
# Writes tests/data/quantize/llama_cpp.json. Needs llama.cpp's tools
# (../shared/reference/llama-cpp.sh … llama-quantize llama-simple) and `pip install gguf`.
#
#   scripts/record-quantize-oracle.sh [LLAMA_BIN_DIR]
source "$(dirname "${BASH_SOURCE[0]}")/record-common.sh"
mixes="f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k_m q4_k_s q4_k_m q5_k_m q6_k"
declare -A models=([gemma]=models/gemma-3-270m-q4_k_m.gguf [qwen]=models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf)
for key in gemma qwen; do
  for mix in $mixes; do
    "$bin/llama-quantize" --allow-requantize "${models[$key]}" "$work/llama-$key-$mix.gguf" "$mix" >"$work/llama-$key-$mix.log" 2>&1
  done
done
for mix in $mixes; do
  "$tf" quantize --type "$mix" "${models[gemma]}" "$work/tf-$mix.gguf" 2>/dev/null
  "$bin/llama-simple" -m "$work/tf-$mix.gguf" -n 8 "Once upon a time" >"$work/simple-$mix.out" 2>"$work/simple-$mix.err"
done
python3 - "$work" "$mixes" <<'PY'
import hashlib, json, re, subprocess, sys
from gguf import GGUFReader
work, mixes = sys.argv[1], sys.argv[2].split()
out = {"command": "scripts/record-quantize-oracle.sh (llama.cpp 0c1e570 from llama-cpp-python 0.3.36)",
       "llama_quantize": {}, "tokenfab_files": {}}
for key in ("gemma", "qwen"):
    out["llama_quantize"][key] = {
        mix: {t.name: t.tensor_type.name for t in GGUFReader(f"{work}/llama-{key}-{mix}.gguf").tensors}
        for mix in mixes}
for mix in mixes:
    f = f"{work}/tf-{mix}.gguf"
    err = open(f"{work}/simple-{mix}.err").read()
    counts = {m[0]: int(m[1]) for m in re.findall(r"llama_model_loader: - type +(\w+): +(\d+) tensors", err)}
    text = open(f"{work}/simple-{mix}.out").read()
    out["tokenfab_files"][mix] = {
        "sha256": hashlib.sha256(open(f, "rb").read()).hexdigest(),
        "llama_loader_types": counts,
        "llama_simple_greedy": text.removeprefix("<bos>").removeprefix("Once upon a time").rstrip("\n"),
    }
json.dump(out, open("tests/data/quantize/llama_cpp.json", "w"), indent=1, sort_keys=True)
print("wrote tests/data/quantize/llama_cpp.json")
PY
