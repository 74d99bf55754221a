"""The REST API in dev mode (loopback, no token) against the real Temporal test
server, real PostgreSQL and the real missions and maintenance workers: mission
routes, document uploads (413/422), research start/status/cancel, idempotency
keys, generic workflow lookup, health, metrics, audit rows, dev-mode refusals."""
from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from datetime import datetime, timezone

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from starters.auth import AuthConfigError
from stratmaster.settings import Settings
from stratmaster import queues
from stratmaster.contracts.ingestion import DocumentRef, default_batch_id, workflow_id_for
from tests.api_support import (
    api_client, audit_rows, cartridge, dev, ensure_mission, make_app, run_workers, served, terminate_quietly,
    wait_closed,
)
from workflows.audit import RecordAuditWorkflow

MISSION = "api_alpha"


@pytest.fixture(scope="module")
async def workers(temporal_env, settings):
    async with run_workers(temporal_env.client, settings, [queues.MAINTENANCE, queues.MISSIONS]):
        yield


@pytest.fixture
async def started(client):
    """Workflow ids a test started on queues without a worker here; terminated after."""
    ids: list[str] = []
    yield ids
    await terminate_quietly(client, ids)


@pytest.fixture
async def api(client, settings, workers):
    async with api_client(make_app(dev(settings), client)) as c:
        await ensure_mission(c, client, MISSION)
        yield c


async def test_healthz_docs_and_health_workflows(api):
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    assert (await api.get("/docs")).status_code == 200
    spec = (await api.get("/openapi.json")).json()
    assert {"/missions", "/missions/{mission}/research", "/research/{workflow_id}", "/workflows/{workflow_id}"} <= set(spec["paths"])
    r = await api.get("/health/database")
    assert r.status_code == 200, r.text
    db = r.json()["services"][0]
    assert db["name"] == "database" and db["ok"] and "PostgreSQL" in db["detail"]
    r = await api.get("/health/services")
    assert r.status_code in (200, 503) and {"database", "objects", "vectors"} <= {s["name"] for s in r.json()["services"]}


async def test_missions_list_show_unknown_and_bad_id(api):
    listed = (await api.get("/missions")).json()["missions"]
    assert MISSION in [m["mission"] for m in listed]
    r = await api.get(f"/missions/{MISSION}")
    assert r.status_code == 200
    body = r.json()
    assert body["summary"]["status"] == "active" and body["summary"]["active_version"] == "1.0.0"
    assert body["permissions"] == ["admin", "read", "write"]

    r = await api.get("/missions/nosuchmission")
    assert r.status_code == 404
    assert r.json()["error"] == "unknown_mission" and "nosuchmission" in r.json()["detail"]
    r = await api.post("/missions/nosuchmission/research", json={"query": "anything"})
    assert r.status_code == 404 and r.json()["error"] == "unknown_mission"
    r = await api.get("/missions/Bad-Id!")
    assert r.status_code == 422


