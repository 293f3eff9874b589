#!/usr/bin/env bash
# The official `openai` Python client, for tests/openai_client.rs: installed from PyPI into a
# virtual environment of the test setup (target/openai-venv), never into the system Python.
# Idempotent; prints the venv's python on the last line.
#
# usage: scripts/ensure-openai-client.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TOKENFAB_OPENAI_VENV:-$here/target/openai-venv}"
want="openai==2.8.1"
py="$venv/bin/python"
if [ ! -x "$py" ] || ! "$py" -c "import openai, sys; sys.exit(openai.__version__ != '${want#openai==}')" 2>/dev/null; then
  python3 -m venv "$venv"
  "$py" -m pip install --quiet --disable-pip-version-check "$want" >&2
fi
echo "$py"
