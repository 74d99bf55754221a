"""Web search through SearxNG's JSON API, contract-tested against `searxng_stub`
(a MOCK: a local HTTP server speaking SearxNG's JSON format, since SearxNG cannot
run here), and graph expansion of queries over the real embedded graph store."""
from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import pytest_asyncio

from activities.ingest.embedding import get_embedder
from activities.research.retrieval import Retriever, entity_candidates
from activities.stores.factory import build_stores
from activities.research.synthesis import verify_citation
from activities.research.web_search import search_web
from stratmaster import queues
from stratmaster.contracts.knowledge import Entity, Relation
from stratmaster.contracts.research import ResearchInput, RetrieveInput
from stratmaster.errors import ServiceUnavailable
from tests.research_support import activate_mission, ingest_corpus, research_worker
from workflows.research import ResearchWorkflow

MISSION = f"rw_{uuid.uuid4().hex[:8]}"
WEB_URL = "https://example.org/xr7-review"
WEB_TEXT = ("A 2024 review in Battery Monthly reports that the XR-7 battery retains 75 percent of its capacity "
            "after 1000 charge cycles.")


def searxng_results(query: str) -> dict:
    """SearxNG /search?format=json response shape (results/answers/suggestions/...)."""
    return {
        "query": query, "number_of_results": 2,
        "results": [
            {"url": WEB_URL, "title": "XR-7 long-term review", "content": WEB_TEXT, "engine": "duckduckgo",
             "engines": ["duckduckgo", "bing"], "positions": [1, 2], "score": 2.5, "category": "general"},
            {"url": "https://example.org/empty", "title": "", "content": "", "engine": "bing", "score": 0.1},
            {"url": WEB_URL, "title": "duplicate", "content": "dup", "engine": "bing", "score": 1.0},
        ],
        "answers": [], "corrections": [], "infoboxes": [], "suggestions": [], "unresponsive_engines": [],
    }


@pytest.fixture(scope="module")
def searxng_stub():
    """MOCK SearxNG: answers GET /search?q=..&format=json like SearxNG does; other formats get 403."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            url = urlparse(self.path)
            params = {k: v[0] for k, v in parse_qs(url.query).items()}
            seen.append(params)
            if url.path != "/search" or params.get("format") != "json":
                self.send_response(403)
                self.end_headers()
                return
            body = json.dumps(searxng_results(params.get("q", ""))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


@pytest_asyncio.fixture(scope="module")
async def corpus(temporal_env, settings):
    await activate_mission(temporal_env.client, settings, MISSION, engines={"web": True, "graph": False})
    return await ingest_corpus(temporal_env.client, settings, MISSION)


async def test_searxng_json_contract(searxng_stub):
    url, seen = searxng_stub
    hits = await search_web(url, "xr-7 battery cycles", limit=5)
    assert seen[-1]["q"] == "xr-7 battery cycles" and seen[-1]["format"] == "json"
    assert [h.url for h in hits] == [WEB_URL]  # empty result skipped, duplicate URL collapsed
    h = hits[0]
    assert h.source == "web" and h.text == WEB_TEXT and (h.start, h.end) == (0, len(WEB_TEXT))
    assert h.scores == {"web": 2.5} and h.title == "XR-7 long-term review"
    with pytest.raises(ServiceUnavailable, match="answered 403"):
        await search_web(url + "/not-searxng", "q")


async def test_searxng_unreachable_is_service_unavailable():
    from tests.support.ports import free_port

    with pytest.raises(ServiceUnavailable, match="SearxNG unreachable"):
        await search_web(f"http://127.0.0.1:{free_port()}", "q")


async def test_research_with_web_evidence(temporal_env, settings, corpus, searxng_stub):
    url, _ = searxng_stub
    web_settings = settings.model_copy(update={"searxng_url": url})
    q = "How much capacity does the XR-7 battery retain after 1000 charge cycles?"
    async with research_worker(temporal_env.client, web_settings):
        result = await temporal_env.client.execute_workflow(
            ResearchWorkflow.run, ResearchInput(mission=MISSION, query=q, use_web=True, max_subquestions=2),
            id=f"research-{MISSION}-web-{uuid.uuid4().hex[:6]}", task_queue=queues.RESEARCH)
    web_hits = [h for h in result.hits if h.url == WEB_URL]
    assert web_hits and "web" in web_hits[0].scores
    cites = [c for claim in result.claims for c in claim.supporting + claim.contradicting if c.url == WEB_URL]
    assert cites, [c.text for c in result.claims]
    for c in cites:
        assert verify_citation(c, WEB_TEXT, 0) and c.source in ("web", "hybrid")


async def test_web_not_used_without_searxng_url(settings, corpus):
    stores = build_stores(settings)
    try:
        out = await Retriever(settings, stores, get_embedder(settings)).retrieve(
            RetrieveInput(mission=MISSION, query="XR-7 battery capacity", use_web=True))
    finally:
        await stores.close()
    assert out.hits and all(h.url is None for h in out.hits) and "web" not in out.timings_ms


async def test_graph_expansion_adds_neighbour_terms(settings, corpus):
    assert "XR-7" in entity_candidates("Which company makes the XR-7 cells?")
    stores = build_stores(settings)
    try:
        xr7 = Entity(entity_id="product:xr-7", name="XR-7", type="PRODUCT")
        voltara = Entity(entity_id="org:voltara", name="Voltara", type="ORGANIZATION")
        await stores.graph.upsert(MISSION, [xr7, voltara], [Relation(source_id=xr7.entity_id, target_id=voltara.entity_id,
                                                                      type="RELATES_TO")])
        retriever = Retriever(settings, stores, get_embedder(settings))
        q = "Which company makes the XR-7 cells?"
        plain = await retriever.retrieve(RetrieveInput(mission=MISSION, query=q, top_k=3))
        expanded = await retriever.retrieve(RetrieveInput(mission=MISSION, query=q, top_k=3, use_graph=True))
    finally:
        await stores.close()
    assert plain.expansion_terms == [] and expanded.expansion_terms == ["Voltara"]
    def voltara(out):
        return next((i, h) for i, h in enumerate(out.hits + [None]) if h is None or "Voltara" in h.text)

    rank_plain, hit_plain = voltara(plain)
    rank_expanded, hit_expanded = voltara(expanded)
    # the neighbour term finds the chunk naming Voltara through the expanded BM25 run and lifts it
    assert hit_expanded is not None and hit_expanded.scores["graph"] > 0.5
    assert rank_expanded <= rank_plain and (hit_plain is None or hit_expanded.score > hit_plain.score)


async def test_health_probe_for_web_search(settings, searxng_stub):
    from activities.stores.factory import health_probes

    url, _ = searxng_stub
    assert "web" not in health_probes(settings)
    backend, run = health_probes(settings.model_copy(update={"searxng_url": url}))["web"]
    assert backend == "searxng" and (await run()).startswith("searxng ok")
