"""Missions: activate (and import) cartridges, list and show missions, their
versions, export the active cartridge, roll back, deactivate.

Activation, import, rollback and deactivation start workflows on mission-tasks
(ids from stratmaster.workflow_ids, as the CLI) and answer 202 with the workflow
id (poll GET /workflows/{id}); they need the platform-admin role. Reads need the
mission's read permission; the lookups run ListMissionsWorkflow /
ShowMissionWorkflow / ExportMissionWorkflow."""
from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowFailureError

from starters.api.audit import audit
from starters.api.bodies import (
    CARTRIDGE_BODY_LIMIT, NO_NUL, YAML_MEDIA_TYPES, StrictBody, decode_text, media_type, read_json, read_limited,
    read_model,
)
from starters.api.deps import (
    IdempotencyKey, MissionAccess, MissionPath, check_mission_path, get_temporal, list_all_missions, mission_access,
    principal_dep, require_platform_admin,
)
from starters.api.errors import AUTH_ERRORS, BODY_ERRORS, ApiError, error_responses, validation_error
from starters.api.openapi import body_ref, json_request_body
from starters.api.temporal_ops import (
    ACTIVATE_WORKFLOW, DEACTIVATE_WORKFLOW, EXPORT_WORKFLOW, LOOKUP_TIMEOUT, ROLLBACK_WORKFLOW, WorkflowStarted,
    idempotent_suffix, start_workflow, started_body,
)
from starters.failures import failure_message, failure_type
from starters.auth import PLATFORM_ADMIN, READ, Principal
from stratmaster import queues
from stratmaster.contracts.cartridge import Cartridge
from stratmaster.contracts.cartridge_validation import validate_cartridge
from stratmaster.contracts.missions import (
    ActivateMissionInput, DeactivateMissionInput, ExportResult, HistoryEntry, MissionDetail, MissionRef, MissionSummary,
    RollbackMissionInput,
)
from stratmaster.errors import UNKNOWN_MISSION
from stratmaster.search_attributes import for_mission
from stratmaster.workflow_ids import (
    activate_workflow_id, deactivate_workflow_id, export_workflow_id, rollback_workflow_id,
)

router = APIRouter(tags=["missions"])

VERSION_QUERY = Annotated[str | None, Query(min_length=1, max_length=64, pattern=NO_NUL,
                                            description="a stored version (default: the active one)")]


class MissionActivationStarted(WorkflowStarted):
    version: str


class MissionListing(BaseModel):
    missions: list[MissionSummary]


class MissionView(MissionDetail):
    permissions: list[Literal["admin", "read", "write"]]


class MissionVersions(BaseModel):
    mission: str
    status: str
    active_version: str | None
    previous_version: str | None = Field(description="what a rollback without `to_version` returns to")
    versions: list[str] = Field(description="every stored version, oldest first")
    history: list[HistoryEntry] = Field(description="activations, rollbacks, deactivations: latest first")


class RollbackRequest(StrictBody):
    """The body of POST /missions/{mission}/rollback (optional: {} rolls back to the previous version)."""
    to_version: Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)] | None = Field(
        default=None, description="a stored version (default: the version active before the current one)")


class RollbackStarted(WorkflowStarted):
    version: str = Field(description="the version the mission rolls back to")


class DeactivateRequest(StrictBody):
    """The body of POST /missions/{mission}/deactivate (optional)."""
    retention_days: int | None = Field(default=None, ge=0, le=3650,
                                       description="keep the data this many days (default: the cartridge's "
                                                   "retention.deactivated_days)")


CARTRIDGE_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": body_ref(Cartridge)},
    "application/yaml": {"schema": {"type": "string", "description": "the cartridge as YAML"}}}}}


async def read_cartridge(request: Request, principal: Principal, source: str):
    """The cartridge of a JSON or YAML body, validated (422 naming every problem)."""
    ctype = media_type(request)
    if ctype in YAML_MEDIA_TYPES:
        text = decode_text(await read_limited(request, CARTRIDGE_BODY_LIMIT))
        if "\x00" in text:
            raise validation_error(("body",), "must not contain the NUL character (U+0000)")
        validation = validate_cartridge(text)
        arg = ActivateMissionInput(cartridge_text=text, actor=principal.actor, source=source)
    else:
        data = await read_json(request, CARTRIDGE_BODY_LIMIT)
        validation = validate_cartridge(data=data)
        arg = ActivateMissionInput(cartridge=data if isinstance(data, dict) else None, actor=principal.actor,
                                   source=source)
    if not validation.ok:
        raise RequestValidationError([{"type": "value_error", "loc": ("body",) + tuple(p.path.split(".")),
                                       "msg": p.reason} for p in validation.problems])
    return validation, arg


