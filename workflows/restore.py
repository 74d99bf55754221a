"""RestoreWorkflow and VerifyBackupWorkflow.

Restore validates the WHOLE backup first -- the manifest's names against what the
backup code writes, every artefact's size and sha256, and every PostgreSQL row
against its mission (activities/ops/restore.py validate_backup) -- then checks every
target is empty (or wipes it with `replace`), and only then writes. Later steps
carry the validated manifest's sha256 and refuse any other manifest.

Verify = the same validation + a restore drill into a scratch mission namespace
(`<mission>_drill_<id>`, PostgreSQL rows in a scratch schema), compares counts with
the manifest and drops the scratch namespace. Without a backup id it verifies the
newest backup by the object store's own timestamp of manifest.json (list_backups),
not by the manifest's `created_at`, which is only data.

Missions go page by page (`page_size`); after `pages_per_run` pages the run
continues as new. Results name at most MAX_DETAIL missions and MAX_PROBLEMS
problems (with totals), so they stay far below Temporal's payload limit.

Bad input fails the run and is never retried: an input that does not decode
(WORKFLOW_INPUT_ERRORS), an unknown backup, a corrupt or crafted one
(CorruptBackup), a mission the backup does not have (BadInput); every activity
has a bounded RetryPolicy and timeouts.
"""
from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.ops.backup import BackupActivities
    from activities.ops.restore import RestoreActivities
    from activities.ops.restore_drill import DrillActivities
    from stratmaster.contracts.maintenance import (
        MAX_DETAIL, MAX_PROBLEMS, CountInput, DropDrillInput, ListBackupsInput, MissionsPageInput, RestoreInput,
        RestoreProgress, RestoreResult, RestoreStep, ValidateInput, VerifyBackupInput, VerifyBackupResult,
        VerifyProgress, clip,
    )
    from stratmaster.errors import WORKFLOW_INPUT_ERRORS
from workflows.options import ActivityOptions, retry

RETRY = retry(5, longest=timedelta(minutes=1), also=["TargetNotEmpty"])
QUICK = ActivityOptions(start_to_close_timeout=timedelta(minutes=5), heartbeat_timeout=timedelta(seconds=60),
                       retry_policy=RETRY)
COPY = ActivityOptions(start_to_close_timeout=timedelta(hours=2), heartbeat_timeout=timedelta(seconds=60),
                      retry_policy=RETRY)

STORE_RESTORES = (RestoreActivities.restore_vectors, RestoreActivities.restore_fulltext,
                  RestoreActivities.restore_graph, RestoreActivities.restore_objects)


def _message(exc: ActivityError) -> str:
    return clip(exc.cause.message if isinstance(exc.cause, ApplicationError) else str(exc))


async def restore_mission(step: RestoreStep, *, postgres: bool = True) -> dict[str, int]:
    """PostgreSQL rows and every store for one mission, in parallel; merged counts."""
    calls = [workflow.execute_activity_method(m, step, **COPY) for m in STORE_RESTORES]
    if postgres:
        calls.insert(0, workflow.execute_activity_method(RestoreActivities.restore_postgres_mission, step, **COPY))
    counts: dict[str, int] = {}
    for r in await asyncio.gather(*calls):
        counts.update(r.counts)
    return counts


def _continue_now(pages: int, pages_per_run: int) -> bool:
    return pages >= pages_per_run or workflow.info().is_continue_as_new_suggested()


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class RestoreWorkflow:
    @workflow.run
    async def run(self, req: RestoreInput) -> RestoreResult:
        p = req.progress
        if p is None:
            # refuses corrupt, incomplete or crafted backups (and rows clashing with other missions) before any write
            v = await workflow.execute_activity_method(
                RestoreActivities.validate_backup, ValidateInput(backup_id=req.backup_id, mission=req.mission, live=True,
                                                                full_database=req.full_database), **COPY)
            p = RestoreProgress(manifest_sha256=v.manifest_sha256)
        pages = 0
        while True:
            if p.phase == "system":
                # the whole database from pg_dump (refuses a database with missions unless replace)
                await workflow.execute_activity_method(
                    RestoreActivities.restore_postgres_system,
                    RestoreStep(backup_id=req.backup_id, source_mission="", target_mission="", replace=req.replace,
                                manifest_sha256=p.manifest_sha256), **COPY)
                p = p.model_copy(update={"phase": "load", "after": None})
            else:
                page = await workflow.execute_activity_method(
                    RestoreActivities.backup_missions,
                    MissionsPageInput(backup_id=req.backup_id, manifest_sha256=p.manifest_sha256, after=p.after,
                                      limit=req.page_size, mission=req.mission), **QUICK)
                steps = [RestoreStep(backup_id=req.backup_id, source_mission=m.name, target_mission=m.name,
                                     replace=req.replace, manifest_sha256=p.manifest_sha256) for m in page.missions]
                if p.phase == "prepare":
                    # every target checked (or wiped with replace) before anything is written
                    await asyncio.gather(*[workflow.execute_activity_method(
                        RestoreActivities.prepare_restore_target, s, **QUICK) for s in steps])
                else:
                    results = await asyncio.gather(*[restore_mission(s, postgres=not req.full_database) for s in steps])
                    missions, counts = list(p.missions), dict(p.counts)
                    for s, c in zip(steps, results):
                        if len(missions) < MAX_DETAIL:
                            missions.append(s.target_mission)
                            counts[s.target_mission] = c
                    p = p.model_copy(update={"missions": missions, "counts": counts,
                                             "mission_count": p.mission_count + len(steps)})
                if page.more:
                    p = p.model_copy(update={"after": page.missions[-1].name})
                elif p.phase == "prepare":
                    p = p.model_copy(update={"phase": "system" if req.full_database else "load", "after": None})
                else:
                    break
            pages += 1
            if _continue_now(pages, req.pages_per_run):
                workflow.continue_as_new(req.model_copy(update={"progress": p}))
        return RestoreResult(backup_id=req.backup_id, missions=p.missions, mission_count=p.mission_count,
                             counts=p.counts, truncated=p.mission_count > len(p.missions))


