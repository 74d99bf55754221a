"""Every Temporal SDK metric the alert rules and the Grafana dashboard use is
really exported by a worker (names, units and suffixes as the Rust core's
Prometheus exporter writes them), after successes, failures, workflow-task
failures and failed requests."""
from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import timedelta

import httpx
import pytest
import yaml
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.ops.health import HealthActivities
from activities.resources import Resources
from stratmaster.contracts.health import HealthCheckInput
from tests.support.ports import free_port
from tests.deploy_support import ROOT
from workflows.health import HealthCheckWorkflow


@activity.defn(name="obs_always_fails")
async def always_fails(x: str) -> str:
    raise RuntimeError("deliberate activity failure")


@workflow.defn(name="ObsFailingWorkflow", sandboxed=False)
class FailingWorkflow:
    @workflow.run
    async def run(self, x: str) -> str:
        return await workflow.execute_activity(
            always_fails, x, start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(maximum_attempts=2, initial_interval=timedelta(milliseconds=50)))


@workflow.defn(name="ObsBrokenWorkflow", sandboxed=False)
class BrokenWorkflow:
    @workflow.run
    async def run(self, x: str) -> str:
        raise RuntimeError("deliberate workflow task failure")  # not an ApplicationError: the task retries


def used_metric_names() -> set[str]:
    text = (ROOT / "infra/prometheus/alerts.yml").read_text()
    for dash in (ROOT / "infra/grafana/dashboards").glob("*.json"):
        for panel in json.loads(dash.read_text())["panels"]:
            text += "\n".join(t["expr"] for t in panel.get("targets", []))
    return set(re.findall(r"\btemporal_[a-z_]+", text))


async def test_alert_and_dashboard_metric_names_exist_on_a_real_worker(temporal_env, settings, task_queue):
    port = free_port()
    runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{port}")))
    client = await Client.connect(temporal_env.client.service_client.config.target_host, runtime=runtime,
                                  data_converter=pydantic_data_converter)
    async with Worker(client, task_queue=task_queue, workflows=[HealthCheckWorkflow, FailingWorkflow, BrokenWorkflow],
                      activities=[HealthActivities(Resources(settings)).check_services, always_fails]):
        await client.execute_workflow(HealthCheckWorkflow.run, HealthCheckInput(services=["database"]),
                                      id=f"obs-ok-{uuid.uuid4().hex[:8]}", task_queue=task_queue)
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(FailingWorkflow.run, "x", id=f"obs-fail-{uuid.uuid4().hex[:8]}",
                                          task_queue=task_queue)
        broken = await client.start_workflow(BrokenWorkflow.run, "x", id=f"obs-broken-{uuid.uuid4().hex[:8]}",
                                             task_queue=task_queue, execution_timeout=timedelta(seconds=30))
        with pytest.raises(RPCError):  # a failed request: temporal_request_failure
            await client.get_workflow_handle(f"no-such-{uuid.uuid4()}").describe()
        body = ""
        for _ in range(50):
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            if "temporal_workflow_task_execution_failed" in body:
                break
            await asyncio.sleep(0.2)
        await broken.terminate("test done")

    exported = set(re.findall(r"^(temporal_[a-z_]+)", body, re.M))
    used = used_metric_names()
    assert len(used) >= 9
    assert used <= exported, f"used but not exported: {sorted(used - exported)}"
    # the queue label the rules group by is there, and latencies are in ms (bucket bounds ≥ 100)
    assert f'task_queue="{task_queue}"' in body
    assert re.search(r'temporal_activity_schedule_to_start_latency_bucket\{[^}]*le="1000"', body)


def test_alert_rules_are_well_formed():
    rules = yaml.safe_load((ROOT / "infra/prometheus/alerts.yml").read_text())
    names = [r["alert"] for g in rules["groups"] for r in g["rules"]]
    assert {"HighErrorRate", "HighLatency", "StorageLow", "WorkerDown", "WorkflowFailures",
            "WorkflowTaskFailures", "ActivityScheduleToStartHigh"} <= set(names)
    assert len(names) == len(set(names))
    for g in rules["groups"]:
        for r in g["rules"]:
            assert r["labels"]["severity"] in {"warning", "critical"} and r["annotations"]["summary"], r["alert"]
