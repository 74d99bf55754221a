#!/usr/bin/env bash
# The main job: install, start the local stack on embedded defaults, ingest the
# bundled sample documents and run a research question over them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
VENV="${STRATMASTER_VENV:-$HOME/.cache/stratmaster/venv}"
export PATH="$VENV/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
stratmaster dev up
stratmaster demo "$@"
