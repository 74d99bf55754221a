"""Sources of a mission (workflows/sources.py, queue ingestion-tasks): add a directory
(platform-admin) or S3 source (mission admin) with its schedule, list them, a source's
status and manifest, sync one now, remove one. Adding, listing and the status wait
for their (short) workflow; a sync and a removal answer 202 with the workflow id
(poll GET /workflows/{id}). Workflow ids are the CLI's business keys
(stratmaster/contracts/sources.py), so a sync or removal already running is
attached to, never doubled."""
from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field
from temporalio.client import Client, WorkflowFailureError

from starters.api.audit import audit
from starters.api.bodies import StrictBody, parse_model, read_model
from starters.api.deps import MissionAccess, get_temporal, mission_access
from starters.api.errors import AUTH_ERRORS, BODY_ERRORS, ApiError, error_responses, validation_error
from starters.api.openapi import json_request_body
from starters.api.temporal_ops import (
    ADD_SOURCE_WORKFLOW, LIST_SOURCES_WORKFLOW, OPERATION_TIMEOUT, REMOVE_SOURCE_WORKFLOW, SOURCE_STATUS_WORKFLOW,
    SOURCE_SYNC_WORKFLOW, WorkflowStarted, start_workflow, started_body,
)
from starters.failures import failure_message, failure_type
from starters.auth import ADMIN, PLATFORM_ADMIN, READ, WRITE, Principal
from stratmaster import principals, queues
from stratmaster.contracts import sources as src
from stratmaster.contracts.ingestion import MAX_LISTED_FAILURES, SOURCE_ID_PATTERN
from stratmaster.errors import BAD_INPUT, UNKNOWN_MISSION
from stratmaster.search_attributes import for_mission

router = APIRouter(tags=["sources"])

ADD_TIMEOUT = timedelta(minutes=2)  # the worker checks the directory or probes the bucket first
LOOKUP_TIMEOUT = timedelta(seconds=30)
MAX_OFFSET = 1_000_000_000

SourcePath = Annotated[str, Path(description="the source's id in the mission", examples=["reports"],
                                 pattern=SOURCE_ID_PATTERN)]

# The API's schema states every rule the contract's validators check, so that a body the
# schema accepts is never refused later (and the other way round):
# an absolute, normalised path (no '.', '..', '//' or trailing '/'; never '/' itself) ...
_SEGMENT = r"[^/.\x00][^/\x00]*|\.[^/.\x00][^/\x00]*|\.\.[^/\x00]+"
NORMAL_PATH = rf"^(/({_SEGMENT}))+$"
# ... an S3 bucket name without '..'; a key prefix not starting with '/'
BUCKET = r"^[a-z0-9]([a-z0-9-]|\.[a-z0-9-])*\.?[a-z0-9]$"
PREFIX = r"^([^/\x00][^\x00]*)?$"
ENDPOINT = src._ENDPOINT.pattern


class DirectorySourceSpec(StrictBody):
    """A directory on the ingestion workers' filesystem (platform-admin only)."""
    kind: Literal["directory"]
    path: str = Field(min_length=2, max_length=4096, pattern=NORMAL_PATH,
                      description="absolute and normalised, as the ingestion workers see it", examples=["/srv/reports"])


class S3SourceSpec(StrictBody):
    """An S3-compatible bucket and prefix (mission admin). No secret here: the workers
    resolve `credentials_profile` from their environment."""
    kind: Literal["s3"]
    endpoint: str = Field(min_length=1, max_length=260, pattern=ENDPOINT,
                          description="host[:port], no scheme (`secure` picks https)")
    bucket: str = Field(min_length=3, max_length=63, pattern=BUCKET)
    prefix: str = Field(default="", max_length=512, pattern=PREFIX, description="literal; a '/' is added when missing")
    credentials_profile: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$",
                                     description="STRATMASTER_S3_PROFILE_<NAME>_ACCESS_KEY/_SECRET_KEY on the workers")
    secure: bool = True
    region: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,32}$")] | None = None


class SourceCreateRequest(StrictBody):
    """The body of POST /missions/{mission}/sources (contract: stratmaster.contracts.sources.SourceCreateRequest)."""
    source_id: str = Field(pattern=SOURCE_ID_PATTERN, description="2-32 chars: lowercase letters, digits, '_', '-'",
                           examples=["reports"])
    spec: Annotated[DirectorySourceSpec | S3SourceSpec, Field(discriminator="kind")]
    interval_seconds: int = Field(default=src.DEFAULT_INTERVAL_S, ge=src.MIN_INTERVAL_S, le=30 * 86400,
                                  description="seconds between scheduled syncs")


