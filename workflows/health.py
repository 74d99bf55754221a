from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from workflows.options import retry

with workflow.unsafe.imports_passed_through():
    from activities.ops.health import HealthActivities
    from stratmaster.contracts.health import HealthCheckInput, HealthReport
    from stratmaster.errors import WORKFLOW_INPUT_ERRORS


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class HealthCheckWorkflow:
    """Probe every configured service and return a report (also run on a schedule)."""

    @workflow.run
    async def run(self, req: HealthCheckInput) -> HealthReport:
        services = await workflow.execute_activity_method(
            HealthActivities.check_services, req,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=retry(2),
        )
        return HealthReport(checked_at=workflow.now(), ok=all(s.ok for s in services), services=services)
