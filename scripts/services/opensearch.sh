# shellcheck shell=bash
# Sourced by scripts/test.sh: a real single-node OpenSearch for the full-text
# adapter tests. Installs the integ-test distribution (no security plugin, no
# bundled JDK) and the analysis-common module jar from Maven Central once into
# ~/.cache/stratmaster/opensearch, unpacks them per run into a temp dir (root's
# home is not readable by the service user), runs the node as a non-root user
# on the machine's Java 17, and exports STRATMASTER_TEST_OPENSEARCH_URL.
# Defines stop_service_opensearch. Fails loudly (never hangs) after 120 s.
#
# Written for `set -euo pipefail` callers but checks every step itself, since
# errexit is off inside functions called from a conditional.

STRATMASTER_OPENSEARCH_VERSION="${STRATMASTER_OPENSEARCH_VERSION:-2.19.6}"  # Java 17: nothing newer than 2.19.x
STRATMASTER_SERVICE_USER="${STRATMASTER_SERVICE_USER:-stratmaster-svc}"

_opensearch_log() { echo "[opensearch] $*" >&2; }

# shellcheck source=../lib/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/services.sh"
# shellcheck source=../lib/install.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/install.sh"

# Create the unprivileged system user the servers run as (OpenSearch refuses root).
_opensearch_user_ready() {
  [ "$(id -u)" = 0 ] || return 0
  id -u "$STRATMASTER_SERVICE_USER" >/dev/null 2>&1 && return 0
  useradd --system --no-create-home --shell /usr/sbin/nologin "$STRATMASTER_SERVICE_USER" >/dev/null 2>&1 \
    || id -u "$STRATMASTER_SERVICE_USER" >/dev/null 2>&1  # another script may have raced us
}

# Fetch a Maven Central file once into the cache, checked against its .sha1.
_opensearch_fetch() {
  local url="$1" dest="$2" want got
  [ -s "$dest" ] && return 0
  mkdir -p "$(dirname "$dest")" || return 1
  _opensearch_log "downloading $(basename "$dest") from Maven Central (once)"
  fetch_url "$url" "$dest.part" || { _opensearch_log "download failed: $url"; return 1; }
  want="$(retry curl -fsSL --connect-timeout 20 --max-time 60 "$url.sha1")" || { _opensearch_log "sha1 download failed: $url.sha1"; return 1; }
  got="$(sha1sum "$dest.part" | cut -d' ' -f1)"
  [ "${want:0:40}" = "$got" ] || { _opensearch_log "checksum mismatch for $url"; rm -f "$dest.part"; return 1; }
  mv "$dest.part" "$dest"
}

# The integ-test zip ships only transport-netty4. analysis-common (stemming,
# ascii folding, stop words: what every real OpenSearch distribution has) is
# published as a plain jar; with a plugin descriptor it loads as a module.
_opensearch_install() {
  local cache="$HOME/.cache/stratmaster/opensearch" v="$STRATMASTER_OPENSEARCH_VERSION"
  local m2="https://repo1.maven.org/maven2/org/opensearch"
  _opensearch_fetch "$m2/distribution/integ-test-zip/opensearch/$v/opensearch-$v.zip" "$cache/opensearch-$v.zip" \
    && _opensearch_fetch "$m2/plugin/analysis-common/$v/analysis-common-$v.jar" "$cache/analysis-common-$v.jar"
}

_opensearch_add_analysis_common() {
  local v="$STRATMASTER_OPENSEARCH_VERSION" mod="$1/modules/analysis-common"
  mkdir -p "$mod" && cp "$HOME/.cache/stratmaster/opensearch/analysis-common-$v.jar" "$mod/" || return 1
  printf '%s\n' 'description=Adds "built in" analyzers to OpenSearch.' "version=$v" "name=analysis-common" \
    "classname=org.opensearch.analysis.common.CommonAnalysisPlugin" "java.version=11" "opensearch.version=$v" \
    >"$mod/plugin-descriptor.properties"
}