class SourceSyncRequest(StrictBody):
    """The body of POST /missions/{mission}/sources/{source_id}/sync (optional)."""
    page_size: int = Field(default=100, ge=1, le=MAX_LISTED_FAILURES,
                           description="new or changed files per ingestion batch")


class SourceAdded(src.AddSourceResult):
    workflow_id: str = Field(description="the AddSourceWorkflow that stored it")


class SourceWorkflowStarted(WorkflowStarted):
    source_id: str


def _source_error(exc: WorkflowFailureError, what: str) -> ApiError | Exception:
    """A source workflow's failure as the API's error (its own message, never a trace)."""
    kind, message = failure_type(exc), failure_message(exc, root=True)
    if kind == src.FORBIDDEN:
        return ApiError(403, "forbidden", message)
    if kind == src.UNKNOWN_SOURCE:
        return ApiError(404, "unknown_source", message)
    if kind == UNKNOWN_MISSION:
        return ApiError(404, "unknown_mission", message)
    if kind in (src.SOURCE_EXISTS, src.SOURCE_REMOVED):
        return ApiError(409, "source_exists" if kind == src.SOURCE_EXISTS else "conflict", message)
    if kind in (src.SOURCE_UNAVAILABLE, BAD_INPUT):
        return validation_error(("body", "spec"), message)
    if kind is not None:
        return ApiError(409, "conflict", message)
    return ApiError(503, "unavailable", f"{what} did not complete (is the {queues.INGESTION} worker running?)")


async def _execute(client: Client, workflow: str, arg, *, workflow_id: str, mission: str, result_type,
                   what: str, timeout: timedelta = LOOKUP_TIMEOUT):
    try:
        return await client.execute_workflow(workflow, arg, id=workflow_id, task_queue=queues.INGESTION,
                                             execution_timeout=timeout, result_type=result_type,
                                             search_attributes=for_mission(mission))
    except WorkflowFailureError as exc:
        raise _source_error(exc, what) from None


async def source_status(client: Client, mission: str, source_id: str, *, status: src.ManifestStatus | None = None,
                        offset: int = 0, limit: int = 0) -> src.SourceStatus:
    """SourceStatusWorkflow: the source (404 unknown_source when the mission has none by that id)."""
    return await _execute(
        client, SOURCE_STATUS_WORKFLOW,
        src.SourceStatusInput(mission=mission, source_id=source_id, status=status, offset=offset, limit=limit),
        workflow_id=f"source-status-{mission}-{source_id}-{uuid.uuid4().hex[:8]}", mission=mission,
        result_type=src.SourceStatus, what="the source status")


def _actor_roles(principal: Principal, mission: str) -> list[str]:
    """The caller's roles that matter here (the activity checks them again)."""
    return sorted(r for r in principal.roles if r == PLATFORM_ADMIN or r.startswith(f"mission:{mission}:"))[:100]


@router.post("/missions/{mission}/sources", status_code=201, name="source.add",
             summary="register a directory (platform-admin) or S3 source (mission admin) and its schedule "
                     "-> AddSourceWorkflow",
             description="Waits for `AddSourceWorkflow` (`source-add-<mission>-<source>`): the worker checks the "
                         "directory or probes the bucket with the credentials profile, stores the definition and "
                         "creates the schedule. 201 when created; 200 when it existed (`unchanged`) or only its "
                         "interval changed (`updated`). 409: the id is taken by another definition or is being "
                         "removed; 422: the directory or bucket is not usable from the workers.",
             response_model=SourceAdded,
             responses={200: {"model": SourceAdded, "description": "the source existed (unchanged or updated)"},
                        **error_responses(*BODY_ERRORS, *AUTH_ERRORS, 404, 409)},
             openapi_extra=json_request_body(SourceCreateRequest))
async def add_source(request: Request, access: MissionAccess = Depends(mission_access(ADMIN)),
                     client: Client = Depends(get_temporal)):
    body: SourceCreateRequest = await read_model(request, SourceCreateRequest)
    mission, principal = access.mission, access.principal
    audit(request, source_id=body.source_id, kind=body.spec.kind)
    if body.spec.kind == "directory" and not principal.is_platform_admin:
        raise ApiError(403, "forbidden", "a directory source lets the workers read every file below it: "
                                         "only a platform admin may register one")
    definition = parse_model(src.SourceCreateRequest, body.model_dump()).definition()
    roles = _actor_roles(principal, mission)
    # signed: the worker trusts the roles only with this platform's signature (stratmaster/principals.py)
    signed = principals.sign_principal(principals.load_key(request.app.state.settings), mission, principal.actor[:200],
                                       roles)
    req = src.AddSourceInput(mission=mission, source=definition, actor=principal.actor[:200], actor_roles=roles,
                             principal=signed)
    started = await start_workflow(client, ADD_SOURCE_WORKFLOW, req,
                                   workflow_id=src.add_workflow_id(mission, body.source_id),
                                   task_queue=queues.INGESTION, mission=mission, idempotent=False,
                                   attach_running=True, execution_timeout=ADD_TIMEOUT)
    audit(request, target=started.workflow_id)
    handle = client.get_workflow_handle(started.workflow_id, run_id=started.run_id, result_type=src.AddSourceResult)
    try:
        result: src.AddSourceResult = await handle.result()
    except WorkflowFailureError as exc:
        raise _source_error(exc, "adding the source") from None
    audit(request, outcome=result.status)
    out = SourceAdded(**result.model_dump(), workflow_id=started.workflow_id)
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if result.status == "created" else 200)


