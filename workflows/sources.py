"""Sources workflows (task queue ingestion-tasks; contracts in stratmaster/contracts/sources.py,
activities in activities/ingest/sources.py).

SourceSyncWorkflow    id source-sync-<mission>-<source_id> (on demand; the source's Schedule
                      starts the same id + Temporal's timestamp)
    begin (lease + pass number; `busy` when another sync of the source runs)
    -> list page after page in path order: each page marks new/changed files pending in the
       manifest and hands them (at most page_size) to IngestDocumentsWorkflow as a child
       (batch src-<source>-g<pass>-p<page>: parsing limits, exactly-once ids, failure rows),
       then records each file's outcome and deletes replaced versions
    -> delete what the pass did not see, in batches
    -> finish (outcome on the source row, lease released).
    Only a cursor and counters are carried; the workflow continues as new every
    `pages_per_run` pages, so a bucket of 100k keys never sits in one payload or history.
    A crash anywhere resumes: activities are idempotent and child ids deterministic.
AddSourceWorkflow     id source-add-<mission>-<source_id>: check + store the definition, then
                      create/update its Schedule.
RemoveSourceWorkflow  id source-remove-<mission>-<source_id>: stop syncs, delete the Schedule,
                      every document only this source holds (every store), the manifest and the row.
ListSourcesWorkflow / SourceStatusWorkflow: read-only.
"""
from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.ingest.sources import SourceActivities
    from stratmaster.contracts.ingestion import DocumentResult, IngestInput, IngestResult, workflow_id_for
    from stratmaster.contracts.sources import (
        SOURCE_ERRORS, SOURCE_REMOVED, SYNC_SUPERSEDED, AddSourceInput, AddSourceResult, ApplyItem, ApplyPageInput,
        DeleteMissingInput, FinishSyncInput, ListPageInput, ListPageResult, ListSourcesInput, RemovePage,
        RemoveSourceInput, RemoveSourceResult, RemoveState, ScheduleSourceInput, SourceList, SourceStatus,
        SourceStatusInput, SourceSyncInput, SourceSyncProgress, SourceSyncResult, SyncBeginInput, SyncState,
        batch_id_for,
    )
    from stratmaster.errors import WORKFLOW_INPUT_ERRORS
    from stratmaster.search_attributes import for_mission
    from workflows.ingestion import IngestDocumentsWorkflow
from workflows.calls import call_activity, root_cause
from workflows.options import ActivityOptions, retry

RETRY = retry(6, longest=timedelta(seconds=30), also=SOURCE_ERRORS)
SHORT = ActivityOptions(start_to_close_timeout=timedelta(seconds=60), retry_policy=RETRY)
# listing hashes changed files; deleting touches every store: heartbeat, generous deadline
LONG = ActivityOptions(start_to_close_timeout=timedelta(minutes=30), heartbeat_timeout=timedelta(minutes=2),
                      retry_policy=RETRY)