_opensearch_start() {
  local zip java_bin java_home run port tport home
  _opensearch_install || return 1
  zip="$HOME/.cache/stratmaster/opensearch/opensearch-$STRATMASTER_OPENSEARCH_VERSION.zip"
  # The machine's default Java (/usr/bin/java), not whatever another service
  # script put first on PATH or in JAVA_HOME: 2.19 needs 11-21 (its security
  # manager is gone from Java 24).
  if [ -n "${STRATMASTER_OPENSEARCH_JAVA_HOME:-}" ]; then
    java_home="$STRATMASTER_OPENSEARCH_JAVA_HOME"
  else
    java_bin="$(readlink -f /usr/bin/java 2>/dev/null || command -v java)" \
      || { _opensearch_log "java not found (need Java 17)"; return 1; }
    java_home="$(dirname "$(dirname "$(readlink -f "$java_bin")")")"
  fi
  local major
  major="$("$java_home/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  case "$major" in
    11|17|21) ;;
    *) _opensearch_log "OpenSearch $STRATMASTER_OPENSEARCH_VERSION needs Java 11/17/21; $java_home is '$major'" \
         "(set STRATMASTER_OPENSEARCH_JAVA_HOME)"; return 1 ;;
  esac
  _opensearch_user_ready || { _opensearch_log "cannot create user $STRATMASTER_SERVICE_USER"; return 1; }

  run="$(mktemp -d /tmp/stratmaster-opensearch.XXXXXX)" || return 1
  _STRATMASTER_OPENSEARCH_DIR="$run"
  if command -v unzip >/dev/null; then
    unzip -q "$zip" -d "$run" || return 1
  else  # python's zipfile drops the exec bits
    python3 -m zipfile -e "$zip" "$run" && chmod +x "$run"/opensearch-*/bin/* || return 1
  fi
  home="$(echo "$run"/opensearch-*)"
  _opensearch_add_analysis_common "$home" || return 1
  mkdir -p "$run/data" "$run/logs" "$run/tmp" || return 1
  [ "$(id -u)" = 0 ] && { chown -R "$STRATMASTER_SERVICE_USER:" "$run" || return 1; }

  port="$(svc_free_port)" && tport="$(svc_free_port)" || return 1
  local -a as_user=()
  [ "$(id -u)" = 0 ] && as_user=(setpriv --reuid="$STRATMASTER_SERVICE_USER" --regid="$STRATMASTER_SERVICE_USER" --init-groups)

  # setsid: own process group, so stop can reach anything it spawns. The
  # launcher execs java, so $! is the JVM itself and `wait` reaps it.
  OPENSEARCH_JAVA_HOME="$java_home" OPENSEARCH_JAVA_OPTS="-Xms512m -Xmx512m" \
    OPENSEARCH_TMPDIR="$run/tmp" HOME="$run" \
    setsid "${as_user[@]}" "$home/bin/opensearch" \
      -Ecluster.name=stratmaster-test -Enode.name=stratmaster-test \
      -Ediscovery.type=single-node -Enetwork.host=127.0.0.1 \
      -Ehttp.port="$port" -Etransport.port="$tport" \
      -Epath.data="$run/data" -Epath.logs="$run/logs" \
      -Ecluster.routing.allocation.disk.threshold_enabled=false \
      </dev/null >"$run/opensearch.out" 2>&1 &
  _STRATMASTER_OPENSEARCH_PID=$!
  _opensearch_log "starting OpenSearch $STRATMASTER_OPENSEARCH_VERSION on 127.0.0.1:$port (pid $_STRATMASTER_OPENSEARCH_PID, dir $run)"

  local url="http://127.0.0.1:$port" deadline=$((SECONDS + ${STRATMASTER_OPENSEARCH_START_TIMEOUT:-120}))
  while :; do
    if curl -fsS --max-time 3 "$url/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null \
        | grep -Eq '"status":"(green|yellow)"'; then
      break
    fi
    if ! kill -0 "$_STRATMASTER_OPENSEARCH_PID" 2>/dev/null; then
      _opensearch_log "OpenSearch exited during start-up; last output:"; tail -n 40 "$run/opensearch.out" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      _opensearch_log "OpenSearch not healthy after ${STRATMASTER_OPENSEARCH_START_TIMEOUT:-120}s; last output:"
      tail -n 40 "$run/opensearch.out" >&2
      return 1
    fi
    sleep 1
  done
  export STRATMASTER_TEST_OPENSEARCH_URL="$url"
  _opensearch_log "ready: $url"
}

stop_service_opensearch() {
  svc_stop_group "${_STRATMASTER_OPENSEARCH_PID:-}" 30
  [ -n "${_STRATMASTER_OPENSEARCH_DIR:-}" ] && rm -rf "$_STRATMASTER_OPENSEARCH_DIR"
  _STRATMASTER_OPENSEARCH_PID="" _STRATMASTER_OPENSEARCH_DIR=""
  unset STRATMASTER_TEST_OPENSEARCH_URL
}

# Until scripts/test.sh installs its own EXIT trap, stop whatever already
# started if a later step (or service script) fails.
trap svc_stop_all EXIT

if ! _opensearch_start; then
  stop_service_opensearch
  _opensearch_log "FAILED to start OpenSearch"
  return 1 2>/dev/null || exit 1
fi
