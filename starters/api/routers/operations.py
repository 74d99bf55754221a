"""Operations (platform-admin): backups (create, list, verify), restore, maintenance
runs, analytics exports (workflows on maintenance-tasks, ids from
stratmaster.workflow_ids as the CLI; 202 + workflow id, poll GET /workflows/{id}
for the result) and the Temporal Schedules that run them (stratmaster/schedules.py)."""
from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowFailureError

from starters.api.audit import audit
from starters.api.bodies import NO_NUL, StrictBody, read_model
from starters.api.deps import (
    MISSION_ID_PATTERN, IdempotencyKey, MissionAccess, get_temporal, mission_access, require_platform_admin,
)
from starters.api.errors import AUTH_ERRORS, BODY_ERRORS, ApiError, error_responses
from starters.api.openapi import json_request_body
from starters.api.temporal_ops import (
    ANALYTICS_TIMEOUT, ANALYTICS_WORKFLOW, BACKUP_WORKFLOW, LIST_BACKUPS_WORKFLOW, MAINTENANCE_WORKFLOW,
    OPERATION_TIMEOUT, RESTORE_WORKFLOW, VERIFY_BACKUP_WORKFLOW, WorkflowStarted, run_key, start_workflow,
    started_body,
)
from starters.auth import PLATFORM_ADMIN, Principal
from stratmaster import queues
from stratmaster import schedules as sched
from stratmaster.contracts.maintenance import (
    BACKUP_ID, AnalyticsExportInput, BackupInput, ListBackupsInput, ListBackupsResult, MaintenanceInput,
    MaintenanceKind, RestoreInput, VerifyBackupInput, analytics_key,
)
from stratmaster.workflow_ids import (
    analytics_workflow_id, backup_workflow_id, list_backups_workflow_id, maintenance_workflow_id, new_backup_id,
    new_export_id, restore_workflow_id, verify_backup_workflow_id,
)

router = APIRouter(tags=["operations"])

ADMIN = Depends(require_platform_admin)
OPERATION_ERRORS = error_responses(*BODY_ERRORS, *AUTH_ERRORS)
BackupId = Annotated[str, Field(pattern=BACKUP_ID, description="a backup id, e.g. demo-2026-11-25")]
MissionField = Annotated[str, Field(pattern=MISSION_ID_PATTERN, description="mission id")]
LIST_TIMEOUT = 60


# ---------------------------------------------------------------- backups

class BackupRequest(StrictBody):
    """The body of POST /backups and POST /missions/{mission}/backups (optional)."""
    backup_id: BackupId | None = Field(default=None, description="default: <mission|system>-<random>; naming one "
                                                                 "makes the request repeat-safe (one run per id)")


class BackupStarted(WorkflowStarted):
    backup_id: str
    scope: Literal["mission", "system"]


async def _start_backup(request: Request, client: Client, body: BackupRequest, mission: str | None,
                        idempotency_key: str | None) -> dict:
    scope: Literal["mission", "system"] = "mission" if mission else "system"
    key = run_key(f"backup:{mission or 'system'}", idempotency_key, uuid.uuid4().hex[:10])
    req = BackupInput(scope=scope, mission=mission, backup_id=body.backup_id or new_backup_id(mission, key))
    started = await start_workflow(client, BACKUP_WORKFLOW, req, workflow_id=backup_workflow_id(req),
                                   task_queue=queues.MAINTENANCE, mission=mission,
                                   idempotent=bool(body.backup_id or idempotency_key),
                                   execution_timeout=OPERATION_TIMEOUT)
    audit(request, target=started.workflow_id, backup_id=req.backup_id, scope=scope)
    return started_body(started, mission) | {"backup_id": req.backup_id, "scope": scope}


@router.post("/backups", status_code=202, name="backup.create",
             summary="back up the whole system: pg_dump + every mission (platform-admin) -> BackupWorkflow",
             response_model=BackupStarted, responses=OPERATION_ERRORS,
             openapi_extra=json_request_body(BackupRequest, required=False))
async def create_system_backup(request: Request, idempotency_key: IdempotencyKey = None,
                               principal: Principal = ADMIN, client: Client = Depends(get_temporal)):
    body = await read_model(request, BackupRequest, required=False)
    return await _start_backup(request, client, body, None, idempotency_key)


@router.post("/missions/{mission}/backups", status_code=202, name="backup.create",
             summary="back up one mission (platform-admin) -> BackupWorkflow",
             response_model=BackupStarted, responses=error_responses(*BODY_ERRORS, *AUTH_ERRORS, 404),
             openapi_extra=json_request_body(BackupRequest, required=False))