# removal waits for a running sync to stop (SyncRunning is retried) for up to an hour
WAIT = ActivityOptions(start_to_close_timeout=timedelta(seconds=30), schedule_to_close_timeout=timedelta(hours=1),
                      retry_policy=retry(first=timedelta(seconds=2), longest=timedelta(seconds=15),
                                         also=SOURCE_ERRORS))


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class SourceSyncWorkflow:
    def __init__(self) -> None:
        self._p = SourceSyncProgress()

    @workflow.query
    def progress(self) -> SourceSyncProgress:
        return self._p

    def _show(self, st: SyncState, phase: str | None = None) -> None:
        self._p = SourceSyncProgress(**st.totals.model_dump(), mission=self._p.mission, source_id=self._p.source_id,
                                     phase=phase or st.phase, generation=st.generation, ingesting=self._p.ingesting)

    @workflow.run
    async def run(self, req: SourceSyncInput) -> SourceSyncResult:
        info = workflow.info()
        wid = info.workflow_id
        self._p = SourceSyncProgress(mission=req.mission, source_id=req.source_id)
        st = req.resume
        if st is None:
            token = info.first_execution_run_id or info.run_id
            begin = await call_activity(SourceActivities.sync_begin,
                                SyncBeginInput(mission=req.mission, source_id=req.source_id, owner=wid, token=token), SHORT)
            if begin.outcome != "started":
                self._p.phase, self._p.finished = begin.outcome, True
                return SourceSyncResult(mission=req.mission, source_id=req.source_id, workflow_id=wid,
                                        outcome=begin.outcome, detail=begin.detail)
            st = SyncState(token=token, generation=begin.generation, kind=begin.kind)
        st.totals.runs += 1
        self._show(st)
        try:
            steps = 0
            while st.phase != "done":
                if steps >= req.pages_per_run or (steps and workflow.info().is_continue_as_new_suggested()):
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    workflow.continue_as_new(req.model_copy(update={"resume": st}),
                                             search_attributes=for_mission(req.mission))
                if st.phase == "list":
                    await self._page(req, st)
                else:
                    r = await call_activity(SourceActivities.delete_missing,
                                    DeleteMissingInput(mission=req.mission, source_id=req.source_id, token=st.token,
                                                       generation=st.generation, listed_total=st.totals.listed,
                                                       limit=req.delete_batch), LONG)
                    st.totals.deleted += r.files
                    st.totals.documents_deleted += r.documents
                    if not r.more:
                        st.phase = "done"
                steps += 1
                self._show(st)
            fin = await call_activity(SourceActivities.sync_finish,
                              FinishSyncInput(mission=req.mission, source_id=req.source_id, token=st.token,
                                              workflow_id=wid, status="ok", totals=st.totals), SHORT)
            if fin.recorded:  # exact even when a step was retried after a crash
                st.totals.deleted, st.totals.documents_deleted = fin.files_deleted, fin.documents_deleted
            self._show(st, "done")
            self._p.finished = True
            return SourceSyncResult(mission=req.mission, source_id=req.source_id, workflow_id=wid, outcome="synced",
                                    generation=st.generation, totals=st.totals)
        except (ActivityError, ChildWorkflowError, ApplicationError, asyncio.CancelledError) as exc:
            cause = root_cause(exc)
            if isinstance(cause, ApplicationError) and cause.type in (SOURCE_REMOVED, SYNC_SUPERSEDED):
                # removal (or another sync) took over: not a failure of this pass
                self._p.phase, self._p.finished = "removed", True
                return SourceSyncResult(mission=req.mission, source_id=req.source_id, workflow_id=wid,
                                        outcome="removed", detail=cause.message, generation=st.generation,
                                        totals=st.totals)
            cancelled = is_cancelled_exception(exc)
            error = None if cancelled else str(getattr(cause, "message", None) or cause)
            try:  # record the end state; shielded so a second cancel cannot interrupt it
                await asyncio.shield(asyncio.ensure_future(call_activity(
                    SourceActivities.sync_finish,
                    FinishSyncInput(mission=req.mission, source_id=req.source_id, token=st.token, workflow_id=wid,
                                    status="cancelled" if cancelled else "failed", error=error, totals=st.totals), SHORT)))
            except (ActivityError, ApplicationError) as cleanup:
                workflow.logger.warning("could not record the end of sync %s: %s", wid, cleanup)
            self._p.phase, self._p.finished = "cancelled" if cancelled else "failed", True
            if isinstance(cause, ApplicationError) and not cancelled:
                raise ApplicationError(cause.message, type=cause.type, non_retryable=True) from None
            raise

    async def _page(self, req: SourceSyncInput, st: SyncState) -> None:
        page: ListPageResult = await call_activity(
            SourceActivities.list_page,
            ListPageInput(mission=req.mission, source_id=req.source_id, token=st.token, generation=st.generation,
                          page=st.page, cursor=st.cursor, scan_limit=req.scan_limit, page_size=req.page_size), LONG)
        t = st.totals
        t.listed += page.listed
        t.unchanged += page.unchanged
        t.touched += page.touched
        t.new += sum(1 for p in page.pending if p.new)
        t.changed += sum(1 for p in page.pending if not p.new)
        if page.pending:
            batch_id = batch_id_for(req.source_id, st.generation, st.page)
            self._p.ingesting = len(page.pending)
            self._show(st, "ingesting")
            result: IngestResult = await workflow.execute_child_workflow(
                IngestDocumentsWorkflow.run,
                IngestInput(mission=req.mission, documents=[p.ref for p in page.pending], batch_id=batch_id,
                            slice_size=req.slice_size),
                id=workflow_id_for(req.mission, batch_id), search_attributes=for_mission(req.mission))
            # results name their document by its label, clipped like DocumentResult clips it; a label
            # that two results share is left to apply_page, which looks the outcome up in PostgreSQL
            by_label: dict[str, list] = {}
            for res in [*result.documents, *result.failures]:
                by_label.setdefault(res.source, []).append(res)
            items = []
            for p in page.pending:
                found = by_label.get(DocumentResult(source=p.ref.label, status="failed").source) or []
                d = found[0] if len(found) == 1 else None
                if d is None:
                    items.append(ApplyItem(path=p.path, status="missing"))
                else:
                    items.append(ApplyItem(path=p.path, status=d.status, document_id=d.document_id, sha256=d.sha256,
                                           reason_type=d.reason_type, reason=d.reason))
            applied = await call_activity(SourceActivities.apply_page,
                                  ApplyPageInput(mission=req.mission, source_id=req.source_id, token=st.token,
                                                 batch_id=batch_id, items=items), LONG)
            t.ingested += result.totals.ingested
            t.duplicates += result.totals.duplicates
            t.failed += result.totals.failed
            t.documents_deleted += applied.documents_deleted
            self._p.ingesting = 0
        st.cursor = page.next_cursor
        st.page += 1
        t.pages += 1
        if page.done:
            st.phase = "delete"


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class AddSourceWorkflow:
    @workflow.run
    async def run(self, req: AddSourceInput) -> AddSourceResult:
        result = await call_activity(SourceActivities.add, req, SHORT)
        await call_activity(SourceActivities.schedule,
                    ScheduleSourceInput(mission=req.mission, source_id=req.source.source_id,
                                        interval_seconds=req.source.interval_seconds), SHORT)
        return result


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class RemoveSourceWorkflow:
    @workflow.run
    async def run(self, req: RemoveSourceInput) -> RemoveSourceResult:
        state = req.resume
        if state is None:
            begin = await call_activity(SourceActivities.remove_begin, req, SHORT)
            sched_deleted = await call_activity(SourceActivities.schedule,
                                        ScheduleSourceInput(mission=req.mission, source_id=req.source_id,
                                                            action="delete"), SHORT)
            if not begin.found:
                return RemoveSourceResult(mission=req.mission, source_id=req.source_id, status="not_found",
                                          schedule_deleted=sched_deleted)
            await call_activity(SourceActivities.wait_idle, RemovePage(mission=req.mission, source_id=req.source_id, limit=1),
                        WAIT)
            state = RemoveState(schedule_deleted=sched_deleted)
        page = RemovePage(mission=req.mission, source_id=req.source_id, limit=req.batch)
        calls = 0
        while True:
            if calls and (calls >= 500 or workflow.info().is_continue_as_new_suggested()):
                workflow.continue_as_new(req.model_copy(update={"resume": state}),
                                         search_attributes=for_mission(req.mission))
            r = await call_activity(SourceActivities.remove_page, page, LONG)
            calls += 1
            state.files += r.files
            state.documents += r.documents
            if not r.more:
                break
        done = await call_activity(SourceActivities.remove_finish, req, SHORT)
        return RemoveSourceResult(mission=req.mission, source_id=req.source_id, status="removed",
                                  files_removed=max(done.files, state.files),
                                  documents_deleted=max(done.documents, state.documents),
                                  schedule_deleted=state.schedule_deleted)


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class ListSourcesWorkflow:
    @workflow.run
    async def run(self, req: ListSourcesInput) -> SourceList:
        return await call_activity(SourceActivities.list_sources, req, SHORT)


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class SourceStatusWorkflow:
    @workflow.run
    async def run(self, req: SourceStatusInput) -> SourceStatus:
        return await call_activity(SourceActivities.status, req, SHORT)


WORKFLOWS = (SourceSyncWorkflow, AddSourceWorkflow, RemoveSourceWorkflow, ListSourcesWorkflow, SourceStatusWorkflow)
