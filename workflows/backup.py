"""BackupWorkflow: a mission (or the whole system) into `system/backups/<backup_id>/`.

Workflow id (from the starter): `backup-<scope>-<mission|system>[-<stamp>]`.
The per-store copies run in parallel; the manifest is written last, so a
backup without manifest.json is incomplete by construction.
"""
from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.backup import BackupActivities
    from stratmaster.contracts.maintenance import (
        BackupInput, BackupResult, BackupStep, ListBackupsInput, ListBackupsResult, Manifest, StepResult,
        WriteManifestInput,
    )
    from stratmaster.errors import NON_RETRYABLE

RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1), non_retryable_error_types=NON_RETRYABLE)
QUICK = dict(start_to_close_timeout=timedelta(minutes=2), retry_policy=RETRY)
# Long copies heartbeat; a worker lost mid-copy is noticed within a minute.
COPY = dict(start_to_close_timeout=timedelta(hours=2), heartbeat_timeout=timedelta(seconds=60), retry_policy=RETRY)


def backup_id_from(workflow_id: str) -> str:
    """A valid backup id from a workflow id (scheduled runs append a timestamp)."""
    return re.sub(r"[^a-z0-9_.-]+", "-", workflow_id.lower()).strip("-.")[:100]


def workflow_id_for(req: BackupInput) -> str:
    """The business key starters use: one backup run per scope/mission/backup id."""
    return f"backup-{req.scope}-{req.mission or 'system'}" + (f"-{req.backup_id}" if req.backup_id else "")


@workflow.defn
class BackupWorkflow:
    def __init__(self) -> None:
        self._stage = "planning"

    @workflow.query
    def stage(self) -> str:
        return self._stage

    @workflow.run
    async def run(self, req: BackupInput) -> BackupResult:
        backup_id = req.backup_id or backup_id_from(workflow.info().workflow_id)
        req = req.model_copy(update={"backup_id": backup_id})
        plan = await workflow.execute_activity_method(BackupActivities.plan_backup, req, **QUICK)

        self._stage = "copying"
        calls, owners = [], []
        if req.scope == "system":
            owners.append(None)
            calls.append(workflow.execute_activity_method(
                BackupActivities.backup_postgres_system, BackupStep(backup_id=backup_id, mission=""), **COPY))
        for mission in plan.missions:
            step = BackupStep(backup_id=backup_id, mission=mission, tenant_id=plan.tenant_ids[mission])
            for method in (BackupActivities.backup_postgres_mission, BackupActivities.backup_vectors,
                           BackupActivities.backup_fulltext, BackupActivities.backup_graph,
                           BackupActivities.backup_objects):
                owners.append(mission)
                calls.append(workflow.execute_activity_method(method, step, **COPY))
        results: list[StepResult] = await asyncio.gather(*calls)

        artefacts, counts, server_version = [], {m: {} for m in plan.missions}, None
        for mission, r in zip(owners, results):
            artefacts.extend(r.artefacts)
            server_version = server_version or r.server_version
            if mission:
                counts[mission].update(r.counts)
        self._stage = "manifest"
        manifest = Manifest(backup_id=backup_id, scope=req.scope, missions=plan.missions, created_at=workflow.now(),
                            tables=plan.tables, artefacts=sorted(artefacts, key=lambda a: a.name), counts=counts,
                            server_version=server_version)
        result = await workflow.execute_activity_method(
            BackupActivities.write_manifest, WriteManifestInput(manifest=manifest), **QUICK)
        self._stage = "done"
        return result


@workflow.defn
class ListBackupsWorkflow:
    """The backups in the object store (starters never read storage themselves)."""

    @workflow.run
    async def run(self, req: ListBackupsInput) -> ListBackupsResult:
        return await workflow.execute_activity_method(BackupActivities.list_backups, req, **QUICK)
