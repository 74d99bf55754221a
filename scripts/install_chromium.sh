#!/usr/bin/env bash
# Debian's Chromium for the analyst page's browser tests (tests/test_web_page.py drives it with
# Playwright through its executable path: Playwright's own browser download cannot work offline).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/install.sh
source scripts/lib/install.sh
if [ ! -x /usr/bin/chromium ]; then
  echo "install_chromium: installing chromium from Debian"
  apt_install chromium
fi
