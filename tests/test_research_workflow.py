"""ResearchWorkflow end to end on the real Temporal dev server, PostgreSQL and the
embedded stores, over documents ingested into a mission."""
from __future__ import annotations

import asyncio
import json
import subprocess
import uuid

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import Replayer

from activities.research.activities import ResearchActivities
from activities.stores.factory import build_stores
from activities.research.synthesis import verify_citation
from stratmaster import queues
from stratmaster.contracts.knowledge import SearchHit
from stratmaster.contracts.research import ResearchInput, ResearchResult, RetrieveInput, RetrieveOutput, workflow_id_for
from stratmaster.local_temporal import temporal_binary
from stratmaster.search_attributes import for_mission
from tests.research_support import CORPUS, SlowRetrieve, document_texts, ingest_corpus, research_worker
from workflows.research import ResearchWorkflow
from tests.support.postgres import pg_connect

MISSION = f"rs_{uuid.uuid4().hex[:8]}"
BATTERY_Q = "How much capacity does the XR-7 battery retain after 1000 charge cycles, and does cold weather reduce its range?"


@pytest_asyncio.fixture(scope="module")
async def corpus(temporal_env, settings):
    return await ingest_corpus(temporal_env.client, settings, MISSION)


@pytest_asyncio.fixture(scope="module")
async def completed(temporal_env, settings, corpus):
    """One full research run: (workflow id, result)."""
    client = temporal_env.client
    wid = workflow_id_for(MISSION, BATTERY_Q, uuid.uuid4().hex)
    async with research_worker(client, settings):
        result = await client.execute_workflow(
            ResearchWorkflow.run, ResearchInput(mission=MISSION, query=BATTERY_Q), id=wid,
            task_queue=queues.RESEARCH, search_attributes=for_mission(MISSION))
    return wid, result


async def test_research_cites_exact_spans_and_persists(temporal_env, settings, completed):
    wid, result = completed
    assert isinstance(result, ResearchResult) and result.status == "completed"
    assert wid.startswith(f"research-{MISSION}-") and result.synthesiser == "extractive"
    assert result.subquestions[0] == BATTERY_Q and len(result.subquestions) > 1
    assert result.claims and result.hits
    hit_ids = {h.chunk_id for h in result.hits}
    for h in result.hits:  # every hit keeps ids, span and per-retriever scores
        assert h.document_id and h.end > h.start and ({"bm25", "dense"} & set(h.scores))

    texts = await document_texts(settings, MISSION)
    assert len(texts) == len(CORPUS)  # every document's extracted text, from the object store
    async with pg_connect(settings) as conn:
        chunks = {r["id"]: r for r in await conn.fetch(
            "SELECT id::text AS id, text, char_start FROM chunks WHERE id = ANY($1::uuid[])",
            [uuid.UUID(h.chunk_id) for h in result.hits])}
        for claim in result.claims:
            assert 0.0 <= claim.confidence <= 1.0 and claim.supporting
            for cit in claim.supporting + claim.contradicting:
                assert cit.chunk_id in hit_ids  # never an invented source
                assert texts[cit.document_id][cit.start:cit.end] == cit.quote  # original extracted text
                row = chunks[cit.chunk_id]
                assert verify_citation(cit, row["text"], row["char_start"])

        session = await conn.fetchrow("SELECT * FROM research_sessions WHERE workflow_id = $1", wid)
        assert session["status"] == "completed" and str(session["id"]) == result.session_id
        assert json.loads(session["plan"])["subquestions"] == result.subquestions
        rows = await conn.fetch("SELECT * FROM claims WHERE session_id = $1 ORDER BY ordinal", session["id"])
        assert [r["text"] for r in rows] == [c.text for c in result.claims]
        assert [float(r["confidence"]) for r in rows] == [round(c.confidence, 2) for c in result.claims]
        n_evidence = await conn.fetchval(
            "SELECT count(*) FROM claim_evidence e JOIN claims c ON c.id = e.claim_id WHERE c.session_id = $1",
            session["id"])
        assert n_evidence == sum(len(c.supporting) + len(c.contradicting) for c in result.claims)

    stores = build_stores(settings)
    try:
        md = (await stores.objects.get(MISSION, result.report_md_key)).decode()
        js = json.loads(await stores.objects.get(MISSION, result.report_json_key))
    finally:
        await stores.close()
    assert result.report_md_key == f"tenants/{MISSION}/artifacts/research/{result.session_id}/report.md"
    assert result.claims[0].text in md and js["claims"][0]["text"] == result.claims[0].text

    # the queries still answer on the closed workflow (a worker replays it)
    handle = temporal_env.client.get_workflow_handle(wid)
    async with research_worker(temporal_env.client, settings):
        assert await handle.query(ResearchWorkflow.status) == "completed"
        progress = await handle.query(ResearchWorkflow.progress)
    assert len(progress.claims) == len(result.claims) and progress.subquestions == result.subquestions


