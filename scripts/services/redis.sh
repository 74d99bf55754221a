# shellcheck shell=bash
# Sourced by scripts/test.sh: a real Redis server (Debian's redis-server, installed
# once with apt-get when missing) for the research answer cache's Redis backend,
# on a free 127.0.0.1 port with a throwaway password and no persistence.
# Exports STRATMASTER_TEST_REDIS_URL; defines stop_service_redis.

_redis_log() { echo "[redis] $*" >&2; }
# shellcheck source=../lib/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"
# shellcheck source=../lib/install.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/install.sh"

_redis_start() {
  if ! command -v redis-server >/dev/null; then
    _redis_log "installing redis-server from Debian (once)"
    apt_install redis-server || return 1
  fi
  local port pass run
  port="$(svc_free_port)" || return 1
  pass="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" || return 1
  run="$(mktemp -d /tmp/stratmaster-redis.XXXXXX)" || return 1
  _STRATMASTER_REDIS_DIR="$run"
  # setsid: own process group, so stop reaches it; $! is redis-server itself.
  setsid redis-server --bind 127.0.0.1 --port "$port" --requirepass "$pass" --save "" --appendonly no \
    --dir "$run" --maxmemory 256mb --maxmemory-policy allkeys-lru </dev/null >"$run/redis.out" 2>&1 &
  _STRATMASTER_REDIS_PID=$!
  local deadline=$((SECONDS + 30))
  until redis-cli -p "$port" -a "$pass" --no-auth-warning ping 2>/dev/null | grep -q PONG; do
    if ! kill -0 "$_STRATMASTER_REDIS_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      _redis_log "redis-server did not start; last output:"; tail -n 20 "$run/redis.out" >&2; return 1
    fi
    sleep 0.2
  done
  export STRATMASTER_TEST_REDIS_URL="redis://:$pass@127.0.0.1:$port/0"
  _redis_log "ready: 127.0.0.1:$port"
}

stop_service_redis() {
  svc_stop_group "${_STRATMASTER_REDIS_PID:-}" 10
  [ -n "${_STRATMASTER_REDIS_DIR:-}" ] && rm -rf "$_STRATMASTER_REDIS_DIR"
  _STRATMASTER_REDIS_PID="" _STRATMASTER_REDIS_DIR=""
  unset STRATMASTER_TEST_REDIS_URL
}

trap svc_stop_all EXIT

if ! _redis_start; then
  stop_service_redis
  _redis_log "FAILED to start Redis"
  return 1 2>/dev/null || exit 1
fi
