#!/usr/bin/env bash
# Install the pgvector extension (HNSW vector indexes) into the machine's Debian PostgreSQL:
# the embedded default vector store (activities/stores/vectors_pgvector.py) lives in the
# PostgreSQL the local stack already runs. Idempotent; a no-op once installed.
#
# Debian bookworm does not package pgvector, so: the server headers from Debian
# (postgresql-server-dev-<major>), pgvector's source release from the Go module proxy (which
# serves any tagged public repository as a checksummed module zip, verified against
# sum.golang.org by `go mod download`), built with PGXS without -march=native.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/install.sh
source scripts/lib/install.sh

PGVECTOR_VERSION="${PGVECTOR_VERSION:-0.8.1}"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
PG_MAJOR="$(basename "$(dirname "$PG_BIN")")"
SHARE="/usr/share/postgresql/$PG_MAJOR/extension"

if [ -f "$SHARE/vector--$PGVECTOR_VERSION.sql" ] && [ -f "/usr/lib/postgresql/$PG_MAJOR/lib/vector.so" ]; then
  exit 0
fi
echo "install_pgvector: building pgvector $PGVECTOR_VERSION for PostgreSQL $PG_MAJOR"
if [ ! -x "/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" ] || [ ! -f "/usr/include/postgresql/$PG_MAJOR/server/postgres.h" ]; then
  apt_install "postgresql-server-dev-$PG_MAJOR" make gcc
fi
command -v go >/dev/null || { echo "install_pgvector: needs Go (the module proxy client)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
# download (retried), then ask the module cache where it is (no network)
GOPATH="$work/go" GOFLAGS=-mod=mod retry go mod download "github.com/pgvector/pgvector@v$PGVECTOR_VERSION"
dir="$(GOPATH="$work/go" GOFLAGS=-mod=mod go mod download -json "github.com/pgvector/pgvector@v$PGVECTOR_VERSION" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
cp -r "$dir" "$work/src" && chmod -R u+w "$work/src"
make -s -C "$work/src" -j2 with_llvm=no OPTFLAGS="" PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" >/dev/null
make -s -C "$work/src" install with_llvm=no PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" >/dev/null
echo "install_pgvector: installed into $SHARE"
