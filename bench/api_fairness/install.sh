#!/usr/bin/env bash
# Locust (PyPI) for the fairness load test, in a venv of its own: it is the load generator, not
# part of the platform, and its dependencies (gevent, Flask) stay out of the platform's lock.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../../scripts/lib/install.sh"
venv="${STRATMASTER_LOCUST_VENV:-$HOME/.cache/stratmaster/locust-venv}"
if [ ! -x "$venv/bin/locust" ]; then
  python3 -m venv "$venv"
  retry "$venv/bin/pip" install -q "locust==2.47.0"
fi
"$venv/bin/locust" --version
