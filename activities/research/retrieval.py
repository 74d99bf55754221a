"""Hybrid retrieval for one query over one mission: BM25 (full-text index) +
dense (embedded query against the vector store), fused (activities/research/fusion.py),
optionally widened by graph expansion (entities named in the query -> their
neighbours -> extra BM25 terms) and web search (SearxNG, when configured).

`Retriever.retrieve` is plain async code so the bench can call it directly; the
research activity wraps it.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from activities.research.fusion import fuse
from activities.research.planning import noun_phrases, tokens, STOPWORDS
from activities.research.web_search import search_web
from stratmaster.contracts.knowledge import SearchHit
from stratmaster.contracts.research import RetrieveInput, RetrieveOutput
from stratmaster.settings import Settings


def entity_candidates(query: str) -> list[str]:
    """Names worth looking up in the graph: noun phrases, their words, capitalised terms."""
    names: list[str] = []
    for p in noun_phrases(query):
        names.append(p)
        names.extend(w for w in p.split() if len(w) > 2)
    names.extend(t for t in query.split() if t[:1].isupper() and t.lower() not in STOPWORDS)
    seen, out = set(), []
    for n in names:
        n = n.strip(" ,.;:?!\"'")
        if n and n.lower() not in seen:
            seen.add(n.lower())
            out.append(n)
    return out[:20]


class Retriever:
    def __init__(self, settings: Settings, stores: Any, embedder: Any):
        self.settings = settings
        self.stores = stores
        self.embedder = embedder

    async def embed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embedder.embed_query, text)

    async def _timed(self, timings: dict, name: str, coro):
        t0 = time.perf_counter()
        try:
            return await coro
        finally:
            timings[name] = round((time.perf_counter() - t0) * 1000, 2)

    async def bm25(self, mission: str, query: str, limit: int) -> list[SearchHit]:
        return await self.stores.fulltext.search(mission, query, limit)

    async def dense(self, mission: str, query: str, limit: int) -> list[SearchHit]:
        return await self.stores.vectors.search(mission, await self.embed_query(query), limit)

    async def expansion_terms(self, mission: str, query: str) -> list[str]:
        neighbours = await self.stores.graph.neighbours(mission, entity_candidates(query), limit=20)
        have = set(tokens(query))
        terms = []
        for e in neighbours:
            if not set(tokens(e.name)) <= have and e.name not in terms:
                terms.append(e.name)
        return terms[:10]

    async def retrieve(self, req: RetrieveInput, engines: frozenset[str] | None = None,
                       extra_terms: list[str] | None = None) -> RetrieveOutput:
        """Run the retrievers named in `engines` (bm25, dense, graph, web: the mission's
        decision, see ResearchActivities.retrieve); None means bm25 + dense plus
        whatever the request asks for (bench and tests calling this directly).
        `extra_terms` (LLM query expansion) add one more BM25 list."""
        if engines is None:
            engines = frozenset({"bm25", "dense"} | ({"graph"} if req.use_graph else set())
                                | ({"web"} if req.use_web else set()))
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        jobs = {}
        if "bm25" in engines:
            jobs["bm25"] = self._timed(timings, "bm25", self.bm25(req.mission, req.query, req.candidates))
        if "dense" in engines:
            jobs["dense"] = self._timed(timings, "dense", self.dense(req.mission, req.query, req.candidates))
        if "web" in engines and self.settings.searxng_url:
            jobs["web"] = self._timed(timings, "web", search_web(self.settings.searxng_url, req.query, limit=10))
        results = dict(zip(jobs, await asyncio.gather(*jobs.values())))
        terms: list[str] = []
        if "graph" in engines and "bm25" in engines:  # graph expansion widens a BM25 query
            terms = await self._timed(timings, "graph", self.expansion_terms(req.mission, req.query))
            if terms:
                expanded = req.query + " " + " ".join(terms)
                results["graph"] = await self._timed(timings, "graph_bm25", self.bm25(req.mission, expanded, req.candidates))
        if extra_terms and "bm25" in engines:
            expanded = req.query + " " + " ".join(extra_terms)
            results["expansion"] = await self._timed(timings, "expansion_bm25", self.bm25(req.mission, expanded, req.candidates))
        # each list's own score under its own name (the graph list is a BM25 run too)
        results = {name: [h.model_copy(update={"scores": {name: h.score}}) for h in hits]
                   for name, hits in results.items()}
        t1 = time.perf_counter()
        hits = fuse(results, req.fusion, req.top_k)
        timings["fusion"] = round((time.perf_counter() - t1) * 1000, 2)
        timings["total"] = round((time.perf_counter() - t0) * 1000, 2)
        return RetrieveOutput(query=req.query, hits=hits, expansion_terms=terms + list(extra_terms or []),
                              timings_ms=timings, engines=sorted(jobs) + (["graph"] if "graph" in results else []))
