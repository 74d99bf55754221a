# shellcheck shell=bash
# Sourced by scripts/test.sh: a real MinIO server for the object-store adapter
# tests. Builds the server once with `go install` from the Go module proxy
# (minutes on 2 cores) and caches the binary in ~/.cache/stratmaster/bin, then
# starts it on a free 127.0.0.1 port with a temp data dir and throwaway root
# credentials. Exports STRATMASTER_TEST_MINIO_ENDPOINT / _ACCESS_KEY /
# _SECRET_KEY; defines stop_service_minio.
#
# Checks every step itself (errexit is off in functions called from a conditional).

# MinIO tags releases as RELEASE.*, not semver: pin the module's pseudo-version.
STRATMASTER_MINIO_VERSION="${STRATMASTER_MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"

_minio_log() { echo "[minio] $*" >&2; }
# shellcheck source=../lib/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"
# shellcheck source=../lib/install.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/install.sh"

_minio_install() {
  local bindir="$HOME/.cache/stratmaster/bin" v="$STRATMASTER_MINIO_VERSION"
  local bin="$bindir/minio-$v"
  [ -x "$bin" ] && { echo "$bin"; return 0; }
  command -v go >/dev/null || { _minio_log "go not found: needed once to build the MinIO server"; return 1; }
  mkdir -p "$bindir" || return 1
  local build
  build="$(mktemp -d "$bindir/.build.XXXXXX")" || return 1
  _minio_log "building MinIO $v with go install (once; a few minutes)"
  # retried: a failed module download fails the install (what is already downloaded is kept)
  if ! GOBIN="$build" GOFLAGS="${GOFLAGS:-} -mod=mod" retry go install "github.com/minio/minio@$v" >"$build/build.log" 2>&1; then
    _minio_log "go install failed:"; tail -n 30 "$build/build.log" >&2; rm -rf "$build"; return 1
  fi
  mv "$build/minio" "$bin" && rm -rf "$build" && echo "$bin"
}

_minio_start() {
  local bin run port cport user pass
  bin="$(_minio_install)" || return 1
  run="$(mktemp -d /tmp/stratmaster-minio.XXXXXX)" || return 1
  _STRATMASTER_MINIO_DIR="$run"
  port="$(svc_free_port)" && cport="$(svc_free_port)" || return 1
  user="stratmaster-test"
  pass="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" || return 1

  # setsid: own process group, so stop reaches everything; $! is minio itself.
  MINIO_ROOT_USER="$user" MINIO_ROOT_PASSWORD="$pass" MINIO_BROWSER=off MINIO_UPDATE=off \
    MINIO_CI_CD=on HOME="$run" \
    setsid "$bin" server --quiet --anonymous \
      --address "127.0.0.1:$port" --console-address "127.0.0.1:$cport" \
      --certs-dir "$run/certs" "$run/data" \
      </dev/null >"$run/minio.out" 2>&1 &
  _STRATMASTER_MINIO_PID=$!
  _minio_log "starting MinIO on 127.0.0.1:$port (pid $_STRATMASTER_MINIO_PID, dir $run)"

  local deadline=$((SECONDS + ${STRATMASTER_MINIO_START_TIMEOUT:-60}))
  until curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$port/minio/health/live" 2>/dev/null; do
    if ! kill -0 "$_STRATMASTER_MINIO_PID" 2>/dev/null; then
      _minio_log "MinIO exited during start-up; last output:"; tail -n 30 "$run/minio.out" >&2; return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      _minio_log "MinIO not live after ${STRATMASTER_MINIO_START_TIMEOUT:-60}s; last output:"
      tail -n 30 "$run/minio.out" >&2; return 1
    fi
    sleep 0.5
  done
  export STRATMASTER_TEST_MINIO_ENDPOINT="127.0.0.1:$port"
  export STRATMASTER_TEST_MINIO_ACCESS_KEY="$user" STRATMASTER_TEST_MINIO_SECRET_KEY="$pass"
  _minio_log "ready: http://$STRATMASTER_TEST_MINIO_ENDPOINT"
}

stop_service_minio() {
  svc_stop_group "${_STRATMASTER_MINIO_PID:-}" 20
  [ -n "${_STRATMASTER_MINIO_DIR:-}" ] && rm -rf "$_STRATMASTER_MINIO_DIR"
  _STRATMASTER_MINIO_PID="" _STRATMASTER_MINIO_DIR=""
  unset STRATMASTER_TEST_MINIO_ENDPOINT STRATMASTER_TEST_MINIO_ACCESS_KEY STRATMASTER_TEST_MINIO_SECRET_KEY
}

# Until scripts/test.sh installs its own EXIT trap, stop whatever already
# started if a later step (or service script) fails.
trap svc_stop_all EXIT

if ! _minio_start; then
  stop_service_minio
  _minio_log "FAILED to start MinIO"
  return 1 2>/dev/null || exit 1
fi
