# shellcheck shell=bash
# Helpers shared by the scripts/services/*.sh server scripts (sourced by them).

# A free TCP port on 127.0.0.1.
svc_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Stop a server started in its own session (setsid): TERM its process group,
# wait up to TRIES half-seconds, KILL what is left, reap it.
svc_stop_group() {
  local pid="$1" tries="${2:-20}" i
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 "$tries"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true  # reap: no zombie left behind
}

# Every stop_service_* function defined so far (the EXIT trap of scripts/test.sh).
svc_stop_all() {
  local f
  for f in $(declare -F | awk '{print $3}' | grep '^stop_service_'); do "$f" || true; done
}
