"""IngestDocumentsWorkflow: ingest a batch of documents into a mission.

Parent (id `ingest-<mission>-<batch_id>`)
  - checks the mission once (unknown mission: the batch fails with a clear error);
  - fans out IngestSliceWorkflow children over slices of `slice_size` documents,
    at most `max_concurrent_slices` at a time (a sliding window);
  - keeps live progress from the children's progress signals (query `progress`);
  - continues as new after `slices_per_run` slices (or when Temporal suggests it),
    carrying the totals, so its history stays bounded for very large batches;
  - returns the aggregated IngestResult.
Child: consecutive small documents (each <= `group_doc_bytes`) go `group_docs` at a
time through one `ingest_documents` activity (one batched embedding call, each
document still parsed, written and failed on its own); bigger ones through one
`ingest_document` activity each; `doc_concurrency` activities at a time.
A bad document fails alone: its failure is recorded (ingestion_failures + result)
and the rest of the batch lands.
"""
from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.ingest.activities import IngestionActivities
    from stratmaster.contracts.ingestion import (
        EMPTY_DOCUMENT, MAX_LISTED_DOCUMENTS, MAX_LISTED_FAILURES, CheckMissionInput, DocumentDone, DocumentResult,
        IngestDocumentInput, IngestGroupInput, IngestInput, IngestProgress, IngestResult, IngestState, IngestTotals, RecordFailureInput, SliceInput,
        SliceProgress, SliceResult,
    )
    from stratmaster.errors import UNKNOWN_MISSION, WORKFLOW_INPUT_ERRORS
    from stratmaster.search_attributes import for_mission
from workflows.webhooks import emit_ingestion_finished
from workflows.options import retry

DOCUMENT_RETRY = retry(6, longest=timedelta(seconds=30), also=[EMPTY_DOCUMENT])
# marks histories whose slices group small documents (older ones replay the per-document path)
GROUPS_PATCH = "ingest-document-groups"
SMALL_RETRY = retry(10, longest=timedelta(seconds=20))