async def test_activate_mission_validates_and_is_idempotent(api, client, settings):
    r = await api.post("/missions", json={"format": 1, "metadata": {"id": "x", "version": "one"}})
    assert r.status_code == 422
    locs = {tuple(e["loc"]) for e in r.json()["detail"]}
    assert ("body", "metadata", "version") in locs and ("body", "metadata", "owners") in locs
    assert (await api.post("/missions", content=b"{not json", headers={"content-type": "application/json"})).status_code == 422

    mission = f"api_act_{uuid.uuid4().hex[:6]}"
    first = await api.post("/missions", json=cartridge(mission), headers={"Idempotency-Key": "act-1"})
    again = await api.post("/missions", json=cartridge(mission), headers={"Idempotency-Key": "act-1"})
    assert first.status_code == again.status_code == 202
    wid = first.json()["workflow_id"]
    assert again.json()["workflow_id"] == wid and first.json()["created"] and not again.json()["created"]
    assert wid.startswith(f"mission-activate-{mission}-1.0.0")
    assert await wait_closed(client, wid) == WorkflowExecutionStatus.COMPLETED
    assert (await api.get(f"/missions/{mission}")).json()["summary"]["status"] == "active"
    rows = await audit_rows(settings, wid, expect=2)
    assert [(r["actor"], r["action"], r["mission"], r["status"]) for r in rows] == [
        ("dev", "mission.activate", mission, 202)] * 2

    info = (await api.get(f"/workflows/{wid}")).json()
    assert info["type"] == "ActivateMissionWorkflow" and info["mission"] == mission and info["status"] == "completed"

    # YAML cartridges too (Content-Type: application/yaml)
    yaml_headers = {"content-type": "application/yaml"}
    r = await api.post("/missions", content=b"format: 1\nmetadata: [unclosed\n", headers=yaml_headers)
    assert r.status_code == 422 and "invalid YAML" in r.json()["detail"][0]["msg"]
    ymission = f"api_yaml_{uuid.uuid4().hex[:6]}"
    text = f"format: 1\nmetadata:\n  id: {ymission}\n  name: Y\n  version: 2.0.0\n  owners: [ops]\n"
    r = await api.post("/missions", content=text.encode(), headers=yaml_headers)
    assert r.status_code == 202, r.text
    assert r.json()["version"] == "2.0.0" and await wait_closed(client, r.json()["workflow_id"]) == WorkflowExecutionStatus.COMPLETED


async def test_research_start_idempotency_status_cancel_and_audit(api, client, settings, started):
    r = await api.post(f"/missions/{MISSION}/research", json={"query": "What retains capacity?", "top_k": 3})
    assert r.status_code == 202, r.text
    wid = r.json()["workflow_id"]
    started.append(wid)
    assert wid.startswith(f"research-{MISSION}-") and r.json()["status_url"] == f"/research/{wid}"

    # Idempotency-Key: same key -> same workflow, even when sent concurrently; another key -> another
    import asyncio

    key = {"Idempotency-Key": f"key-{uuid.uuid4()}"}
    a, b = await asyncio.gather(*(api.post(f"/missions/{MISSION}/research", json={"query": "q one"}, headers=key)
                                  for _ in range(2)))
    c = await api.post(f"/missions/{MISSION}/research", json={"query": "q one"}, headers=key)
    assert a.status_code == b.status_code == c.status_code == 202
    keyed = a.json()["workflow_id"]
    started.append(keyed)
    assert b.json()["workflow_id"] == c.json()["workflow_id"] == keyed
    assert sorted([a.json()["created"], b.json()["created"], c.json()["created"]]) == [False, False, True]
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{keyed}'")]
    assert len(runs) == 1
    other = await api.post(f"/missions/{MISSION}/research", json={"query": "q one"},
                           headers={"Idempotency-Key": f"key-{uuid.uuid4()}"})
    started.append(other.json()["workflow_id"])
    assert other.json()["workflow_id"] != keyed

    # the workflow carries the typed input and the Mission search attribute
    desc = await client.get_workflow_handle(wid).describe()
    assert desc.workflow_type == "ResearchWorkflow" and desc.task_queue == queues.RESEARCH
    info = (await api.get(f"/workflows/{wid}")).json()
    assert info["mission"] == MISSION and info["status"] == "running" and info["type"] == "ResearchWorkflow"

    # bad input -> 422 with the field named
    for body in ({"query": "   "}, {"query": "x", "fusion": "nope"}, {"top_k": 3}, [1, 2]):
        r = await api.post(f"/missions/{MISSION}/research", json=body)
        assert r.status_code == 422, (body, r.text)
    r = await api.post(f"/missions/{MISSION}/research", json={"query": "x", "top_k": 0})
    assert r.json()["detail"][0]["loc"] == ["body", "top_k"]

    # cancel: 202, the cancellation is recorded in the history; a second cancel of a closed one -> 409
    r = await api.delete(f"/research/{wid}")
    assert r.status_code == 202 and r.json()["status"] == "cancel_requested"
    history = await client.get_workflow_handle(wid).fetch_history()
    assert any(e.HasField("workflow_execution_cancel_requested_event_attributes") for e in history.events)
    await client.get_workflow_handle(wid).terminate(reason="test")
    r = await api.delete(f"/research/{wid}")
    assert r.status_code == 409 and "terminated" in r.json()["detail"]
    r = await api.get(f"/research/{wid}")
    assert r.json()["status"] == "terminated"

    assert (await api.get("/research/no-such-workflow")).status_code == 404
    assert (await api.delete("/research/no-such-workflow")).status_code == 404
    # a non-research workflow is not a research
    r = await api.get(f"/research/mission-activate-{MISSION}-1.0.0")
    assert r.status_code == 404 and "ActivateMissionWorkflow" in r.json()["detail"]

    rows = await audit_rows(settings, wid, expect=3)
    assert [(r["action"], r["status"]) for r in rows] == [("research.start", 202), ("research.cancel", 202),
                                                         ("research.cancel", 409)]
    assert all(r["actor"] == "dev" and r["mission"] == MISSION for r in rows)


