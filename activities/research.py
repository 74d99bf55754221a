"""Research activities: session rows, planning, retrieval, synthesis, persistence.

One class holding the injected clients (stores, PostgreSQL pool, embedder); every
method resolves the mission first so unknown/deactivated missions fail fast with
a non-retryable UnknownMission error. All writes are idempotent: the session id
derives from the workflow id, claim ids from (session, ordinal), and persisting
replaces the session's claims in one transaction.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
from temporalio import activity

from activities import llm
from activities import llm_synthesis
from activities.planning import deterministic_plan
from activities.retrieval import Retriever
from activities.stores.tenants import require_mission
from activities.synthesis import (
    CONTRA_PROMPT, contradiction_candidates, extractive, llm_says_contradict, verify_citation, with_contradictions,
)
from stratmaster.contracts.research import (
    Citation, Claim, FinishInput, PersistInput, PersistOutput, Plan, PlanInput, RetrieveInput, RetrieveOutput,
    SessionInfo, SessionInput, Synthesis, SynthesiseInput,
)
from stratmaster.errors import ServiceUnavailable
from stratmaster.settings import Settings

LLM_TIMEOUT_S = 60.0  # per LLM call; activity timeouts in workflows/research.py are minutes
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
    def __init__(self, settings: Settings, stores: Any, pool: asyncpg.Pool, embedder: Any):
        self.settings = settings
        self.stores = stores
        self.pool = pool
        self.embedder = embedder
        self.retriever = Retriever(settings, stores, embedder)

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

    @activity.defn(name="research_finish_session")
    async def finish_session(self, req: FinishInput) -> bool:
        """Record a cancelled/failed end. No row (e.g. unknown mission): nothing to do."""
        status = await self.pool.execute(
            """UPDATE research_sessions SET status = $2, error = $3, completed_at = NOW(), updated_at = NOW()
               WHERE workflow_id = $1 AND status NOT IN ('completed')""",
            req.workflow_id, req.status, req.error,
        )
        return status.endswith(" 1")

    # ---------------------------------------------------------------- plan
    @activity.defn(name="research_plan")
    async def plan(self, req: PlanInput) -> Plan:
        await require_mission(self.pool, req.mission)
        if llm.configured(self.settings):
            try:
                n = max(1, req.max_subquestions - 1)  # the query itself is always the first sub-question
                answer = await _heartbeating(llm.complete(
                    self.settings, llm_synthesis.plan_messages(req.query, n), req.mission,
                    max_tokens=160, timeout=LLM_TIMEOUT_S, schema=llm_synthesis.plan_schema(n),
                    purpose="plan", workflow_id=_workflow_id(),
                ))
                subs = llm_synthesis.parse_plan(answer, req.query, req.max_subquestions)
                _log(f"LLM plan answer: {llm_synthesis.sample(answer)}")
                if subs:
                    return Plan(subquestions=subs, planner="llm")
                _log(f"LLM plan unusable, using the deterministic planner: {llm_synthesis.sample(answer)}")
            except (ServiceUnavailable, llm.LLMFailed) as exc:
                _log("LLM failed, using the deterministic planner", error=str(exc))
            return Plan(subquestions=deterministic_plan(req.query, req.max_subquestions), planner="deterministic-fallback")
        return Plan(subquestions=deterministic_plan(req.query, req.max_subquestions), planner="deterministic")

    # ---------------------------------------------------------------- retrieve
    @activity.defn(name="research_retrieve")
    async def retrieve(self, req: RetrieveInput) -> RetrieveOutput:
        await require_mission(self.pool, req.mission)
        return await _heartbeating(self.retriever.retrieve(req))

    # ---------------------------------------------------------------- synthesise
    def _embed(self, texts: list[str]):
        return self.embedder.embed(texts)

    @activity.defn(name="research_synthesise")
    async def synthesise(self, req: SynthesiseInput) -> Synthesis:
        await require_mission(self.pool, req.mission)
        hits = req.hits
        if llm.configured(self.settings) and hits:
            # small local models have 2k-token contexts: 6 hits of <= 500 chars of sentences (~800 tokens)
            evidence = hits[:6]
            quotes = llm_synthesis.evidence_sentences(evidence, 500)
            n = min(req.max_claims, 4)
            try:
                answer = await _heartbeating(llm.complete(
                    self.settings, llm_synthesis.claims_messages(req.query, evidence, n, quotes), req.mission,
                    max_tokens=400, timeout=LLM_TIMEOUT_S, schema=llm_synthesis.claims_schema(evidence, n, quotes),
                    purpose="synthesise", workflow_id=_workflow_id(),
                ))
                _log(f"LLM claims answer: {llm_synthesis.sample(answer, 600)}")
                verified = await _in_thread_with_heartbeat(
                    llm_synthesis.verify_claims, req.mission, req.query, answer, evidence, self._embed, n)
                if verified and verified[0]:
                    claims = await self._llm_contradictions(req, verified[0], evidence)
                    return Synthesis(claims=claims, synthesiser="llm", dropped_claims=verified[1])
                # every claim failed verification (or no JSON): the extractive claims stand, and
                # synthesiser="extractive-fallback" + dropped_claims record it in the result
                dropped = verified[1] if verified else 0
                _log("LLM synthesis gave no verifiable claims; extractive fallback")
            except (ServiceUnavailable, llm.LLMFailed) as exc:
                dropped = 0
                _log("LLM failed; extractive fallback", error=str(exc))
            claims = await _in_thread_with_heartbeat(extractive, req.mission, req.query, hits, self._embed, req.max_claims)
            return Synthesis(claims=claims, synthesiser="extractive-fallback", dropped_claims=dropped)
        claims = await _in_thread_with_heartbeat(extractive, req.mission, req.query, hits, self._embed, req.max_claims)
        return Synthesis(claims=claims, synthesiser="extractive")

    async def _llm_contradictions(self, req: SynthesiseInput, claims: list[Claim], hits) -> list[Claim]:
        """Ask the LLM about close pairs the heuristics did not flag; a contradiction is
        only recorded when both sentences are verbatim retrieved evidence (they are: the
        pairs come from the hits) and the model says they cannot both be true."""
        claims = list(claims)
        for i, sent, quote in contradiction_candidates(claims, hits):
            try:
                answer = await _heartbeating(llm.complete(
                    self.settings, [{"role": "user", "content": CONTRA_PROMPT.format(a=quote, b=sent.text)}],
                    req.mission, max_tokens=5, timeout=LLM_TIMEOUT_S, purpose="contradiction",
                    workflow_id=_workflow_id()))
            except (ServiceUnavailable, llm.LLMFailed) as exc:
                _log("LLM contradiction check skipped", error=str(exc))
                break
            if llm_says_contradict(answer):
                claims[i] = with_contradictions(claims[i], [sent.citation()], "LLM judged")
        return claims

    # ---------------------------------------------------------------- persist
    async def _verify_against_store(self, tenant_id: uuid.UUID, sid: uuid.UUID, claims: list[Claim],
                                    hits_by_chunk: dict) -> tuple[list[Claim], int]:
        """Re-check every citation against the stored chunk text (PostgreSQL chunks
        table; web snippets against the retrieved hit). Citations that fail are
        removed; claims left without support are dropped."""
        ids = {c.chunk_id for cl in claims for c in cl.supporting + cl.contradicting}
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

        out, dropped = [], 0
        for cl in claims:
            support = [c for c in cl.supporting if ok(c)]
            contra = [c for c in cl.contradicting if ok(c)]
            if not support:
                dropped += 1
                continue
            out.append(cl.model_copy(update={"ordinal": len(out), "claim_id": str(uuid.uuid5(sid, str(len(out)))),
                                             "supporting": support, "contradicting": contra}))
        return out, dropped

    @activity.defn(name="research_persist")
    async def persist(self, req: PersistInput) -> PersistOutput:
        tenant_id = await require_mission(self.pool, req.mission)
        sid = uuid.UUID(req.session_id)
        claims, dropped = await self._verify_against_store(tenant_id, sid, req.synthesis.claims,
                                                           {h.chunk_id: h for h in req.hits})
        md_key, json_key = report_keys(req.session_id)
        report = {
            "session_id": req.session_id, "workflow_id": req.workflow_id, "mission": req.mission, "query": req.query,
            "planner": req.plan.planner, "subquestions": req.plan.subquestions,
            "synthesiser": req.synthesis.synthesiser, "dropped_claims": req.synthesis.dropped_claims + dropped,
            "started_at": req.started_at.isoformat(), "finished_at": req.finished_at.isoformat(),
            "claims": [c.model_dump(mode="json") for c in claims],
            "sources": [h.model_dump(mode="json", exclude={"text"}) for h in req.hits],
        }
        md_full = await self.stores.objects.put(req.mission, md_key, render_markdown(report, claims).encode(), "text/markdown")
        json_full = await self.stores.objects.put(req.mission, json_key, json.dumps(report, indent=2).encode(), "application/json")
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM claims WHERE session_id = $1", sid)
            for c in claims:
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
                       completed_at = NOW(), updated_at = NOW(), error = NULL
                   WHERE id = $1""",
                sid, json.dumps({"planner": req.plan.planner, "subquestions": req.plan.subquestions}),
                md_full, json_full, req.synthesis.synthesiser, len(req.hits), len(claims),
            )
        return PersistOutput(report_md_key=md_full, report_json_key=json_full, claims=claims, dropped_claims=dropped)


