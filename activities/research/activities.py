"""Research activities: session rows, planning, retrieval, synthesis, persistence.

One class holding the injected clients (stores, PostgreSQL pool, embedder); every
method resolves the mission first so unknown/deactivated missions fail fast with
a non-retryable UnknownMission error. All writes are idempotent: the session id
derives from the workflow id, claim ids from (session, ordinal), and persisting
replaces the session's claims in one transaction.
"""
from __future__ import annotations

import asyncio
import functools
import json
import uuid
from typing import Any, Sequence

import numpy as np

from temporalio import activity

from activities.heartbeat import heartbeating, in_thread
from activities.ops import webhooks
from activities.llm import client as llm
from activities.research.llm import synthesis as llm_synthesis
from activities.research.answer import build_answer, combine_answers, part_findings, verified_answer
from activities.research.gates import apply_gates, gates_from
from activities.research import cache as research_cache
from activities.research.planning import content_terms, deterministic_plan
from activities.research.report_render.to_markdown import render_summary
from activities.research.retrieval import Retriever
from activities.research.sentence_vectors import SentenceVectors, pack, unpack
from activities.resources import Resources
from activities.stores.tenants import require_mission
from activities.research.synthesis import (
    CONTRA_PROMPT, answer_parts, contradiction_candidates, extractive, llm_says_contradict, passage_lookup,
    passage_units, unit_vectors, verify_citation, with_contradictions, with_structure,
)
from stratmaster.contracts.knowledge import SearchHit
from stratmaster.contracts.cartridge import Cartridge
from stratmaster.contracts.research import (
    Answer, CacheLookupInput, CacheLookupResult, CacheStoreInput, Citation, Claim, FinishInput, PersistInput, PersistOutput, Plan, PlanInput, RetrieveInput, RetrieveOutput,
    SessionInfo, SessionInput, Synthesis, SynthesiseInput,
)
from stratmaster.errors import ServiceUnavailable, redact
from activities.mission_config import MissionConfigReader

LLM_TIMEOUT_S = 60.0  # per LLM call; activity timeouts in workflows/research.py are minutes
# An LLM sub-question is kept only when it is about the question: embedding similarity
# to it at least this much (bench/research_qa measures plans with and without the LLM).
PLAN_MIN_SIMILARITY = 0.5
SESSION_NS = uuid.UUID("8a3c1f52-7d0e-4b8e-a4f4-2c6f9e1d5b37")


def session_id_for(workflow_id: str) -> str:
    return str(uuid.uuid5(SESSION_NS, workflow_id))


def report_keys(session_id: str) -> tuple[str, str]:
    base = f"artifacts/research/{session_id}/report"
    return base + ".md", base + ".json"


def _log(msg: str, **extra: Any) -> None:
    try:
        activity.logger.info(msg, extra=extra)
    except RuntimeError:  # called outside an activity (bench, tests)
        pass


