"""The API's mission lifecycle and operations routes (every operation the CLI has)
against the real Temporal test server, PostgreSQL and the real missions and
maintenance workers: versions, export, import, rollback, deactivate; backups
(create, list, verify), restore, maintenance, analytics, schedules; LLM usage per
mission. Roles (OIDC mode with a stub verifier; real Keycloak tokens in
test_api_keycloak.py): platform-admin for system operations and the lifecycle,
read for versions/export/usage; every write audited, accepted or refused."""
from __future__ import annotations

import asyncio
import uuid

import pytest
import yaml

from stratmaster import queues
from stratmaster import schedules as sched
from tests.api_support import (
    StubVerifier, api_client, audit_rows, cartridge, dev, make_app, run_workers, stub_oidc, token, wait_workflow,
)


@pytest.fixture(scope="module")
async def workers(temporal_env, settings):
    async with run_workers(temporal_env.client, settings, [queues.MAINTENANCE, queues.MISSIONS]):
        yield


@pytest.fixture
async def api(client, settings, workers):
    async with api_client(make_app(dev(settings), client)) as c:
        yield c


@pytest.fixture
async def oidc_api(client, settings, workers):
    async with api_client(make_app(stub_oidc(settings), client, verifier=StubVerifier())) as c:
        yield c


def new_mission(prefix: str = "api_ops") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def activate(api, mission: str, version: str = "1.0.0", **sections) -> dict:
    r = await api.post("/missions", json=cartridge(mission, version, **sections))
    assert r.status_code == 202, r.text
    info = await wait_workflow(api, r.json()["workflow_id"])
    assert info["status"] == "completed", info
    return info


