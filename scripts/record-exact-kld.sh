#!/usr/bin/env bash
# Records how far llama.cpp's distributions are from exact arithmetic on the same weights, for
# tests/perplexity.rs (which measures ours live against the same reference): for the two real
# models, the reference backend's distributions (`tokenfab perplexity --backend reference`:
# f64, no activation quantization; top-32 + rest per position) on tests/data/oracle/eval.txt,
# -c 512, the first 4 chunks -> tests/data/exact/{gemma,qwen}.tfkld, and llama-perplexity's
# on the same tokens compared with them in the same bins -> tests/data/exact/llama_cpp.json;
# and a small reference for the wgpu check on lavapipe (Gemma, -c 128, 2 chunks) ->
# tests/data/exact/gemma-c128.tfkld.
# Needs llama.cpp's tools (../shared/reference/llama-cpp.sh … llama-perplexity); ~5 min here.
#
#   scripts/record-exact-kld.sh [LLAMA_BIN_DIR]
source "$(dirname "${BASH_SOURCE[0]}")/record-common.sh"
args=(-f tests/data/oracle/eval.txt -c 512 --chunks 4 -t 2)
for key in gemma qwen; do
  case $key in
    gemma) m=models/gemma-3-270m-q4_k_m.gguf ;;
    qwen) m=models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf ;;
  esac
  "$tf" perplexity --backend reference -m "$m" "${args[@]}" \
    --kl-divergence-base "tests/data/exact/$key.tfkld" --json >"$work/$key-exact.json"
  "$bin/llama-perplexity" -m "$m" "${args[@]}" --kl-divergence-base "$work/$key.kld" \
    >"$work/$key-llama.txt" 2>&1
done
"$tf" perplexity --backend reference -m models/gemma-3-270m-q4_k_m.gguf \
  -f tests/data/oracle/eval.txt -c 128 --chunks 2 -t 2 \
  --kl-divergence-base tests/data/exact/gemma-c128.tfkld >/dev/null
python3 - "$work" <<'PY'
import importlib.util, json, re, struct, sys
import numpy as np
work = sys.argv[1]
# the token hash tokenfab's reference files carry, from the converter of llama.cpp's files
spec = importlib.util.spec_from_file_location("kldconv", "scripts/llama-kld-to-tfkld.py")
kldconv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kldconv)
fnv = kldconv.fnv


def tfkld(path):
    d = open(path, "rb").read()
    assert d[:8] == b"TFKLDv1\0", path
    vocab, n_ctx, k = struct.unpack_from("<III", d, 8)
    (h,) = struct.unpack_from("<Q", d, 20)
    (n,) = struct.unpack_from("<I", d, 28)
    off, rows = 32, []
    for _ in range(n):
        top = [struct.unpack_from("<If", d, off + 8 * i) for i in range(k)]
        off += 8 * k
        rest, lp_t, argmax = struct.unpack_from("<ffI", d, off)
        off += 12
        rows.append((top, rest, lp_t, argmax))
    assert off == len(d), path
    return vocab, n_ctx, h, rows


def llama(path):
    d = open(path, "rb").read()
    assert d[:8] == b"_logits_", path
    n_ctx, n_vocab, n_chunk = struct.unpack_from("<iii", d, 8)
    off = 20
    tokens = np.frombuffer(d, dtype="<i4", count=n_chunk * n_ctx, offset=off).astype(np.uint32)
    off += 4 * n_chunk * n_ctx
    nv = 2 * ((n_vocab + 1) // 2) + 4
    rows = []
    for c in range(n_chunk):
        for j in range(n_ctx - 1 - n_ctx // 2):
            rec = np.frombuffer(d, dtype="<u2", count=nv, offset=off)
            off += 2 * nv
            scale, min_lp = struct.unpack("<ff", rec[:4].tobytes())
            q = rec[4 : 4 + n_vocab].astype(np.float64)
            rows.append(min_lp + scale * q)
    assert off == len(d), path
    return fnv(tokens), rows


out = {"command": "scripts/record-exact-kld.sh: tokenfab perplexity --backend reference and llama-perplexity "
                  "(llama.cpp 0c1e570 from llama-cpp-python 0.3.36), -f tests/data/oracle/eval.txt -c 512 --chunks 4; "
                  "KL(exact || llama.cpp) over the exact distribution's top-32 tokens plus one bin for the rest, "
                  "as tokenfab's --kl-divergence computes it"}
for key in ["gemma", "qwen"]:
    vocab, n_ctx, h, ex = tfkld(f"tests/data/exact/{key}.tfkld")
    lh, lrows = llama(f"{work}/{key}.kld")
    assert h == lh, f"{key}: llama.cpp tokenized eval.txt differently"
    assert len(ex) == len(lrows)
    kls, same = [], 0
    for (top, rest, _, argmax), logq in zip(ex, lrows):
        # llama.cpp stores log-probabilities in 16 bits: renormalize its distribution first
        q = np.exp(logq - logq.max()); q /= q.sum()
        kl, qm = 0.0, 0.0
        for i, lp in top:
            qi = max(q[i], 1e-30); qm += q[i]
            kl += np.exp(lp) * (lp - np.log(qi))
        kl += np.exp(rest) * (rest - np.log(max(1.0 - qm, 1e-30)))
        kls.append(max(kl, 0.0))
        same += int(np.argmax(logq)) == argmax
    exact = json.load(open(f"{work}/{key}-exact.json"))

    text = open(f"{work}/{key}-llama.txt").read()
    ppl = float(re.search(r"Final estimate: PPL = ([\d.]+)", text).group(1))
    out[key] = {"positions": len(kls), "mean_kld": float(np.mean(kls)),
                "p99_kld": float(np.percentile(kls, 99)), "same_top_pct": 100.0 * same / len(kls),
                "llama_cpp_ppl": ppl, "exact_ppl": exact["perplexity"]["ppl"]}
json.dump(out, open("tests/data/exact/llama_cpp.json", "w"), indent=1)
print(json.dumps(out, indent=1))
PY