async def start_activation(request: Request, client: Client, validation, arg: ActivateMissionInput,
                           idempotency_key: str | None) -> dict:
    mission, version = validation.cartridge.mission, validation.cartridge.version
    audit(request, mission=mission)
    workflow_id = activate_workflow_id(mission, version)
    if idempotency_key:
        workflow_id += f"-{idempotent_suffix(mission, idempotency_key)}"
    started = await start_workflow(client, ACTIVATE_WORKFLOW, arg, workflow_id=workflow_id,
                                   task_queue=queues.MISSIONS, mission=mission, idempotent=bool(idempotency_key),
                                   attach_running=True)
    request.app.state.missions.forget(mission)
    audit(request, target=started.workflow_id)
    return started_body(started, mission, f"/workflows/{started.workflow_id}") | {"version": version}


@router.post("/missions", status_code=202, name="mission.activate",
             summary="activate (or update) a mission from a cartridge (platform-admin)",
             response_model=MissionActivationStarted,
             responses=error_responses(400, *AUTH_ERRORS, 413, 415, 422), openapi_extra=CARTRIDGE_BODY)
async def activate_mission(request: Request, idempotency_key: IdempotencyKey = None,
                           principal: Principal = Depends(require_platform_admin),
                           client: Client = Depends(get_temporal)):
    validation, arg = await read_cartridge(request, principal, "api")
    return await start_activation(request, client, validation, arg, idempotency_key)


async def admin_for_path_mission(request: Request, mission: MissionPath,
                                 principal: Principal = Depends(principal_dep)) -> Principal:
    """Platform-admin, for a mission that need not exist yet (import)."""
    check_mission_path(mission)
    audit(request, mission=mission)
    return require_platform_admin(principal)


@router.post("/missions/{mission}/import", status_code=202, name="mission.import",
             summary="import an exported cartridge (= activate it; its metadata.id must be the path's mission; "
                     "platform-admin)",
             response_model=MissionActivationStarted,
             responses=error_responses(*BODY_ERRORS, *AUTH_ERRORS, 404), openapi_extra=CARTRIDGE_BODY)
async def import_mission(request: Request, mission: MissionPath, idempotency_key: IdempotencyKey = None,
                         principal: Principal = Depends(admin_for_path_mission),
                         client: Client = Depends(get_temporal)):
    validation, arg = await read_cartridge(request, principal, "api-import")
    if validation.cartridge.mission != mission:
        raise validation_error(("body", "metadata", "id"),
                               f"the cartridge is for mission {validation.cartridge.mission!r}, not {mission!r}")
    return await start_activation(request, client, validation, arg, idempotency_key)


@router.get("/missions", summary="missions the caller may read", response_model=MissionListing,
            responses=error_responses(*AUTH_ERRORS))
async def list_missions(principal: Principal = Depends(principal_dep), client: Client = Depends(get_temporal)):
    found = await list_all_missions(client)
    return MissionListing(missions=[m for m in found if principal.can(m.mission, READ)])


@router.get("/missions/{mission}", summary="one mission", response_model=MissionView,
            responses=error_responses(*AUTH_ERRORS, 404, 422))
async def get_mission(access: MissionAccess = Depends(mission_access(READ))):
    return MissionView(**dict(access.detail), permissions=sorted(access.principal.permissions(access.mission)))


@router.get("/missions/{mission}/versions", summary="the mission's stored cartridge versions and history (read)",
            response_model=MissionVersions, responses=error_responses(*AUTH_ERRORS, 404, 422))
async def mission_versions(access: MissionAccess = Depends(mission_access(READ, fresh=True))):
    d = access.detail
    return MissionVersions(mission=access.mission, status=d.summary.status, active_version=d.summary.active_version,
                           previous_version=d.summary.previous_version, versions=d.versions, history=d.history)


@router.get("/missions/{mission}/export", name="mission.export",
            summary="the active (or a stored) cartridge as YAML or JSON, re-importable (read)",
            response_class=Response,
            responses={200: {"description": "the cartridge; headers name its version and sha256",
                             "headers": {"X-Cartridge-Version": {"schema": {"type": "string"}},
                                         "X-Cartridge-Sha256": {"schema": {"type": "string"}}},
                             "content": {"application/yaml": {"schema": body_ref(Cartridge)},
                                         "application/json": {"schema": body_ref(Cartridge)}}},
                       **error_responses(*AUTH_ERRORS, 404, 409, 422)})
