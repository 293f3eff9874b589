#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz / libFuzzer, nightly toolchain) of every input a
# stranger controls. Targets are in fuzz/fuzz_targets/, seed corpora in fuzz/corpus/.
#
#   scripts/fuzz.sh setup               nightly + cargo-fuzz, if missing
#   scripts/fuzz.sh seeds               regenerate fuzz/corpus/ seeds from models/ and the repo
#   scripts/fuzz.sh build               build every target (AddressSanitizer, debug assertions)
#   scripts/fuzz.sh run TARGET SECONDS  one target; new inputs go to fuzz/work/TARGET (ignored),
#                                       the summary to fuzz/work/TARGET.log; a crash stops it and
#                                       leaves its input in fuzz/artifacts/TARGET/
#   scripts/fuzz.sh ci [SECONDS]        every target from the committed corpus (default 60 s
#                                       each; CI runs this)
#
# Limits, as the reliability issue asks: no input may take more than 10 s (-timeout) or grow
# the process past 2 GB (-rss_limit_mb); either counts as a failure like a crash.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGETS=(gguf tokenize chat_template tables bench_json server_request)
export TOKENFAB_FUZZ_MODELS="$PWD/models"

setup() {
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
  command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
}

run() {
  local target=$1 secs=$2
  mkdir -p "fuzz/work/$target"
  # GGUF inputs up to 64 KiB (the seeds are at most ~60 KB: bigger ones mutate slowly)
  local max_len=()
  [ "$target" = gguf ] && max_len=(-max_len=65536)
  cargo +nightly fuzz run "$target" "fuzz/work/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${max_len[@]}" \
    2>&1 | tee "fuzz/work/$target.log" | grep -E '^(#[0-9]+.*(DONE|pulse)|INFO: (Running|Loaded|seed)|==[0-9]+==|stat::|SUMMARY|Done)' || true
  # libFuzzer's exit status is lost in the pipe: read the outcome from the log
  if grep -qE 'ERROR: libFuzzer|ERROR: AddressSanitizer|deadly signal|panicked at|Test unit written' "fuzz/work/$target.log"; then
    echo "fuzz $target: FAILED (see fuzz/work/$target.log and fuzz/artifacts/$target/)" >&2
    return 1
  fi
  echo "fuzz $target: $(grep -E '^Done|stat::number_of_executed_units' "fuzz/work/$target.log" | tr '\n' ' ')"
}

case "${1:-}" in
  setup) setup ;;
  seeds)
    cargo run --release --example fuzz_seeds -- models fuzz/corpus ;;
  build)
    setup
    cargo +nightly fuzz build ;;
  run)
    [ $# -eq 3 ] || { echo "usage: scripts/fuzz.sh run TARGET SECONDS" >&2; exit 2; }
    run "$2" "$3" ;;
  ci)
    setup
    cargo +nightly fuzz build
    status=0
    for t in "${TARGETS[@]}"; do run "$t" "${2:-60}" || status=1; done
    exit $status ;;
  *)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
