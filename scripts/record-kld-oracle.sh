#!/usr/bin/env bash
# Records llama-perplexity's KL divergence of the q4_0 file `tokenfab quantize` writes from the
# default model against the default model itself, on tests/data/oracle/eval.txt (-c 128,
# 8 chunks), for tests/perplexity.rs. Writes tests/data/kld/llama_cpp.json.
# Needs llama.cpp's tools (../shared/reference/llama-cpp.sh … llama-perplexity).
#
#   scripts/record-kld-oracle.sh [LLAMA_BIN_DIR]
source "$(dirname "${BASH_SOURCE[0]}")/record-common.sh"
base=models/gemma-3-270m-q4_k_m.gguf
"$tf" quantize --type q4_0 "$base" "$work/q4_0.gguf" 2>/dev/null
args=(-f tests/data/oracle/eval.txt -c 128 --chunks 8 -t 2)
"$bin/llama-perplexity" -m "$base" "${args[@]}" --kl-divergence-base "$work/base.kld" >/dev/null 2>&1
"$bin/llama-perplexity" -m "$work/q4_0.gguf" "${args[@]}" --kl-divergence-base "$work/base.kld" \
  --kl-divergence >"$work/kld.txt" 2>&1
python3 - "$work" <<'PY'
import hashlib, json, re, sys
work = sys.argv[1]
text = open(f"{work}/kld.txt").read()
num = lambda pat: float(re.search(pat, text).group(1))
out = {
    "command": "scripts/record-kld-oracle.sh: llama-perplexity -f tests/data/oracle/eval.txt -c 128 --chunks 8 "
               "(llama.cpp 0c1e570 from llama-cpp-python 0.3.36), base = the default model, "
               "compared = tokenfab quantize --type q4_0 of it",
    "q4_0_sha256": hashlib.sha256(open(f"{work}/q4_0.gguf", "rb").read()).hexdigest(),
    "mean_kld": num(r"Mean +KLD: +([\d.]+)"),
    "mean_kld_err": num(r"Mean +KLD: +[\d.]+ ± +([\d.]+)"),
    "median_kld": num(r"Median +KLD: +([\d.]+)"),
    "same_top_pct": num(r"Same top p: +([\d.]+)"),
    "same_top_err": num(r"Same top p: +[\d.]+ ± +([\d.]+)"),
    "mean_delta_p_pct": num(r"Mean +Δp: +(-?[\d.]+)"),
    "rms_delta_p_pct": num(r"RMS Δp +: +([\d.]+)"),
    "ppl_q": num(r"Mean PPL\(Q\) +: +([\d.]+)"),
}
json.dump(out, open("tests/data/kld/llama_cpp.json", "w"), indent=1)
print(json.dumps(out, indent=1))
PY