async def test_contradicting_documents_are_reported(completed, corpus):
    _, result = completed
    by_text = {c.text: c for c in result.claims}
    capacity = [c for c in result.claims if "90 percent" in c.text or "60 percent" in c.text]
    assert capacity, by_text.keys()
    top = capacity[0]
    quotes = " ".join(x.quote for x in top.contradicting)
    assert top.flagged and top.contradicting, top
    assert ("60 percent" in quotes) if "90 percent" in top.text else ("90 percent" in quotes)
    assert {x.document_id for x in top.contradicting}.isdisjoint({x.document_id for x in top.supporting})
    # the claim backed by two independent labs outranks and out-scores the single contrary study
    if "90 percent" in top.text:
        assert len({x.document_id for x in top.supporting}) == 2
    cold = [c for c in result.claims if "Cold weather" in c.text]
    assert cold and any(c.contradicting for c in cold)
    uncontested = [c for c in result.claims if not c.contradicting]
    if uncontested:
        assert max(c.confidence_factors["agreement"] for c in uncontested) == 1.0
    assert all(c.confidence_factors["agreement"] < 1.0 for c in result.claims if c.contradicting)


async def test_replay_is_deterministic(temporal_env, completed):
    wid, _ = completed
    history = await temporal_env.client.get_workflow_handle(wid).fetch_history()
    await Replayer(workflows=[ResearchWorkflow], data_converter=pydantic_data_converter).replay_workflow(history)


