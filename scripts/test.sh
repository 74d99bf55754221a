#!/usr/bin/env bash
# Install, start the servers the tests need, and run the whole suite (extra
# arguments go to pytest).
#   bash scripts/test.sh --unit [pytest args]: the fast lane, every test that needs no server
#   (marked `unit` by tests/conftest.py), no servers started
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
VENV="${STRATMASTER_VENV:-$HOME/.cache/stratmaster/venv}"
export PATH="$VENV/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ "${1:-}" = "--unit" ]; then
  shift
  exec python -m pytest -m unit -q "$@"
fi
# the browser the analyst page's end-to-end tests drive (Debian's chromium)
bash scripts/install_chromium.sh
# Stop whatever the service scripts started, also when one of them fails.
source scripts/lib/services.sh
trap svc_stop_all EXIT
# Real production servers for the adapter tests: each script installs from a
# registry once (cached under ~/.cache/stratmaster), starts its server on a free
# loopback port and exports its URL.
for svc in scripts/services/*.sh; do
  # shellcheck disable=SC1090
  source "$svc"
done
# Lint and type-check first (pyproject.toml [tool.ruff], [tool.mypy]): seconds-long checks that fail
# before a 20-minute run.
ruff check .
mypy
python -m pytest -rs "$@"
