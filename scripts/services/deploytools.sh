# shellcheck shell=bash
# Sourced by scripts/test.sh (and scripts/check-deploy.sh): deployment checkers
# built once from the Go module proxy into ~/.cache/stratmaster/bin, then
# reused. Exports STRATMASTER_HELM, STRATMASTER_KUBECONFORM,
# STRATMASTER_DOCKER_COMPOSE (a docker CLI plugin binary, run as
# `$STRATMASTER_DOCKER_COMPOSE compose config`), STRATMASTER_PROMTOOL and STRATMASTER_K8S_SCHEMAS
# (Kubernetes JSON schemas shipped by the kubernetes-validate PyPI package).
# A tool that cannot be built is left unset (the deploy tests then skip
# locally and fail under CI=true). Never downloads anything but Go modules and
# one PyPI package. STRATMASTER_DEPLOYTOOLS_BUILD=0: only pick up cached builds.

STRATMASTER_HELM_VERSION="${STRATMASTER_HELM_VERSION:-v3.22.0}"
STRATMASTER_KUBECONFORM_VERSION="${STRATMASTER_KUBECONFORM_VERSION:-v0.8.0}"
STRATMASTER_COMPOSE_VERSION="${STRATMASTER_COMPOSE_VERSION:-v2.40.3}"
STRATMASTER_PROMETHEUS_VERSION="${STRATMASTER_PROMETHEUS_VERSION:-v0.316.0}"  # Go module version of Prometheus 3.x

_deploytools_log() { echo "[deploytools] $*" >&2; }

# Build module $1 at version $2, package path $3 (relative to the module), into $4,
# with optional Go build tags $5. Builds inside the downloaded module so its
# go.mod replace directives apply.
_deploytools_build() {
  local module="$1" version="$2" pkg="$3" out="$4" tags="${5:-}" dir
  [ -x "$out" ] && return 0
  [ "${STRATMASTER_DEPLOYTOOLS_BUILD:-1}" = 0 ] && return 1  # use the cache only
  command -v go >/dev/null || { _deploytools_log "go not found: cannot build $module"; return 1; }
  _deploytools_log "building $module@$version (once; cached in $(dirname "$out"))"
  dir="$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "$module@$version" 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" || { _deploytools_log "go mod download $module@$version failed"; return 1; }
  (cd "$dir" && CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=mod go build -trimpath -tags "$tags" -ldflags "-s -w" -o "$out.part" "./$pkg") \
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
  local pt="$bin/promtool-$STRATMASTER_PROMETHEUS_VERSION"
  _deploytools_build helm.sh/helm/v3 "$STRATMASTER_HELM_VERSION" cmd/helm "$helm" \
    && export STRATMASTER_HELM="$helm"
  _deploytools_build github.com/yannh/kubeconform "$STRATMASTER_KUBECONFORM_VERSION" cmd/kubeconform "$kc" \
    && export STRATMASTER_KUBECONFORM="$kc"
  _deploytools_build github.com/docker/compose/v2 "$STRATMASTER_COMPOSE_VERSION" cmd "$dc" \
    && export STRATMASTER_DOCKER_COMPOSE="$dc"
  # remove_all_sd: no cloud service-discovery plugins (static configs only): a much smaller build
  _deploytools_build github.com/prometheus/prometheus "$STRATMASTER_PROMETHEUS_VERSION" cmd/promtool "$pt" remove_all_sd \
    && export STRATMASTER_PROMTOOL="$pt"
  # Kubernetes JSON schemas: the kubernetes-validate wheel ships them per version.
  if ! "$venv/bin/python" -c "import kubernetes_validate" >/dev/null 2>&1; then
    "$venv/bin/pip" install -q kubernetes-validate >/dev/null 2>&1 || _deploytools_log "pip install kubernetes-validate failed"
  fi
  local schemas
  schemas="$("$venv/bin/python" - <<'PY' 2>/dev/null
import pathlib, kubernetes_validate
print(pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema")
PY
)" && [ -d "$schemas" ] && export STRATMASTER_K8S_SCHEMAS="$schemas"
  _deploytools_log "helm=${STRATMASTER_HELM:-missing} kubeconform=${STRATMASTER_KUBECONFORM:-missing} compose=${STRATMASTER_DOCKER_COMPOSE:-missing} promtool=${STRATMASTER_PROMTOOL:-missing} schemas=${STRATMASTER_K8S_SCHEMAS:-missing}"
}

_deploytools_main || true