class ResearchActivities:
    def __init__(self, resources: Resources, config: MissionConfigReader | None = None,
                 cache: research_cache.CacheBackend | None = None):
        self.resources = resources
        settings, stores, pool, embedder = resources.settings, resources.stores, resources.pool, resources.embedder
        self.settings = settings
        self.stores = stores
        self.pool = pool
        self.embedder = embedder
        self.retriever = Retriever(settings, stores, embedder)
        self.sentence_vectors = SentenceVectors()
        # the mission's active cartridge governs every step (hot reload within the reader's TTL)
        self.config = config or MissionConfigReader(settings, pool=pool)
        self.cache = cache or (research_cache.RedisCache(settings.redis_url) if settings.redis_url
                               else research_cache.PostgresCache(pool))

    async def _cartridge(self, mission: str) -> Cartridge:
        return (await self.config.get(mission)).cartridge

    def _llm_for(self, cart: Cartridge, task: str, notes: list[str]) -> str | None:
        """The model for `task` when the mission allows LLM calls and the platform has one;
        None otherwise (with a note when the mission is what turned it off)."""
        if not llm.configured(self.settings):
            return None
        if not cart.engines.llm:
            note = "llm: disabled by mission (engines.llm: false); no document text sent to a model"
            if note not in notes:
                notes.append(note)
            return None
        return cart.model_for(task, self.settings.llm_model)

    # ---------------------------------------------------------------- session
    @activity.defn(name="research_start_session")
    async def start_session(self, req: SessionInput) -> SessionInfo:
        tenant_id = await require_mission(self.pool, req.mission)
        sid = session_id_for(req.workflow_id)
        await self.pool.execute(
            """INSERT INTO research_sessions (id, tenant_id, workflow_id, query, status, params, updated_at)
               VALUES ($1, $2, $3, $4, 'running', $5::jsonb, NOW())
               ON CONFLICT (workflow_id) DO UPDATE SET status = 'running', query = EXCLUDED.query,
                   params = EXCLUDED.params, error = NULL, completed_at = NULL, updated_at = NOW()""",
            uuid.UUID(sid), tenant_id, req.workflow_id, req.query, json.dumps(req.params),
        )
        return SessionInfo(session_id=sid, tenant_id=str(tenant_id))

    # ---------------------------------------------------------------- answer cache
    @activity.defn(name="research_cache_lookup")
    async def cache_lookup(self, req: CacheLookupInput) -> CacheLookupResult:
        """A cached answer for this question in the mission's current state. Never
        fails the research: a cache that cannot be read is a miss."""
        await require_mission(self.pool, req.mission)
        self.config.invalidate(req.mission)  # the cartridge this run uses is the one the state names
        cart = await self._cartridge(req.mission)
        if cart.cache.research_ttl_seconds == 0:
            return CacheLookupResult()
        state = await research_cache.mission_state(self.pool, req.mission)
        if state is None:
            return CacheLookupResult()
        key = research_cache.entry_key(state, req.params)
        norm = research_cache.normalise(req.query)
        try:
            found = await self.cache.find(req.mission, key, norm)
            hit, similarity = (found.result, 1.0) if found is not None else (None, 0.0)
            if hit is None and cart.cache.similarity < 1.0:
                vector = await asyncio.to_thread(self.embedder.embed_query, req.query)
                close = research_cache.near_identical(req.query, vector, await self.cache.candidates(req.mission, key),
                                                      cart.cache.similarity)
                if close is not None:
                    hit, similarity = close[0].result, round(close[1], 4)
            if hit is not None:
                subscribed = await webhooks.subscribed(self.pool, req.mission, "research.finished")
        except Exception as exc:  # noqa: BLE001 - an unreadable cache must not fail research
            _log("research cache unavailable; treating as a miss", error=redact(str(exc)))
            _cache_metric("error")
            return CacheLookupResult(key=key)
        if hit is None:
            _cache_metric("miss")
            return CacheLookupResult(key=key)
        _cache_metric("hit")
        return CacheLookupResult(key=key, result=hit, similarity=similarity, subscribed=subscribed)

    @activity.defn(name="research_cache_store")
    async def cache_store(self, req: CacheStoreInput) -> bool:
        """File a completed run's answer under the state its lookup saw (if the
        documents changed since, the entry is simply never found)."""
        cart = await self._cartridge(req.mission)
        ttl = cart.cache.research_ttl_seconds
        state = await research_cache.mission_state(self.pool, req.mission)
        if ttl == 0 or state is None or not req.key.startswith(state + ":"):
            return False  # documents or cartridge changed during the run: this answer is already old
        try:
            vector = await asyncio.to_thread(self.embedder.embed_query, req.query)
            entry = research_cache.Entry(query=req.query, vector=[float(x) for x in vector], result=req.result)
            await self.cache.put(req.mission, req.key, research_cache.normalise(req.query), entry, ttl)
        except Exception as exc:  # noqa: BLE001 - the answer is already delivered; caching is best effort
            _log("research cache write failed", error=redact(str(exc)))
            return False
        return True

    @activity.defn(name="research_finish_session")
    async def finish_session(self, req: FinishInput) -> bool:
        """Record a cancelled/failed end. No row (e.g. unknown mission): nothing to do."""
        status = await self.pool.execute(
            """UPDATE research_sessions SET status = $2, error = $3, completed_at = NOW(), updated_at = NOW()
               WHERE workflow_id = $1 AND status NOT IN ('completed')""",
            req.workflow_id, req.status, redact(req.error) if req.error else req.error,
        )
        return status.endswith(" 1")

    # ---------------------------------------------------------------- plan
    @activity.defn(name="research_plan")
    async def plan(self, req: PlanInput) -> Plan:
        await require_mission(self.pool, req.mission)
        notes: list[str] = []
        model = self._llm_for(await self._cartridge(req.mission), "planning", notes)
        if model:
            try:
                n = max(1, req.max_subquestions - 1)  # the query itself is always the first sub-question
                answer = await heartbeating(llm.complete(
                    self.settings, llm_synthesis.plan_messages(req.query, n), req.mission,
                    max_tokens=160, timeout=LLM_TIMEOUT_S, schema=llm_synthesis.plan_schema(n),
                    purpose="plan", workflow_id=_workflow_id(), model=model, pool=self.pool))
                subs = llm_synthesis.parse_plan(answer, req.query, req.max_subquestions)
                _log(f"LLM plan answer: {llm_synthesis.sample(answer)}")
                kept, discarded = await asyncio.to_thread(self.on_topic, req.query, subs or [])
                if len(kept) > 1:
                    # the deterministic plan first (it grounds the decision to answer), then the
                    # model's sub-questions it does not already ask, at most two more searches
                    base = deterministic_plan(req.query, req.max_subquestions)
                    seen = {q.lower() for q in base}
                    extra = [q for q in kept if q.lower() not in seen][:2]
                    return Plan(subquestions=base + extra, planner="llm", discarded=discarded, notes=notes,
                                grounding=len(base))
                _log(f"LLM plan unusable or off the question, using the deterministic planner: {llm_synthesis.sample(answer)}")
                return Plan(subquestions=deterministic_plan(req.query, req.max_subquestions),
                            planner="deterministic-fallback", discarded=discarded, notes=notes)
            except (ServiceUnavailable, llm.LLMFailed) as exc:
                _log("LLM failed, using the deterministic planner", error=str(exc))
            return Plan(subquestions=deterministic_plan(req.query, req.max_subquestions), planner="deterministic-fallback",
                        notes=notes)
        return Plan(subquestions=deterministic_plan(req.query, req.max_subquestions), planner="deterministic", notes=notes)

    def on_topic(self, query: str, subs: list[str]) -> tuple[list[str], list[str]]:
        """(kept, discarded): the query first, then the sub-questions about it - sharing a
        content word with it and close to it in embedding space."""
        if not subs:
            return [query], []
        kept, discarded = [subs[0]], []
        rest = subs[1:]
        if rest:
            vecs = unit_vectors(self.embedder.embed([query] + rest))
            q_terms = set(content_terms(query))
            for sub, sim in zip(rest, vecs[1:] @ vecs[0]):
                if sim >= PLAN_MIN_SIMILARITY and q_terms & set(content_terms(sub)):
                    kept.append(sub)
                else:
                    discarded.append(sub)
        return kept, discarded

    # ---------------------------------------------------------------- retrieve
    @activity.defn(name="research_retrieve")
    async def retrieve(self, req: RetrieveInput) -> RetrieveOutput:
        await require_mission(self.pool, req.mission)
        cart = await self._cartridge(req.mission)
        engines, notes = allowed_engines(cart, req, web_configured=bool(self.settings.searxng_url))
        terms: list[str] = []
        if "bm25" in engines and cart.routing.query_expansion:  # LLM expansion only where the mission routes a model to it
            model = self._llm_for(cart, "query_expansion", notes)
            if model:
                terms = await self._expansion_terms(req, model)
        out = await heartbeating(self.retriever.retrieve(req, engines, terms))
        return out.model_copy(update={"notes": notes})

    async def _expansion_terms(self, req: RetrieveInput, model: str) -> list[str]:
        try:
            answer = await heartbeating(llm.complete(
                self.settings, llm_synthesis.expansion_messages(req.query), req.mission, max_tokens=60,
                timeout=LLM_TIMEOUT_S, schema=llm_synthesis.expansion_schema(), purpose="query_expansion",
                workflow_id=_workflow_id(), model=model, pool=self.pool))
        except (ServiceUnavailable, llm.LLMFailed) as exc:
            _log("LLM query expansion skipped", error=str(exc))
            return []
        return llm_synthesis.parse_expansion(answer, req.query)

    # ---------------------------------------------------------------- synthesise
    async def _chunk_rows(self, tenant: uuid.UUID, *groups: Sequence[SearchHit]
                          ) -> tuple[list[list[SearchHit]], dict[str, np.ndarray]]:
        """The hits with their chunks' structure (heading path, definition terms), and the
        chunks' stored sentence vectors (unit text -> vector). A chunk ingested before they
        were stored (or whose stored ones do not check out) gets them now, and keeps them for
        the next run."""
        by_id: dict[str, SearchHit] = {}
        for h in (h for g in groups for h in g):
            try:
                by_id.setdefault(str(uuid.UUID(h.chunk_id)), h)
            except ValueError:
                continue  # a web hit: no chunk row
        if not by_id:
            return [list(g) for g in groups], {}
        rows = await self.pool.fetch(
            """SELECT id::text AS id, text, metadata, sentence_spans, sentence_vectors FROM chunks
               WHERE tenant_id = $1 AND id = ANY($2::uuid[])""", tenant, list(by_id))
        encoder = self.resources.sentence_encoder
        stored: dict[str, dict[tuple[int, int], np.ndarray]] = {}
        meta: dict[str, dict] = {}
        missing = []
        for r in rows:
            if r["text"] != by_id[r["id"]].text:
                continue  # not the passage the hit shows: its spans would not line up
            m = r["metadata"]
            meta[r["id"]] = json.loads(m) if isinstance(m, str) else (m or {})
            by_id[r["id"]] = with_structure(by_id[r["id"]], meta[r["id"]])
            spans = unpack(r["text"], r["sentence_spans"], r["sentence_vectors"], encoder.dim, encoder.model_id)
            if spans is None:
                missing.append(r)
            else:
                stored[r["id"]] = spans
        if missing:
            units = [passage_units(r["text"], meta[r["id"]]) for r in missing]
            unit_vectors = await in_thread(encoder.embed_units, [[t for _, t in us] for us in units])
            await self.pool.executemany(
                "UPDATE chunks SET sentence_spans = $3, sentence_vectors = $4 WHERE id = $1::uuid AND tenant_id = $2",
                [(r["id"], tenant, *pack([span for span, _ in us], m, encoder.model_id))
                 for r, us, m in zip(missing, units, unit_vectors)])
            for r, us, m in zip(missing, units, unit_vectors):
                stored[r["id"]] = {span: row for (span, _), row in zip(us, m.astype(np.float32))}
        def structured(h: SearchHit) -> SearchHit:
            try:
                key = str(uuid.UUID(h.chunk_id))
            except ValueError:
                return h
            return with_structure(h, meta.get(key)) if key in meta else h

        return [[structured(h) for h in g] for g in groups], passage_lookup(list(by_id.values()), stored)

    @activity.defn(name="research_synthesise")
    async def synthesise(self, req: SynthesiseInput) -> Synthesis:
        tenant = await require_mission(self.pool, req.mission)
        cart = await self._cartridge(req.mission)
        gates = gates_from(cart.quality)
        notes: list[str] = []
        # sentence vectors: the chunks' stored ones, else embedded once per worker (not per run)
        (hits, grounding_hits), passages = await self._chunk_rows(tenant, req.hits, req.grounding_hits or [])
        embed = self.sentence_vectors.for_mission(req.mission, self.resources.sentence_encoder, passages)
        claims, synthesiser, dropped = None, "extractive", 0
        model = self._llm_for(cart, "synthesis", notes) if hits else None
        if model:
            # small local models have 2k-token contexts: 6 hits of <= 500 chars of sentences (~800 tokens)
            evidence = hits[:6]
            quotes = llm_synthesis.evidence_sentences(evidence, 500)
            n = min(req.max_claims, 4)
            synthesiser = "extractive-fallback"
            try:
                reply = await heartbeating(llm.complete(
                    self.settings, llm_synthesis.claims_messages(req.query, evidence, n, quotes), req.mission,
                    max_tokens=400, timeout=LLM_TIMEOUT_S, schema=llm_synthesis.claims_schema(evidence, n, quotes),
                    purpose="synthesise", workflow_id=_workflow_id(), model=model, pool=self.pool))
                _log(f"LLM claims answer: {llm_synthesis.sample(reply, 600)}")
                verified = await in_thread(
                    llm_synthesis.verify_claims, req.mission, req.query, reply, evidence, embed, n, hits)
                if verified and verified[0]:
                    claims = await self._llm_contradictions(req, cart, verified[0], evidence, notes)
                    synthesiser = "llm"
                # every claim failed verification (or no JSON): the extractive claims stand, and
                # synthesiser="extractive-fallback" + dropped_claims record it in the result
                dropped = verified[1] if verified else 0
                if synthesiser != "llm":
                    _log("LLM synthesis gave no verifiable claims; extractive fallback")
            except (ServiceUnavailable, llm.LLMFailed) as exc:
                _log("LLM failed; extractive fallback", error=str(exc))
        # the extractive claims always run: alone without a model, and beside the model's claims
        # with one (the model sees six hits and may pick weaker sentences; both are ranked by the
        # same calibrated confidence, so the LLM path never answers worse than the deterministic one)
        # the question's own parts rank the evidence: a model's extra sub-questions add hits and get
        # sub-answers, but a sentence answering "what is the default start of range()?" is no answer to
        # "how many times is a default argument evaluated?" (it led the answer on the QA bench)
        own = req.grounding_subquestions or req.subquestions
        extracted = await in_thread(
            functools.partial(extractive, subquestions=own), req.mission, req.query, hits, embed, req.max_claims)
        if claims:
            findings, below, outcome = gate_with_llm(claims, extracted, gates, req.max_claims)
        else:
            findings, below, outcome = apply_gates(extracted, gates)
        if findings and req.grounding_hits is not None:
            # an LLM planned extra sub-questions: answer only where the deterministic plan's own
            # evidence would (their hits are what the deterministic path synthesises from)
            grounded = await in_thread(
                functools.partial(extractive, subquestions=req.grounding_subquestions or [req.query]), req.mission,
                req.query, grounding_hits, embed, req.max_claims)
            if not apply_gates(grounded, gates)[0]:
                why = "the deterministic plan's evidence does not clear the quality bar (the model's searches alone do)"
                below = [c.model_copy(update={"below_bar_reason": why}) for c in findings] + below
                findings, outcome = [], "insufficient_evidence"
        method = "llm" if synthesiser == "llm" else "extractive"
        subanswers = []
        for q in req.subquestions:
            if q.lower() == req.query.lower():
                continue
            sub = await in_thread(extractive, req.mission, q, hits, embed, 1)
            cleared = apply_gates(sub, gates)[0]
            candidates = sub if cleared or not findings else await in_thread(extractive, req.mission, q, hits, embed, 3)
            subanswers.append(build_answer(q, part_findings(cleared, candidates, findings)))
        answer = build_answer(req.query, findings, method)
        parts = set(answer_parts(req.query, own)[1:])
        if findings and parts:  # a compound question: its answer answers each part
            answer = combine_answers(req.query, answer, [a for a in subanswers if a.question in parts])
        return Synthesis(claims=findings, synthesiser=synthesiser, dropped_claims=dropped, below_bar=below,
                         outcome=outcome, answer=answer, subanswers=subanswers,
                         closest_evidence=closest_evidence(below) if not findings else [], gates=gates, notes=notes)

    async def _llm_contradictions(self, req: SynthesiseInput, cart: Cartridge, claims: list[Claim], hits,
                                  notes: list[str]) -> list[Claim]:
        """Ask the LLM about close pairs the heuristics did not flag; a contradiction is
        only recorded when both sentences are verbatim retrieved evidence (they are: the
        pairs come from the hits) and the model says they cannot both be true."""
        claims = list(claims)
        model = self._llm_for(cart, "contradictions", notes)
        for i, sent, quote in (contradiction_candidates(claims, hits) if model else []):
            try:
                answer = await heartbeating(llm.complete(
                    self.settings, [{"role": "user", "content": CONTRA_PROMPT.format(a=quote, b=sent.text)}],
                    req.mission, max_tokens=5, timeout=LLM_TIMEOUT_S, purpose="contradiction",
                    workflow_id=_workflow_id(), model=model, pool=self.pool))
            except (ServiceUnavailable, llm.LLMFailed) as exc:
                _log("LLM contradiction check skipped", error=str(exc))
                break
            if llm_says_contradict(answer):
                claims[i] = with_contradictions(claims[i], [sent.citation()], "LLM judged")
        return claims

    # ---------------------------------------------------------------- persist
    async def _store_checker(self, tenant_id: uuid.UUID, citations: list[Citation], hits_by_chunk: dict):
        """A check that a citation's quote is exactly the stored chunk text at its span
        (PostgreSQL chunks table; web snippets against the retrieved hit)."""
        ids = {c.chunk_id for c in citations}
        uuids = []
        for i in ids:
            try:
                uuids.append(uuid.UUID(i))
            except ValueError:
                pass
        rows = await self.pool.fetch(
            "SELECT id::text AS id, text, char_start FROM chunks WHERE tenant_id = $1 AND id = ANY($2::uuid[])",
            tenant_id, uuids)
        stored = {r["id"]: (r["text"], r["char_start"]) for r in rows}

        def ok(c: Citation) -> bool:
            if c.chunk_id in stored:
                return verify_citation(c, *stored[c.chunk_id])
            h = hits_by_chunk.get(c.chunk_id)  # web snippet, or a chunk not mirrored in PostgreSQL
            return h is not None and verify_citation(c, h.text, h.start)
        return ok

    @staticmethod
    def _verified(claims: list[Claim], ok) -> tuple[list[Claim], int]:
        """Claims with only verified citations; claims left without support are dropped."""
        out, dropped = [], 0
        for cl in claims:
            support = [c for c in cl.supporting if ok(c)]
            if not support:
                dropped += 1
                continue
            out.append(cl.model_copy(update={"supporting": support,
                                             "contradicting": [c for c in cl.contradicting if ok(c)]}))
        return out, dropped

    @activity.defn(name="research_persist")
    async def persist(self, req: PersistInput) -> PersistOutput:
        tenant_id = await require_mission(self.pool, req.mission)
        sid = uuid.UUID(req.session_id)
        syn = req.synthesis
        cited = [c for cl in syn.claims + syn.below_bar for c in cl.supporting + cl.contradicting]
        cited += [c for a in syn.subanswers for s in a.sentences for c in s.citations]
        ok = await self._store_checker(tenant_id, cited, {h.chunk_id: h for h in req.hits})
        kept, dropped = self._verified(syn.claims, ok)
        held, dropped_below = self._verified(syn.below_bar, ok)
        # the same bar on what survived re-verification: a finding that lost its support can't stay one;
        # a claim held below the bar stays there whatever held it (a gate, or the deterministic evidence)
        findings, below, outcome = apply_gates(kept, syn.gates)
        below, dropped = below + held, dropped + dropped_below
        findings = [c.model_copy(update={"claim_id": str(uuid.uuid5(sid, str(c.ordinal)))}) for c in findings]
        answer = verified_answer(syn.answer, ok)
        if answer is not None and not findings:
            answer = Answer(question=answer.question, text="", method=answer.method)
        syn = syn.model_copy(update={
            "claims": findings, "below_bar": below, "outcome": outcome, "answer": answer,
            "subanswers": [verified_answer(a, ok) for a in syn.subanswers],
            "closest_evidence": [c for c in syn.closest_evidence if ok(c)] or closest_evidence(below) if not findings else []})
        md_key, json_key = report_keys(req.session_id)
        report = {
            "session_id": req.session_id, "workflow_id": req.workflow_id, "mission": req.mission, "query": req.query,
            "outcome": outcome, "answer": answer.model_dump(mode="json") if answer else None,
            "planner": req.plan.planner, "subquestions": req.plan.subquestions,
            "discarded_subquestions": req.plan.discarded,
            "subanswers": [a.model_dump(mode="json") for a in syn.subanswers],
            "synthesiser": syn.synthesiser, "dropped_claims": syn.dropped_claims + dropped,
            "gates": syn.gates.model_dump(mode="json"), "notes": req.notes + syn.notes,
            "started_at": req.started_at.isoformat(), "finished_at": req.finished_at.isoformat(),
            "claims": [c.model_dump(mode="json") for c in findings],
            "below_bar": [c.model_dump(mode="json") for c in below],
            "closest_evidence": [c.model_dump(mode="json") for c in syn.closest_evidence],
            "sources": [h.model_dump(mode="json", exclude={"text"}) for h in req.hits],
        }
        md_full = await self.stores.objects.put(req.mission, md_key, render_summary(report, syn).encode(), "text/markdown")
        json_full = await self.stores.objects.put(req.mission, json_key, json.dumps(report, indent=2).encode(), "application/json")
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM claims WHERE session_id = $1", sid)
            for c in findings:
                cid = uuid.UUID(c.claim_id)
                await conn.execute(
                    """INSERT INTO claims (id, session_id, tenant_id, ordinal, text, confidence, supporting_evidence,
                           contradicting_evidence, flagged, flag_reason, confidence_factors)
                       VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11::jsonb)""",
                    cid, sid, tenant_id, c.ordinal, c.text, round(c.confidence, 2),
                    json.dumps([x.model_dump(mode="json") for x in c.supporting]),
                    json.dumps([x.model_dump(mode="json") for x in c.contradicting]),
                    c.flagged, c.flag_reason, json.dumps(c.confidence_factors),
                )
                rows = [(cid, tenant_id, kind, n, x.chunk_id, x.document_id, x.start, x.end, x.quote, x.score, x.source, x.url)
                        for kind, cits in (("support", c.supporting), ("contradict", c.contradicting))
                        for n, x in enumerate(cits)]
                await conn.executemany(
                    """INSERT INTO claim_evidence (claim_id, tenant_id, kind, ordinal, chunk_id, document_id,
                           char_start, char_end, quote, score, source, url)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)""", rows)
            await conn.execute(
                """UPDATE research_sessions SET status = 'completed', plan = $2::jsonb, report_key = $3,
                       report_json_key = $4, synthesiser = $5, hit_count = $6, claim_count = $7,
                       outcome = $8, answer = $9, completed_at = NOW(), updated_at = NOW(), error = NULL
                   WHERE id = $1""",
                sid, json.dumps({"planner": req.plan.planner, "subquestions": req.plan.subquestions}),
                md_full, json_full, syn.synthesiser, len(req.hits), len(findings), outcome, answer.text if answer else None,
            )
        return PersistOutput(report_md_key=md_full, report_json_key=json_full, claims=findings, dropped_claims=dropped,
                             synthesis=syn,
                             subscribed=await webhooks.subscribed(self.pool, req.mission, "research.finished"))


