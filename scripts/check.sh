#!/usr/bin/env bash
# Pre-commit checks: formatting and clippy with warnings as errors (exit non-zero on failure).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo fmt --all -- --check
cargo clippy --all-targets --release -- -D warnings