async def create_mission_backup(request: Request, idempotency_key: IdempotencyKey = None,
                                access: MissionAccess = Depends(mission_access(PLATFORM_ADMIN, require_active=False)),
                                client: Client = Depends(get_temporal)):
    body = await read_model(request, BackupRequest, required=False)
    return await _start_backup(request, client, body, access.mission, idempotency_key)


@router.get("/backups", summary="backups with a manifest, newest first (platform-admin) -> ListBackupsWorkflow",
            response_model=ListBackupsResult, responses=error_responses(*AUTH_ERRORS, 422))
async def list_backups(principal: Principal = ADMIN, client: Client = Depends(get_temporal),
                       mission: Annotated[str | None, Query(pattern=MISSION_ID_PATTERN,
                                                            description="only backups holding this mission")] = None,
                       limit: Annotated[int, Query(ge=1, le=500)] = 50):
    try:
        return await client.execute_workflow(
            LIST_BACKUPS_WORKFLOW, ListBackupsInput(mission=mission, limit=limit),
            id=list_backups_workflow_id(f"api-{uuid.uuid4().hex[:12]}"), task_queue=queues.MAINTENANCE,
            execution_timeout=timedelta(seconds=LIST_TIMEOUT), result_type=ListBackupsResult)
    except WorkflowFailureError:
        raise ApiError(503, "unavailable", f"backup listing did not complete (is the {queues.MAINTENANCE} worker "
                                           "running?)") from None


class VerifyRequest(StrictBody):
    """The body of POST /backups/verify (optional: {} verifies the newest backup)."""
    backup_id: BackupId | None = Field(default=None, description="default: the newest backup")
    mission: MissionField | None = Field(default=None, description="the newest backup holding this mission")


class VerifyStarted(WorkflowStarted):
    backup_id: str | None = Field(description="null: the newest backup (the workflow's result names it)")


@router.post("/backups/verify", status_code=202, name="backup.verify",
             summary="verify a backup: checksums + a restore drill into a scratch namespace (platform-admin) "
                     "-> VerifyBackupWorkflow",
             response_model=VerifyStarted, responses=OPERATION_ERRORS,
             openapi_extra=json_request_body(VerifyRequest, required=False))
async def verify_backup(request: Request, idempotency_key: IdempotencyKey = None, principal: Principal = ADMIN,
                        client: Client = Depends(get_temporal)):
    body: VerifyRequest = await read_model(request, VerifyRequest, required=False)
    audit(request, mission=body.mission, backup_id=body.backup_id)
    key = run_key(f"verify:{body.backup_id or 'newest'}:{body.mission or ''}", idempotency_key, uuid.uuid4().hex[:6])
    started = await start_workflow(
        client, VERIFY_BACKUP_WORKFLOW, VerifyBackupInput(backup_id=body.backup_id, mission=body.mission),
        workflow_id=verify_backup_workflow_id(body.backup_id, key), task_queue=queues.MAINTENANCE,
        mission=body.mission, idempotent=bool(idempotency_key), execution_timeout=OPERATION_TIMEOUT)
    audit(request, target=started.workflow_id)
    return started_body(started, body.mission) | {"backup_id": body.backup_id}


class RestoreRequest(StrictBody):
    """The body of POST /backups/restore."""
    backup_id: BackupId
    replace: bool = Field(default=False, description="wipe a non-empty target mission first (else refused)")
    mission: MissionField | None = Field(default=None, description="only this mission of the backup")
    full_database: bool = Field(default=False, description="system backup: pg_restore the whole database")


class RestoreStarted(WorkflowStarted):
    backup_id: str


@router.post("/backups/restore", status_code=202, name="backup.restore",
             summary="restore a backup: validated whole first; a non-empty target is refused unless replace "
                     "(platform-admin) -> RestoreWorkflow",
             response_model=RestoreStarted, responses=OPERATION_ERRORS,
             openapi_extra=json_request_body(RestoreRequest))
async def restore_backup(request: Request, idempotency_key: IdempotencyKey = None, principal: Principal = ADMIN,
                         client: Client = Depends(get_temporal)):
    body: RestoreRequest = await read_model(request, RestoreRequest)
    audit(request, mission=body.mission, backup_id=body.backup_id, replace=body.replace,
          full_database=body.full_database)
    key = run_key(f"restore:{body.backup_id}", idempotency_key, uuid.uuid4().hex[:6])
    req = RestoreInput(backup_id=body.backup_id, replace=body.replace, mission=body.mission,
                       full_database=body.full_database)
    started = await start_workflow(client, RESTORE_WORKFLOW, req, workflow_id=restore_workflow_id(body.backup_id, key),
                                   task_queue=queues.MAINTENANCE, mission=body.mission,
                                   idempotent=bool(idempotency_key), execution_timeout=OPERATION_TIMEOUT)
    audit(request, target=started.workflow_id)
    return started_body(started, body.mission) | {"backup_id": body.backup_id}