def allowed_engines(cart: Cartridge, req: RetrieveInput, web_configured: bool) -> tuple[frozenset[str], list[str]]:
    """The retrievers this run may use: the cartridge's engines, with graph and web as the
    request asks (None: as the cartridge says). A request cannot turn on what the
    cartridge turns off; asking for it leaves a note instead."""
    e = cart.engines
    on = {name for name in ("bm25", "dense") if getattr(e, name)}
    notes = []
    for name, asked in (("graph", req.use_graph), ("web", req.use_web)):
        allowed = getattr(e, name)
        if asked and not allowed:
            notes.append(f"{name}: disabled by mission (engines.{name}: false)")
        elif allowed and asked is not False:
            on.add(name)
    if "web" in on and not web_configured:
        on.discard("web")
        if req.use_web:
            notes.append("web: no search service configured (STRATMASTER_SEARXNG_URL)")
    return frozenset(on), notes


def merge_claims(first: list[Claim], second: list[Claim], limit: int) -> list[Claim]:
    """Both lists' claims by confidence; a claim of `second` citing a span a claim of
    `first` already cites is the same claim (`first` wins ties)."""
    spans = {(c.chunk_id, c.start) for cl in first for c in cl.supporting}
    rest = [cl for cl in second if not any((c.chunk_id, c.start) in spans for c in cl.supporting)]
    ranked = sorted(first + rest, key=lambda cl: -cl.confidence)[:limit]
    return [cl.model_copy(update={"ordinal": i}) for i, cl in enumerate(ranked)]


