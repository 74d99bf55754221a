"""MaintenanceWorkflow (vacuum | optimise | retention | health | capacity | all)
and AnalyticsExportWorkflow. Each kind is also run on its own Schedule
(stratmaster/schedules.py)."""
from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.ops.analytics import AnalyticsActivities
    from activities.ops.maintenance import MaintenanceActivities
    from stratmaster.contracts.health import HealthCheckInput
    from stratmaster.contracts.maintenance import (
        AnalyticsExportInput, AnalyticsExportResult, Empty, ExpireDocumentsInput, MaintenanceInput, MaintenanceReport,
        RetentionInput, RetentionReport,
    )
    from stratmaster import queues
    from stratmaster.errors import WORKFLOW_INPUT_ERRORS
    from workflows.health import HealthCheckWorkflow
from workflows.options import ActivityOptions, retry

RETRY = retry(3, first=timedelta(seconds=2))
LONG = ActivityOptions(start_to_close_timeout=timedelta(hours=1), heartbeat_timeout=timedelta(minutes=2),
                      retry_policy=RETRY)
# documents_days: batches per run at most (history stays small; the next scheduled run continues)
MAX_DOCUMENT_BATCHES = 200


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class MaintenanceWorkflow:
    @workflow.run
    async def run(self, req: MaintenanceInput) -> MaintenanceReport:
        started = workflow.now()
        kinds = ["vacuum", "optimise", "retention", "health", "capacity"] if req.kind == "all" else [req.kind]
        report = MaintenanceReport(kind=req.kind, started_at=started, finished_at=started)
        # Retention before vacuum: VACUUM then reclaims what retention deleted.
        if "retention" in kinds:
            report.retention = await workflow.execute_activity_method(
                MaintenanceActivities.enforce_retention, RetentionInput(now=workflow.now()), **LONG)
            # patched: runs started before documents_days existed replay without these activities
            if workflow.patched("retention-documents"):
                await self._expire_documents(req, report.retention)
            # Expired deactivated missions: the missions area owns the purge (mission-tasks queue).
            purge = await workflow.execute_child_workflow(
                "PurgeExpiredMissionsWorkflow", {"now": workflow.now().isoformat(), "actor": "maintenance"},
                id=f"{workflow.info().workflow_id}-purge", task_queue=queues.MISSIONS, result_type=dict,
                execution_timeout=timedelta(minutes=30), parent_close_policy=ParentClosePolicy.TERMINATE)
            report.retention.purged_missions = list(purge.get("purged") or [])
            report.retention.waiting_missions = sorted(purge.get("waiting") or {})
        if "vacuum" in kinds:
            report.vacuum = await workflow.execute_activity_method(MaintenanceActivities.vacuum_analyze, Empty(), **LONG)
        if "optimise" in kinds:
            report.optimise = await workflow.execute_activity_method(
                MaintenanceActivities.optimise_indexes, Empty(), **LONG)
        if "health" in kinds:
            report.health = await workflow.execute_child_workflow(
                HealthCheckWorkflow.run, HealthCheckInput(),
                id=f"{workflow.info().workflow_id}-health", execution_timeout=timedelta(minutes=5),
                parent_close_policy=ParentClosePolicy.TERMINATE)
        if "capacity" in kinds:
            report.capacity = await workflow.execute_activity_method(
                MaintenanceActivities.capacity_report, RetentionInput(now=workflow.now()), **LONG)
        report.finished_at = workflow.now()
        return report

    async def _expire_documents(self, req: MaintenanceInput, retention: RetentionReport) -> None:
        """Bounded batches, one cut-off for the whole run (oldest documents first)."""
        batch = ExpireDocumentsInput(now=workflow.now(), limit=req.document_batch)
        expired = retention.expired_documents
        for _ in range(MAX_DOCUMENT_BATCHES):
            done = await workflow.execute_activity_method(MaintenanceActivities.expire_documents, batch, **LONG)
            for mission, ids in done.deleted.items():
                expired[mission] = expired.get(mission, 0) + len(ids)
            if not done.more or not done.deleted:
                return
        retention.notes.append(
            f"documents_days: stopped after {MAX_DOCUMENT_BATCHES} batches; the next run continues")


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class AnalyticsExportWorkflow:
    """DuckDB over PostgreSQL -> Parquet (an activity: reading PostgreSQL is a storage touch)."""

    @workflow.run
    async def run(self, req: AnalyticsExportInput) -> AnalyticsExportResult:
        if not req.export_id:
            req = req.model_copy(update={"export_id": workflow.now().strftime("%Y%m%dt%H%M%S")})
        return await workflow.execute_activity_method(AnalyticsActivities.export_research_metrics, req, **LONG)
