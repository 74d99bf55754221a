"""Temporal Schedules for operations, installed idempotently by
`stratmaster schedules install` (create; when it exists, update in place).

  backup-nightly      02:00 UTC  BackupWorkflow(scope=system)
  verify-nightly      04:00 UTC  VerifyBackupWorkflow(newest backup): checksums + restore drill
  health-hourly       :05        HealthCheckWorkflow
  vacuum-daily        03:00 UTC  MaintenanceWorkflow(vacuum)
  optimise-daily      03:30 UTC  MaintenanceWorkflow(optimise)
  retention-daily     01:00 UTC  MaintenanceWorkflow(retention)
  capacity-weekly     Mon 06:00  MaintenanceWorkflow(capacity)
  analytics-daily     05:00 UTC  AnalyticsExportWorkflow

Overlap: SKIP (a run still going when the next is due makes the next one a
no-op), except backups which BUFFER_ONE (a slow backup must not cost a night).
Scheduled workflow ids get the schedule's timestamp appended by Temporal, so a
nightly backup's id is e.g. `backup-system-nightly-2026-11-25T02:00:00Z`.

Per-source sync schedules (`stratmaster-source-sync-<mission>-<source>`, at the end
of this file) are created and deleted with their source (activities/ingest/sources.py),
not by `install`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, get_args

from temporalio.client import (
    Client, Schedule, ScheduleActionStartWorkflow, ScheduleAlreadyRunningError, ScheduleCalendarSpec,
    ScheduleIntervalSpec, ScheduleOverlapPolicy, SchedulePolicy, ScheduleRange, ScheduleSpec, ScheduleState,
    ScheduleUpdate, ScheduleUpdateInput,
)

from stratmaster import fairness, queues
from stratmaster.contracts.health import HealthCheckInput
from stratmaster.contracts.maintenance import AnalyticsExportInput, BackupInput, MaintenanceInput, VerifyBackupInput

PREFIX = "stratmaster-"
# every name in DEFINITIONS, in its order (checked below)
ScheduleName = Literal["backup-nightly", "verify-nightly", "health-hourly", "vacuum-daily", "optimise-daily",
                       "retention-daily", "capacity-weekly", "analytics-daily"]


@dataclass(frozen=True)
class ScheduleDef:
    name: ScheduleName  # schedule id without PREFIX
    workflow: str  # workflow type name
    arg: Any
    workflow_id: str
    calendar: ScheduleCalendarSpec
    overlap: ScheduleOverlapPolicy
    note: str
    timeout: timedelta


def _at(hour: int | None = None, minute: int = 0, weekday: int | None = None) -> ScheduleCalendarSpec:
    return ScheduleCalendarSpec(
        hour=[ScheduleRange(hour)] if hour is not None else [ScheduleRange(0, 23)],
        minute=[ScheduleRange(minute)],
        second=[ScheduleRange(0)],
        day_of_week=[ScheduleRange(weekday)] if weekday is not None else [ScheduleRange(0, 6)],
    )


SKIP, BUFFER_ONE = ScheduleOverlapPolicy.SKIP, ScheduleOverlapPolicy.BUFFER_ONE

DEFINITIONS: tuple[ScheduleDef, ...] = (
    ScheduleDef("backup-nightly", "BackupWorkflow", BackupInput(scope="system"), "backup-system-nightly",
                _at(2), BUFFER_ONE, "nightly system backup (pg_dump + every mission's stores)", timedelta(hours=6)),
    ScheduleDef("verify-nightly", "VerifyBackupWorkflow", VerifyBackupInput(), "verify-backup-nightly",
                _at(4), SKIP, "checksums + restore drill of the newest backup", timedelta(hours=6)),
    ScheduleDef("health-hourly", "HealthCheckWorkflow", HealthCheckInput(), "health-hourly",
                _at(None, 5), SKIP, "hourly health check of every service", timedelta(minutes=10)),
    ScheduleDef("vacuum-daily", "MaintenanceWorkflow", MaintenanceInput(kind="vacuum"), "maintenance-vacuum-daily",
                _at(3), SKIP, "VACUUM (ANALYZE) + table statistics", timedelta(hours=2)),
    ScheduleDef("optimise-daily", "MaintenanceWorkflow", MaintenanceInput(kind="optimise"),
                "maintenance-optimise-daily", _at(3, 30), SKIP, "full-text/vector index optimisation", timedelta(hours=2)),
    ScheduleDef("retention-daily", "MaintenanceWorkflow", MaintenanceInput(kind="retention"),
                "maintenance-retention-daily", _at(1), SKIP, "cartridge retention: old research, expired missions",
                timedelta(hours=2)),
    ScheduleDef("capacity-weekly", "MaintenanceWorkflow", MaintenanceInput(kind="capacity"),
                "maintenance-capacity-weekly", _at(6, 0, weekday=1), SKIP, "capacity report per mission",
                timedelta(hours=1)),
    ScheduleDef("analytics-daily", "AnalyticsExportWorkflow", AnalyticsExportInput(), "analytics-export-daily",
                _at(5), SKIP, "research metrics per mission to Parquet (DuckDB)", timedelta(hours=1)),
)

if tuple(d.name for d in DEFINITIONS) != get_args(ScheduleName):
    raise RuntimeError("stratmaster.schedules: ScheduleName must list the names of DEFINITIONS, in order")


def by_name(name: str) -> ScheduleDef:
    short = name.removeprefix(PREFIX)
    for d in DEFINITIONS:
        if d.name == short:
            return d
    raise KeyError(f"unknown schedule {name!r}; known: {', '.join(d.name for d in DEFINITIONS)}")


def schedule_id(d: ScheduleDef) -> str:
    return PREFIX + d.name


def build_schedule(d: ScheduleDef, task_queue: str = queues.MAINTENANCE, paused: bool = False) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(d.workflow, d.arg, id=d.workflow_id, task_queue=task_queue,
                                           execution_timeout=d.timeout),
        spec=ScheduleSpec(calendars=[d.calendar]),
        policy=SchedulePolicy(overlap=d.overlap, catchup_window=timedelta(hours=1)),
        state=ScheduleState(note=d.note, paused=paused),
    )


async def install(client: Client, task_queue: str = queues.MAINTENANCE,
                  names: Sequence[str] | None = None) -> dict[str, Literal["created", "updated"]]:
    """Create every schedule, or update it in place when it exists (idempotent:
    installing twice leaves the same schedules). Keeps a paused schedule paused."""
    done: dict[str, Literal["created", "updated"]] = {}
    for d in DEFINITIONS:
        if names and d.name not in names:
            continue
        sid = schedule_id(d)
        try:
            await client.create_schedule(sid, build_schedule(d, task_queue))
            done[sid] = "created"
        except ScheduleAlreadyRunningError:
            handle = client.get_schedule_handle(sid)

            def updater(inp: ScheduleUpdateInput, d=d) -> ScheduleUpdate:
                state = inp.description.schedule.state
                return ScheduleUpdate(schedule=build_schedule(d, task_queue, paused=state.paused))

            await handle.update(updater)
            done[sid] = "updated"
    return done


async def list_installed(client: Client) -> list[dict]:
    """Our schedules with their state (paused, next run, recent actions)."""
    out = []
    for d in DEFINITIONS:
        sid = schedule_id(d)
        try:
            desc = await client.get_schedule_handle(sid).describe()
        except Exception as exc:  # not installed (or deleted: its workflow has completed)
            if not_installed(exc):
                continue
            raise
        info = desc.info
        out.append({
            "id": sid, "workflow": d.workflow, "paused": desc.schedule.state.paused,
            "note": desc.schedule.state.note or "", "overlap": desc.schedule.policy.overlap.name,
            "next": info.next_action_times[0].isoformat() if info.next_action_times else "",
            "runs": info.num_actions,
            "recent": [a.action.workflow_id for a in info.recent_actions
                       if hasattr(a.action, "workflow_id")],
        })
    return out


def not_installed(exc: Exception) -> bool:
    text = str(exc).lower()
    return "not found" in text or "already completed" in text


async def pause(client: Client, name: str, note: str = "paused by operator") -> None:
    await client.get_schedule_handle(schedule_id(by_name(name))).pause(note=note)


async def unpause(client: Client, name: str, note: str = "unpaused by operator") -> None:
    await client.get_schedule_handle(schedule_id(by_name(name))).unpause(note=note)


async def trigger(client: Client, name: str) -> None:
    """Run now (the overlap policy still applies)."""
    await client.get_schedule_handle(schedule_id(by_name(name))).trigger()


async def delete(client: Client, name: str) -> None:
    await client.get_schedule_handle(schedule_id(by_name(name))).delete()


# ---------------------------------------------------------------- per-source sync schedules
#
# One schedule per registered source (activities/ingest/sources.py creates it when the
# source is added and deletes it when the source is removed): every
# `interval_seconds` it starts SourceSyncWorkflow on ingestion-tasks with the
# workflow id source-sync-<mission>-<source_id> (+ Temporal's timestamp). SKIP: a
# pass still running makes the next one a no-op. Not part of DEFINITIONS/install.

def build_source_schedule(mission: str, source_id: str, interval_seconds: int, paused: bool = False) -> Schedule:
    from stratmaster.contracts.sources import SourceSyncInput, sync_workflow_id
    from stratmaster.search_attributes import for_mission

    return Schedule(
        action=ScheduleActionStartWorkflow(
            "SourceSyncWorkflow", SourceSyncInput(mission=mission, source_id=source_id),
            id=sync_workflow_id(mission, source_id), task_queue=queues.INGESTION,
            typed_search_attributes=for_mission(mission), priority=fairness.for_mission(mission)),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=interval_seconds))]),
        policy=SchedulePolicy(overlap=SKIP, catchup_window=timedelta(minutes=10)),
        state=ScheduleState(note=f"sync source {source_id} of mission {mission}", paused=paused),
    )


async def upsert_source_schedule(client: Client, mission: str, source_id: str, interval_seconds: int) -> str:
    """Create the source's schedule, or update it in place (keeping it paused if it is)."""
    from stratmaster.contracts.sources import schedule_id_for

    sid = schedule_id_for(mission, source_id)
    try:
        await client.create_schedule(sid, build_source_schedule(mission, source_id, interval_seconds))
        return "created"
    except ScheduleAlreadyRunningError:
        def updater(inp: ScheduleUpdateInput) -> ScheduleUpdate:
            paused = inp.description.schedule.state.paused
            return ScheduleUpdate(schedule=build_source_schedule(mission, source_id, interval_seconds, paused))

        await client.get_schedule_handle(sid).update(updater)
        return "updated"


async def delete_source_schedule(client: Client, mission: str, source_id: str) -> bool:
    """False when there was none."""
    from stratmaster.contracts.sources import schedule_id_for

    try:
        await client.get_schedule_handle(schedule_id_for(mission, source_id)).delete()
        return True
    except Exception as exc:
        if not_installed(exc):
            return False
        raise
