"""RecordAuditWorkflow: one audit_log row per API write (or any other actor's
action). Short and idempotent: the workflow id is audit-<request_id> and the row
is keyed by request_id."""
from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from workflows.options import retry

with workflow.unsafe.imports_passed_through():
    from activities.ops.audit import AuditActivities
    from stratmaster.contracts.audit import AuditEntry, AuditRecorded
    from stratmaster.errors import WORKFLOW_INPUT_ERRORS


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class RecordAuditWorkflow:
    @workflow.run
    async def run(self, entry: AuditEntry) -> AuditRecorded:
        return await workflow.execute_activity_method(
            AuditActivities.record_audit, entry,
            start_to_close_timeout=timedelta(seconds=30),
            # keep trying through a database outage (the write request already happened),
            # but not forever: an entry that cannot be stored fails at once (BadInput), and
            # one the database cannot take for a day fails the run, visible in Temporal.
            schedule_to_close_timeout=timedelta(hours=24),
            retry_policy=retry(longest=timedelta(minutes=1)),
        )