async def test_document_uploads_start_ingestion_and_limits(client, settings, workers, started):
    small = dev(settings).model_copy(update={"max_document_bytes": 1000})
    async with api_client(make_app(small, client)) as api:
        await ensure_mission(api, client, MISSION)
        files = [("files", ("a.txt", b"alpha " * 50, "text/plain")), ("files", ("b.md", b"# beta\n" * 20, "text/markdown"))]
        r = await api.post(f"/missions/{MISSION}/documents", files=files)
        assert r.status_code == 202, r.text
        wid = r.json()["workflow_id"]
        started.append(wid)
        assert r.json()["documents"] == 2 and wid == workflow_id_for(MISSION, r.json()["batch_id"])
        # the same upload again attaches to the same (running) batch: no duplicate work
        r2 = await api.post(f"/missions/{MISSION}/documents", files=files)
        assert r2.json()["workflow_id"] == wid and not r2.json()["created"]
        # the ingestion workflow got the files inline, typed as IngestInput
        history = await client.get_workflow_handle(wid).fetch_history()
        started_attrs = history.events[0].workflow_execution_started_event_attributes
        assert started_attrs.workflow_type.name == "IngestDocumentsWorkflow"
        import json

        arg = json.loads(started_attrs.input.payloads[0].data)
        assert arg["mission"] == MISSION and [d["name"] for d in arg["documents"]] == ["a.txt", "b.md"]
        assert base64.b64decode(arg["documents"][0]["content_b64"]) == b"alpha " * 50

        # JSON body, with an Idempotency-Key
        doc = {"name": "c.txt", "content_b64": base64.b64encode(b"gamma").decode()}
        k = {"Idempotency-Key": "docs-1"}
        j1 = await api.post(f"/missions/{MISSION}/documents", json={"documents": [doc]}, headers=k)
        j2 = await api.post(f"/missions/{MISSION}/documents", json={"documents": [doc]}, headers=k)
        assert j1.status_code == 202 and j1.json()["workflow_id"] == j2.json()["workflow_id"]
        started.append(j1.json()["workflow_id"])

        # oversized: refused with 413 before any workflow starts
        big = b"x" * 1001
        r = await api.post(f"/missions/{MISSION}/documents", files=[("files", ("big.txt", big, "text/plain"))])
        assert r.status_code == 413 and "1000" in r.json()["detail"]
        r = await api.post(f"/missions/{MISSION}/documents", files=[("files", ("big.txt", b"y" * 5000, "text/plain"))])
        assert r.status_code == 413
        big_doc = {"name": "big.txt", "content_b64": base64.b64encode(big).decode()}
        r = await api.post(f"/missions/{MISSION}/documents", json={"documents": [big_doc]})
        assert r.status_code == 413
        never = workflow_id_for(MISSION, default_batch_id([DocumentRef(**big_doc)]))
        with pytest.raises(RPCError) as err:
            await client.get_workflow_handle(never).describe()
        assert err.value.status == RPCStatusCode.NOT_FOUND

        # bad input -> 422
        for body in ({"documents": []}, {"documents": [{"name": "x"}]}, {"documents": [{"name": "x", "content_b64": "***"}]},
                     {"nothing": 1}, {"documents": [doc], "batch_id": "src-docs-g1-p1"}):
            r = await api.post(f"/missions/{MISSION}/documents", json=body)
            assert r.status_code == 422, (body, r.text)
        r = await api.post(f"/missions/{MISSION}/documents", files=files, data={"batch_id": "src-x"})
        assert r.status_code == 422 and "reserved for source syncs" in r.text

        rows = await audit_rows(settings, wid, expect=2)
        assert [(r["action"], r["actor"], r["status"]) for r in rows] == [("documents.ingest", "dev", 202)] * 2
        assert rows[0]["detail"]["documents"] == ["inline:a.txt", "inline:b.md"]


