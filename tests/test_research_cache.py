"""The research answer cache, with the real research worker, real PostgreSQL and
(for the production backend) a real Redis server: a repeated or near-identical
question is answered from the mission's cache; after an ingestion or a new
cartridge version the cache is never used (no stale answer); missions never
share entries; the cartridge's TTL and similarity govern it."""
from __future__ import annotations

import asyncio
import base64
import itertools
import os
import uuid

import pytest
import pytest_asyncio

from activities.research import cache as research_cache
from activities.resources import Resources
from stratmaster import queues
from stratmaster.contracts.ingestion import DocumentRef
from stratmaster.contracts.research import ResearchInput, ResearchResult
from stratmaster.search_attributes import for_mission
from tests.support.postgres import pg_connect
from tests.research_support import activate_mission, ingest_corpus, ingest_documents, research_worker
from workflows.research import ResearchWorkflow

pytestmark = pytest.mark.timeout(600)
QUESTION = "How much capacity does the XR-7 battery keep after 1000 cycles?"
REDIS_URL = os.environ.get("STRATMASTER_TEST_REDIS_URL")


@pytest_asyncio.fixture(scope="module", params=["postgres", "redis"])
async def backend(request, temporal_env, settings):
    """(settings, mission) per backend: the embedded default and the production one."""
    if request.param == "redis":
        if not REDIS_URL:
            pytest.skip("no Redis server (scripts/services/redis.sh starts one)")
        settings = settings.model_copy(update={"redis_url": REDIS_URL})
    mission = f"cache_{request.param}_{uuid.uuid4().hex[:6]}"
    await activate_mission(temporal_env.client, settings, mission, "1.0.0")
    await ingest_corpus(temporal_env.client, settings, mission)
    async with research_worker(temporal_env.client, settings) as spec:
        yield settings, mission, spec.extra["research"]


_ids = itertools.count()


async def ask(client, mission: str, query: str = QUESTION, **kw) -> ResearchResult:
    return await client.execute_workflow(
        ResearchWorkflow.run, ResearchInput(mission=mission, query=query, **kw),
        id=f"research-{mission}-{next(_ids)}-{uuid.uuid4().hex[:6]}", task_queue=queues.RESEARCH,
        search_attributes=for_mission(mission))


async def test_repeat_and_near_identical_questions_hit(client, backend):
    _, mission, _ = backend
    first = await ask(client, mission)
    again = await ask(client, mission)
    assert not first.cached and again.cached and again.cached_from == first.workflow_id
    assert [c.text for c in again.claims] == [c.text for c in first.claims] and again.answer == first.answer
    # case, punctuation and spacing, then a paraphrase
    assert (await ask(client, mission, "how much CAPACITY does the xr-7 battery keep after 1000 cycles")).cached
    para = await ask(client, mission, "How much capacity does the XR-7 battery retain after 1000 cycles?")
    assert para.cached and any("cache" in n for n in para.notes)
    # a different number is a different question, however close the embedding
    assert not (await ask(client, mission, "How much capacity does the XR-7 battery keep after 2000 cycles?")).cached
    # the request's parameters are part of the key; refresh runs anyway; off neither reads nor writes
    assert not (await ask(client, mission, top_k=3)).cached
    assert not (await ask(client, mission, cache="refresh")).cached
    assert not (await ask(client, mission, cache="off")).cached


async def test_no_stale_answer_after_an_ingest_or_a_new_cartridge(client, temporal_env, backend):
    settings, mission, _ = backend
    query = "What chemistry does the XR-7 battery use?"
    before = await ask(client, mission, query)
    assert (await ask(client, mission, query)).cached
    # a new document that changes the answer
    text = "# XR-7 update\n\nThe XR-7 battery now uses a sodium-ion chemistry developed by Voltara.\n"
    await ingest_documents(temporal_env.client, settings, mission, [
        DocumentRef(name="xr7-update.md", content_b64=base64.b64encode(text.encode()).decode())])
    after = await ask(client, mission, query)
    assert not after.cached
    assert any("sodium-ion" in c.text for c in after.claims + after.below_bar) or "sodium-ion" in str(after.hits)
    assert before.workflow_id != after.workflow_id
    assert (await ask(client, mission, query)).cached  # the new state caches again
    # a new cartridge version: the next run is a real one
    await activate_mission(temporal_env.client, settings, mission, "1.1.0")
    assert not (await ask(client, mission, query)).cached
    # a document removed (retention deletes its row): so is the next one
    assert (await ask(client, mission, query)).cached
    async with pg_connect(settings) as conn:
        gone = await conn.execute(
            """DELETE FROM documents WHERE source = 'inline:xr7-update.md'
               AND tenant_id = (SELECT id FROM tenants WHERE name = $1)""", mission)
    assert gone == "DELETE 1"
    assert not (await ask(client, mission, query)).cached


async def test_missions_do_not_share_answers_and_the_cartridge_governs(client, temporal_env, backend):
    settings, mission, _ = backend
    await ask(client, mission)
    other = f"{mission}_b"
    await activate_mission(temporal_env.client, settings, other, "1.0.0")
    await ingest_corpus(temporal_env.client, settings, other)
    assert not (await ask(client, other)).cached  # same documents, same question, other mission
    # TTL 1 s
    await activate_mission(temporal_env.client, settings, other, "1.1.0", cache={"research_ttl_seconds": 1})
    await ask(client, other)
    assert (await ask(client, other)).cached
    await asyncio.sleep(1.5)
    assert not (await ask(client, other)).cached
    # similarity 1.0: only the same words
    await activate_mission(temporal_env.client, settings, other, "1.2.0", cache={"similarity": 1.0})
    await ask(client, other)
    assert not (await ask(client, other, "How much capacity does the XR-7 battery retain after 1000 cycles?")).cached
    # TTL 0: off
    await activate_mission(temporal_env.client, settings, other, "1.3.0", cache={"research_ttl_seconds": 0})
    await ask(client, other)
    assert not (await ask(client, other)).cached