def render_markdown(report: dict, claims: list[Claim]) -> str:
    lines = [f"# Research: {report['query']}", "",
             f"- mission: `{report['mission']}`  session: `{report['session_id']}`",
             f"- planner: {report['planner']}; synthesiser: {report['synthesiser']}",
             "", "## Sub-questions", ""]
    lines += [f"{i}. {q}" for i, q in enumerate(report["subquestions"], start=1)]
    lines += ["", "## Claims", ""]
    if not claims:
        lines.append("_No claim is supported by the retrieved evidence._")
    for c in claims:
        flag = f" — **flagged: {c.flag_reason}**" if c.flagged else ""
        lines += [f"### {c.ordinal + 1}. {c.text}", "", f"Confidence: **{c.confidence:.2f}**{flag}", "", "Supporting evidence:"]
        for x in c.supporting:
            where = x.url or f"document `{x.document_id}` chunk `{x.chunk_id}`"
            lines.append(f"- \"{x.quote}\" — {x.title or ''} {where} [{x.start}:{x.end}]")
        if c.contradicting:
            lines.append("")
            lines.append("Contradicting evidence:")
            for x in c.contradicting:
                where = x.url or f"document `{x.document_id}` chunk `{x.chunk_id}`"
                lines.append(f"- \"{x.quote}\" — {x.title or ''} {where} [{x.start}:{x.end}]")
        lines.append("")
    return "\n".join(lines) + "\n"


def _workflow_id() -> str | None:
    try:
        return activity.info().workflow_id
    except RuntimeError:
        return None


async def _in_thread_with_heartbeat(fn, *args):
    """Run CPU-bound work (embedding, clustering) in a thread, heartbeating from
    the event loop meanwhile so long syntheses are not timed out."""
    return await _heartbeating(asyncio.to_thread(fn, *args))


async def _heartbeating(awaitable):
    """Await while heartbeating every 5 s (slow LLM calls, threads)."""
    task = asyncio.ensure_future(awaitable)
    while True:
        done, _ = await asyncio.wait({task}, timeout=5)
        if done:
            return task.result()
        try:
            activity.heartbeat()
        except RuntimeError:
            pass