async def test_metrics_use_route_templates(api):
    await api.get("/missions/nosuchmission")
    await api.get("/healthz")
    body = (await api.get("/metrics")).text
    assert 'http_requests_total{method="GET",path="/missions/{mission}",status="404"}' in body
    assert 'http_requests_total{method="GET",path="/healthz",status="200"}' in body
    buckets = [line for line in body.splitlines() if line.startswith("http_request_duration_seconds_bucket{")]
    assert any('path="/healthz"' in line and 'le="0.005"' in line and 'method="GET"' in line for line in buckets)
    assert "nosuchmission" not in body
    # any token is a valid HTTP method on the wire: unknown ones share one label, never one each
    for method in ("FROB", "XYZZY1", "PURGE"):
        await api.request(method, "/healthz")
    body = (await api.get("/metrics")).text
    assert 'method="OTHER"' in body and not any(m in body for m in ("FROB", "XYZZY1", "PURGE"))


async def test_fair_use_limits_answer_429_with_retry_after(client, settings, workers, started):
    """Starts of work draw from the caller's bucket, event streams from its stream slots: past either, 429
    with Retry-After and nothing started; a closed stream gives its slot back."""
    import httpx

    tight = dev(settings).model_copy(update={"api_starts_burst": 3, "api_starts_per_minute": 6,
                                             "api_streams_per_principal": 1})
    app = make_app(tight, client)
    since = datetime.now(timezone.utc)
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30, read=60)) as http:
        await ensure_mission(http, client, MISSION)
        codes = []
        for i in range(4):
            r = await http.post(f"/missions/{MISSION}/research", json={"query": f"fair use {i} {uuid.uuid4().hex}"})
            codes.append(r.status_code)
            if r.status_code == 202:
                started.append(r.json()["workflow_id"])
        assert codes == [202, 202, 202, 429], codes
        assert int(r.headers["Retry-After"]) >= 1 and r.json()["error"] == "rate_limited"
        # a flood of refusals is not a flood of audit workflows: the first is recorded, the rest
        # counted into the next one recorded (after the window)
        for _ in range(5):
            assert (await http.post(f"/missions/{MISSION}/research", json={"query": "flood"})).status_code == 429
        from starters.api import audit as audit_module

        audit_module.REFUSALS_WINDOW_S = 0.0
        try:
            assert (await http.post(f"/missions/{MISSION}/research", json={"query": "flood"})).status_code == 429
        finally:
            audit_module.REFUSALS_WINDOW_S = 60.0
        deadline = time.monotonic() + 30
        while True:  # (the audit workflows write their rows a moment later)
            rows = [row for row in await audit_rows(settings, actor="dev", since=since, expect=0)
                    if row["action"] == "research.start" and row["status"] == 429]
            if len(rows) >= 2 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert [row["detail"].get("refused_unrecorded") for row in rows] == [None, 5], rows
        wid = started[0]
        async with http.stream("GET", f"/research/{wid}/events") as first:
            assert first.status_code == 200
            lines = first.aiter_lines()  # kept: a dropped line iterator closes the response, and the stream
            await lines.__anext__()  # the stream is open (its first event)
            second = await http.get(f"/research/{wid}/events")
            assert second.status_code == 429 and second.headers["Retry-After"] and "event streams" in second.text
        for _ in range(50):  # the server sees the disconnect at its next poll
            if await app.state.limits.open_streams("dev") == 0:
                break
            await asyncio.sleep(0.1)
        assert await app.state.limits.open_streams("dev") == 0


