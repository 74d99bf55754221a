#!/usr/bin/env bash
# Regenerate requirements.lock: every Python dependency (pyproject.toml with the dev and llm
# extras) pinned to one version with its sha256 hashes, for Python 3.11.7 on x86_64 Linux.
# scripts/bootstrap.sh installs from it with `pip install --require-hashes`.
#
# Run after changing dependencies in pyproject.toml, then `bash scripts/bootstrap.sh`.
# Pins already in requirements.lock are kept (uv reads the existing file as preferences);
# only what pyproject.toml now requires moves. To move pins on purpose, pass uv's options:
#   bash scripts/lock.sh --upgrade-package NAME     # or --upgrade for everything
# uv comes with the dev extra (installed by scripts/bootstrap.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${STRATMASTER_VENV:-$HOME/.cache/stratmaster/venv}"
if [ ! -x "$VENV/bin/uv" ]; then
  echo "lock: $VENV/bin/uv not found: run scripts/bootstrap.sh first" >&2
  exit 1
fi
export VIRTUAL_ENV="$VENV"  # the interpreter uv uses to read sdists' metadata

# The exact command is also the header of requirements.lock.
exec "$VENV/bin/uv" pip compile pyproject.toml --extra dev --extra llm --generate-hashes \
  --python-version 3.11.7 --python-platform x86_64-unknown-linux-gnu -o requirements.lock "$@"
