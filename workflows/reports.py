"""RenderReportWorkflow (task queue `research-tasks`): a completed research's report
as Markdown, HTML, PDF and DOCX, stored under the mission's artifacts
(`artifacts/research/<session_id>/report.<format>`); the result carries the bytes
of the format asked for (`fetch`). One short activity on the research worker."""
from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError
from workflows.options import retry

with workflow.unsafe.imports_passed_through():
    from activities.research.reports import ReportActivities
    from stratmaster.contracts.reports import REPORT_NOT_FOUND, RenderedReport, RenderReportInput
    from stratmaster.errors import NON_RETRYABLE, WORKFLOW_INPUT_ERRORS

NOT_RETRIED = [*NON_RETRYABLE, REPORT_NOT_FOUND]
RETRY = retry(4, longest=timedelta(seconds=20), also=[REPORT_NOT_FOUND])


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class RenderReportWorkflow:
    @workflow.run
    async def run(self, req: RenderReportInput) -> RenderedReport:
        try:
            return await workflow.execute_activity_method(
                ReportActivities.render_report, req, start_to_close_timeout=timedelta(minutes=3),
                heartbeat_timeout=timedelta(minutes=1), retry_policy=RETRY)
        except ActivityError as exc:  # fail as the activity's own error (e.g. ReportNotFound), not wrapped
            cause = exc.cause
            if isinstance(cause, ApplicationError) and cause.type in NOT_RETRIED:
                raise ApplicationError(cause.message, type=cause.type, non_retryable=True) from None
            raise
