"""Schemathesis against the API's own OpenAPI document: the real app served by
uvicorn on loopback (real Temporal test server, PostgreSQL, missions and
maintenance workers, with idle stand-ins for the long and destructive operations:
backups, restores, verification, maintenance, analytics, rollback, deactivation, and
for what would register, sync or remove sources, register or call webhooks),
once in dev-auth mode (every route reachable) and once anonymous in OIDC mode. Every check schemathesis has (`--checks all`: no 5xx,
status codes, content types, headers and bodies as declared, invalid input
rejected, valid input accepted, methods and Allow headers, auth) must pass with
zero failures, on a bounded number of examples per operation (fixed seed)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from stratmaster import queues
from tests.support.workers import workflow_name
from tests.api_support import (
    api_client, dev, ensure_mission, make_app, unlimited, run_workers, served, terminate_quietly,
)
from tests.support.ports import free_port

MISSION = "demo"  # the OpenAPI example of every {mission}: examples reach a real mission
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = int(os.environ.get("STRATMASTER_FUZZ_EXAMPLES", "40"))
SEED = os.environ.get("STRATMASTER_FUZZ_SEED", "11")

if not SCHEMATHESIS.exists():
    if os.environ.get("CI") == "true":
        raise RuntimeError("schemathesis is not installed under CI (it is in the dev extras: pip install -e .[dev])")
    pytest.skip("needs schemathesis (pip install -e .[dev])", allow_module_level=True)


def idle_workflow(name: str, *, query: str | None = None, answer: str | None = None, done: bool = False) -> type:
    """A stand-in registered as workflow type `name` that does nothing until terminated (or, with
    `done`, completes at once); `query`, when given, answers `answer`. The class is made here
    but bound at module level (`Idle<name>`), as the SDK requires of a workflow class, and runs
    unsandboxed."""
    cls_name = f"Idle{name}"

    async def run(self, req: dict) -> None:
        if not done:
            await workflow.wait_condition(lambda: False)

    def answer_query(self) -> str | None:
        return answer

    run.__qualname__ = f"{cls_name}.run"  # the SDK refuses a run method of a local class
    namespace: dict = {"__module__": __name__, "run": workflow.run(run)}
    if query:
        answer_query.__name__, answer_query.__qualname__ = query, f"{cls_name}.{query}"
        namespace[query] = workflow.query(name=query)(answer_query)
    cls = workflow.defn(name=name, sandboxed=False)(type(cls_name, (), namespace))
    globals()[cls_name] = cls
    return cls


# Stand-ins for the long and destructive operations: they idle until the test terminates them.
IDLE_OPERATIONS = {
    queues.MAINTENANCE: [idle_workflow(n, query="stage", answer="idle") for n in (
        "BackupWorkflow", "RestoreWorkflow", "VerifyBackupWorkflow", "MaintenanceWorkflow", "AnalyticsExportWorkflow")],
    queues.MISSIONS: [idle_workflow(n, query="stage", answer="idle")
                      for n in ("RollbackMissionWorkflow", "DeactivateMissionWorkflow")],
}


@workflow.defn(name="AddWebhookWorkflow", sandboxed=False)
class StandInAddWebhookWorkflow:
    """Registers nothing (a fuzzed URL is never resolved, stored or called): answers an
    endpoint with a made-up secret in the clear (the API accepts that as the CLI does)."""

    @workflow.run
    async def run(self, req: dict) -> dict:
        return {"endpoint": {"endpoint_id": str(workflow.uuid4()), "mission": req["mission"], "url": req["url"],
                             "events": req.get("events") or ["*"], "description": req.get("description") or ""},
                "secret": "whsec_c3RhbmQtaW4tc2VjcmV0LW5vdC1yZWFsLW5vdC1yZWFs"}


@workflow.defn(name="DeliverWebhookWorkflow", sandboxed=False)
class StandInDeliverWebhookWorkflow:
    """Sends nothing anywhere."""

    @workflow.run
    async def run(self, req: dict) -> dict:
        return {"mission": req["mission"], "endpoint_id": req["endpoint_id"], "event_id": req["event"]["id"],
                "event_type": req["event"]["type"], "delivered": False, "status": "skipped", "attempts": 0,
                "error": "stand-in"}


# What the operations routes start: the fuzzer's runs must not back up, restore, vacuum,
# purge, roll back or deactivate anything for real, nor register or call webhooks (the
# lookups, audit, health and the webhook lists stay real).
STAND_INS = {
    queues.MAINTENANCE: [*IDLE_OPERATIONS[queues.MAINTENANCE], StandInAddWebhookWorkflow, StandInDeliverWebhookWorkflow],
    queues.MISSIONS: IDLE_OPERATIONS[queues.MISSIONS],
}
STAND_IN_TYPES = sorted(workflow_name(w) for ws in STAND_INS.values() for w in ws)


@pytest.fixture(scope="module")
async def workers(temporal_env, settings):
    async with run_workers(temporal_env.client, settings, [queues.MAINTENANCE, queues.MISSIONS], STAND_INS):
        yield


# Stand in for the research and ingestion workers: the runs the fuzzer starts complete at once
# (POST ...?wait= answers at once, an event stream of one ends at once, nothing really runs); a
# status request of one still running answers its progress query at once instead of waiting out
# the query timeout.
IdleResearch = idle_workflow("ResearchWorkflow", query="progress", done=True)
IdleIngest = idle_workflow("IngestDocumentsWorkflow", query="progress", done=True)


@workflow.defn(name="RenderReportWorkflow")
class StandInRenderReport:
    """No research of the fuzzer's completes with a report: every one is ReportNotFound."""

    @workflow.run
    async def run(self, req: dict) -> None:
        raise ApplicationError("stand-in: no report", type="ReportNotFound", non_retryable=True)


