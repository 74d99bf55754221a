"""RestoreWorkflow and VerifyBackupWorkflow.

Restore validates the WHOLE backup first (manifest, every artefact's size and
sha256), then checks every target is empty (or wipes it with `replace`), and
only then writes. Verify = checksums + a restore drill into a scratch mission
namespace (`<mission>_drill_<id>`, PostgreSQL rows in a scratch schema),
compares counts with the manifest and drops the scratch namespace.
"""
from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.backup import BackupActivities
    from stratmaster.contracts.maintenance import (
        CountInput, DropDrillInput, ListBackupsInput, Manifest, RestoreInput, RestoreResult, RestoreStep, ValidateInput,
        VerifyBackupInput, VerifyBackupResult,
    )
    from stratmaster.errors import NON_RETRYABLE

RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1),
                    non_retryable_error_types=[*NON_RETRYABLE, "TargetNotEmpty"])
QUICK = dict(start_to_close_timeout=timedelta(minutes=5), heartbeat_timeout=timedelta(seconds=60), retry_policy=RETRY)
COPY = dict(start_to_close_timeout=timedelta(hours=2), heartbeat_timeout=timedelta(seconds=60), retry_policy=RETRY)

STORE_RESTORES = (BackupActivities.restore_vectors, BackupActivities.restore_fulltext,
                  BackupActivities.restore_graph, BackupActivities.restore_objects)


async def restore_mission(step: RestoreStep) -> dict[str, int]:
    """PostgreSQL rows and every store for one mission, in parallel; merged counts."""
    results = await asyncio.gather(
        workflow.execute_activity_method(BackupActivities.restore_postgres_mission, step, **COPY),
        *[workflow.execute_activity_method(m, step, **COPY) for m in STORE_RESTORES])
    counts: dict[str, int] = {}
    for r in results:
        counts.update(r.counts)
    return counts


async def validate(backup_id: str) -> Manifest:
    return (await workflow.execute_activity_method(
        BackupActivities.validate_backup, ValidateInput(backup_id=backup_id), **QUICK)).manifest


@workflow.defn
class RestoreWorkflow:
    @workflow.run
    async def run(self, req: RestoreInput) -> RestoreResult:
        manifest = await validate(req.backup_id)  # refuses corrupt/incomplete backups before any write
        missions = [m for m in manifest.missions if req.mission in (None, m)]
        if req.mission and not missions:
            raise ApplicationError(f"backup {req.backup_id} has no mission {req.mission!r}", type="BadInput",
                                   non_retryable=True)
        steps = [RestoreStep(backup_id=req.backup_id, source_mission=m, target_mission=m, replace=req.replace)
                 for m in missions]
        if req.full_database and manifest.scope != "system":
            raise ApplicationError("full_database needs a system backup", type="BadInput", non_retryable=True)
        # Every target checked (or wiped with replace) before anything is written.
        for step in steps:
            await workflow.execute_activity_method(BackupActivities.prepare_restore_target, step, **QUICK)
        if req.full_database:
            # the whole database from pg_dump (refuses a database with missions unless replace)
            await workflow.execute_activity_method(
                BackupActivities.restore_postgres_system,
                RestoreStep(backup_id=req.backup_id, source_mission="", target_mission="", replace=req.replace), **COPY)
        counts = {}
        for step in steps:
            if req.full_database:
                results = await asyncio.gather(*[workflow.execute_activity_method(m, step, **COPY) for m in STORE_RESTORES])
                counts[step.target_mission] = {k: v for r in results for k, v in r.counts.items()}
            else:
                counts[step.target_mission] = await restore_mission(step)
        return RestoreResult(backup_id=req.backup_id, missions=missions, counts=counts)


def drill_names(mission: str, short: str, i: int) -> tuple[str, str]:
    """(store namespace, scratch schema) for a drill; mission ids stay <= 48 chars."""
    return f"{mission[:30]}_drill_{short}", f"drill_{short}_{i}"


@workflow.defn
class VerifyBackupWorkflow:
    @workflow.run
    async def run(self, req: VerifyBackupInput) -> VerifyBackupResult:
        if not req.backup_id:
            listed = await workflow.execute_activity_method(
                BackupActivities.list_backups, ListBackupsInput(mission=req.mission), **QUICK)
            if not listed.backups:
                return VerifyBackupResult(backup_id="", ok=False, checksums_ok=False, drill_missions=[], expected={},
                                          restored={}, problems=["no backup to verify"])
            req = req.model_copy(update={"backup_id": listed.backups[0].backup_id})
        try:
            manifest = await validate(req.backup_id)
        except ActivityError as exc:
            cause = exc.cause.message if isinstance(exc.cause, ApplicationError) else str(exc)
            return VerifyBackupResult(backup_id=req.backup_id, ok=False, checksums_ok=False, drill_missions=[],
                                      expected={}, restored={}, problems=[cause])
        problems: list[str] = []
        if manifest.scope == "system":
            try:
                await workflow.execute_activity_method(BackupActivities.check_pg_dump,
                                                       ValidateInput(backup_id=req.backup_id), **COPY)
            except ActivityError as exc:
                problems.append(exc.cause.message if isinstance(exc.cause, ApplicationError) else str(exc))
        short = workflow.uuid4().hex[:8]
        drills, restored = [], {}
        gate = asyncio.Semaphore(4)  # a few drills at a time: bounded load on the stores

        async def drill_one(i: int, mission: str) -> None:
            drill, schema = drill_names(mission, short, i)
            step = RestoreStep(backup_id=req.backup_id, source_mission=mission, target_mission=drill,
                               scratch_schema=schema)
            async with gate:
                try:
                    await workflow.execute_activity_method(BackupActivities.prepare_restore_target, step, **QUICK)
                    await restore_mission(step)
                    # Count independently of what the restore activities reported.
                    pg, st = await asyncio.gather(
                        workflow.execute_activity_method(BackupActivities.count_postgres_rows, CountInput(
                            mission=drill, pg_mission=mission, scratch_schema=schema), **QUICK),
                        workflow.execute_activity_method(BackupActivities.count_store_records,
                                                         CountInput(mission=drill), **QUICK))
                    restored[mission] = {**pg.counts, **st.counts}
                    for key, want in sorted(manifest.counts.get(mission, {}).items()):
                        got = restored[mission].get(key)
                        if got != want:
                            problems.append(f"{mission}: {key} restored {got}, backup has {want}")
                except ActivityError as exc:
                    problems.append(f"{mission}: drill failed: "
                                    + (exc.cause.message if isinstance(exc.cause, ApplicationError) else str(exc)))
                finally:
                    await workflow.execute_activity_method(
                        BackupActivities.drop_drill, DropDrillInput(mission=drill, scratch_schema=schema), **QUICK)

        for i, mission in enumerate(manifest.missions):
            drills.append(drill_names(mission, short, i)[0])
        await asyncio.gather(*[drill_one(i, m) for i, m in enumerate(manifest.missions)])
        problems.sort()
        return VerifyBackupResult(backup_id=req.backup_id, ok=not problems, checksums_ok=True, drill_missions=drills,
                                  expected=manifest.counts, restored=restored, problems=problems)
