"""Progress as Server-Sent Events, read by a real HTTP client from the app served by
uvicorn, with the real missions, maintenance, ingestion and research workers: an
ingestion streams its document counts and the documents in flight, a research its
steps, sub-questions, hits and findings, both end with their result; `?wait=` on
POST research answers a cached question with the result at once. The streams check
access like the other workflow routes (404 for a workflow the caller may not see),
send heartbeat comments while nothing changes and stop polling when the client
disconnects."""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from temporalio import workflow
from temporalio.client import WorkflowExecutionStatus
from temporalio.worker import Worker

from stratmaster import queues
from stratmaster.search_attributes import for_mission
from tests.api_support import (
    StubVerifier, api_client, cartridge, dev, make_app, run_workers, served, stub_oidc, terminate_quietly, token,
    wait_closed,
)
from tests.ingestion_support import ingestion_worker, write_small_docs
from tests.research_support import CORPUS, research_worker
from tests.support.waiting import until

pytestmark = pytest.mark.timeout(900)
QUESTION = "How much capacity does the XR-7 battery retain after 1000 charge cycles?"


@pytest.fixture(scope="module")
async def workers(temporal_env, settings):
    async with run_workers(temporal_env.client, settings, [queues.MAINTENANCE, queues.MISSIONS]):
        yield


async def read_events(http: httpx.AsyncClient, path: str, *, headers: dict | None = None, raw: list | None = None,
                      stop=None) -> list[dict]:
    """The events of one stream, until it ends (or `stop(event)` says so)."""
    events, current = [], {}
    async with http.stream("GET", path, headers=headers) as r:
        assert r.status_code == 200, (await r.aread()).decode()
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        async for line in r.aiter_lines():
            if raw is not None:
                raw.append(line)
            if line.startswith(":"):
                if stop and stop({"comment": line}):
                    break
                continue
            if line == "":
                if current:
                    events.append(current)
                    if stop and stop(current):
                        break
                current = {}
                continue
            field, _, value = line.partition(": ")
            current[field] = json.loads(value) if field == "data" else value
    return events


def check_framing(events: list[dict]) -> None:
    names = [e["event"] for e in events]
    assert names[0] == "status" and names[-2:] == ["status", "result"], names
    assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))


async def test_ingestion_and_research_stream_their_progress(client, settings, workers, tmp_path):
    mission = f"api_sse_{uuid.uuid4().hex[:6]}"
    app = make_app(dev(settings), client)
    app.state.events_poll_seconds = 0.1  # (default 0.5 s) so that a fast batch is still seen in flight
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(60, read=300)) as http:
        r = await http.post("/missions", json=cartridge(mission))
        assert r.status_code == 202, r.text
        assert await wait_closed(client, r.json()["workflow_id"]) == WorkflowExecutionStatus.COMPLETED

        # ingestion: the stream opens before any ingestion worker polls, so it sees the batch go through
        files = [("files", (name, text.encode(), "text/markdown")) for name, text in CORPUS.items()]
        files += [("files", (p.name, p.read_bytes(), "text/plain")) for p in write_small_docs(tmp_path, 20)]
        files.append(("files", ("junk.bin", bytes(range(256)) * 8 + b"\x00\x00", "application/octet-stream")))
        r = await http.post(f"/missions/{mission}/documents", files=files)
        assert r.status_code == 202, r.text
        ingest = r.json()["workflow_id"]
        opened: list[str] = []
        reading = asyncio.create_task(read_events(http, f"/ingestions/{ingest}/events", raw=opened))
        await until(lambda: opened, "the ingestion's event stream opened")
        async with ingestion_worker(client, settings):
            events = await asyncio.wait_for(reading, 300)
        check_framing(events)
        assert events[0]["data"] == {"workflow_id": ingest, "mission": mission, "status": "running"}
        progress = [e["data"] for e in events if e["event"] == "progress"]
        assert progress and all(p["total"] == len(files) and p["batch_id"] == r.json()["batch_id"] for p in progress)
        assert any(p["done"] < p["total"] for p in progress), progress
        assert [p["done"] for p in progress] == sorted(p["done"] for p in progress)
        assert any(p["current"] for p in progress), progress  # the documents in flight
        assert events[-2]["data"] == {"status": "completed"}
        result = events[-1]["data"]
        assert result["status"] == "completed" and result["workflow_id"] == ingest
        totals = result["result"]["totals"]
        assert (totals["ingested"], totals["failed"], totals["done"]) == (len(files) - 1, 1, len(files)), totals
        assert "junk.bin" in result["result"]["failures"][0]["source"]

        # research: the same, before the research worker starts
        r = await http.post(f"/missions/{mission}/research", json={"query": QUESTION})
        assert r.status_code == 202, r.text
        research = r.json()["workflow_id"]
        opened = []
        reading = asyncio.create_task(read_events(http, f"/research/{research}/events", raw=opened))
        await until(lambda: opened, "the research's event stream opened")
        async with research_worker(client, settings):
            events = await asyncio.wait_for(reading, 300)
            check_framing(events)
            names = [e["event"] for e in events]
            for name in ("subquestions", "hits"):
                assert name in names, names
            assert names.index("subquestions") < names.index("hits") < names.index("result")
            steps = [e["data"]["step"] for e in events if e["event"] == "status" and "step" in e["data"]]
            assert steps and set(steps) <= {"pending", "planning", "retrieving", "synthesising", "persisting",
                                            "completed"}, steps  # which ones a 0.5 s poll sees depends on speed
            plan = next(e["data"] for e in events if e["event"] == "subquestions")
            assert plan["subquestions"][0] == QUESTION
            hits = [e["data"] for e in events if e["event"] == "hits"][-1]
            assert hits["hits"] > 0 and hits["top"] and set(hits["retrieved"]) <= set(plan["subquestions"])
            final = events[-1]["data"]
            assert final["status"] == "completed" and final["workflow_id"] == research and final["mission"] == mission
            claims = final["result"]["claims"]
            assert claims and not final["result"]["cached"]
            findings = [e["data"]["claims"] for e in events if e["event"] == "findings"]
            if findings:  # claims so far (the persist step may finish within one poll)
                assert {c["text"] for c in findings[-1]} >= {c["text"] for c in claims}
            # a stream of a research already closed: the result at once
            again = await read_events(http, f"/research/{research}/events")
            assert [e["event"] for e in again] == ["status", "status", "result"]
            assert again[-1]["data"]["result"]["claims"] == claims

            # ?wait: the same question is a cache hit, answered with its result in this request
            t0 = time.perf_counter()
            r = await http.post(f"/missions/{mission}/research", params={"wait": 20}, json={"query": QUESTION})
            elapsed_ms = (time.perf_counter() - t0) * 1000
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["status"] == "completed" and body["result"]["cached"], body
            assert body["result"]["cached_from"] == research and body["workflow_id"] != research
            assert [c["text"] for c in body["result"]["claims"]] == [c["text"] for c in claims]
            print(f"POST /missions/{{m}}/research?wait=20, cached answer: {elapsed_ms:.0f} ms")
            assert elapsed_ms < 15000

        # ?wait when the research cannot finish in time (no research worker now): 202 after the wait
        t0 = time.perf_counter()
        r = await http.post(f"/missions/{mission}/research", params={"wait": 1.5}, json={"query": "solar panels?"})
        assert r.status_code == 202 and time.perf_counter() - t0 >= 1.4, r.text
        await terminate_quietly(client, [r.json()["workflow_id"]])
        for bad in (-1, 31, "soon"):
            r = await http.post(f"/missions/{mission}/research", params={"wait": bad}, json={"query": "x"})
            assert r.status_code == 422, (bad, r.text)