def _failure_reason(err: BaseException) -> tuple[str, str]:
    """(reason_type, readable reason) from an activity/child failure chain."""
    cause = err.cause if isinstance(err, (ActivityError, ChildWorkflowError)) and err.cause else err
    if isinstance(cause, ApplicationError):
        return cause.type or "ApplicationError", cause.message
    if isinstance(cause, TimeoutError):
        return "Timeout", f"timed out ({cause.type.name if cause.type else 'timeout'}) after all retries"
    return type(cause).__name__, str(cause) or type(cause).__name__


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class IngestSliceWorkflow:
    """Ingest one slice of a batch; signals finished documents to the parent (throttled)."""

    @workflow.run
    async def run(self, req: SliceInput) -> SliceResult:
        sem = asyncio.Semaphore(req.doc_concurrency)
        parent = workflow.get_external_workflow_handle(req.report_to) if req.report_to else None
        unsent: list[DocumentDone] = []
        last_sent = workflow.now()

        async def report(force: bool = False) -> None:
            nonlocal last_sent
            if parent is None or not unsent:
                return
            now = workflow.now()
            if not force and (now - last_sent).total_seconds() < req.progress_every_s:
                return
            batch = list(unsent)
            unsent.clear()
            last_sent = now
            try:
                await parent.signal(IngestDocumentsWorkflow.slice_progress, SliceProgress(done=batch))
            except Exception:  # progress is best effort; the slice result is authoritative
                workflow.logger.warning("progress signal to %s failed", req.report_to)

        async def one(i: int) -> DocumentResult:
            ref = req.documents[i]
            async with sem:
                try:
                    result = await workflow.execute_activity_method(
                        IngestionActivities.ingest_document,
                        IngestDocumentInput(mission=req.mission, batch_id=req.batch_id, ref=ref),
                        start_to_close_timeout=timedelta(seconds=req.document_timeout_s),
                        heartbeat_timeout=timedelta(seconds=req.heartbeat_timeout_s),
                        retry_policy=DOCUMENT_RETRY,
                    )
                except ActivityError as err:
                    reason_type, reason = _failure_reason(err)
                    result = DocumentResult(source=ref.label, status="failed", reason_type=reason_type, reason=reason)
                    try:
                        await workflow.execute_activity_method(
                            IngestionActivities.record_failure,
                            RecordFailureInput(mission=req.mission, batch_id=req.batch_id, source=ref.label,
                                               reason_type=reason_type, reason=reason),
                            start_to_close_timeout=timedelta(seconds=30), retry_policy=SMALL_RETRY,
                        )
                    except ActivityError:
                        workflow.logger.warning("could not record the failure of %s", ref.label)
            unsent.append(DocumentDone(index=req.offset + i, result=result))
            await report()
            return result

        if req.group_docs > 1 and workflow.patched(GROUPS_PATCH):
            results = await self._grouped(req, sem, one, unsent, report)
        else:
            results = await asyncio.gather(*(one(i) for i in range(len(req.documents))))
        # the rest is carried by the result itself, except for the parent's live view in between
        return SliceResult(slice_index=req.slice_index, results=list(results))

    async def _grouped(self, req: SliceInput, sem: asyncio.Semaphore, one, unsent: list, report) -> list:
        """Consecutive documents `group_docs` at a time through `ingest_documents`; the
        ones it hands back (too big), or a whole group whose activity failed for good,
        go through `one` (the single-document activity, which fails a document alone)."""
        n = len(req.documents)
        results: list[DocumentResult | None] = [None] * n

        async def group(first: int) -> None:
            idx = list(range(first, min(first + req.group_docs, n)))
            async with sem:
                try:
                    out = await workflow.execute_activity_method(
                        IngestionActivities.ingest_documents,
                        IngestGroupInput(mission=req.mission, batch_id=req.batch_id,
                                         refs=[req.documents[i] for i in idx], max_doc_bytes=req.group_doc_bytes),
                        start_to_close_timeout=timedelta(seconds=req.document_timeout_s),
                        heartbeat_timeout=timedelta(seconds=req.heartbeat_timeout_s),
                        retry_policy=DOCUMENT_RETRY,
                    )
                    got = list(out.results)
                except ActivityError as err:
                    reason_type, reason = _failure_reason(err)
                    workflow.logger.warning("group from %d failed (%s: %s); ingesting its documents one by one",
                                            req.offset + first, reason_type, reason)
                    got = [None] * len(idx)
            alone = []
            for i, r in zip(idx, got):
                if r is None:
                    alone.append(i)
                else:
                    results[i] = r
                    unsent.append(DocumentDone(index=req.offset + i, result=r))
            await report()
            for i, r in zip(alone, await asyncio.gather(*(one(i) for i in alone))):
                results[i] = r

        await asyncio.gather(*(group(first) for first in range(0, n, req.group_docs)))
        return results


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class IngestDocumentsWorkflow:
    def __init__(self) -> None:
        self._req: IngestInput | None = None
        self._batch_id = ""
        self._state = IngestState(totals=IngestTotals())
        self._live: dict[int, DocumentResult] = {}  # batch index -> result, for slices still running
        self._running: dict[int, tuple[int, int]] = {}  # slice index -> (first batch index, size)
        self._finished = False

    # ------------------------------------------------------------ progress
    @workflow.signal
    def slice_progress(self, progress: SliceProgress) -> None:
        for done in progress.done:
            if any(first <= done.index < first + size for first, size in self._running.values()):
                self._live[done.index] = done.result

    @workflow.query
    def progress(self) -> IngestProgress:
        t = self._state.totals.model_copy()
        for r in self._live.values():
            _count(t, r)
        current: list[str] = []
        if self._req is not None:
            per_slice = self._req.doc_concurrency * self._req.group_docs  # up to that many in flight
            for first, size in self._running.values():
                waiting = [i for i in range(first, first + size) if i not in self._live]
                for i in waiting[:per_slice]:
                    local = i - self._state.offset
                    if 0 <= local < len(self._req.documents):
                        current.append(self._req.documents[local].label)
        return IngestProgress(**t.model_dump(), mission=self._req.mission if self._req else "",
                              batch_id=self._batch_id, current=current, finished=self._finished)

    # ------------------------------------------------------------ run
    @workflow.run
    async def run(self, req: IngestInput) -> IngestResult:
        self._req = req
        self._batch_id = req.resolved_batch_id()
        if req.resume is not None:
            self._state = req.resume
        else:
            self._state = IngestState(totals=IngestTotals(total=len(req.documents)))
            try:
                await workflow.execute_activity_method(
                    IngestionActivities.check_mission, CheckMissionInput(mission=req.mission),
                    start_to_close_timeout=timedelta(seconds=30), retry_policy=SMALL_RETRY)
            except ActivityError as err:
                reason_type, reason = _failure_reason(err)
                raise ApplicationError(reason, type=reason_type or UNKNOWN_MISSION, non_retryable=True) from None

        docs = req.documents
        size = req.slice_size
        slices = [(start, docs[start:start + size]) for start in range(0, len(docs), size)]
        tasks: set[asyncio.Task] = set()
        started = 0
        handled = 0  # documents of this run given to a slice
        for start, part in slices:
            if started >= req.slices_per_run or (started and workflow.info().is_continue_as_new_suggested()):
                break
            await workflow.wait_condition(lambda: len(self._running) < req.max_concurrent_slices)
            slice_index = self._state.slices_done + started
            self._running[slice_index] = (self._state.offset + start, len(part))  # before the window check
            tasks.add(asyncio.create_task(self._run_slice(slice_index, self._state.offset + start, part)))
            started += 1
            handled = start + len(part)
        if tasks:
            await asyncio.gather(*tasks)

        if handled < len(docs):
            # history is getting long: hand the rest to a fresh run with the totals so far
            await workflow.wait_condition(workflow.all_handlers_finished)
            self._state.offset += handled
            self._state.slices_done += started
            workflow.continue_as_new(
                req.model_copy(update={"documents": docs[handled:], "batch_id": self._batch_id,
                                       "resume": self._state}),
                search_attributes=for_mission(req.mission))

        self._finished = True
        successes = self._state.documents
        result = IngestResult(mission=req.mission, batch_id=self._batch_id, totals=self._state.totals,
                              failures=self._state.failures, documents=successes,
                              documents_truncated=self._state.totals.ingested + self._state.totals.duplicates
                              > len(successes),
                              failures_truncated=self._state.totals.failed > len(self._state.failures))
        if not self._batch_id.startswith("src-"):  # a source sync's pages are its own business, not events
            await emit_ingestion_finished(result)  # webhooks (patched: older histories skip it)
        return result

    async def _run_slice(self, slice_index: int, first: int, part: list) -> None:
        req = self._req
        assert req is not None
        try:
            result: SliceResult = await workflow.execute_child_workflow(
                IngestSliceWorkflow.run,
                SliceInput(mission=req.mission, batch_id=self._batch_id, slice_index=slice_index, offset=first,
                           documents=part, doc_concurrency=req.doc_concurrency, group_docs=req.group_docs,
                           group_doc_bytes=req.group_doc_bytes, report_to=workflow.info().workflow_id,
                           heartbeat_timeout_s=req.heartbeat_timeout_s, document_timeout_s=req.document_timeout_s,
                           progress_every_s=req.progress_every_s),
                id=f"{workflow.info().workflow_id}-slice-{slice_index}",
                search_attributes=for_mission(req.mission),
            )
            results = result.results
        except ChildWorkflowError as err:
            # should not happen (slices catch document failures); keep the batch going
            reason_type, reason = _failure_reason(err)
            results = [self._live.get(first + i) or DocumentResult(
                source=ref.label, status="failed", reason_type=reason_type, reason=f"slice failed: {reason}")
                for i, ref in enumerate(part)]
        for i in range(len(part)):
            self._live.pop(first + i, None)
        del self._running[slice_index]
        for r in results:
            _count(self._state.totals, r)
            if r.status == "failed":
                if len(self._state.failures) < MAX_LISTED_FAILURES:
                    self._state.failures.append(r)
            elif len(self._state.documents) < MAX_LISTED_DOCUMENTS:
                self._state.documents.append(r)


def _count(t: IngestTotals, r: DocumentResult) -> None:
    t.done += 1
    if r.status == "ingested":
        t.ingested += 1
        t.chunks += r.chunks
    elif r.status == "duplicate":
        t.duplicates += 1
    else:
        t.failed += 1
