"""Deployment artefacts: scripts/check-deploy.sh validates the Helm chart
(helm lint, helm template, kubeconform against real Kubernetes schemas), the
compose file (the real `docker compose config`) and the Prometheus rules
(promtool, including rule unit tests); the structure tests below pin what the
stack must contain."""
from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from stratmaster import queues
from tests.deploy_support import ROOT, missing_tools

pytestmark = pytest.mark.servers  # starts servers of its own: not in the fast lane

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Run scripts/check-deploy.sh once; return the rendered chart variants."""
    out = tmp_path_factory.mktemp("check-deploy")
    env = dict(os.environ, STRATMASTER_DEPLOYTOOLS_BUILD="0", STRATMASTER_CHECK_DEPLOY_OUT=str(out))
    proc = subprocess.run(["bash", "scripts/check-deploy.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode == 3:
        missing_tools("deploy tools not built: " + proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "all deployment checks passed" in proc.stdout
    assert "Valid: 0" not in proc.stdout  # kubeconform really validated something
    return {p.stem.removeprefix("helm-"): list(yaml.safe_load_all(p.read_text())) for p in out.glob("helm-*.yaml")}


def _kinds(docs):
    return {(d["kind"], d["metadata"]["name"]): d for d in docs if d}


def test_check_deploy_passes_and_chart_has_a_deployment_and_hpa_per_queue(rendered):
    docs = _kinds(rendered["default"])
    deployments = {name: d for (kind, name), d in docs.items() if kind == "Deployment"}
    hpas = {d["spec"]["scaleTargetRef"]["name"]: d for (kind, _), d in docs.items() if kind == "HorizontalPodAutoscaler"}
    worker_queues = {}
    for name, d in deployments.items():
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert c["resources"]["requests"] and c["resources"]["limits"], name
        assert c["livenessProbe"] and c["readinessProbe"], name
        assert {"configMapRef", "secretRef"} <= {k for e in c["envFrom"] for k in e}, name
        if c["command"][:3] == ["python", "-m", "workers"]:
            worker_queues[c["command"][4]] = name
            assert c["livenessProbe"]["httpGet"]["path"] == "/metrics"
        else:
            assert c["command"][:2] == ["uvicorn", "starters.api:app"]
            assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert set(worker_queues) == set(queues.ALL)
    # research and ingestion autoscale (autoscaling/v2) by default, and HPAs target real deployments
    for q in (queues.RESEARCH, queues.INGESTION):
        assert worker_queues[q] in hpas
    assert all(h["apiVersion"] == "autoscaling/v2" for h in hpas.values())
    assert set(hpas) <= set(deployments)
    # HPA-managed deployments leave replicas to the HPA
    assert all("replicas" not in deployments[t]["spec"] for t in hpas)
    assert ("Secret", "stratmaster-secret") in docs and ("ConfigMap", "stratmaster-config") in docs


def test_chart_existing_secret_variant_uses_it_and_creates_none(rendered):
    docs = rendered["existing-secret"]
    assert not [d for d in docs if d and d["kind"] == "Secret"]
    refs = {e["secretRef"]["name"] for d in docs if d and d["kind"] == "Deployment"
            for e in d["spec"]["template"]["spec"]["containers"][0]["envFrom"] if "secretRef" in e}
    assert refs == {"my-secret"}
    research = next(d for d in docs if d and d["kind"] == "Deployment" and d["metadata"]["name"].endswith("worker-research"))
    assert research["spec"]["replicas"] == 2  # no HPA: replicas from values


def test_compose_images_are_pinned_and_long_running_services_have_healthchecks():
    for name, svc in SERVICES.items():
        image = svc.get("image")
        assert image, name
        if "build" not in svc:
            assert ":" in image and not image.endswith(":latest") and not re.search(r":(main|stable)$", image), (name, image)
    one_shots = {n for n, s in SERVICES.items() if s.get("restart") == "no"}
    assert one_shots == {"migrate", "minio-init", "nebula-init", "temporal-setup"}
    no_health_ok = {"temporal-ui", "langfuse-worker"} | one_shots
    for name, svc in SERVICES.items():
        if name not in no_health_ok:
            assert "healthcheck" in svc, name
    declared = set(COMPOSE["volumes"])
    for svc in SERVICES.values():
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if not src.startswith((".", "/")):
                assert src in declared, src


def test_compose_has_the_whole_stack_and_one_worker_per_queue():
    for svc in ["postgres", "temporal", "temporal-ui", "qdrant", "opensearch", "nebula-graphd", "nebula-metad",
                "nebula-storaged", "minio", "minio-init", "keycloak", "searxng", "litellm", "llm", "ollama", "langfuse",
                "otel-collector", "prometheus", "grafana", "api"]:
        assert svc in SERVICES, svc
    worker_cmds = {s["command"][4]: n for n, s in SERVICES.items() if s.get("command", [])[:3] == ["python", "-m", "workers"]}
    assert set(worker_cmds) == set(queues.ALL)
    assert SERVICES["api"]["command"][:2] == ["uvicorn", "starters.api:app"]
    # app containers are configured only through STRATMASTER_* settings that exist
    from stratmaster.settings import Settings

    fields = {f"STRATMASTER_{k.upper()}" for k in Settings.model_fields}
    env = SERVICES["api"]["environment"]
    assert {k for k in env if k.startswith("STRATMASTER_")} <= fields
    assert env["STRATMASTER_TEMPORAL_ADDRESS"] == "temporal:7233"
    # the keycloak realm and prometheus/grafana configs it mounts exist
    for svc in SERVICES.values():
        for v in svc.get("volumes", []):
            if v.startswith("./"):
                assert (ROOT / v.split(":")[0]).exists(), v


def test_prometheus_scrapes_each_worker_on_its_queue_metrics_port():
    from workers.__main__ import metrics_port_for

    prom = yaml.safe_load((ROOT / "infra/prometheus/prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "stratmaster-workers")
    targets = {sc["labels"]["queue"]: sc["targets"][0] for sc in job["static_configs"]}
    assert set(targets) == set(queues.ALL)
    for q, t in targets.items():
        assert t.endswith(f":{metrics_port_for(q, 9464)}")
        svc = next(n for n, s in SERVICES.items() if s.get("command", [])[4:5] == [q])
        assert t.startswith(svc + ":")
        assert str(metrics_port_for(q, 9464)) in SERVICES[svc]["healthcheck"]["test"][1]


def test_chart_values_schema_rejects_an_unknown_task_queue():
    from tests.deploy_support import tool

    helm = tool("STRATMASTER_HELM", "helm-v*")
    bad = subprocess.run([helm, "template", "t", "helm/stratmaster", "--kube-version", "1.34.0",
                          "--set", "workers.research.queue=reserch-tasks"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "research-tasks" in bad.stderr
    ok = subprocess.run([helm, "template", "t", "helm/stratmaster", "--kube-version", "1.34.0",
                         "--set", "workers.research.replicas=5", "--set", "workers.research.autoscaling.enabled=false"],
                        cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    research = next(d for d in yaml.safe_load_all(ok.stdout)
                    if d and d["kind"] == "Deployment" and d["metadata"]["name"].endswith("worker-research"))
    assert research["spec"]["replicas"] == 5


def test_otel_collector_pipelines_reference_defined_components():
    cfg = yaml.safe_load((ROOT / "infra/otel/collector-config.yaml").read_text())
    connectors = set(cfg.get("connectors", {}))
    for name, pipe in cfg["service"]["pipelines"].items():
        for r in pipe["receivers"]:
            assert r in cfg["receivers"] or r in connectors, (name, r)
        for p in pipe.get("processors", []):
            assert p in cfg["processors"], (name, p)
        for e in pipe["exporters"]:
            assert e in cfg["exporters"] or e in connectors, (name, e)
    # a connector must be both an exporter of one pipeline and a receiver of another
    for c in connectors:
        pipes = cfg["service"]["pipelines"].values()
        assert any(c in p["exporters"] for p in pipes) and any(c in p["receivers"] for p in pipes), c
    assert set(cfg["service"]["extensions"]) <= set(cfg["extensions"])
    assert cfg["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")


def test_network_policies_keep_temporal_and_the_stores_to_the_api_and_workers(rendered):
    """Only this release's API and workers reach Temporal's frontend and the stores; the API takes
    requests on its port only, the workers only metrics scrapes (kubeconform validated them above)."""
    policies = {d["metadata"]["name"]: d["spec"] for d in rendered["default"] if d and d["kind"] == "NetworkPolicy"}
    protected = {n.split("-protect-", 1)[1]: s for n, s in policies.items() if "-protect-" in n}
    assert {"temporal-frontend", "postgresql", "minio", "opensearch"} <= set(protected)
    ours = {"app.kubernetes.io/instance", "app.kubernetes.io/name"}
    for name, spec in protected.items():
        assert spec["policyTypes"] == ["Ingress"], name
        clients, *peers = spec["ingress"]
        assert set(clients["from"][0]["podSelector"]["matchLabels"]) == ours and len(clients["from"]) == 1, name
        for rule in peers:  # the service's own pods, on every port (replication, membership)
            assert "ports" not in rule and all(set(s) == {"podSelector"} for s in rule["from"]), name
    # OpenSearch's nodes reach each other on the transport port, not only on 9200
    assert protected["opensearch"]["ingress"][1] == {"from": [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "opensearch"}}}]}
    assert protected["temporal-frontend"]["ingress"][0]["ports"] == [{"port": 7233, "protocol": "TCP"}]
    api = next(s for n, s in policies.items() if n.endswith("-api"))
    assert api["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    assert api["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    workers = next(s for n, s in policies.items() if n.endswith("-workers"))
    values = yaml.safe_load((ROOT / "helm/stratmaster/values.yaml").read_text())
    assert {p["port"] for p in workers["ingress"][0]["ports"]} == {w["metricsPort"] for w in values["workers"].values()}


def test_temporal_mtls_mounts_the_client_certificate_in_every_pod(rendered):
    """With temporalTls.existingSecret every pod gets the certificate read-only and the settings
    that make the one client factory connect with it (tests/test_temporal_tls.py: that connection)."""
    from stratmaster.settings import Settings

    pods = [d["spec"]["template"]["spec"] for d in rendered["temporal-mtls"] if d and d["kind"] == "Deployment"]
    assert pods
    for spec in pods:
        c = spec["containers"][0]
        env = {e["name"]: e["value"] for e in c.get("env", [])}
        s = Settings(_env_file=None, **{k.removeprefix("STRATMASTER_").lower(): v for k, v in env.items()})
        assert s.temporal_tls and str(s.temporal_tls_cert).startswith("/etc/stratmaster/temporal-tls/")
        assert {"name": "temporal-tls", "mountPath": "/etc/stratmaster/temporal-tls", "readOnly": True} in c["volumeMounts"]
        volume = next(v for v in spec["volumes"] if v["name"] == "temporal-tls")
        assert volume["secret"]["secretName"] == "stratmaster-temporal-tls"
    assert not any("temporal-tls" in str(d) for d in rendered["default"] if d)