# ---------------------------------------------------------------- maintenance, analytics

class MaintenanceRequest(StrictBody):
    """The body of POST /maintenance."""
    kind: MaintenanceKind = Field(description="vacuum | optimise | retention | health | capacity | all")
    document_batch: int = Field(default=50, ge=1, le=1000,
                                description="retention: expired documents deleted per activity call")


class MaintenanceStarted(WorkflowStarted):
    kind: str


@router.post("/maintenance", status_code=202, name="maintenance.run",
             summary="run maintenance of one kind now (platform-admin) -> MaintenanceWorkflow",
             response_model=MaintenanceStarted, responses=OPERATION_ERRORS,
             openapi_extra=json_request_body(MaintenanceRequest))
async def run_maintenance(request: Request, idempotency_key: IdempotencyKey = None, principal: Principal = ADMIN,
                          client: Client = Depends(get_temporal)):
    body: MaintenanceRequest = await read_model(request, MaintenanceRequest)
    audit(request, kind=body.kind)
    key = run_key(f"maintenance:{body.kind}", idempotency_key, uuid.uuid4().hex[:8])
    started = await start_workflow(
        client, MAINTENANCE_WORKFLOW, MaintenanceInput(kind=body.kind, document_batch=body.document_batch),
        workflow_id=maintenance_workflow_id(body.kind, key), task_queue=queues.MAINTENANCE, mission=None,
        idempotent=bool(idempotency_key), execution_timeout=OPERATION_TIMEOUT)
    audit(request, target=started.workflow_id)
    return started_body(started, None) | {"kind": body.kind}


class AnalyticsRequest(StrictBody):
    """The body of POST /analytics/exports."""
    missions: list[MissionField] = Field(default_factory=list, max_length=200, description="default: all missions")
    export_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{2,100}$")] | None = Field(
        default=None, description="default: export-<random>; naming one makes the request repeat-safe")


class AnalyticsStarted(WorkflowStarted):
    export_id: str
    object_key: str = Field(description="where the Parquet file goes in the object store")
    worker_path: str = Field(description="and the local copy, relative to the maintenance worker's data directory")


@router.post("/analytics/exports", status_code=202, name="analytics.export",
             summary="research metrics per mission to Parquet, DuckDB reading PostgreSQL (platform-admin) "
                     "-> AnalyticsExportWorkflow",
             response_model=AnalyticsStarted, responses=OPERATION_ERRORS,
             openapi_extra=json_request_body(AnalyticsRequest, required=False))
async def export_analytics(request: Request, idempotency_key: IdempotencyKey = None, principal: Principal = ADMIN,
                           client: Client = Depends(get_temporal)):
    body: AnalyticsRequest = await read_model(request, AnalyticsRequest, required=False)
    export_id = body.export_id or new_export_id(run_key("analytics", idempotency_key, uuid.uuid4().hex[:10]))
    audit(request, export_id=export_id, missions=body.missions[:50])
    started = await start_workflow(
        client, ANALYTICS_WORKFLOW, AnalyticsExportInput(export_id=export_id, missions=body.missions),
        workflow_id=analytics_workflow_id(export_id), task_queue=queues.MAINTENANCE, mission=None,
        idempotent=bool(body.export_id or idempotency_key), execution_timeout=ANALYTICS_TIMEOUT)
    audit(request, target=started.workflow_id)
    key = analytics_key(export_id)
    return started_body(started, None) | {"export_id": export_id, "object_key": f"system/{key}",
                                          "worker_path": f"exports/{key}"}


# ---------------------------------------------------------------- schedules

ScheduleName = sched.ScheduleName
ScheduleNamePath = Annotated[ScheduleName, Path(description="schedule name (without the stratmaster- prefix)")]


class ScheduleInfo(BaseModel):
    id: str
    name: str
    workflow: str
    paused: bool
    note: str
    overlap: str
    next: str = Field(description="next run (ISO 8601), empty when none")
    runs: int
    recent: list[str] = Field(description="workflow ids of the recent runs")


class ScheduleListing(BaseModel):
    schedules: list[ScheduleInfo]
    not_installed: list[str] = Field(description="defined schedules that are not installed")


class InstallRequest(StrictBody):
    """The body of POST /schedules (optional: {} installs every schedule)."""
    names: list[ScheduleName] | None = Field(default=None, max_length=len(sched.DEFINITIONS),
                                             description="only these schedules")


class Installed(BaseModel):
    schedules: dict[str, Literal["created", "updated"]]


