"""A mission's library, read (research-tasks): its documents, the stored text around a
cited span, its research history. One short activity each; the API waits for them."""
from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.research.library import LibraryActivities
    from stratmaster.contracts.library import (
        DOCUMENT_NOT_FOUND, SPAN_OUTSIDE, DocumentList, Excerpt, ExcerptInput, ListDocumentsInput, ListResearchInput, ResearchList,
    )
    from stratmaster.errors import WORKFLOW_INPUT_ERRORS
from workflows.calls import call_activity
from workflows.options import ActivityOptions, retry

READ = ActivityOptions(start_to_close_timeout=timedelta(seconds=20),
                       retry_policy=retry(4, longest=timedelta(seconds=5), also=[DOCUMENT_NOT_FOUND, SPAN_OUTSIDE]))


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class ListDocumentsWorkflow:
    @workflow.run
    async def run(self, req: ListDocumentsInput) -> DocumentList:
        return await call_activity(LibraryActivities.documents, req, READ)


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class DocumentExcerptWorkflow:
    @workflow.run
    async def run(self, req: ExcerptInput) -> Excerpt:
        return await call_activity(LibraryActivities.excerpt, req, READ)


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class ListResearchWorkflow:
    @workflow.run
    async def run(self, req: ListResearchInput) -> ResearchList:
        return await call_activity(LibraryActivities.research, req, READ)


WORKFLOWS = (ListDocumentsWorkflow, DocumentExcerptWorkflow, ListResearchWorkflow)