async def export_mission(request: Request, access: MissionAccess = Depends(mission_access(READ)),
                         fmt: Annotated[Literal["yaml", "json"], Query(alias="format")] = "yaml",
                         version: VERSION_QUERY = None, client: Client = Depends(get_temporal)):
    mission = access.mission
    try:
        res = await client.execute_workflow(
            EXPORT_WORKFLOW, MissionRef(mission=mission, version=version),
            id=export_workflow_id(mission, uuid.uuid4().hex[:8]), task_queue=queues.MISSIONS,
            execution_timeout=LOOKUP_TIMEOUT, result_type=ExportResult, search_attributes=for_mission(mission))
    except WorkflowFailureError as exc:
        kind = failure_type(exc)
        if kind == UNKNOWN_MISSION:
            raise ApiError(404, "unknown_mission", failure_message(exc)) from None
        if kind is not None and version:
            raise ApiError(404, "unknown_version", f"mission {mission!r} has no version {version!r}") from None
        if kind is not None:
            raise ApiError(409, "conflict", failure_message(exc)) from None
        raise ApiError(503, "unavailable", f"mission export did not complete (is the {queues.MISSIONS} worker "
                                           "running?)") from None
    headers = {"X-Cartridge-Version": res.version, "X-Cartridge-Sha256": res.sha256,
               "Content-Disposition": f'attachment; filename="{mission}-{res.version}.{fmt}"'}
    if fmt == "json":
        return JSONResponse(res.cartridge.model_dump(mode="json"), headers=headers)
    return Response(res.yaml, media_type="application/yaml", headers=headers)


@router.post("/missions/{mission}/rollback", status_code=202, name="mission.rollback",
             summary="make the previous (or a given stored) version active again (platform-admin) "
                     "-> RollbackMissionWorkflow",
             response_model=RollbackStarted, responses=error_responses(*BODY_ERRORS, *AUTH_ERRORS, 404, 409),
             openapi_extra=json_request_body(RollbackRequest, required=False))
async def rollback_mission(request: Request, idempotency_key: IdempotencyKey = None,
                           access: MissionAccess = Depends(mission_access(PLATFORM_ADMIN, fresh=True)),
                           client: Client = Depends(get_temporal)):
    body: RollbackRequest = await read_model(request, RollbackRequest, required=False)
    mission, summary = access.mission, access.detail.summary
    audit(request, to_version=body.to_version)
    target = body.to_version or summary.previous_version
    if body.to_version and body.to_version not in access.detail.versions:
        raise ApiError(404, "unknown_version", f"mission {mission!r} has no version {body.to_version!r}")
    if not target:
        raise ApiError(409, "no_previous_version", f"mission {mission!r} has no previous version to roll back to")
    if target == summary.active_version:
        raise ApiError(409, "conflict", f"version {target} of mission {mission!r} is already active")
    workflow_id = rollback_workflow_id(mission)
    if idempotency_key:
        workflow_id += f"-{idempotent_suffix(mission, idempotency_key)}"
    started = await start_workflow(
        client, ROLLBACK_WORKFLOW, RollbackMissionInput(mission=mission, to_version=body.to_version,
                                                        actor=access.principal.actor),
        workflow_id=workflow_id, task_queue=queues.MISSIONS, mission=mission, idempotent=bool(idempotency_key),
        attach_running=True)
    request.app.state.missions.forget(mission)
    audit(request, target=started.workflow_id)
    return started_body(started, mission) | {"version": target}


@router.post("/missions/{mission}/deactivate", status_code=202, name="mission.deactivate",
             summary="stop serving a mission; its data is purged once the retention has passed (platform-admin) "
                     "-> DeactivateMissionWorkflow",
             response_model=WorkflowStarted, responses=error_responses(*BODY_ERRORS, *AUTH_ERRORS, 404),
             openapi_extra=json_request_body(DeactivateRequest, required=False))
async def deactivate_mission(request: Request, idempotency_key: IdempotencyKey = None,
                             access: MissionAccess = Depends(mission_access(PLATFORM_ADMIN, require_active=False)),
                             client: Client = Depends(get_temporal)):
    body: DeactivateRequest = await read_model(request, DeactivateRequest, required=False)
    mission = access.mission
    audit(request, retention_days=body.retention_days)
    workflow_id = deactivate_workflow_id(mission)
    if idempotency_key:
        workflow_id += f"-{idempotent_suffix(mission, idempotency_key)}"
    started = await start_workflow(
        client, DEACTIVATE_WORKFLOW, DeactivateMissionInput(mission=mission, actor=access.principal.actor,
                                                            retention_days=body.retention_days),
        workflow_id=workflow_id, task_queue=queues.MISSIONS, mission=mission, idempotent=bool(idempotency_key),
        attach_running=True)
    request.app.state.missions.forget(mission)
    audit(request, target=started.workflow_id)
    return started_body(started, mission)