# Sources (ingestion-tasks): the fuzzer's sources are never checked, stored, scheduled,
# listed, synced or removed for real. Every source id "exists" (so the sync and removal
# routes get past their lookup), a sync or removal idles until the test terminates it.

@workflow.defn(name="AddSourceWorkflow")
class StandInAddSource:
    @workflow.run
    async def run(self, req: dict) -> dict:
        m, s = req["mission"], req["source"]["source_id"]
        return {"mission": m, "source_id": s, "status": "created", "location": "stand-in",
                "interval_seconds": req["source"].get("interval_seconds", 3600),
                "schedule_id": f"stratmaster-source-sync-{m}-{s}", "sync_workflow_id": f"source-sync-{m}-{s}"}


@workflow.defn(name="ListSourcesWorkflow")
class StandInListSources:
    @workflow.run
    async def run(self, req: dict) -> dict:
        return {"mission": req["mission"], "sources": []}


@workflow.defn(name="SourceStatusWorkflow")
class StandInSourceStatus:
    @workflow.run
    async def run(self, req: dict) -> dict:
        m, s = req["mission"], req["source_id"]
        source = {"source_id": s, "kind": "directory", "location": "stand-in", "interval_seconds": 3600,
                  "status": "active", "created_by": "stand-in", "created_at": "2026-01-01T00:00:00Z",
                  "schedule_id": f"stratmaster-source-sync-{m}-{s}"}
        return {"mission": m, "source": source, "files": [], "matching": 0, "offset": req.get("offset", 0),
                "limit": req.get("limit", 100)}


IdleSourceSync = idle_workflow("SourceSyncWorkflow", query="progress")
IdleRemoveSource = idle_workflow("RemoveSourceWorkflow")


# The library reads (research-tasks): empty, and every document "not found".

@workflow.defn(name="ListDocumentsWorkflow")
class StandInListDocuments:
    @workflow.run
    async def run(self, req: dict) -> dict:
        return {"mission": req["mission"], "total": 0, "offset": req.get("offset", 0), "documents": []}


@workflow.defn(name="DocumentExcerptWorkflow")
class StandInExcerpt:
    @workflow.run
    async def run(self, req: dict) -> None:
        raise ApplicationError("stand-in: no document", type="DocumentNotFound", non_retryable=True)


@workflow.defn(name="ListResearchWorkflow")
class StandInListResearch:
    @workflow.run
    async def run(self, req: dict) -> dict:
        return {"mission": req["mission"], "total": 0, "offset": req.get("offset", 0), "runs": []}


LIBRARY_STAND_INS = [StandInListDocuments, StandInExcerpt, StandInListResearch]
SOURCE_STAND_INS = [StandInAddSource, StandInListSources, StandInSourceStatus, IdleSourceSync, IdleRemoveSource]


@contextlib.asynccontextmanager
async def idle_workers(client):
    async with Worker(client, task_queue=queues.RESEARCH, workflows=[IdleResearch, StandInRenderReport, *LIBRARY_STAND_INS],
                      workflow_runner=UnsandboxedWorkflowRunner()), \
            Worker(client, task_queue=queues.INGESTION, workflows=[IdleIngest, *SOURCE_STAND_INS],
                   workflow_runner=UnsandboxedWorkflowRunner()):
        yield


# POST /missions takes a cartridge: its semantic rules (semantic versions, RE2 patterns,
# unique entity names, owners) go beyond JSON Schema and its models (contracts/cartridge.py)
# coerce like pydantic's lax mode, so "schema-valid => accepted" and "schema-invalid =>
# refused" cannot hold for it; every other check runs on it, both run everywhere else.
CONFIG = """
[checks]
enabled = true  # every check (as `--checks all`, which would override the exceptions below)

[[operations]]
include-path = "/missions"
include-method = "POST"
checks.positive_data_acceptance.enabled = false
checks.negative_data_rejection.enabled = false

[[operations]]
include-path = "/missions/{mission}/import"
include-method = "POST"
checks.positive_data_acceptance.enabled = false
checks.negative_data_rejection.enabled = false
"""


