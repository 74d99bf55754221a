"""BackupWorkflow: a mission (or the whole system) into `system/backups/<backup_id>/`.

Workflow id (from the starter): `backup-<scope>-<mission|system>[-<stamp>]`.
Missions go page by page (`page_size`, name order); a page's per-store copies
run in parallel, and each step records its artefacts in the backup's parts/
folder, returning only a summary. After `pages_per_run` pages (or when Temporal
suggests it) the run continues as new, so neither a payload nor the history
grows with the number of missions. The manifest is written last, from the parts:
a backup without manifest.json is incomplete by construction.

Bad input fails the run, it is never retried: an input that does not decode
(WORKFLOW_INPUT_ERRORS), an unknown mission or a bad/used backup id (non-retryable
activity errors); every activity has a bounded RetryPolicy and timeouts.
"""
from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.ops.backup import BackupActivities
    from stratmaster.contracts.maintenance import (
        BACKUP_ID, BackupInput, BackupProgress, BackupResult, BackupStep, BeginBackupInput, ListBackupsInput,
        ListBackupsResult, PlanInput, WriteManifestInput,
    )
    from stratmaster.errors import BAD_INPUT, WORKFLOW_INPUT_ERRORS
from workflows.options import ActivityOptions, retry
from workflows.webhooks import emit_backup_finished

RETRY = retry(5, longest=timedelta(minutes=1), also=["TargetNotEmpty"])
QUICK = ActivityOptions(start_to_close_timeout=timedelta(minutes=2), retry_policy=RETRY)
# Reads every part / manifest: heartbeats, so a lost worker is noticed within a minute.
SCAN = ActivityOptions(start_to_close_timeout=timedelta(minutes=30), heartbeat_timeout=timedelta(seconds=60),
                      retry_policy=RETRY)
# Long copies heartbeat; a worker lost mid-copy is noticed within a minute.
COPY = ActivityOptions(start_to_close_timeout=timedelta(hours=2), heartbeat_timeout=timedelta(seconds=60),
                      retry_policy=RETRY)

MISSION_STEPS = (BackupActivities.backup_postgres_mission, BackupActivities.backup_vectors,
                 BackupActivities.backup_fulltext, BackupActivities.backup_graph, BackupActivities.backup_objects)


def backup_id_from(workflow_id: str) -> str:
    """A valid backup id from a workflow id (scheduled runs append a timestamp)."""
    return re.sub(r"[^a-z0-9_.-]+", "-", workflow_id.lower()).strip("-.")[:100]


def workflow_id_for(req: BackupInput) -> str:
    """The business key starters use: one backup run per scope/mission/backup id."""
    from stratmaster.workflow_ids import backup_workflow_id  # the one id builder (CLI, API)

    return backup_workflow_id(req)


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class BackupWorkflow:
    def __init__(self) -> None:
        self._stage = "planning"

    @workflow.query
    def stage(self) -> str:
        return self._stage

    @workflow.run
    async def run(self, req: BackupInput) -> BackupResult:
        backup_id = req.backup_id or backup_id_from(workflow.info().workflow_id)
        if not re.fullmatch(BACKUP_ID, backup_id):
            raise ApplicationError(f"no valid backup id from workflow id {workflow.info().workflow_id!r}: pass "
                                   "backup_id", type=BAD_INPUT, non_retryable=True)
        req = req.model_copy(update={"backup_id": backup_id})
        progress = req.progress
        if progress is None:  # the first run of the chain
            await workflow.execute_activity_method(BackupActivities.begin_backup,
                                                   BeginBackupInput(backup_id=backup_id), **QUICK)
            progress = BackupProgress(created_at=workflow.now())

        self._stage = "copying"
        pages = 0
        while True:
            page = await workflow.execute_activity_method(
                BackupActivities.plan_backup, PlanInput(backup_id=backup_id, scope=req.scope, mission=req.mission,
                                                        after=progress.after, limit=req.page_size), **QUICK)
            calls = []
            if req.scope == "system" and not progress.system_done:
                calls.append(workflow.execute_activity_method(
                    BackupActivities.backup_postgres_system, BackupStep(backup_id=backup_id, mission=""), **COPY))
            for m in page.missions:
                step = BackupStep(backup_id=backup_id, mission=m.name, tenant_id=m.tenant_id)
                calls += [workflow.execute_activity_method(method, step, **COPY) for method in MISSION_STEPS]
            await asyncio.gather(*calls)  # summaries only: the artefact lists are in parts/
            progress = progress.model_copy(update={
                "system_done": True, "after": page.missions[-1].name if page.missions else progress.after})
            pages += 1
            if not page.more:
                break
            if pages >= req.pages_per_run or workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(req.model_copy(update={
                    "progress": progress.model_copy(update={"runs": progress.runs + 1})}))

        self._stage = "manifest"
        result = await workflow.execute_activity_method(
            BackupActivities.write_manifest,
            WriteManifestInput(backup_id=backup_id, scope=req.scope, created_at=progress.created_at), **SCAN)
        self._stage = "done"
        await emit_backup_finished(req, result)  # webhooks (patched: older histories skip it)
        return result


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class ListBackupsWorkflow:
    """The backups in the object store (starters never read storage themselves)."""

    @workflow.run
    async def run(self, req: ListBackupsInput) -> ListBackupsResult:
        return await workflow.execute_activity_method(BackupActivities.list_backups, req, **SCAN)
