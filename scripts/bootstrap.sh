#!/usr/bin/env bash
# Install everything StratMaster needs, from PyPI and Debian only. Idempotent and
# fast when re-run: the venv and pip's cache (including the llama.cpp wheel it
# compiles once) are kept under ~/.cache.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${STRATMASTER_VENV:-$HOME/.cache/stratmaster/venv}"
PY="${PYTHON:-python3}"

if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  echo "bootstrap: installing PostgreSQL from Debian"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q -U pip wheel setuptools
fi

# llama-cpp-python builds from source the first time (~5 min on 2 cores); pip caches the wheel.
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
stamp="$VENV/.stratmaster-deps"
want="$(sha256sum pyproject.toml | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing Python dependencies (first run downloads torch and compiles llama.cpp)"
  "$VENV/bin/pip" install -q -e ".[dev,llm]"
  echo "$want" > "$stamp"
else
  # re-point the editable install at this checkout (cheap)
  "$VENV/bin/pip" install -q --no-deps -e . >/dev/null 2>&1
fi
echo "bootstrap: ready ($VENV)"