async def run_schemathesis(base_url: str, tmp_path: Path, *extra: str) -> tuple[int, str]:
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    proc = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS), "run", f"{base_url}/openapi.json", "--max-examples", str(MAX_EXAMPLES),
        "--seed", SEED, "--workers", "1", "--phases", "examples,coverage,fuzzing", "--request-timeout", "30",
        "--report", "junit", "--report-dir", str(tmp_path), "--output-truncate", "false", *extra,
        *os.environ.get("STRATMASTER_FUZZ_ARGS", "").split(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
        env=dict(os.environ, NO_COLOR="1", SCHEMATHESIS_TELEMETRY="false"),
    )
    out, _ = await proc.communicate()
    (tmp_path / "schemathesis.txt").write_bytes(out)  # the whole report, kept with the junit one
    return proc.returncode, out.decode(errors="replace")


async def fuzz_workflows(client) -> list[str]:
    types = ", ".join(f"'{t}'" for t in STAND_IN_TYPES)
    return ([w.id async for w in client.list_workflows(f"Mission = '{MISSION}' AND ExecutionStatus = 'Running'")]
            + [w.id async for w in client.list_workflows(f"WorkflowType IN ({types}) AND ExecutionStatus = 'Running'")])


@contextlib.asynccontextmanager
async def schedules_restored(client):
    """The fuzzer installs, pauses, triggers and deletes the operations schedules: put
    them back as they were (none installed, usually)."""
    from stratmaster import schedules as sched

    before = {r["id"]: r["paused"] for r in await sched.list_installed(client)}
    try:
        yield
    finally:
        for d in sched.DEFINITIONS:
            sid = sched.schedule_id(d)
            with contextlib.suppress(Exception):
                await client.get_schedule_handle(sid).delete()
            if sid in before:
                await sched.install(client, names=[d.name])
                if before[sid]:
                    await sched.pause(client, d.name)


async def test_fuzz_dev_mode(client, settings, workers, tmp_path):
    app = make_app(unlimited(dev(settings)), client)
    async with api_client(app) as api:
        await ensure_mission(api, client, MISSION)
    try:
        async with schedules_restored(client), idle_workers(client), served(make_app(unlimited(dev(settings)), client)) as url:
            rc, out = await run_schemathesis(url, tmp_path)
    finally:  # research and ingestion the fuzzer started (no worker here) must not run later
        await terminate_quietly(client, await fuzz_workflows(client))
    assert rc == 0, out[-20000:]
    assert "No issues found" in out or " 0 failures" in out or "passed" in out, out[-5000:]


async def test_fuzz_anonymous(client, settings, workers, tmp_path):
    keycloak = os.environ.get("STRATMASTER_TEST_KEYCLOAK_URL") or f"http://127.0.0.1:{free_port()}"
    oidc = settings.model_copy(update={"auth_mode": "oidc", "keycloak_url": keycloak})
    async with served(make_app(unlimited(oidc), client)) as url:
        rc, out = await run_schemathesis(url, tmp_path)
    assert rc == 0, out[-20000:]


async def test_fuzz_with_real_keycloak_tokens(client, settings, workers, tmp_path):
    """OIDC mode with a real token from the Keycloak test server (demo-user: writer on
    mission demo, no platform role): every route answers as declared for a real caller."""
    import httpx

    keycloak = os.environ.get("STRATMASTER_TEST_KEYCLOAK_URL")
    if not keycloak:
        if os.environ.get("CI") == "true":
            raise RuntimeError("STRATMASTER_TEST_KEYCLOAK_URL is not set under CI: scripts/services/keycloak.sh did not run")
        pytest.skip("needs Keycloak: source scripts/services/keycloak.sh")
    token_url = f"{keycloak}/realms/stratmaster/protocol/openid-connect/token"
    async with httpx.AsyncClient(timeout=30) as h:
        r = await h.post(token_url, data={"grant_type": "password", "client_id": "stratmaster-cli",
                                          "username": "demo-user", "password": "demo123", "scope": "openid"})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    async with api_client(make_app(unlimited(dev(settings)), client)) as api:
        await ensure_mission(api, client, MISSION)
    oidc = settings.model_copy(update={"auth_mode": "oidc", "keycloak_url": keycloak})
    try:
        async with idle_workers(client), served(make_app(unlimited(oidc), client)) as url:
            rc, out = await run_schemathesis(url, tmp_path, "--header", f"Authorization: Bearer {token}")
    finally:
        await terminate_quietly(client, await fuzz_workflows(client))
    assert rc == 0, out[-20000:]