@router.get("/missions/{mission}/sources", summary="the mission's sources, their last sync and file counts (read) "
                                                   "-> ListSourcesWorkflow",
            response_model=src.SourceList, responses=error_responses(*AUTH_ERRORS, 404, 422))
async def list_sources(access: MissionAccess = Depends(mission_access(READ)), client: Client = Depends(get_temporal)):
    mission = access.mission
    return await _execute(client, LIST_SOURCES_WORKFLOW, src.ListSourcesInput(mission=mission),
                          workflow_id=f"source-list-{mission}-{uuid.uuid4().hex[:8]}", mission=mission,
                          result_type=src.SourceList, what="the source listing")


@router.get("/missions/{mission}/sources/{source_id}",
            summary="a source's last sync and a page of its manifest: every file's state, why a file failed (read) "
                    "-> SourceStatusWorkflow",
            response_model=src.SourceStatus, responses=error_responses(*AUTH_ERRORS, 404, 422))
async def get_source(source_id: SourcePath, access: MissionAccess = Depends(mission_access(READ)),
                     client: Client = Depends(get_temporal),
                     status: Annotated[Literal["pending", "indexed", "failed"] | None,
                                       Query(description="only files in this state")] = None,
                     offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
                     limit: Annotated[int, Query(ge=0, le=1000, description="files in the page")] = 100):
    return await source_status(client, access.mission, source_id, status=status, offset=offset, limit=limit)


@router.post("/missions/{mission}/sources/{source_id}/sync", status_code=202, name="source.sync",
             summary="sync a source now (write) -> SourceSyncWorkflow; attaches to a sync of it already running",
             description="202 with `source-sync-<mission>-<source>` (poll `GET /workflows/{id}`: its `progress` "
                         "while it runs, then the pass's totals). `created: false`: that sync was already running.",
             response_model=SourceWorkflowStarted, responses=error_responses(*BODY_ERRORS, *AUTH_ERRORS, 404, 409),
             openapi_extra=json_request_body(SourceSyncRequest, required=False))
async def sync_source(request: Request, source_id: SourcePath, access: MissionAccess = Depends(mission_access(WRITE)),
                      client: Client = Depends(get_temporal)):
    body: SourceSyncRequest = await read_model(request, SourceSyncRequest, required=False)
    mission = access.mission
    audit(request, source_id=source_id)
    found = await source_status(client, mission, source_id)
    if found.source.status == "removing":
        raise ApiError(409, "conflict", f"source {source_id!r} is being removed")
    started = await start_workflow(
        client, SOURCE_SYNC_WORKFLOW, src.SourceSyncInput(mission=mission, source_id=source_id, page_size=body.page_size),
        workflow_id=src.sync_workflow_id(mission, source_id), task_queue=queues.INGESTION, mission=mission,
        idempotent=False, attach_running=True)
    audit(request, target=started.workflow_id)
    return started_body(started, mission) | {"source_id": source_id}


@router.delete("/missions/{mission}/sources/{source_id}", status_code=202, name="source.remove",
               summary="remove a source: its schedule, every document only it holds (from every store), its "
                       "manifest (mission admin) -> RemoveSourceWorkflow",
               response_model=SourceWorkflowStarted, responses=error_responses(*AUTH_ERRORS, 404, 422))
async def remove_source(request: Request, source_id: SourcePath,
                        access: MissionAccess = Depends(mission_access(ADMIN, require_active=False)),
                        client: Client = Depends(get_temporal)):
    mission = access.mission
    audit(request, source_id=source_id)
    await source_status(client, mission, source_id)
    started = await start_workflow(
        client, REMOVE_SOURCE_WORKFLOW,
        src.RemoveSourceInput(mission=mission, source_id=source_id, actor=access.principal.actor[:200]),
        workflow_id=src.remove_workflow_id(mission, source_id), task_queue=queues.INGESTION, mission=mission,
        idempotent=False, attach_running=True, execution_timeout=OPERATION_TIMEOUT)
    audit(request, target=started.workflow_id)
    return started_body(started, mission) | {"source_id": source_id}