async def test_work_in_flight_is_capped_per_mission(client, settings, workers, started):
    """Past its cap of running research runs (Temporal's count, so every API replica sees it), a
    mission's next start is 429 with Retry-After and nothing starts; another mission is not held
    back; a run that ends frees its place."""
    import httpx

    capped = dev(settings).model_copy(update={"api_mission_running_research": 2})
    other = f"api_inflight_{uuid.uuid4().hex[:6]}"
    app = make_app(capped, client)
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        await ensure_mission(http, client, MISSION)
        await ensure_mission(http, client, other)
        base = len(started)

        async def start(mission: str) -> httpx.Response:
            r = await http.post(f"/missions/{mission}/research", json={"query": f"in flight {uuid.uuid4().hex}"})
            if r.status_code == 202:
                started.append(r.json()["workflow_id"])
            return r

        codes = [(await start(MISSION)).status_code for _ in range(3)]
        assert codes == [202, 202, 429], codes  # (no research worker here: both stay running)
        r = await start(MISSION)
        assert r.status_code == 429 and r.headers["Retry-After"] == "2" and "2 research runs running" in r.text
        assert len(started) == base + 2
        assert (await start(other)).status_code == 202  # another mission is not held back
        await client.get_workflow_handle(started[base]).terminate(reason="in-flight test")
        deadline = time.monotonic() + 20
        while (r := await start(MISSION)).status_code == 429:  # once visibility has the run closed
            assert time.monotonic() < deadline, r.text
            await asyncio.sleep(0.3)
        assert r.status_code == 202


def test_token_buckets_refill_per_caller_and_per_mission():
    from starters.api.errors import ApiError
    from starters.api.limits import Limits

    now = [0.0]
    limits = Limits(per_principal_per_minute=60, per_mission_per_minute=120, burst=2, streams_per_principal=1,
                    streams_per_mission=2, clock=lambda: now[0])
    limits.charge("a", "m1")
    limits.charge("a", "m1")
    with pytest.raises(ApiError) as err:
        limits.charge("a", "m1")  # the caller's burst is used up ...
    assert err.value.status_code == 429 and err.value.headers == {"Retry-After": "1"}
    limits.charge("b", "m2")  # ... not another caller's or another mission's
    for who in ("c", "d"):
        limits.charge(who, "m1")  # the mission's burst (2 x 2) runs out across callers
    with pytest.raises(ApiError) as err:
        limits.charge("e", "m1")
    assert "mission 'm1'" in err.value.detail
    now[0] += 1.0  # a second refills one token of a 60-a-minute bucket
    limits.charge("a", "m2")
    with limits.stream("a", "m1"):
        with pytest.raises(ApiError):
            with limits.stream("a", "m2"):
                pass
        with limits.stream("b", "m1"):
            with pytest.raises(ApiError) as err:
                with limits.stream("c", "m1"):
                    pass
            assert "mission 'm1'" in err.value.detail
    assert asyncio.run(limits.open_streams("a")) == 0


REDIS_URL = os.environ.get("STRATMASTER_TEST_REDIS_URL")