# ---------------------------------------------------------------- access, heartbeats, disconnects

QUERIES = {"progress": 0}


@workflow.defn(name="ResearchWorkflow", sandboxed=False)
class StuckResearch:
    """A research that stays in `retrieving` until terminated; counts its progress queries."""

    @workflow.run
    async def run(self, req: dict) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.query
    def progress(self) -> dict:
        QUERIES["progress"] += 1
        return {"workflow_id": workflow.info().workflow_id, "mission": "api_sse_hidden", "query": "q",
                "status": "retrieving", "subquestions": ["q"], "retrieved": {}, "hits": [], "claims": []}


async def test_streams_check_access_send_heartbeats_and_stop_on_disconnect(client, settings, workers):
    mission, queue = "api_sse_hidden", f"test-sse-{uuid.uuid4().hex[:6]}"
    wid = f"research-{mission}-{uuid.uuid4().hex[:8]}"
    reader = token("sse-reader", f"mission:{mission}:reader")
    outsider, nobody = token("sse-outsider", "mission:other_m:writer"), token("sse-nobody", "offline_access")
    app = make_app(stub_oidc(settings), client, verifier=StubVerifier())
    app.state.events_heartbeat_seconds = 0.3
    async with Worker(client, task_queue=queue, workflows=[StuckResearch]):
        await client.start_workflow("ResearchWorkflow", {"mission": mission, "query": "q"}, id=wid, task_queue=queue,
                                    search_attributes=for_mission(mission), execution_timeout=timedelta(minutes=10))
        try:
            async with api_client(make_app(stub_oidc(settings), client, verifier=StubVerifier())) as asgi:
                for path in (f"/research/{wid}/events", f"/ingestions/{wid}/events"):
                    assert (await asgi.get(path)).status_code == 401
                for who in (outsider, nobody):
                    hidden = await asgi.get(f"/research/{wid}/events", headers=who)
                    missing = await asgi.get(f"/research/{wid}zz/events", headers=who)
                    assert hidden.status_code == missing.status_code == 404
                    assert hidden.text.replace(wid, "ID") == missing.text.replace(f"{wid}zz", "ID")
                r = await asgi.get(f"/ingestions/{wid}/events", headers=reader)  # not an ingestion
                assert r.status_code == 404 and "ResearchWorkflow" in r.json()["detail"]
                assert (await asgi.get("/research/a%00b/events", headers=reader)).status_code == 422

            async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
                raw: list[str] = []
                events = await read_events(http, f"/research/{wid}/events", headers=reader, raw=raw,
                                           stop=lambda e: "comment" in e)
                assert [e["event"] for e in events] == ["status", "status", "subquestions"], events
                assert events[1]["data"]["step"] == "retrieving"
                assert raw[-1] == ": keep-alive"
                # the client went away: the server stops polling the workflow
                await asyncio.sleep(1.0)
                after = QUERIES["progress"]
                await asyncio.sleep(2.0)
                assert QUERIES["progress"] - after <= 1, QUERIES

                # closed while nobody watched: the stream says so at once
                await client.get_workflow_handle(wid).terminate(reason="test")
                events = await read_events(http, f"/research/{wid}/events", headers=reader)
                # (a progress snapshot may still come first if the termination is not visible yet)
                names = [e["event"] for e in events]
                assert names[-1] == "result" and names[-2] == "status" and "findings" not in names, names
                assert events[-1]["data"]["status"] == "terminated" and events[-1]["data"]["error"]
        finally:
            with contextlib.suppress(Exception):
                await client.get_workflow_handle(wid).terminate(reason="test cleanup")