async def test_an_unreachable_cache_is_a_miss_not_a_failure(backend):
    """The activities against a Redis that is not there: a miss, and a write that
    reports False, never an error that would fail the research."""
    from activities.research.activities import ResearchActivities
    from stratmaster.contracts.research import CacheLookupInput, CacheStoreInput
    from tests.support.ports import free_port

    settings, mission, base = backend
    dead = settings.model_copy(update={"redis_url": f"redis://:pw@127.0.0.1:{free_port()}/0"})
    acts = ResearchActivities(Resources(dead, stores=base.stores, pool=base.pool, embedder=base.embedder))
    try:
        look = await acts.cache_lookup(CacheLookupInput(mission=mission, query=QUESTION))
        assert look.key and look.result is None
        some = ResearchResult(workflow_id="w", session_id=None, mission=mission, query=QUESTION, status="completed",
                              planner="given", subquestions=[QUESTION], hits=[], claims=[])
        assert not await acts.cache_store(CacheStoreInput(mission=mission, key=look.key, query=QUESTION, result=some))
    finally:
        await acts.cache.close()


def test_near_identical_needs_the_same_numbers_and_rare_terms():
    vec = [1.0, 0.0]
    entry = research_cache.Entry(query="Helios market share in 2023", vector=vec, result=None)  # type: ignore[arg-type]
    assert research_cache.near_identical("Helios market share in 2023?", vec, [entry], 0.97)
    assert not research_cache.near_identical("Helios market share in 2024", vec, [entry], 0.97)
    assert not research_cache.near_identical("Voltaris market share in 2023", vec, [entry], 0.97)
    assert not research_cache.near_identical("Helios market share in 2023", vec, [entry], 1.0)
    assert research_cache.normalise("  What's the XR-7's  range? ") == "what's the xr-7's range"


async def test_hits_and_misses_are_counted_on_the_worker_metrics(temporal_env, backend):
    """The counter a dashboard reads, from a real worker's Prometheus endpoint."""
    import re

    import httpx
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
    from temporalio.worker import Worker

    from tests.support.ports import free_port

    _, mission, acts = backend
    port, queue = free_port(), f"cache-metrics-{uuid.uuid4().hex[:6]}"
    runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{port}")))
    client = await Client.connect(temporal_env.client.service_client.config.target_host, runtime=runtime,
                                  data_converter=pydantic_data_converter)
    query = "Who developed the chemistry of the XR-7 battery?"
    async with Worker(client, task_queue=queue, workflows=[ResearchWorkflow],
                      activities=[acts.start_session, acts.cache_lookup, acts.plan, acts.retrieve, acts.synthesise,
                                  acts.persist, acts.cache_store, acts.finish_session]):
        for _ in range(2):
            await client.execute_workflow(ResearchWorkflow.run, ResearchInput(mission=mission, query=query),
                                          id=f"research-{mission}-m-{uuid.uuid4().hex[:8]}", task_queue=queue)
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    counts = {m.group(1): float(m.group(2)) for m in
              re.finditer(r'^\w*stratmaster_research_cache\w*\{[^}]*outcome="(\w+)"[^}]*\} (\S+)', body, re.M)}
    assert counts.get("hit") == 1 and counts.get("miss") == 1, body[-2000:]


async def test_research_finished_is_emitted_only_when_an_endpoint_takes_it(client, settings, backend):
    """No endpoint of the mission takes the event: neither a full run nor a cache hit starts
    an event workflow (a child start and a workflow task less: a hit in ~100 ms, not ~200);
    once one does, the hit emits it."""
    from temporalio.service import RPCError

    from stratmaster.contracts.webhooks import emit_workflow_id
    from stratmaster.webhooks import event_id
    from tests.support.postgres import pg_connect

    _, mission, _ = backend
    query = "Which chemistry does the XR-7 battery use?"

    async def run(cached: bool) -> str:
        handle = await client.start_workflow(
            ResearchWorkflow.run, ResearchInput(mission=mission, query=query, cache="use" if cached else "refresh"),
            id=f"research-{mission}-{next(_ids)}-{uuid.uuid4().hex[:6]}", task_queue=queues.RESEARCH,
            search_attributes=for_mission(mission))
        assert (await handle.result()).cached == cached
        return emit_workflow_id(event_id("research.finished", handle.id, handle.result_run_id or ""))

    for cached in (False, True):  # a full run (refreshes the cache), then a hit
        with pytest.raises(RPCError):
            await client.get_workflow_handle(await run(cached)).describe()
    async with pg_connect(settings) as conn:
        endpoint = await conn.fetchval(
            """INSERT INTO webhook_endpoints (id, tenant_id, url, secret, events)
               SELECT gen_random_uuid(), id, 'http://192.0.2.1/hook', 'whsec_dGVzdA==', ARRAY['research.finished']
               FROM tenants WHERE name = $1 RETURNING id""", mission)
    try:
        emitted = client.get_workflow_handle(await run(True))
        assert (await emitted.describe()).id == emitted.id
        await emitted.terminate("test: no maintenance worker delivers it")
    finally:
        async with pg_connect(settings) as conn:
            await conn.execute("DELETE FROM webhook_endpoints WHERE id = $1", endpoint)