@pytest.mark.skipif(not REDIS_URL, reason="no Redis server (scripts/services/redis.sh starts one)")
async def test_replicas_share_their_limits_through_redis():
    """Two API replicas on one real Redis: a caller's burst spent on one is spent on the other, a
    mission's stream cap counts streams on both, and a slot is free again when its stream ends."""
    from starters.api.errors import ApiError
    from starters.api.limits import RedisLimits

    args = dict(per_principal_per_minute=6, per_mission_per_minute=600, burst=2, streams_per_principal=5,
                streams_per_mission=1)
    one, two = RedisLimits(REDIS_URL, **args), RedisLimits(REDIS_URL, **args)
    from starters.api.limits import Limits

    chosen = Limits.from_settings(Settings(_env_file=None, redis_url=REDIS_URL))
    assert isinstance(chosen, RedisLimits)  # STRATMASTER_REDIS_URL set: the API's limits are shared
    await chosen.close()
    actor, mission = f"a-{uuid.uuid4().hex[:8]}", f"m_{uuid.uuid4().hex[:8]}"
    try:
        await one.admit(actor, mission)
        await two.admit(actor, mission)
        with pytest.raises(ApiError) as err:
            await one.admit(actor, mission)  # the burst of 2 is used up across both replicas
        assert err.value.status_code == 429 and 1 <= int(err.value.headers["Retry-After"]) <= 10
        await two.admit(f"other-{actor}", mission)  # another caller is not affected

        async def events():
            for i in range(3):
                yield f"{i}".encode()

        stream = await one.open_stream(actor, mission, events())
        first = await stream.__anext__()
        with pytest.raises(ApiError) as err:
            await two.open_stream(f"other-{actor}", mission, events())  # the mission's one stream is on replica one
        assert "event streams open" in err.value.detail and first == b"0"
        assert [c async for c in stream] == [b"1", b"2"]
        assert await two.open_streams(actor) == 0
        again = await two.open_stream(f"other-{actor}", mission, events())
        assert [c async for c in again] == [b"0", b"1", b"2"]

        # a client that disconnects: Starlette cancels the response's task group mid-stream
        import anyio

        async def endless():
            yield b"0"
            await anyio.sleep(3600)
            yield b"never"

        held_stream = await one.open_stream(actor, mission, endless())
        async with anyio.create_task_group() as tg:
            async def consume():
                async for _ in held_stream:
                    pass

            tg.start_soon(consume)
            await anyio.sleep(0.3)
            assert await two.open_streams(actor) == 1
            tg.cancel_scope.cancel()
        assert await two.open_streams(actor) == 0  # freed at once, not when the lease ends
    finally:
        await one.close()
        await two.close()


async def test_limits_fail_open_without_redis():
    """Redis unreachable: requests are admitted and streams open (fair use must not take the API down)."""
    from starters.api.limits import RedisLimits

    from tests.support.ports import free_port

    dead = RedisLimits(f"redis://127.0.0.1:{free_port()}/0", per_principal_per_minute=1, per_mission_per_minute=1,
                       burst=1, streams_per_principal=1, streams_per_mission=1)
    try:
        for _ in range(3):
            await dead.admit("a", "m")

        async def events():
            yield b"x"

        assert [c async for c in await dead.open_stream("a", "m", events())] == [b"x"]
    finally:
        await dead.close()


async def test_dev_mode_is_loopback_only(client, settings):
    settings = dev(settings)
    app = make_app(settings, client)
    async with api_client(app, peer=("10.1.2.3", 4000)) as c:
        r = await c.get("/missions")
        assert r.status_code == 403 and "loopback" in r.json()["detail"]
    async with api_client(app, headers={"X-Forwarded-For": "203.0.113.9"}) as c:
        assert (await c.get("/missions")).status_code == 403
    async with api_client(app, base_url="http://192.0.2.10") as c:  # server socket not on loopback
        r = await c.get("/missions")
        assert r.status_code == 503 and "oidc" in r.json()["detail"]
        assert (await c.get("/healthz")).status_code == 200  # liveness needs no auth

    for bad, match in ((settings.model_copy(update={"bind_host": "0.0.0.0"}), "refusing to start"),
                       (settings.model_copy(update={"auth_mode": "none"}), "must be one of"),
                       (settings.model_copy(update={"auth_mode": "oidc", "keycloak_url": None}), "KEYCLOAK_URL"),
                       # the default: OIDC, which needs a Keycloak URL; dev auth is never implied
                       (Settings(_env_file=None), "no authentication configured")):
        with pytest.raises(AuthConfigError, match=match):
            async with api_client(make_app(bad, client)):
                pass