def gate_with_llm(llm_claims: list[Claim], extracted: list[Claim], gates, limit: int):
    """apply_gates over the model's and the extractive claims together, except that
    whether to answer at all is the deterministic evidence's call: when no extractive
    claim clears the bar, the model's claims (scored against the six hits it saw) stay
    below it too, so an LLM never turns an abstention into an answer."""
    findings, below, outcome = apply_gates(merge_claims(llm_claims, extracted, limit), gates)
    if findings and not apply_gates(extracted, gates)[0]:
        why = "no retrieved sentence clears the quality bar on its own (the model's claim alone does not)"
        below = [c.model_copy(update={"below_bar_reason": why}) for c in findings] + below
        findings, outcome = [], "insufficient_evidence"
    return findings, below, outcome


def closest_evidence(below: list[Claim], limit: int = 3) -> list[Citation]:
    """When abstaining: the best quotes that came nearest, labelled as such by the caller."""
    return [c.supporting[0] for c in below[:limit] if c.supporting]


def _cache_metric(outcome: str) -> None:
    """stratmaster_research_cache{outcome=hit|miss|error} on the worker's /metrics."""
    try:
        activity.metric_meter().create_counter(
            "stratmaster_research_cache", "research answer cache lookups by outcome").add(1, {"outcome": outcome})
    except RuntimeError:  # outside an activity (tests calling the method directly)
        pass


def _workflow_id() -> str | None:
    try:
        return activity.info().workflow_id
    except RuntimeError:
        return None
