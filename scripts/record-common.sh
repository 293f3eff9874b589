# Sourced by scripts/record-*.sh (the recorded llama.cpp checks under tests/data/): runs from the
# repository root and sets `bin` (llama.cpp's tools: the first argument, else where
# ../shared/reference/llama-cpp.sh builds them), `tf` (tokenfab, built if missing) and `work`
# (a temporary directory removed on exit).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=${1:-$HOME/.cache/llama.cpp-ref/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin}
tf=target/release/tokenfab
[ -x "$tf" ] || cargo build --release >&2
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
