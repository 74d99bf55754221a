#!/usr/bin/env bash
# The main job: install, start the local stack on embedded defaults, activate the
# demo mission, sync the bundled sample documents as a source, run a research
# question, export its report as PDF, and ask one the documents cannot answer.
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
# The sample documents as a synced source (a directory on the workers): new and changed files
# are ingested, deleted ones removed from every store, on an hourly schedule and now.
stratmaster sources add demo samples --dir "$PWD/samples/docs" --every 1h --sync
stratmaster sources status demo samples
mkdir -p .data
stratmaster research start "$QUESTION" -m demo | tee .data/demo-research.txt
WID="$(sed -n 's/^started //p' .data/demo-research.txt | head -n 1)"
echo
echo "== The shareable report (also stored as md/html/docx under the mission's artifacts) =="
stratmaster research report "$WID" --format pdf -o .data/demo-report.pdf
echo
echo "== A question the documents cannot answer =="
stratmaster research start "$UNANSWERABLE" -m demo
echo
echo "The stack is still up. The analyst page: http://127.0.0.1:${STRATMASTER_API_PORT:-8080}/ui/#/m/demo" \
     "(ask, watch it work, click a citation to its span). Temporal Web UI at" \
     "http://127.0.0.1:${STRATMASTER_TEMPORAL_UI_PORT:-8233}, API docs at" \
     "http://127.0.0.1:${STRATMASTER_API_PORT:-8080}/docs. Stop it with: stratmaster dev down"
