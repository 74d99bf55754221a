"""ResearchWorkflow (task queue `research-tasks`): plan -> retrieve (one activity
per sub-question, in parallel) -> synthesise -> persist.

Queries `status` and `progress` expose sub-questions, hits and claims so far.
On cancellation or failure a cleanup activity records the final status of the
session row (run from the exception handler: activities scheduled after the
cancellation are not themselves cancelled).
"""
from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.research.fusion import merge_subquestion_hits
    from activities.research.activities import ResearchActivities
    from stratmaster.contracts.knowledge import SearchHit
    from stratmaster.contracts.research import (
        CacheLookupInput, CacheLookupResult, CacheStoreInput, FinishInput, PersistInput, Plan, PlanInput, ResearchInput, ResearchProgress, ResearchResult,
        RetrieveInput, RetrieveOutput, SessionInput, Synthesis, SynthesiseInput,
    )
    from stratmaster.errors import NON_RETRYABLE, WORKFLOW_INPUT_ERRORS
from workflows.webhooks import emit_research_finished
from workflows.options import retry

RETRY = retry(4)
MAX_EVIDENCE_HITS = 40  # what synthesis reads; retrieve mode returns at least the top_k it was asked for


def hits_limit(req: ResearchInput) -> int:
    """How many merged hits a run keeps: synthesis reads the evidence budget; a retrieve-only run
    returns the top_k it was asked for (at most 100 by the contract), not 40."""
    return MAX_EVIDENCE_HITS if req.mode == "full" else max(MAX_EVIDENCE_HITS, req.top_k)


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class ResearchWorkflow:
    def __init__(self) -> None:
        self._progress: ResearchProgress | None = None

    @workflow.query
    def status(self) -> str:
        return self._progress.status if self._progress else "pending"

    @workflow.query
    def progress(self) -> ResearchProgress | None:
        return self._progress

    def _ms(self, since) -> float:
        return round((workflow.now() - since).total_seconds() * 1000, 1)

    @workflow.run
    async def run(self, req: ResearchInput) -> ResearchResult:
        info = workflow.info()
        wid = info.workflow_id
        p = self._progress = ResearchProgress(workflow_id=wid, mission=req.mission, query=req.query, status="pending")
        started = workflow.now()
        timings: dict[str, float] = {}
        full = req.mode == "full"
        cache_key: str | None = None
        try:
            if full and req.cache != "off" and workflow.patched("research-answer-cache"):
                lookup = CacheLookupInput(mission=req.mission, query=req.query, params=req.cache_params())
                look: CacheLookupResult
                if workflow.patched("research-cache-lookup-local"):
                    # a local activity: no workflow task of its own, so a hit is answered within the
                    # first one (a scheduled activity costs a task dispatch and a second workflow task)
                    look = await workflow.execute_local_activity_method(
                        ResearchActivities.cache_lookup, lookup,
                        start_to_close_timeout=timedelta(seconds=30), retry_policy=RETRY)
                else:
                    look = await workflow.execute_activity_method(
                        ResearchActivities.cache_lookup, lookup,
                        start_to_close_timeout=timedelta(seconds=30), retry_policy=RETRY)
                cache_key = look.key
                if look.result is not None and req.cache == "use":
                    p.status = "completed"
                    p.session_id = look.result.session_id
                    p.claims = look.result.claims
                    cached = look.result.model_copy(update={
                        "workflow_id": wid, "query": req.query, "cached": True,
                        "cached_from": look.result.cached_from or look.result.workflow_id,
                        "notes": [*look.result.notes, f"answered from the mission's cache (question similarity "
                                                      f"{look.similarity:.2f}; documents and cartridge unchanged)"],
                        "timings_ms": {"total": self._ms(started)}})
                    # webhooks (patched: older histories skip it); a hit whose mission has no endpoint for
                    # the event starts no event workflow (it would cost a child start and a workflow task)
                    if look.subscribed or not workflow.patched("research-hit-emits-if-subscribed"):
                        await emit_research_finished(cached)
                    return cached
            if full:
                session = await workflow.execute_activity_method(
                    ResearchActivities.start_session,
                    SessionInput(mission=req.mission, workflow_id=wid, query=req.query,
                                 params=req.model_dump(mode="json", exclude={"mission", "query"})),
                    start_to_close_timeout=timedelta(seconds=30), retry_policy=RETRY)
                p.session_id = session.session_id

            p.status = "planning"
            t = workflow.now()
            if req.subquestions:
                plan = Plan(subquestions=[q for q in req.subquestions if q.strip()][: req.max_subquestions] or [req.query],
                            planner="given")
            else:
                plan = await workflow.execute_activity_method(
                    ResearchActivities.plan,
                    PlanInput(mission=req.mission, query=req.query, max_subquestions=req.max_subquestions),
                    start_to_close_timeout=timedelta(minutes=3), retry_policy=RETRY)
            p.subquestions = plan.subquestions
            timings["plan"] = self._ms(t)
            notes = list(plan.notes)
            engines: set[str] = set()

            p.status = "retrieving"
            t = workflow.now()
            per_query: list[list[SearchHit]] = [[] for _ in plan.subquestions]

            async def one(i: int, q: str) -> None:
                inp = RetrieveInput(mission=req.mission, query=q, top_k=req.top_k, fusion=req.fusion,
                                    use_graph=req.use_graph, use_web=req.use_web, candidates=max(50, req.top_k * 5))
                out: RetrieveOutput
                if not req.use_web and workflow.patched("research-retrieve-local"):
                    # the mission's own stores answer fast: a local activity runs within the current
                    # workflow task instead of costing a task dispatch and a second workflow task,
                    # each about as long as the retrieval itself; web search can be slow and heartbeats,
                    # so it stays a scheduled activity
                    out = await workflow.execute_local_activity_method(
                        ResearchActivities.retrieve, inp, start_to_close_timeout=timedelta(seconds=60),
                        retry_policy=RETRY)
                else:
                    out = await workflow.execute_activity_method(
                        ResearchActivities.retrieve, inp,
                        start_to_close_timeout=timedelta(minutes=3), heartbeat_timeout=timedelta(minutes=2),
                        retry_policy=RETRY)
                per_query[i] = out.hits
                engines.update(out.engines)
                notes.extend(n for n in out.notes if n not in notes)
                p.retrieved[q] = len(out.hits)
                p.hits = merge_subquestion_hits(per_query, limit)

            limit = hits_limit(req)
            await asyncio.gather(*(one(i, q) for i, q in enumerate(plan.subquestions)))
            hits = merge_subquestion_hits(per_query, limit)
            p.hits = hits
            timings["retrieve"] = self._ms(t)

            if not full:
                p.status = "completed"
                timings["total"] = self._ms(started)
                return ResearchResult(workflow_id=wid, session_id=None, mission=req.mission, query=req.query,
                                      status="completed", planner=plan.planner, subquestions=plan.subquestions,
                                      hits=hits, claims=[], timings_ms=timings, engines=sorted(engines), notes=notes,
                                      discarded_subquestions=plan.discarded)

            p.status = "synthesising"
            t = workflow.now()
            grounding_subquestions: list[str] | None = None
            grounding_hits: list[SearchHit] | None = None
            if 0 < plan.grounding < len(plan.subquestions):  # an LLM planned more than the deterministic plan
                grounding_subquestions = plan.subquestions[:plan.grounding]
                grounding_hits = merge_subquestion_hits(per_query[:plan.grounding], MAX_EVIDENCE_HITS)
            synthesis: Synthesis = await workflow.execute_activity_method(
                ResearchActivities.synthesise,
                SynthesiseInput(mission=req.mission, query=req.query, hits=hits, subquestions=plan.subquestions,
                                grounding_subquestions=grounding_subquestions, grounding_hits=grounding_hits),
                start_to_close_timeout=timedelta(minutes=5), heartbeat_timeout=timedelta(minutes=2),
                retry_policy=RETRY)
            p.claims = synthesis.claims
            timings["synthesise"] = self._ms(t)

            p.status = "persisting"
            t = workflow.now()
            stored = await workflow.execute_activity_method(
                ResearchActivities.persist,
                PersistInput(mission=req.mission, session_id=session.session_id, workflow_id=wid, query=req.query,
                             plan=plan, hits=hits, synthesis=synthesis, started_at=started, finished_at=workflow.now(),
                             notes=notes),
                start_to_close_timeout=timedelta(minutes=2), retry_policy=RETRY)
            timings["persist"] = self._ms(t)
            timings["total"] = self._ms(started)
            final = stored.synthesis or synthesis
            p.claims = final.claims
            result = ResearchResult(
                workflow_id=wid, session_id=session.session_id, mission=req.mission, query=req.query,
                status="completed", planner=plan.planner, subquestions=plan.subquestions, hits=hits,
                claims=final.claims, synthesiser=synthesis.synthesiser,
                dropped_claims=synthesis.dropped_claims + stored.dropped_claims,
                outcome=final.outcome, answer=final.answer, subanswers=final.subanswers, below_bar=final.below_bar,
                closest_evidence=final.closest_evidence, gates=final.gates, engines=sorted(engines),
                notes=notes + [n for n in final.notes if n not in notes], discarded_subquestions=plan.discarded,
                report_md_key=stored.report_md_key, report_json_key=stored.report_json_key, timings_ms=timings)
            if cache_key is not None:
                await workflow.execute_activity_method(
                    ResearchActivities.cache_store,
                    CacheStoreInput(mission=req.mission, key=cache_key, query=req.query, result=result),
                    start_to_close_timeout=timedelta(seconds=30), retry_policy=RETRY)
            p.status = "completed"
            # webhooks (patched: older histories skip it); no event workflow when no endpoint takes it
            if stored.subscribed or not workflow.patched("research-emits-if-subscribed"):
                await emit_research_finished(result)
            return result
        except BaseException as exc:
            cancelled = is_cancelled_exception(exc)
            p.status = "cancelled" if cancelled else "failed"
            cause = exc.cause if isinstance(exc, ActivityError) and exc.cause else exc
            p.error = None if cancelled else str(getattr(cause, "message", None) or cause)
            if full:
                # Record the end state even when cancelled: an activity scheduled after the
                # cancellation was delivered is not itself cancelled. Shielded so a second
                # cancel request cannot interrupt the bookkeeping. Always run (not only once a
                # session id is known): start_session may have written the row before the cancel.
                try:
                    await asyncio.shield(asyncio.ensure_future(workflow.execute_activity_method(
                        ResearchActivities.finish_session,
                        FinishInput(mission=req.mission, workflow_id=wid, status=p.status, error=p.error),
                        start_to_close_timeout=timedelta(seconds=30), retry_policy=RETRY)))
                except ActivityError as cleanup_exc:  # keep the original failure, note the cleanup's
                    workflow.logger.warning("could not record research end state: %s", cleanup_exc)
            if isinstance(cause, ApplicationError) and cause.type in NON_RETRYABLE:
                # Bad input (e.g. unknown mission): fail with the clear message itself.
                raise ApplicationError(cause.message, type=cause.type, non_retryable=True) from None
            raise