async def test_audit_workflow_is_idempotent_and_replays(client, settings, workers):
    from stratmaster.contracts.audit import AuditEntry, AuditRecorded

    entry = AuditEntry(request_id=f"t-{uuid.uuid4().hex}", actor="tester", action="unit.test", mission=MISSION,
                       target="t-target", status=200, detail={"k": 1})
    first = await client.execute_workflow(RecordAuditWorkflow.run, entry, id=f"audit-{entry.request_id}",
                                          task_queue=queues.MAINTENANCE)
    again = await client.execute_workflow(RecordAuditWorkflow.run, entry, id=f"audit-{entry.request_id}-again",
                                          task_queue=queues.MAINTENANCE)
    assert first == AuditRecorded(request_id=entry.request_id, inserted=True) and not again.inserted
    rows = await audit_rows(settings, "t-target")
    assert len(rows) == 1 and rows[0]["actor"] == "tester" and rows[0]["detail"] == {"k": 1}

    histories = [await client.get_workflow_handle(f"audit-{entry.request_id}").fetch_history()]
    async for wf in client.list_workflows("WorkflowType = 'RecordAuditWorkflow'", limit=5):
        histories.append(await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history())
    replayer = Replayer(workflows=[RecordAuditWorkflow], data_converter=pydantic_data_converter)
    assert len(histories) >= 3
    for history in histories:
        await replayer.replay_workflow(history)


@pytest.mark.servers  # runs uvicorn in a subprocess
def test_uvicorn_serves_on_loopback_and_refuses_dev_mode_elsewhere(tmp_path):
    """The devstack command line: `uvicorn starters.api:app`, as a real process."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    from tests.support.ports import free_port

    def launch(host: str, port: int, **env):
        e = dict(os.environ, STRATMASTER_DATA_DIR=str(tmp_path))
        e.pop("STRATMASTER_AUTH_MODE", None)
        e.pop("STRATMASTER_KEYCLOAK_URL", None)
        e.update(env)
        return subprocess.Popen([sys.executable, "-m", "uvicorn", "starters.api:app", "--host", host, "--port", str(port)],
                                env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    refused = launch("0.0.0.0", free_port(), STRATMASTER_BIND_HOST="0.0.0.0", STRATMASTER_AUTH_MODE="dev")
    out, _ = refused.communicate(timeout=60)
    assert refused.returncode != 0 and "refusing to start" in out
    # nothing configured: no unauthenticated fallback, a clear refusal
    unconfigured = launch("127.0.0.1", free_port())
    out, _ = unconfigured.communicate(timeout=60)
    assert unconfigured.returncode != 0 and "no authentication configured" in out and "STRATMASTER_AUTH_MODE=dev" in out

    port = free_port()
    proc = launch("127.0.0.1", port, STRATMASTER_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}", STRATMASTER_AUTH_MODE="dev")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else "timeout"
                time.sleep(0.3)
        assert r.json() == {"status": "ok"}
        # Temporal down: a clear 503, not a traceback
        r = httpx.get(f"http://127.0.0.1:{port}/missions", timeout=30)
        assert r.status_code == 503 and "Temporal is not reachable" in r.json()["detail"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_in_flight_caps_come_from_the_settings_per_kind():
    """Each kind's cap is its own setting (a fake count: no server); 0 means no cap."""
    from starters.api.errors import ApiError
    from starters.api.inflight import InFlight

    class Counting:
        def __init__(self, running: int):
            self.running, self.queries = running, []

        async def count_workflows(self, query: str):
            self.queries.append(query)
            return type("Count", (), {"count": self.running})()

    caps = InFlight.from_settings(Settings(_env_file=None, api_mission_running_research=3,
                                           api_mission_running_ingestions=1))
    fake = Counting(running=1)
    await caps.admit(fake, "m", "ResearchWorkflow", "research runs")  # 1 running, cap 3
    with pytest.raises(ApiError) as err:
        await caps.admit(fake, "m", "IngestDocumentsWorkflow", "ingestions")  # 1 running, cap 1
    assert err.value.status_code == 429 and "1 ingestions running" in str(err.value.detail)
    assert fake.queries[1] == ("WorkflowType = 'IngestDocumentsWorkflow' AND ExecutionStatus = 'Running' "
                               "AND Mission = 'm'")
    await caps.admit(fake, "m", "ResearchWorkflow", "research runs")  # counted up locally: 2 of 3
    with pytest.raises(ApiError):
        await caps.admit(fake, "m", "ResearchWorkflow", "research runs")  # 3 of 3
    uncapped = InFlight.from_settings(Settings(_env_file=None, api_mission_running_ingestions=0))
    await uncapped.admit(Counting(running=10**6), "m", "IngestDocumentsWorkflow", "ingestions")