async def test_temporal_cli_start_with_plain_json(temporal_env, settings, corpus):
    address = temporal_env.client.service_client.config.target_host
    wid = f"research-{MISSION}-cli-{uuid.uuid4().hex[:8]}"
    payload = json.dumps({"mission": MISSION, "query": "How long does charging the XR-7 take?", "fusion": "rrf"})
    async with research_worker(temporal_env.client, settings):
        proc = await asyncio.to_thread(
            subprocess.run,
            [str(temporal_binary()), "workflow", "start", "--address", address, "--namespace", "default",
             "--type", "ResearchWorkflow", "--task-queue", queues.RESEARCH, "--workflow-id", wid, "--input", payload],
            capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        handle = temporal_env.client.get_workflow_handle_for(ResearchWorkflow.run, wid)
        result = await asyncio.wait_for(handle.result(), 120)
    assert result.status == "completed" and result.mission == MISSION
    assert any("45 minutes" in c.text for c in result.claims), [c.text for c in result.claims]
    assert all(h.scores.get("rrf") is not None for h in result.hits)


async def test_unknown_mission_fails_fast_with_clear_error(temporal_env, settings):
    async with research_worker(temporal_env.client, settings):
        with pytest.raises(WorkflowFailureError) as info:
            await asyncio.wait_for(temporal_env.client.execute_workflow(
                ResearchWorkflow.run, ResearchInput(mission="no_such_mission", query="anything"),
                id=f"research-no_such_mission-{uuid.uuid4().hex[:8]}", task_queue=queues.RESEARCH), 60)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "UnknownMission"
    assert "unknown mission 'no_such_mission'" in cause.message


async def test_invalid_json_input_fails_the_run_clearly(temporal_env, settings):
    async with research_worker(temporal_env.client, settings):
        with pytest.raises(WorkflowFailureError) as info:
            await asyncio.wait_for(temporal_env.client.execute_workflow(
                "ResearchWorkflow", {"mission": MISSION, "fusion": "borda"},
                id=f"research-{MISSION}-bad-{uuid.uuid4().hex[:6]}", task_queue=queues.RESEARCH), 60)
    message = str(info.value.cause)
    assert "query" in message and "fusion" in message


async def test_cancel_running_research_persists_cancelled(temporal_env, settings, corpus):
    client = temporal_env.client
    wid = workflow_id_for(MISSION, "cancel me", uuid.uuid4().hex)
    async with research_worker(client, settings, acts_cls=SlowRetrieve):
        handle = await client.start_workflow(ResearchWorkflow.run, ResearchInput(mission=MISSION, query="battery cycles"),
                                             id=wid, task_queue=queues.RESEARCH)
        for _ in range(200):
            if await handle.query(ResearchWorkflow.status) == "retrieving":
                break
            await asyncio.sleep(0.1)
        progress = await handle.query(ResearchWorkflow.progress)
        assert progress.status == "retrieving" and progress.subquestions and progress.session_id
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as info:
            await asyncio.wait_for(handle.result(), 60)
        assert await handle.query(ResearchWorkflow.status) == "cancelled"
    assert isinstance(info.value.cause, CancelledError)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    async with pg_connect(settings) as conn:
        row = await conn.fetchrow("SELECT status, completed_at FROM research_sessions WHERE workflow_id = $1", wid)
    assert row["status"] == "cancelled" and row["completed_at"] is not None
    history = await handle.fetch_history()
    await Replayer(workflows=[ResearchWorkflow], data_converter=pydantic_data_converter).replay_workflow(history)


class ManyHits(ResearchActivities):
    """Retrieval that returns exactly the top_k it is asked for, each hit a distinct chunk."""

    @activity.defn(name="research_retrieve")
    async def retrieve(self, req: RetrieveInput) -> RetrieveOutput:
        return RetrieveOutput(query=req.query, hits=[
            SearchHit(chunk_id=f"c{i:03d}", document_id="d", text=f"hit {i}", start=i, end=i + 1,
                      score=1.0 - i / 1000, source="hybrid") for i in range(req.top_k)], engines=["stub"])


async def test_retrieve_only_mode_returns_the_top_k_it_was_asked_for(temporal_env, settings):
    # the merged evidence budget (40) bounds what synthesis reads, not what a retrieve-only caller asked for
    async with research_worker(temporal_env.client, settings, acts_cls=ManyHits):
        for top_k, want in ((100, 100), (60, 60), (5, 5)):
            result = await temporal_env.client.execute_workflow(
                ResearchWorkflow.run, ResearchInput(mission=MISSION, query="anything", mode="retrieve",
                                                    subquestions=["anything"], top_k=top_k),
                id=f"research-{MISSION}-topk-{uuid.uuid4().hex[:6]}", task_queue=queues.RESEARCH)
            assert len(result.hits) == want and [h.chunk_id for h in result.hits][:2] == ["c000", "c001"]


async def test_retrieve_only_mode_with_given_subquestions(temporal_env, settings, corpus):
    wid = f"research-{MISSION}-retrieve-{uuid.uuid4().hex[:6]}"
    async with research_worker(temporal_env.client, settings):
        result = await temporal_env.client.execute_workflow(
            ResearchWorkflow.run, ResearchInput(mission=MISSION, query="offshore wind turbines", mode="retrieve",
                                                subquestions=["offshore wind turbines", "rotor diameter"], top_k=2),
            id=wid, task_queue=queues.RESEARCH)
    assert result.planner == "given" and result.subquestions == ["offshore wind turbines", "rotor diameter"]
    assert result.hits and "Offshore wind" in result.hits[0].text and not result.claims and result.session_id is None
    assert len(result.hits) <= 4 and set(result.timings_ms) >= {"plan", "retrieve", "total"}
    async with pg_connect(settings) as conn:
        assert await conn.fetchval("SELECT count(*) FROM research_sessions WHERE workflow_id = $1", wid) == 0