def drill_names(mission: str, short: str, i: int) -> tuple[str, str]:
    """(store namespace, scratch schema) for a drill; mission ids stay <= 48 chars."""
    return f"{mission[:30]}_drill_{short}", f"drill_{short}_{i}"


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class VerifyBackupWorkflow:
    @workflow.run
    async def run(self, req: VerifyBackupInput) -> VerifyBackupResult:
        p = req.progress
        if p is None:
            backup_id = req.backup_id
            if not backup_id:
                listed = await workflow.execute_activity_method(
                    BackupActivities.list_backups, ListBackupsInput(mission=req.mission, limit=1),
                    start_to_close_timeout=timedelta(minutes=30), heartbeat_timeout=timedelta(seconds=60),
                    retry_policy=RETRY)
                if not listed.backups:
                    return VerifyBackupResult(backup_id="", ok=False, checksums_ok=False, drill_missions=[],
                                              expected={}, restored={}, problems=["no backup to verify"],
                                              problems_total=1)
                backup_id = listed.backups[0].backup_id
            try:
                v = await workflow.execute_activity_method(
                    RestoreActivities.validate_backup, ValidateInput(backup_id=backup_id), **COPY)
            except ActivityError as exc:
                return VerifyBackupResult(backup_id=backup_id, ok=False, checksums_ok=False, drill_missions=[],
                                          expected={}, restored={}, problems=[_message(exc)], problems_total=1)
            problems: list[str] = []
            if v.scope == "system":
                try:
                    await workflow.execute_activity_method(DrillActivities.check_pg_dump,
                                                           ValidateInput(backup_id=backup_id), **COPY)
                except ActivityError as exc:
                    problems.append(_message(exc))
            p = VerifyProgress(backup_id=backup_id, manifest_sha256=v.manifest_sha256, short=workflow.uuid4().hex[:8],
                               problems=problems, problems_total=len(problems))

        gate = asyncio.Semaphore(4)  # a few drills at a time: bounded load on the stores
        pages = 0
        while True:
            page = await workflow.execute_activity_method(
                RestoreActivities.backup_missions,
                MissionsPageInput(backup_id=p.backup_id, manifest_sha256=p.manifest_sha256, after=p.after,
                                  limit=req.page_size), **QUICK)
            found: list[str] = []
            restored: dict[str, dict[str, int]] = {}

            async def drill_one(p: VerifyProgress, i: int, mission: str, expected: dict[str, int]) -> None:
                drill, schema = drill_names(mission, p.short, i)
                step = RestoreStep(backup_id=p.backup_id, source_mission=mission, target_mission=drill,
                                   scratch_schema=schema, manifest_sha256=p.manifest_sha256)
                async with gate:
                    try:
                        await workflow.execute_activity_method(RestoreActivities.prepare_restore_target, step, **QUICK)
                        await restore_mission(step)
                        # Count independently of what the restore activities reported.
                        pg, st = await asyncio.gather(
                            workflow.execute_activity_method(DrillActivities.count_postgres_rows, CountInput(
                                mission=drill, pg_mission=mission, scratch_schema=schema), **QUICK),
                            workflow.execute_activity_method(DrillActivities.count_store_records,
                                                             CountInput(mission=drill), **QUICK))
                        restored[mission] = {**pg.counts, **st.counts}
                        for key, want in sorted(expected.items()):
                            got = restored[mission].get(key)
                            if got != want:
                                found.append(f"{mission}: {key} restored {got}, backup has {want}")
                    except ActivityError as exc:
                        found.append(f"{mission}: drill failed: {_message(exc)}")
                    finally:
                        await workflow.execute_activity_method(
                            DrillActivities.drop_drill, DropDrillInput(mission=drill, scratch_schema=schema), **QUICK)

            await asyncio.gather(*[drill_one(p, p.index + j, m.name, m.counts) for j, m in enumerate(page.missions)])
            drills, expected_detail, restored_detail = list(p.drill_missions), dict(p.expected), dict(p.restored)
            for j, m in enumerate(page.missions):
                if len(drills) < MAX_DETAIL:
                    drills.append(drill_names(m.name, p.short, p.index + j)[0])
                    expected_detail[m.name] = m.counts
                    if m.name in restored:
                        restored_detail[m.name] = restored[m.name]
            p = p.model_copy(update={
                "index": p.index + len(page.missions), "drill_missions": drills, "expected": expected_detail,
                "restored": restored_detail, "problems": (p.problems + sorted(found))[:MAX_PROBLEMS],
                "problems_total": p.problems_total + len(found),
                "after": page.missions[-1].name if page.missions else p.after})
            pages += 1
            if not page.more:
                break
            if _continue_now(pages, req.pages_per_run):
                workflow.continue_as_new(req.model_copy(update={"progress": p}))
        return VerifyBackupResult(
            backup_id=p.backup_id, ok=p.problems_total == 0, checksums_ok=True, drill_missions=p.drill_missions,
            expected=p.expected, restored=p.restored, problems=sorted(p.problems), mission_count=p.index,
            problems_total=p.problems_total,
            truncated=p.index > len(p.drill_missions) or p.problems_total > len(p.problems))
