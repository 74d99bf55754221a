#!/usr/bin/env bash
# Validate the deployment artefacts offline:
#   helm lint + helm template (default values and variants) -> kubeconform against
#   the Kubernetes JSON schemas from the kubernetes-validate PyPI package;
#   docker compose config (the real Compose CLI, built from the Go module proxy);
#   promtool check config / check rules / test rules; Grafana dashboard JSON.
# Tools come from scripts/services/deploytools.sh (built once, cached).
# Exit 0: all valid. Exit 1: something is invalid. Exit 3: a tool is missing.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV="${STRATMASTER_VENV:-$HOME/.cache/stratmaster/venv}"
K8S_VERSION="${STRATMASTER_K8S_VERSION:-1.34.0}"

if [ -z "${STRATMASTER_HELM:-}" ] || [ -z "${STRATMASTER_KUBECONFORM:-}" ] || [ -z "${STRATMASTER_DOCKER_COMPOSE:-}" ] \
   || [ -z "${STRATMASTER_PROMTOOL:-}" ]; then
  # shellcheck disable=SC1091
  source scripts/services/deploytools.sh
fi
missing=()
for v in STRATMASTER_HELM STRATMASTER_KUBECONFORM STRATMASTER_DOCKER_COMPOSE STRATMASTER_PROMTOOL; do
  [ -n "${!v:-}" ] && [ -x "${!v}" ] || missing+=("$v")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "check-deploy: missing tools: ${missing[*]} (source scripts/services/deploytools.sh to build them)" >&2
  exit 3
fi

work="$(mktemp -d /tmp/stratmaster-check-deploy.XXXXXX)"
trap 'rm -rf "$work"' EXIT
failures=0
step() { echo "== $*"; }
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# Kubernetes schemas: standalone copies (cached per kubernetes-validate version).
schemas="$HOME/.cache/stratmaster/k8s-schemas/v$K8S_VERSION-$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null || echo none)"
if [ ! -f "$schemas/deployment-apps-v1.json" ]; then
  "$VENV/bin/python" scripts/k8s_standalone_schemas.py "$schemas.tmp" "$K8S_VERSION" >/dev/null \
    && rm -rf "$schemas" && mv "$schemas.tmp" "$schemas" \
    || { echo "check-deploy: cannot build Kubernetes schemas (pip install kubernetes-validate)" >&2; exit 3; }
fi

chart=helm/stratmaster
step "helm lint $chart"
"$STRATMASTER_HELM" lint "$chart" --strict --kube-version "$K8S_VERSION" || fail "helm lint"

# default values; an existing Secret with autoscaling off; a minimal API-less install; Temporal over mTLS
declare -A variants=(
  [temporal-mtls]="--set temporalTls.existingSecret=stratmaster-temporal-tls"
  [default]=""
  [existing-secret]="--set secret.existingSecret=my-secret --set api.autoscaling.enabled=false --set workers.research.autoscaling.enabled=false"
  [workers-only]="--set api.enabled=false --set workers.ingestion.replicas=4"
)
for name in "${!variants[@]}"; do
  out="$work/$name.yaml"
  step "helm template ($name) | kubeconform (Kubernetes $K8S_VERSION, strict)"
  # shellcheck disable=SC2086
  if "$STRATMASTER_HELM" template stratmaster "$chart" --kube-version "$K8S_VERSION" ${variants[$name]} > "$out"; then
    "$STRATMASTER_KUBECONFORM" -strict -summary -kubernetes-version "$K8S_VERSION" \
      -schema-location "$schemas/{{.ResourceKind}}{{.KindSuffix}}.json" "$out" || fail "kubeconform ($name)"
    cp "$out" "${STRATMASTER_CHECK_DEPLOY_OUT:-$work}/helm-$name.yaml" 2>/dev/null || true
  else
    fail "helm template ($name)"
  fi
done

step "docker compose config"
"$STRATMASTER_DOCKER_COMPOSE" -f docker-compose.yml config -q || fail "docker compose config"
"$STRATMASTER_DOCKER_COMPOSE" -f docker-compose.yml --profile ollama config -q || fail "docker compose config (profile ollama)"

step "promtool check config / rules / test rules"
"$STRATMASTER_PROMTOOL" check config --syntax-only infra/prometheus/prometheus.yml || fail "promtool check config"
"$STRATMASTER_PROMTOOL" check rules infra/prometheus/alerts.yml || fail "promtool check rules"
"$STRATMASTER_PROMTOOL" test rules infra/prometheus/alerts_test.yml || fail "promtool test rules"

step "grafana dashboards parse"
for f in infra/grafana/dashboards/*.json; do
  "$VENV/bin/python" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["uid"] and d["panels"]' "$f" || fail "dashboard $f"
done

if [ "$failures" -gt 0 ]; then
  echo "check-deploy: $failures check(s) FAILED" >&2
  exit 1
fi
echo "check-deploy: all deployment checks passed"
