#!/usr/bin/env bash
# The main job: install, start the local stack on embedded defaults, activate the
# demo mission, ingest the bundled sample documents and run a research question.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
VENV="${STRATMASTER_VENV:-$HOME/.cache/stratmaster/venv}"
export PATH="$VENV/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
QUESTION="${1:-What market share does Voltaris hold and how fast is the energy storage market growing?}"
# Not in the samples (there is no XR-7): research must say the documents do not say.
UNANSWERABLE="${2:-How much capacity does the XR-7 keep after 1000 cycles?}"

stratmaster dev up
stratmaster missions activate samples/cartridges/demo.yaml
stratmaster ingest demo samples/docs/*
stratmaster research start "$QUESTION" -m demo
echo
echo "== A question the documents cannot answer =="
stratmaster research start "$UNANSWERABLE" -m demo
echo
echo "The stack is still up: Temporal Web UI at http://127.0.0.1:${STRATMASTER_TEMPORAL_UI_PORT:-8233}," \
     "API docs at http://127.0.0.1:${STRATMASTER_API_PORT:-8080}/docs. Stop it with: stratmaster dev down"
