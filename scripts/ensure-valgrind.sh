#!/usr/bin/env bash
# Makes sure valgrind is installed for the C ABI's leak check (tests/capi_examples.rs). Installs
# Debian's package with apt-get when it can (root or passwordless sudo); otherwise says what to
# install and fails, because that test fails, not skips, without it.
set -euo pipefail
command -v valgrind >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
  fi
fi
command -v valgrind >/dev/null 2>&1 && exit 0
echo "valgrind is not installed and could not be installed here: install it (e.g. apt-get install valgrind)" >&2
exit 1