async def test_versions_export_import_rollback_deactivate(api, settings):
    m = new_mission()
    first = await activate(api, m)
    assert first["result"]["status"] == "activated" and first["result"]["version"] == "1.0.0"
    await activate(api, m, "1.1.0", quality={"min_confidence": 0.4})

    r = await api.get(f"/missions/{m}/versions")
    assert r.status_code == 200, r.text
    v = r.json()
    assert (v["versions"], v["active_version"], v["previous_version"], v["status"]) == (
        ["1.0.0", "1.1.0"], "1.1.0", "1.0.0", "active")
    assert v["history"][0]["action"] == "activate" and v["history"][0]["version"] == "1.1.0"

    # export: YAML by default (the active version), JSON on request, any stored version
    r = await api.get(f"/missions/{m}/export")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/yaml")
    assert r.headers["x-cartridge-version"] == "1.1.0" and len(r.headers["x-cartridge-sha256"]) == 64
    exported = r.text
    assert yaml.safe_load(exported)["quality"]["min_confidence"] == 0.4
    r = await api.get(f"/missions/{m}/export", params={"format": "json", "version": "1.0.0"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json()["metadata"] == cartridge(m)["metadata"] | {"description": ""}
    r = await api.get(f"/missions/{m}/export", params={"version": "9.9.9"})
    assert r.status_code == 404 and r.json()["error"] == "unknown_version"
    assert (await api.get(f"/missions/{m}/export", params={"format": "xml"})).status_code == 422

    # import: the export comes back unchanged; another mission's cartridge is refused; a new mission from it
    r = await api.post(f"/missions/{m}/import", content=exported.encode(), headers={"content-type": "application/yaml"})
    assert r.status_code == 202, r.text
    assert (await wait_workflow(api, r.json()["workflow_id"]))["result"]["status"] == "unchanged"
    r = await api.post(f"/missions/{m}/import", json=cartridge("someone_else"))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "metadata", "id"]
    copy = new_mission("api_imp")
    data = yaml.safe_load(exported)
    data["metadata"]["id"] = copy
    r = await api.post(f"/missions/{copy}/import", json=data)
    assert r.status_code == 202 and r.json()["version"] == "1.1.0"
    assert (await wait_workflow(api, r.json()["workflow_id"]))["result"]["status"] == "activated"
    assert (await api.get(f"/missions/{copy}")).json()["summary"]["active_version"] == "1.1.0"

    # rollback: unknown version 404, the active one 409, no body -> the previous version
    r = await api.post(f"/missions/{m}/rollback", json={"to_version": "9.9.9"})
    assert r.status_code == 404 and r.json()["error"] == "unknown_version"
    assert (await api.post(f"/missions/{m}/rollback", json={"to_version": "1.1.0"})).status_code == 409
    assert (await api.post(f"/missions/{m}/rollback", json={"to_version": 1})).status_code == 422
    r = await api.post(f"/missions/{m}/rollback")
    assert r.status_code == 202, r.text
    rollback = r.json()["workflow_id"]
    assert rollback == f"mission-rollback-{m}" and r.json()["version"] == "1.0.0"
    info = await wait_workflow(api, rollback)
    assert info["type"] == "RollbackMissionWorkflow" and info["mission"] == m
    assert (info["result"]["status"], info["result"]["version"]) == ("rolled_back", "1.0.0")
    assert (await api.get(f"/missions/{m}/versions")).json()["active_version"] == "1.0.0"

    # deactivate: the mission stops serving
    r = await api.post(f"/missions/{m}/deactivate", json={"retention_days": 3})
    assert r.status_code == 202, r.text
    deactivate = r.json()["workflow_id"]
    assert deactivate == f"mission-deactivate-{m}"
    info = await wait_workflow(api, deactivate)
    assert info["result"]["status"] == "deactivated" and info["result"]["purge_after"]
    assert (await api.get(f"/missions/{m}")).json()["summary"]["status"] == "deactivated"
    r = await api.post(f"/missions/{m}/research", json={"query": "anything"})
    assert r.status_code == 409 and r.json()["error"] == "mission_inactive"
    assert (await api.post(f"/missions/{m}/rollback")).status_code == 409
    # deactivating again: accepted, the workflow says unchanged
    r = await api.post(f"/missions/{m}/deactivate")
    assert r.status_code == 202
    assert (await wait_workflow(api, r.json()["workflow_id"]))["result"]["status"] == "unchanged"

    rows = await audit_rows(settings, mission=m, expect=12)
    seen = [(r["action"], r["status"], r["actor"]) for r in rows]
    for expected in [("mission.activate", 202), ("mission.import", 202), ("mission.import", 422),
                     ("mission.rollback", 404), ("mission.rollback", 409), ("mission.rollback", 422),
                     ("mission.rollback", 202), ("mission.deactivate", 202), ("research.start", 409)]:
        assert expected + ("dev",) in seen, (expected, seen)
    targets = {r["target"] for r in rows if r["status"] == 202}
    assert {rollback, deactivate} <= targets
    detail = next(r["detail"] for r in rows if r["action"] == "mission.deactivate" and r["status"] == 202)
    assert detail["retention_days"] == 3


async def test_backup_verify_restore_maintenance_analytics(api, settings):
    m = new_mission()
    await activate(api, m)
    backup_id = f"{m}-b1"
    r = await api.post(f"/missions/{m}/backups", json={"backup_id": backup_id})
    assert r.status_code == 202, r.text
    backup = r.json()
    assert backup["workflow_id"] == f"backup-mission-{m}-{backup_id}" and backup["created"] and backup["scope"] == "mission"
    assert backup["status_url"] == f"/workflows/{backup['workflow_id']}"
    again = await api.post(f"/missions/{m}/backups", json={"backup_id": backup_id})  # one run per backup id
    assert again.json()["workflow_id"] == backup["workflow_id"] and not again.json()["created"]
    info = await wait_workflow(api, backup["workflow_id"])
    assert info["status"] == "completed" and info["mission"] == m, info
    assert info["result"]["manifest_key"] == f"system/backups/{backup_id}/manifest.json"

    r = await api.get("/backups", params={"mission": m})
    assert r.status_code == 200 and [b["backup_id"] for b in r.json()["backups"]] == [backup_id]
    assert (await api.get("/backups", params={"limit": 0})).status_code == 422

    r = await api.post("/backups/verify", json={"backup_id": backup_id})
    assert r.status_code == 202, r.text
    assert r.json()["workflow_id"].startswith(f"verify-backup-{backup_id}-")
    info = await wait_workflow(api, r.json()["workflow_id"])
    assert info["status"] == "completed" and info["result"]["ok"] and info["result"]["checksums_ok"], info

    r = await api.post("/backups/restore", json={"backup_id": backup_id, "mission": m, "replace": True})
    assert r.status_code == 202, r.text
    restore = r.json()["workflow_id"]
    assert restore.startswith(f"restore-{backup_id}-") and r.json()["mission"] == m
    info = await wait_workflow(api, restore)
    assert info["status"] == "completed" and info["result"]["missions"] == [m], info
    # a restore that the workflow refuses: 202, then the failure is what GET /workflows/{id} says
    r = await api.post("/backups/restore", json={"backup_id": "no-such-backup-1"})
    assert r.status_code == 202
    info = await wait_workflow(api, r.json()["workflow_id"])
    assert info["status"] == "failed" and "manifest.json not found" in info["error"], info
    for bad in ({}, {"backup_id": "Bad Id"}, {"backup_id": backup_id, "replace": "yes"}, {"backup_id": backup_id, "x": 1}):
        assert (await api.post("/backups/restore", json=bad)).status_code == 422, bad

    key = {"Idempotency-Key": f"m-{uuid.uuid4()}"}
    r = await api.post("/maintenance", json={"kind": "health"}, headers=key)
    assert r.status_code == 202 and r.json()["kind"] == "health" and r.json()["mission"] is None
    maintenance = r.json()["workflow_id"]
    assert maintenance.startswith("maintenance-health-k")
    r = await api.post("/maintenance", json={"kind": "health"}, headers=key)
    assert r.json()["workflow_id"] == maintenance and not r.json()["created"]
    info = await wait_workflow(api, maintenance)
    assert info["status"] == "completed" and info["result"]["kind"] == "health" and info["result"]["health"]
    assert (await api.post("/maintenance", json={"kind": "nope"})).status_code == 422
    assert (await api.post("/maintenance", json={})).status_code == 422

    r = await api.post("/analytics/exports", json={"missions": [m]})
    assert r.status_code == 202, r.text
    export = r.json()
    assert export["object_key"] == f"system/analytics/{export['export_id']}/tenant_research_metrics.parquet"
    assert export["worker_path"] == f"exports/analytics/{export['export_id']}/tenant_research_metrics.parquet"
    assert export["workflow_id"] == f"analytics-{export['export_id']}"
    info = await wait_workflow(api, export["workflow_id"])
    assert info["status"] == "completed", info
    assert info["result"]["object_key"] == export["object_key"]
    assert info["result"]["parquet_path"].endswith(export["worker_path"])
    assert [row["tenant_name"] for row in info["result"]["rows"]] == [m]

    for target, action in ((backup["workflow_id"], "backup.create"), (restore, "backup.restore"),
                           (maintenance, "maintenance.run"), (export["workflow_id"], "analytics.export")):
        rows = await audit_rows(settings, target)
        assert rows and {(r["action"], r["status"], r["actor"]) for r in rows} == {(action, 202, "dev")}, rows
    assert (await audit_rows(settings, backup["workflow_id"], expect=2))[0]["mission"] == m


async def test_schedules(api, client, settings):
    from datetime import datetime, timezone

    name, sid = "health-hourly", "stratmaster-health-hourly"
    since = datetime.now(timezone.utc)  # the fuzz tests audit requests on this schedule too
    try:
        r = await api.post("/schedules", json={"names": [name]})
        assert r.status_code == 200 and r.json()["schedules"] in ({sid: "created"}, {sid: "updated"}), r.text
        listing = (await api.get("/schedules")).json()
        row = next(s for s in listing["schedules"] if s["id"] == sid)
        assert row["name"] == name and row["workflow"] == "HealthCheckWorkflow" and not row["paused"] and row["next"]
        assert name not in listing["not_installed"]

        r = await api.post(f"/schedules/{name}/pause", json={"note": "api test"})
        assert r.status_code == 200 and r.json() == {"schedule": sid, "action": "pause", "detail": "paused"}
        row = next(s for s in (await api.get("/schedules")).json()["schedules"] if s["id"] == sid)
        assert row["paused"] and row["note"] == "api test"
        assert (await api.post(f"/schedules/{name}/unpause")).status_code == 200
        assert not next(s for s in (await api.get("/schedules")).json()["schedules"] if s["id"] == sid)["paused"]
        r = await api.post(f"/schedules/{name}/trigger", json={})
        assert r.status_code == 202 and r.json()["action"] == "trigger"

        assert (await api.delete(f"/schedules/{name}")).status_code == 200
        r = await api.delete(f"/schedules/{name}")
        assert r.status_code == 404 and r.json()["error"] == "schedule_not_installed"
        assert (await api.post(f"/schedules/{name}/pause")).status_code == 404
        assert name in (await api.get("/schedules")).json()["not_installed"]
        assert (await api.post("/schedules/no-such/pause")).status_code == 422
        assert (await api.post("/schedules", json={"names": ["stratmaster-health-hourly"]})).status_code == 422
    finally:
        try:
            await sched.delete(client, name)
        except Exception:
            pass
    rows = await audit_rows(settings, sid, expect=7, since=since)
    assert [(r["action"], r["status"]) for r in rows if r["action"] != "schedules.install"] == [
        ("schedule.pause", 200), ("schedule.unpause", 200), ("schedule.trigger", 202), ("schedule.delete", 200),
        ("schedule.delete", 404), ("schedule.pause", 404)]


async def test_llm_usage_per_mission(api, client, settings):
    from activities.llm.usage import record_usage
    from stratmaster.contracts.llm_usage import LlmCall

    m, other = new_mission(), new_mission()
    await activate(api, m)
    await activate(api, other)
    r = await api.get(f"/missions/{m}/usage")
    assert r.status_code == 200 and r.json() == {"mission": m, "calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                                 "cost_usd": 0.0, "by_model": []}
    calls = [("openai/smollm2", 100, 20, 0.0), ("openai/smollm2", 50, 10, 0.0), ("gpt-4o-mini", 1000, 200, 0.0021)]
    for model, p, c, cost in calls:
        await record_usage(settings.database_url, LlmCall(mission=m, model=model, prompt_tokens=p, completion_tokens=c,
                                                           cost_usd=cost, purpose="test", call_key=uuid.uuid4().hex))
    await record_usage(settings.database_url, LlmCall(mission=other, model="x", prompt_tokens=7, completion_tokens=7,
                                                      call_key=uuid.uuid4().hex))
    body = (await api.get(f"/missions/{m}/usage")).json()
    assert (body["calls"], body["prompt_tokens"], body["completion_tokens"]) == (3, 1150, 230)
    assert body["cost_usd"] == pytest.approx(0.0021)
    assert {u["model"]: u["calls"] for u in body["by_model"]} == {"openai/smollm2": 2, "gpt-4o-mini": 1}
    r = await api.get(f"/missions/{m}/usage", params={"since": "2999-01-01T00:00:00Z"})
    assert r.status_code == 200 and r.json()["calls"] == 0
    assert (await api.get(f"/missions/{m}/usage", params={"since": "0001-01-01T00:00:00+14:00"})).json()["calls"] == 3
    for bad in ("yesterday", "0.5", "1700000000"):  # a date-time, not a Unix timestamp
        assert (await api.get(f"/missions/{m}/usage", params={"since": bad})).status_code == 422, bad
    assert (await api.get("/missions/no_such_mission_x/usage")).status_code == 404
    # a deactivated mission's usage is still there
    r = await api.post(f"/missions/{m}/deactivate")
    await wait_workflow(api, r.json()["workflow_id"])
    assert (await api.get(f"/missions/{m}/usage")).json()["calls"] == 3

    # the read runs LlmUsageWorkflow (maintenance-tasks), which replays deterministically
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Replayer

    from workflows.llm_usage import LlmUsageWorkflow

    for _ in range(50):  # visibility is eventually consistent
        runs = [w async for w in client.list_workflows(f"WorkflowType = 'LlmUsageWorkflow' AND Mission = '{m}'")]
        if len(runs) >= 5:
            break
        await asyncio.sleep(0.2)
    assert len(runs) >= 5 and all(w.id.startswith(f"llm-usage-{m}-") for w in runs)
    replayer = Replayer(workflows=[LlmUsageWorkflow], data_converter=pydantic_data_converter)
    for w in runs[:3]:
        await replayer.replay_workflow(await client.get_workflow_handle(w.id, run_id=w.run_id).fetch_history())


async def test_roles_refusals_are_audited_and_system_workflows_invisible(api, oidc_api, settings):
    m = new_mission()
    await activate(api, m)
    admin, reader = token("root", "platform-admin"), token("ops-reader", f"mission:{m}:reader")
    writer, outsider = token("ops-writer", f"mission:{m}:writer"), token("ops-outsider", "mission:other_m:writer")
    mission_admin = token("ops-madmin", f"mission:{m}:admin")

    for path in (f"/missions/{m}/versions", f"/missions/{m}/export", f"/missions/{m}/usage"):
        assert (await oidc_api.get(path, headers=reader)).status_code == 200, path
        r = await oidc_api.get(path, headers=outsider)
        assert r.status_code == 403 and r.json()["error"] == "forbidden", path
        assert (await oidc_api.get(path)).status_code == 401
    for path in ("/backups", "/schedules"):
        assert (await oidc_api.get(path, headers=writer)).status_code == 403, path

    writes = [("post", f"/missions/{m}/rollback", {}, "mission.rollback", m),
              ("post", f"/missions/{m}/deactivate", {}, "mission.deactivate", m),
              ("post", f"/missions/{m}/import", cartridge(m, "2.0.0"), "mission.import", m),
              ("post", f"/missions/{m}/backups", {}, "backup.create", m),
              ("post", "/backups", {}, "backup.create", None),
              ("post", "/backups/verify", {}, "backup.verify", None),
              ("post", "/backups/restore", {"backup_id": "nope-123"}, "backup.restore", None),
              ("post", "/maintenance", {"kind": "vacuum"}, "maintenance.run", None),
              ("post", "/analytics/exports", {}, "analytics.export", None),
              ("post", "/schedules", {}, "schedules.install", None),
              ("post", "/schedules/vacuum-daily/pause", {}, "schedule.pause", None),
              ("post", "/schedules/vacuum-daily/unpause", {}, "schedule.unpause", None),
              ("post", "/schedules/vacuum-daily/trigger", {}, "schedule.trigger", None),
              ("delete", "/schedules/vacuum-daily", None, "schedule.delete", None)]
    for who in (writer, mission_admin):
        for method, path, body, _, _ in writes:
            kwargs = {"json": body} if body is not None else {}
            r = await oidc_api.request(method.upper(), path, headers=who, **kwargs)
            assert r.status_code == 403 and "platform-admin" in r.json()["detail"], (path, r.text)
    rows = await audit_rows(settings, actor="ops-writer", expect=len(writes))
    assert sorted((r["action"], r["mission"] or "", r["status"]) for r in rows) == sorted(
        (action, mission or "", 403) for _, _, _, action, mission in writes)
    assert (await oidc_api.get(f"/missions/{m}", headers=mission_admin)).status_code == 200  # reads are fine

    # a system workflow (no mission) is for platform admins only: like a missing one for anyone else
    r = await oidc_api.post("/maintenance", json={"kind": "health"}, headers=admin)
    assert r.status_code == 202, r.text
    wid = r.json()["workflow_id"]
    for who in (writer, reader, outsider):
        missing = await oidc_api.get(f"/workflows/{wid}x", headers=who)
        hidden = await oidc_api.get(f"/workflows/{wid}", headers=who)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.text.replace(wid, "ID") == missing.text.replace(f"{wid}x", "ID")
    info = await wait_workflow(oidc_api, wid, headers=admin)
    assert info["status"] == "completed" and info["type"] == "MaintenanceWorkflow"
    rows = await audit_rows(settings, wid)
    assert [(r["actor"], r["action"], r["status"]) for r in rows] == [("root", "maintenance.run", 202)]
    # a mission backup (and its verification or restore) is the operator's: the mission's own readers and
    # admins find it exactly as missing as outsiders do (its result names object keys and checks)
    r = await oidc_api.post(f"/missions/{m}/backups", json={}, headers=admin)
    assert r.status_code == 202 and r.json()["backup_id"].startswith(f"{m}-")
    backup = r.json()["workflow_id"]
    for who in (reader, writer, mission_admin, outsider):
        hidden = await oidc_api.get(f"/workflows/{backup}", headers=who)
        missing = await oidc_api.get(f"/workflows/{backup}x", headers=who)
        assert hidden.status_code == missing.status_code == 404
    assert (await oidc_api.get(f"/workflows/{backup}", headers=admin)).json()["type"] == "BackupWorkflow"
    assert (await wait_workflow(oidc_api, backup, headers=admin))["status"] == "completed"