class NoteRequest(StrictBody):
    """The body of POST /schedules/{name}/pause and /unpause (optional)."""
    note: Annotated[str, Field(min_length=1, max_length=300, pattern=NO_NUL)] | None = None


class TriggerRequest(StrictBody):
    """The body of POST /schedules/{name}/trigger: nothing to say ({} or empty)."""


class ScheduleDone(BaseModel):
    schedule: str
    action: Literal["pause", "unpause", "trigger", "delete"]
    detail: str


@router.get("/schedules", summary="the operations schedules, their state, next and recent runs (platform-admin)",
            response_model=ScheduleListing, responses=error_responses(*AUTH_ERRORS))
async def list_schedules(principal: Principal = ADMIN, client: Client = Depends(get_temporal)):
    rows = await sched.list_installed(client)
    installed = {r["id"] for r in rows}
    return ScheduleListing(
        schedules=[ScheduleInfo(name=r["id"].removeprefix(sched.PREFIX), **r) for r in rows],
        not_installed=[d.name for d in sched.DEFINITIONS if sched.schedule_id(d) not in installed])


@router.post("/schedules", name="schedules.install",
             summary="create the schedules, or update them in place (idempotent; platform-admin)",
             response_model=Installed, responses=OPERATION_ERRORS,
             openapi_extra=json_request_body(InstallRequest, required=False))
async def install_schedules(request: Request, principal: Principal = ADMIN, client: Client = Depends(get_temporal)):
    body: InstallRequest = await read_model(request, InstallRequest, required=False)
    audit(request, names=body.names)
    done = await sched.install(client, names=body.names)
    audit(request, target=",".join(done)[:500] or None)
    return Installed(schedules=done)


async def _on_schedule(request: Request, client: Client, name: str,
                       action: Literal["pause", "unpause", "trigger", "delete"], *args: Any) -> ScheduleDone:
    sid = sched.schedule_id(sched.by_name(name))
    audit(request, target=sid)
    try:
        await getattr(sched, action)(client, name, *args)
    except Exception as exc:
        if sched.not_installed(exc):
            raise ApiError(404, "schedule_not_installed",
                           f"schedule {name} is not installed (POST /schedules installs it)") from None
        raise
    detail = {"pause": "paused", "unpause": "unpaused", "delete": "deleted",
              "trigger": "a run was requested (the overlap policy applies); it appears in GET /schedules"}[action]
    return ScheduleDone(schedule=sid, action=action, detail=detail)


SCHEDULE_ERRORS = error_responses(*BODY_ERRORS, *AUTH_ERRORS, 404)


@router.post("/schedules/{name}/pause", name="schedule.pause", summary="pause a schedule (platform-admin)",
             response_model=ScheduleDone, responses=SCHEDULE_ERRORS,
             openapi_extra=json_request_body(NoteRequest, required=False))
async def pause_schedule(request: Request, name: ScheduleNamePath, principal: Principal = ADMIN,
                         client: Client = Depends(get_temporal)):
    body: NoteRequest = await read_model(request, NoteRequest, required=False)
    return await _on_schedule(request, client, name, "pause", body.note or f"paused by {principal.actor} (API)")


@router.post("/schedules/{name}/unpause", name="schedule.unpause", summary="unpause a schedule (platform-admin)",
             response_model=ScheduleDone, responses=SCHEDULE_ERRORS,
             openapi_extra=json_request_body(NoteRequest, required=False))
async def unpause_schedule(request: Request, name: ScheduleNamePath, principal: Principal = ADMIN,
                           client: Client = Depends(get_temporal)):
    body: NoteRequest = await read_model(request, NoteRequest, required=False)
    return await _on_schedule(request, client, name, "unpause", body.note or f"unpaused by {principal.actor} (API)")


@router.post("/schedules/{name}/trigger", status_code=202, name="schedule.trigger",
             summary="run a schedule's action now (platform-admin)",
             response_model=ScheduleDone, responses=SCHEDULE_ERRORS,
             openapi_extra=json_request_body(TriggerRequest, required=False))
async def trigger_schedule(request: Request, name: ScheduleNamePath, principal: Principal = ADMIN,
                           client: Client = Depends(get_temporal)):
    await read_model(request, TriggerRequest, required=False)
    return await _on_schedule(request, client, name, "trigger")


@router.delete("/schedules/{name}", name="schedule.delete", summary="delete a schedule (platform-admin)",
               response_model=ScheduleDone, responses=error_responses(*AUTH_ERRORS, 404, 422))
async def delete_schedule(request: Request, name: ScheduleNamePath, principal: Principal = ADMIN,
                          client: Client = Depends(get_temporal)):
    return await _on_schedule(request, client, name, "delete")
