#!/usr/bin/env bash
# Build the analyst page (starters/web -> starters/web/dist, served by the API at /ui/): its
# packages from the npm registry at the versions in package-lock.json (npm ci; npm's cache in
# ~/.npm makes a re-run offline-fast), type-checked by tsc, bundled by Vite. Skipped when the
# sources and the lock are unchanged since the last build.
set -euo pipefail
cd "$(dirname "$0")/../starters/web"
# shellcheck source=lib/install.sh
source ../../scripts/lib/install.sh

if ! command -v npm >/dev/null 2>&1; then
  echo "build_web: installing Node.js and npm from Debian"
  apt_install nodejs npm
fi
want="$( (cat package.json package-lock.json tsconfig.json vite.config.ts index.html; find src -type f | sort | xargs cat) \
        | sha256sum | cut -c1-16)"
if [ -f dist/index.html ] && [ "$(cat dist/.built 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "build_web: building the analyst page (npm ci, tsc, vite)"
if [ "$(cat node_modules/.stratmaster-lock 2>/dev/null)" != "$(sha256sum < package-lock.json)" ]; then
  retry npm ci --no-audit --no-fund --loglevel=error
  sha256sum < package-lock.json > node_modules/.stratmaster-lock
fi
npm run --silent build >/dev/null
echo "$want" > dist/.built
echo "build_web: built starters/web/dist"
