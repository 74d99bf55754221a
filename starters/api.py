"""The starter REST API (FastAPI): `uvicorn starters.api:app`.

It only starts, signals, queries, cancels and looks up Temporal workflows; the
workflows' activities do every store read and write (mission lookups run
ListMissionsWorkflow/ShowMissionWorkflow, health checks HealthCheckWorkflow, audit rows
RecordAuditWorkflow). Auth: starters/auth.py. OpenAPI docs at /docs.

Idempotency: POSTs accept an `Idempotency-Key` header; the workflow id is
derived from (mission, key) and started with WorkflowIDReusePolicy
REJECT_DUPLICATE, so a repeated request returns the first workflow's id
instead of starting a second one.

Errors: every error response, whatever raised it (a route, FastAPI's request
validation, routing, an unexpected exception), is the JSON `ErrorBody`
{"error": code, "detail": message or [{loc, msg, type}]}; OpenAPI declares it for
each status a route can answer. Request bodies are read with a size limit checked
on Content-Length first and counted while streaming, before anything is parsed;
a body that is not UTF-8, is nested deeper than MAX_JSON_DEPTH or holds U+0000 is
refused (400/400/422) before it reaches a workflow.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.json_schema import SkipJsonSchema, models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from starters.auth import (
    READ, WRITE, OidcVerifier, Principal, authenticate, bearer_scheme, check_auth_config, warn_dev_mode,
)
from stratmaster import queues
from stratmaster.contracts.audit import AuditEntry, audit_workflow_id
from stratmaster.contracts.common import _MISSION_RE, validate_mission_id
from stratmaster.contracts.health import HealthCheckInput, HealthReport
from stratmaster.contracts.ingestion import BATCH_ID_PATTERN, IngestInput, workflow_id_for
from stratmaster.contracts.missions import (
    ActivateMissionInput, Cartridge, ListMissionsInput, MissionDetail, MissionList, MissionRef, MissionSummary,
    validate_cartridge,
)
from stratmaster.contracts.research import ResearchInput, ResearchProgress, ResearchResult
from stratmaster.errors import UNKNOWN_MISSION, ServiceUnavailable
from stratmaster.search_attributes import MISSION_SA, for_mission
from stratmaster.settings import Settings, get_settings
from stratmaster.temporal_client import connect
from stratmaster import telemetry

log = logging.getLogger("stratmaster.api")

# Workflow types are started by name: the API does not import workflow code.
RESEARCH_WORKFLOW = "ResearchWorkflow"
INGEST_WORKFLOW = "IngestDocumentsWorkflow"
ACTIVATE_WORKFLOW = "ActivateMissionWorkflow"
HEALTH_WORKFLOW = "HealthCheckWorkflow"
AUDIT_WORKFLOW = "RecordAuditWorkflow"
LIST_MISSIONS_WORKFLOW = "ListMissionsWorkflow"
SHOW_MISSION_WORKFLOW = "ShowMissionWorkflow"
# the query each long-running workflow type answers with its progress
PROGRESS_QUERIES = {RESEARCH_WORKFLOW: "progress", INGEST_WORKFLOW: "progress", ACTIVATE_WORKFLOW: "stage"}

# Temporal refuses payloads above its blob size limit (2 MiB by default), so inline
# uploads are capped below it; larger documents go to the object store first and
# are ingested by {"object_key"}.
TEMPORAL_PAYLOAD_LIMIT = 2 * 1024 * 1024
INLINE_BUDGET = int(TEMPORAL_PAYLOAD_LIMIT * 0.9)
MULTIPART_OVERHEAD = 64 * 1024
# Request body limits (bytes). A body that could never fit the workflow payload is
# refused before it is read: the JSON upload limit is the inline budget itself, the
# multipart one the raw bytes that fit it once base64-encoded.
RESEARCH_BODY_LIMIT = 64 * 1024
CARTRIDGE_BODY_LIMIT = 512 * 1024
DOCUMENTS_JSON_LIMIT = INLINE_BUDGET + 16 * 1024
DOCUMENTS_MULTIPART_LIMIT = INLINE_BUDGET * 3 // 4 + MULTIPART_OVERHEAD
MAX_JSON_DEPTH = 64
LOOKUP_TIMEOUT = timedelta(seconds=5)
HEALTH_TIMEOUT = timedelta(seconds=15)
HEALTH_CACHE_SECONDS = 5.0
READY_CACHE_SECONDS = 2.0
MISSION_CACHE_SECONDS = 10.0
QUERY_RPC_TIMEOUT = timedelta(seconds=3)
MISSION_ID_PATTERN = _MISSION_RE.pattern
# any printable id: control characters (U+0000 above all) never name a workflow
WORKFLOW_ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
JSON_MEDIA_TYPES = ("application/json",)
YAML_MEDIA_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/plain")


# ---------------------------------------------------------------- error shape

class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="where: ['body', 'top_k'], ['path', 'mission'], ...")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error response."""
    error: str = Field(description="machine-readable code, e.g. unauthorized, unknown_mission, invalid_input",
                       examples=["unknown_mission"])
    detail: str | list[ValidationIssue] = Field(description="a message, or (422) one entry per invalid field")


class HealthUnavailable(ErrorBody):
    """503 of the detailed health checks: the error, and the report when the check ran."""
    report: HealthReport | None = None


ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
               422: "invalid_input", 429: "rate_limited", 500: "internal_error", 503: "unavailable"}
ERROR_DESCRIPTIONS = {
    400: "malformed request (body not UTF-8, JSON nested too deep, unreadable multipart)",
    401: "no, invalid or expired bearer token",
    403: "the caller's roles do not allow this",
    404: "unknown mission or workflow (also: a workflow the caller may not see)",
    409: "conflict with the resource's state (mission inactive, research not running)",
    413: "request body too large",
    415: "unsupported Content-Type",
    422: "invalid input, with the fields named",
    500: "unexpected server error (details are logged, never returned)",
    503: "Temporal, a worker or the identity provider is unavailable",
}


def error_responses(*codes: int, **models: type[BaseModel]) -> dict[int | str, dict]:
    """`responses=` for a route: each status with the error model."""
    return {c: {"model": models.get(f"m{c}", ErrorBody), "description": ERROR_DESCRIPTIONS[c]} for c in codes}


AUTH_ERRORS = (401, 403, 503)  # every authenticated route (503: identity provider or Temporal unavailable)


class ApiError(HTTPException):
    """HTTPException with a machine-readable code next to the message."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(status, detail=message, headers=headers)
        self.code = code


def error_json(status: int, detail: Any, code: str | None = None, headers: dict | None = None,
               **extra: Any) -> JSONResponse:
    body = {"error": code or ERROR_CODES.get(status, "error"), "detail": detail, **extra}
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


def validation_error(loc: tuple, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": message}])


def pydantic_errors(exc: ValidationError, prefix: tuple = ("body",)) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": prefix + tuple(e["loc"])}
                                   for e in exc.errors(include_url=False, include_context=False)])


def issues(errors: list[dict]) -> list[dict]:
    """Validation errors as returned: where, what and the error type, never the
    offending input (it can be huge, deep or hostile)."""
    return [{"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
             "msg": str(e.get("msg", "invalid")), "type": str(e.get("type", "value_error"))} for e in errors]


def too_large(message: str) -> ApiError:
    return ApiError(413, "payload_too_large", message)


# ---------------------------------------------------------------- response models

class Status(BaseModel):
    status: Literal["ok"] = "ok"


class WorkflowStarted(BaseModel):
    workflow_id: str
    run_id: str | None
    mission: str | None
    created: bool = Field(description="false: an existing workflow was returned (idempotency key, same batch)")
    status_url: str


class MissionActivationStarted(WorkflowStarted):
    version: str


class IngestStarted(WorkflowStarted):
    batch_id: str
    documents: int


class MissionListing(BaseModel):
    missions: list[MissionSummary]


class MissionView(MissionDetail):
    permissions: list[Literal["admin", "read", "write"]]


class ResearchStatus(BaseModel):
    workflow_id: str
    run_id: str | None
    mission: str | None
    status: str = Field(description="running, completed, failed, canceled, terminated, timed_out, ...")
    start_time: datetime | None
    close_time: datetime | None
    progress: ResearchProgress | None = Field(default=None, description="while running")
    progress_error: str | None = None
    result: ResearchResult | None = Field(default=None, description="when completed")
    error: str | None = Field(default=None, description="when failed, canceled or terminated")


class CancelRequested(BaseModel):
    workflow_id: str
    mission: str | None
    status: Literal["cancel_requested"] = "cancel_requested"


class WorkflowInfo(BaseModel):
    workflow_id: str
    run_id: str | None
    type: str
    status: str
    task_queue: str
    mission: str | None
    start_time: datetime | None
    close_time: datetime | None
    history_length: int
    progress: Any = Field(default=None, description="the workflow's progress query while it runs, if it has one")
    progress_error: str | None = None


# ---------------------------------------------------------------- request bodies

NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold U+0000


class ResearchRequest(ResearchInput):
    """The body of POST /missions/{mission}/research (the mission is the path's).
    Strict: no unknown fields, no coercion ("5" is not an integer, 0 not a boolean)."""
    model_config = ConfigDict(extra="forbid", strict=True)
    mission: SkipJsonSchema[Any] = None
    # the contract's rules, stated in the schema: not blank, no U+0000
    query: str = Field(min_length=1, max_length=4000,
                       json_schema_extra={"pattern": r"^[^\x00]*[^\s\x00][^\x00]*$"})
    subquestions: list[Annotated[str, Field(pattern=NO_NUL)]] | None = Field(default=None, max_length=12)

    @model_validator(mode="before")
    @classmethod
    def _integral_numbers(cls, data: Any) -> Any:
        """JSON Schema counts 3.0 as an integer, so the API does too (strict otherwise)."""
        if not isinstance(data, dict):
            return data
        ints = {name for name, f in cls.model_fields.items() if f.annotation in (int, int | None)}
        return {k: int(v) if k in ints and isinstance(v, float) and v.is_integer() else v for k, v in data.items()}


class DocumentUpload(BaseModel):
    """One document: inline (name + content_b64), an object-store key of the mission, or a
    path on the worker's filesystem (platform-admin only)."""
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"oneOf": [
        {"required": ["content_b64", "name"], "not": {"anyOf": [{"required": ["path"]}, {"required": ["object_key"]}]}},
        {"required": ["object_key"], "not": {"anyOf": [{"required": ["path"]}, {"required": ["content_b64"]}]}},
        {"required": ["path"], "not": {"anyOf": [{"required": ["object_key"]}, {"required": ["content_b64"]}]}},
    ]})
    # absent, never null (the schema says string)
    name: Annotated[str, Field(min_length=1, max_length=1024, pattern=NO_NUL)] = None
    content_b64: Annotated[str, Field(json_schema_extra={"format": "byte"})] = None
    object_key: Annotated[str, Field(min_length=1, max_length=1024, pattern=NO_NUL)] = None
    path: Annotated[str, Field(min_length=1, max_length=4096, pattern=NO_NUL)] = None


class IngestRequest(BaseModel):
    """The JSON body of POST /missions/{mission}/documents."""
    model_config = ConfigDict(extra="forbid", strict=True)
    documents: list[DocumentUpload] = Field(min_length=1)
    batch_id: Annotated[str, Field(pattern=BATCH_ID_PATTERN)] = Field(
        default=None, description="default: a hash of the documents")


REQUEST_MODELS = (ResearchRequest, IngestRequest, Cartridge)


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


# ---------------------------------------------------------------- request bodies: reading

def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def unsupported_media_type(ctype: str, accepted: tuple[str, ...]) -> ApiError:
    return ApiError(415, "unsupported_media_type", f"Content-Type {ctype!r} is not accepted here; "
                                                   f"use {' or '.join(accepted)}")


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (checked
    on Content-Length first, then while streaming), before anything is started."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "bad_request", "invalid Content-Length")
        if int(declared) > limit:
            raise too_large(f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    if hasattr(request, "_body"):
        if len(request._body) > limit:
            raise too_large(f"request body exceeds the limit of {limit} bytes")
        return request._body
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    request._body = b"".join(chunks)  # request.form()/json() reuse it
    return request._body


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Nesting deeper than `limit`, found without parsing (json.loads, and any
    recursive walk after it, would overflow the stack on a hostile body)."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        if depth > limit:
            return True
    return False


def _no_nul(value: Any, loc: tuple) -> None:
    """PostgreSQL text cannot hold U+0000: refused here (422) rather than accepted
    and failed in a workflow, attempt after attempt. Depth is bounded already."""
    if isinstance(value, str):
        if "\x00" in value:
            raise validation_error(loc, "must not contain the NUL character (U+0000)")
    elif isinstance(value, dict):
        for k, v in value.items():
            if "\x00" in k:
                raise validation_error(loc, "keys must not contain the NUL character (U+0000)")
            _no_nul(v, loc + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _no_nul(v, loc + (i,))


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "bad_request", f"request body is not valid UTF-8 (at byte {exc.start})") from None


def parse_json(text: str) -> Any:
    """JSON text to Python: 400 when too deep, 422 when not JSON or holding U+0000."""
    if json_too_deep(text):
        raise ApiError(400, "bad_request", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if not text.strip():
        raise validation_error(("body",), "a JSON body is required")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ApiError(400, "bad_request", f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers beyond the digit limit
        raise validation_error(("body",), f"invalid JSON: {getattr(exc, 'msg', None) or exc}") from None
    _no_nul(data, ("body",))
    return data


async def read_json(request: Request, limit: int) -> Any:
    ctype = media_type(request)
    if ctype and ctype not in JSON_MEDIA_TYPES and not ctype.endswith("+json"):
        raise unsupported_media_type(ctype, JSON_MEDIA_TYPES)
    return parse_json(decode_text(await read_limited(request, limit)))


def parse_model(model: type[BaseModel], data: Any, **extra: Any) -> Any:
    try:
        return model.model_validate({**data, **extra} if isinstance(data, dict) else data)
    except ValidationError as exc:
        raise pydantic_errors(exc) from None


# ---------------------------------------------------------------- dependencies

async def get_temporal(request: Request) -> Client:
    """The Temporal client (connected on first use). Tests override this dependency."""
    state = request.app.state
    if state.temporal is None:
        async with state.temporal_lock:
            if state.temporal is None:
                state.temporal = await connect(state.settings, interceptors=telemetry.interceptors())
    return state.temporal


async def resolve_temporal(request: Request) -> Client:
    """get_temporal honouring dependency_overrides, for code outside the route (middleware)."""
    factory = request.app.dependency_overrides.get(get_temporal, get_temporal)
    result = factory(request) if factory is get_temporal else factory()
    return await result if asyncio.iscoroutine(result) else result


async def principal_dep(request: Request, _bearer=Depends(bearer_scheme)) -> Principal:
    return await authenticate(request)


def require_platform_admin(principal: Principal = Depends(principal_dep)) -> Principal:
    if not principal.is_platform_admin:
        raise ApiError(403, "forbidden", "this action needs the platform-admin role")
    return principal


IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255,
    description="repeat-safe POST: the same key returns the first request's workflow instead of starting another")]


@dataclass
class MissionAccess:
    mission: str
    principal: Principal
    detail: MissionDetail


class MissionDirectoryCache:
    """Short positive cache of mission lookups (every mission route resolves its mission)."""

    def __init__(self, ttl: float = MISSION_CACHE_SECONDS):
        self.ttl = ttl
        self._entries: dict[str, tuple[float, MissionDetail]] = {}

    def get(self, mission: str) -> MissionDetail | None:
        hit = self._entries.get(mission)
        return hit[1] if hit and time.monotonic() - hit[0] < self.ttl else None

    def put(self, detail: MissionDetail) -> None:
        self._entries[detail.summary.mission] = (time.monotonic(), detail)

    def forget(self, mission: str) -> None:
        self._entries.pop(mission, None)


def _directory_unavailable(exc: WorkflowFailureError) -> ApiError:
    log.error("mission directory unavailable", extra={"error": str(exc.cause or exc)})
    return ApiError(503, "unavailable", f"mission directory unavailable (is the {queues.MISSIONS} worker running?)")


async def list_all_missions(client: Client) -> list[MissionSummary]:
    try:
        result = await client.execute_workflow(
            LIST_MISSIONS_WORKFLOW, ListMissionsInput(include_deactivated=True),
            id=f"api-list-missions-{uuid.uuid4().hex}", task_queue=queues.MISSIONS,
            execution_timeout=LOOKUP_TIMEOUT, result_type=MissionList,
        )
    except WorkflowFailureError as exc:
        raise _directory_unavailable(exc) from None
    return result.missions


async def show_mission(client: Client, mission: str) -> MissionDetail | None:
    """The mission's detail, or None when it does not exist."""
    try:
        return await client.execute_workflow(
            SHOW_MISSION_WORKFLOW, MissionRef(mission=mission), id=f"api-show-mission-{uuid.uuid4().hex}",
            task_queue=queues.MISSIONS, execution_timeout=LOOKUP_TIMEOUT, result_type=MissionDetail,
        )
    except WorkflowFailureError as exc:
        if isinstance(exc.cause, ApplicationError) and exc.cause.type == UNKNOWN_MISSION:
            return None
        raise _directory_unavailable(exc) from None


MissionPath = Annotated[str, Path(description="mission id", examples=["demo"], pattern=MISSION_ID_PATTERN)]
WorkflowIdPath = Annotated[str, Path(description="workflow id", min_length=1, max_length=400,
                                     pattern=WORKFLOW_ID_PATTERN)]


def mission_access(permission: str):
    """Dependency factory: the caller may `permission` the path's mission, which exists."""

    async def dep(request: Request, mission: MissionPath, principal: Principal = Depends(principal_dep),
                  client: Client = Depends(get_temporal)) -> MissionAccess:
        try:
            validate_mission_id(mission)  # the path pattern states the same rule
        except ValueError as exc:
            raise validation_error(("path", "mission"), str(exc)) from None
        request.state.audit_mission = mission
        # Permission before existence: a caller without rights learns nothing about the mission.
        if not principal.can(mission, permission):
            raise ApiError(403, "forbidden", f"{principal.actor!r} may not {permission} mission {mission!r}")
        cache: MissionDirectoryCache = request.app.state.missions
        detail = cache.get(mission)
        if detail is None:
            detail = await show_mission(client, mission)
            if detail is None:
                raise ApiError(404, "unknown_mission", f"unknown mission {mission!r}: activate it first (POST /missions)")
            cache.put(detail)
        if permission != READ and detail.summary.status != "active":
            raise ApiError(409, "mission_inactive", f"mission {mission!r} is {detail.summary.status}")
        return MissionAccess(mission, principal, detail)

    return dep


# ---------------------------------------------------------------- workflow helpers

def idempotent_suffix(mission: str, key: str) -> str:
    if not key or len(key) > 255:
        raise validation_error(("header", "Idempotency-Key"), "must be 1-255 characters")
    return "k" + hashlib.sha256(f"{mission}\n{key}".encode()).hexdigest()[:24]


@dataclass
class Started:
    workflow_id: str
    run_id: str | None
    created: bool


async def start_workflow(client: Client, workflow: str, arg: Any, *, workflow_id: str, task_queue: str,
                         mission: str | None, idempotent: bool, attach_running: bool = False) -> Started:
    """idempotent: an existing workflow with this id (running or closed) is returned,
    never duplicated. attach_running: a running one is returned, a closed one re-run."""
    try:
        handle = await client.start_workflow(
            workflow, arg, id=workflow_id, task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE if idempotent else WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=for_mission(mission) if mission else None,
        )
        return Started(workflow_id, handle.first_execution_run_id, True)
    except WorkflowAlreadyStartedError:
        # REJECT_DUPLICATE: any earlier run with this id; ALLOW_DUPLICATE: a running one.
        if not (idempotent or attach_running):
            raise ApiError(409, "conflict", f"workflow {workflow_id} already exists") from None
        desc = await client.get_workflow_handle(workflow_id).describe()
        return Started(workflow_id, desc.run_id, False)


def status_name(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower() if status else "unknown"


async def describe_for(request: Request, client: Client, principal: Principal, workflow_id: str,
                       permission: str, expected_type: str | None = None):
    """Describe a workflow the caller may `permission`: its Mission search attribute
    decides; system workflows (no mission) are for platform admins only.

    A workflow the caller may not even read answers exactly like one that does not
    exist (404, same body), so ids (predictable for ingestion batches) reveal nothing
    about other missions. A caller who may read it but not `permission` it gets 403."""
    invisible = ApiError(404, "unknown_workflow", f"no workflow {workflow_id!r}")
    if not principal.is_platform_admin and not any(r.startswith("mission:") for r in principal.roles):
        raise invisible  # no role reads any workflow: do not even look it up
    handle = client.get_workflow_handle(workflow_id)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise invisible from None
        raise
    mission = desc.typed_search_attributes.get(MISSION_SA)
    request.state.audit_mission = mission
    if mission is None:
        if not principal.is_platform_admin:
            raise invisible
    elif not principal.can(mission, READ):
        raise invisible
    elif not principal.can(mission, permission):
        raise ApiError(403, "forbidden", f"{principal.actor!r} may not {permission} mission {mission!r}")
    if expected_type and desc.workflow_type != expected_type:
        raise ApiError(404, "unknown_workflow", f"workflow {workflow_id!r} is a {desc.workflow_type}, not a {expected_type}")
    return handle, desc, mission


def started_body(s: Started, mission: str | None, status_url: str) -> dict:
    return {"workflow_id": s.workflow_id, "run_id": s.run_id, "mission": mission, "created": s.created,
            "status_url": status_url}


# ---------------------------------------------------------------- middleware

def _route_path(scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "<unmatched>"


class MetricsMiddleware:
    """http_requests_total{method,path,status} and http_request_duration_seconds{method,path}
    (the names the alert rules use); path is the route template, so labels stay bounded."""

    def __init__(self, app, registry: CollectorRegistry):
        self.app = app
        self.requests = Counter("http_requests_total", "HTTP requests", ["method", "path", "status"], registry=registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency", ["method", "path"],
                                 registry=registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = _route_path(scope)
            self.requests.labels(scope["method"], path, str(status["code"])).inc()
            self.latency.labels(scope["method"], path).observe(time.perf_counter() - t0)


WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class AuditMiddleware:
    """Every authenticated write request (accepted or refused) becomes an audit_log
    row through RecordAuditWorkflow, started before the response goes out."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            return await self.app(scope, receive, send)
        arrived = datetime.now(timezone.utc)

        recorded = False

        async def send_wrapper(message):
            nonlocal recorded
            if message["type"] == "http.response.start":
                recorded = True
                await self._record(scope, message["status"], arrived)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            if not recorded:  # an unhandled error becomes a 500 outside this middleware
                await self._record(scope, 500, arrived)
            raise

    async def _record(self, scope, status: int, arrived: datetime) -> None:
        state = scope.get("state") or {}
        principal: Principal | None = state.get("principal")
        if principal is None:  # unauthenticated: nothing to attribute (the 401 is counted in metrics)
            return
        request = Request(scope)
        request_id = uuid.uuid4().hex
        entry = AuditEntry(
            request_id=request_id, actor=principal.actor, at=arrived, status=status,
            # the route's name ("research.start", ...), or method and path for unmatched requests
            action=getattr(scope.get("route"), "name", None) or f"{scope['method']} {scope.get('path')}",
            mission=state.get("audit_mission"), target=state.get("audit_target"),
            detail={"method": scope["method"], "path": scope.get("path"), "client_id": principal.client_id,
                    "request_header_id": request.headers.get("x-request-id"), **(state.get("audit_detail") or {})},
        )
        try:
            client = await resolve_temporal(request)
            await client.start_workflow(AUDIT_WORKFLOW, entry, id=audit_workflow_id(request_id),
                                        task_queue=queues.MAINTENANCE,
                                        search_attributes=for_mission(entry.mission) if entry.mission else None)
        except Exception as exc:  # the write already happened; never turn it into a 500 here
            log.error("audit record not started", extra={"error": f"{type(exc).__name__}: {exc}",
                                                          "audit": entry.model_dump(mode="json")})


# ---------------------------------------------------------------- app

def allowed_methods(app: FastAPI, scope) -> list[str]:
    """Every method the request's path answers, across all its routes (a path such as
    /missions has one route per method: Starlette's 405 names only the first)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods | {"OPTIONS"}) if methods else []


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 405:  # the real Allow list; OPTIONS answers it (RFC 9110 9.3.7)
            allow = ", ".join(allowed_methods(request.app, request.scope))
            if request.method == "OPTIONS" and allow:
                return Response(status_code=204, headers={"Allow": allow})
            return error_json(405, f"{request.method} is not allowed here; allowed: {allow}", headers={"Allow": allow})
        return error_json(exc.status_code, exc.detail, getattr(exc, "code", None), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        return error_json(422, issues(list(exc.errors())))

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(request: Request, exc: ServiceUnavailable):
        return error_json(503, str(exc))

    @app.exception_handler(RPCError)
    async def rpc_error(request: Request, exc: RPCError):
        log.error("temporal rpc error", extra={"error": str(exc), "status": str(exc.status)})
        return error_json(503, "Temporal is unavailable or refused the request; try again later")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        # ServerErrorMiddleware: the traceback is logged by the server; the caller gets no internals
        log.error("unhandled error", exc_info=exc, extra={"method": request.method, "path": request.url.path})
        return error_json(500, "internal server error")


def _finish_openapi(app: FastAPI) -> None:
    """OpenAPI extras FastAPI does not derive itself: the request body models read
    by hand (several media types per route), and no security requirement in dev mode
    (the running server takes no token there)."""
    original = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = original()
            _, top = models_json_schema([(m, "validation") for m in REQUEST_MODELS],
                                        ref_template="#/components/schemas/{model}")
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in top.get("$defs", {}).items():
                schemas.setdefault(name, definition)
            for ops in schema.get("paths", {}).values():
                for op in ops.values():
                    for code, response in op.get("responses", {}).items() if isinstance(op, dict) else ():
                        # errors are JSON whatever the route's own media type (/metrics: text/plain)
                        content = response.get("content", {})
                        if code[0] in "45" and "application/json" not in content and content:
                            response["content"] = {"application/json": next(iter(content.values()))}
            if app.state.settings.auth_mode == "dev":
                schema["components"].pop("securitySchemes", None)
                for ops in schema.get("paths", {}).values():
                    for op in ops.values():
                        if isinstance(op, dict):
                            op.pop("security", None)
                            responses = op.get("responses", {})
                            responses.pop("401", None)
        return app.openapi_schema

    app.openapi = openapi


def create_app(settings: Settings | None = None, *, verifier: OidcVerifier | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        s = app.state.settings
        check_auth_config(s)  # refuses dev mode on a non-loopback bind, and no auth at all
        if s.auth_mode == "dev":
            warn_dev_mode(s)
        if s.auth_mode == "oidc" and app.state.verifier is None:
            app.state.verifier = OidcVerifier(s.keycloak_url, s.keycloak_realm, s.keycloak_audience)
        try:
            yield
        finally:
            if app.state.verifier is not None:
                await app.state.verifier.aclose()

    app = FastAPI(
        title="StratMaster API", version="0.1.0", lifespan=lifespan,
        description="Starts, queries and cancels StratMaster's Temporal workflows. "
                    "Bearer tokens from the Keycloak realm `stratmaster` (dev mode: loopback only, no token). "
                    "Every error is an `ErrorBody`.",
        responses=error_responses(500),
    )
    app.state.settings = settings
    app.state.verifier = verifier
    app.state.temporal = None
    app.state.temporal_lock = asyncio.Lock()
    app.state.missions = MissionDirectoryCache()
    app.state.health_cache = {}
    app.state.registry = CollectorRegistry()
    app.add_middleware(AuditMiddleware)
    app.add_middleware(MetricsMiddleware, registry=app.state.registry)
    # one trace per request, continued by the workflows it starts (stratmaster/telemetry.py)
    telemetry.configure_tracing("stratmaster-api", settings)
    telemetry.instrument_fastapi(app)
    _install_error_handlers(app)
    _routes(app)
    _finish_openapi(app)
    return app


class _Cached:
    """A value computed at most once per `ttl` seconds, however many requests ask at
    once (single flight): a flood of probes costs one computation per period."""

    def __init__(self, ttl: float):
        self.ttl = ttl
        self.lock = asyncio.Lock()
        self.at = -1e9
        self.value: Any = None

    async def get(self, compute):
        if time.monotonic() - self.at < self.ttl:
            return self.value
        async with self.lock:
            if time.monotonic() - self.at >= self.ttl:
                self.value = await compute()
                self.at = time.monotonic()
            return self.value


def _routes(app: FastAPI) -> None:
    # ------------------------------------------------------------ probes
    @app.get("/healthz", tags=["health"], summary="liveness: the process answers (no auth, reveals nothing)",
             response_model=Status)
    async def healthz():
        return Status()

    ready = _Cached(READY_CACHE_SECONDS)

    async def temporal_reachable(request: Request) -> bool:
        try:
            client = await resolve_temporal(request)
            return await client.service_client.check_health(timeout=timedelta(seconds=3))
        except Exception as exc:  # any failure is "not ready"; the reason is logged, not returned
            log.warning("readiness check failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            return False

    @app.get("/readyz", tags=["health"], summary="readiness: Temporal answers (no auth, reveals nothing; cached 2 s)",
             response_model=Status, responses=error_responses(503))
    async def readyz(request: Request):
        if not await ready.get(lambda: temporal_reachable(request)):
            return error_json(503, "not ready")
        return Status()

    async def run_health(request: Request, client: Client, services: list[str]):
        """HealthCheckWorkflow's report, cached HEALTH_CACHE_SECONDS per service set and
        single-flight: concurrent requests share one workflow run."""
        key = ",".join(services) or "all"
        cache = request.app.state.health_cache.get(key)
        if cache is None:
            cache = request.app.state.health_cache[key] = _Cached(HEALTH_CACHE_SECONDS)

        async def check():
            try:
                report = await client.execute_workflow(
                    HEALTH_WORKFLOW, HealthCheckInput(services=services), id=f"api-health-{uuid.uuid4().hex}",
                    task_queue=queues.MAINTENANCE, execution_timeout=HEALTH_TIMEOUT, result_type=HealthReport,
                )
            except WorkflowFailureError as exc:
                log.error("health check did not complete", extra={"error": str(exc.cause or exc)})
                return None
            return report

        report: HealthReport | None = await cache.get(check)
        if report is None:
            return error_json(503, f"health check did not complete (is the {queues.MAINTENANCE} worker running?)",
                              report=None)
        if not report.ok:
            down = ", ".join(s.name for s in report.services if not s.ok)
            return error_json(503, f"unavailable: {down}", report=report.model_dump(mode="json"))
        return report

    health_errors = error_responses(*AUTH_ERRORS, m503=HealthUnavailable)

    @app.get("/health/database", tags=["health"], response_model=HealthReport, responses=health_errors,
             summary="PostgreSQL reachable (platform-admin; runs HealthCheckWorkflow, cached 5 s)")
    async def health_database(request: Request, principal: Principal = Depends(require_platform_admin),
                              client: Client = Depends(get_temporal)):
        return await run_health(request, client, ["database"])

    @app.get("/health/services", tags=["health"], response_model=HealthReport, responses=health_errors,
             summary="every configured service (platform-admin; runs HealthCheckWorkflow, cached 5 s)")
    async def health_services(request: Request, principal: Principal = Depends(require_platform_admin),
                              client: Client = Depends(get_temporal)):
        return await run_health(request, client, [])

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics (text exposition format)",
             response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text exposition format"}})
    async def metrics(request: Request):
        return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------ missions
    @app.post("/missions", status_code=202, name="mission.activate", tags=["missions"],
              summary="activate (or update) a mission from a cartridge (platform-admin)",
              response_model=MissionActivationStarted,
              responses=error_responses(400, *AUTH_ERRORS, 413, 415, 422),
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": _ref(Cartridge)},
                  "application/yaml": {"schema": {"type": "string", "description": "the cartridge as YAML"}}}}})
    async def activate_mission(request: Request, idempotency_key: IdempotencyKey = None,
                               principal: Principal = Depends(require_platform_admin),
                               client: Client = Depends(get_temporal)):
        ctype = media_type(request)
        if ctype in YAML_MEDIA_TYPES:
            text = decode_text(await read_limited(request, CARTRIDGE_BODY_LIMIT))
            if "\x00" in text:
                raise validation_error(("body",), "must not contain the NUL character (U+0000)")
            validation = validate_cartridge(text)
            arg = ActivateMissionInput(cartridge_text=text, actor=principal.actor, source="api")
        else:
            data = await read_json(request, CARTRIDGE_BODY_LIMIT)
            validation = validate_cartridge(data=data)
            arg = ActivateMissionInput(cartridge=data if isinstance(data, dict) else None, actor=principal.actor,
                                       source="api")
        if not validation.ok:
            raise RequestValidationError([{"type": "value_error", "loc": ("body",) + tuple(p.path.split(".")),
                                           "msg": p.reason} for p in validation.problems])
        mission = validation.cartridge.mission
        request.state.audit_mission = mission
        # the missions area's id scheme: mission-activate-<mission>-<version>
        workflow_id = f"mission-activate-{mission}-{validation.cartridge.version}"
        if idempotency_key:
            workflow_id += f"-{idempotent_suffix(mission, idempotency_key)}"
        started = await start_workflow(client, ACTIVATE_WORKFLOW, arg, workflow_id=workflow_id,
                                       task_queue=queues.MISSIONS, mission=mission, idempotent=bool(idempotency_key),
                                       attach_running=True)
        request.app.state.missions.forget(mission)
        request.state.audit_target = started.workflow_id
        return started_body(started, mission, f"/workflows/{started.workflow_id}") | {
            "version": validation.cartridge.version}

    @app.get("/missions", tags=["missions"], summary="missions the caller may read", response_model=MissionListing,
             responses=error_responses(*AUTH_ERRORS))
    async def list_missions(principal: Principal = Depends(principal_dep), client: Client = Depends(get_temporal)):
        found = await list_all_missions(client)
        return MissionListing(missions=[m for m in found if principal.can(m.mission, READ)])

    @app.get("/missions/{mission}", tags=["missions"], summary="one mission", response_model=MissionView,
             responses=error_responses(*AUTH_ERRORS, 404, 422))
    async def get_mission(access: MissionAccess = Depends(mission_access(READ))):
        return MissionView(**dict(access.detail), permissions=sorted(access.principal.permissions(access.mission)))

    # ------------------------------------------------------------ documents
    @app.post("/missions/{mission}/documents", status_code=202, name="documents.ingest", tags=["documents"],
              summary="ingest documents (multipart files, or JSON {documents: [...]})", response_model=IngestStarted,
              responses=error_responses(400, *AUTH_ERRORS, 404, 409, 413, 415, 422),
              openapi_extra={"requestBody": {"required": True, "content": {
                  "multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {
                      "files": {"type": "array", "minItems": 1,
                                "items": {"type": "string", "format": "binary"}},
                      "batch_id": {"type": "string", "pattern": BATCH_ID_PATTERN}}}},
                  "application/json": {"schema": _ref(IngestRequest)}}}})
    async def ingest_documents(request: Request, idempotency_key: IdempotencyKey = None,
                               access: MissionAccess = Depends(mission_access(WRITE)),
                               client: Client = Depends(get_temporal)):
        settings: Settings = request.app.state.settings
        mission, principal = access.mission, access.principal
        ctype = media_type(request)
        limit = settings.max_document_bytes
        if ctype == "multipart/form-data":
            await read_limited(request, min(limit, INLINE_BUDGET * 3 // 4) + MULTIPART_OVERHEAD)
            body = await multipart_documents(request, limit)
        elif not ctype or ctype in JSON_MEDIA_TYPES:
            body = await read_json(request, DOCUMENTS_JSON_LIMIT)
            if not isinstance(body, dict):
                raise validation_error(("body",), "expected a JSON object {documents: [...]}")
        else:
            raise unsupported_media_type(ctype, ("multipart/form-data", *JSON_MEDIA_TYPES))
        body = parse_model(IngestRequest, body)
        req = parse_model(IngestInput, {"documents": [d.model_dump(exclude_none=True) for d in body.documents],
                                        "batch_id": body.batch_id}, mission=mission)
        for i, ref in enumerate(req.documents):
            if ref.path is not None and not principal.is_platform_admin:
                raise ApiError(403, "forbidden", f"documents[{i}]: 'path' reads the worker's filesystem; "
                                                 "platform-admin only (upload the file or use 'object_key')")
            if ref.content_b64 is not None:
                try:
                    size = len(base64.b64decode(ref.content_b64, validate=True))
                except (binascii.Error, ValueError):
                    raise validation_error(("body", "documents", i, "content_b64"), "not valid base64") from None
                if size > limit:
                    raise too_large(f"documents[{i}] ({ref.name}) is {size} bytes; the limit is {limit}")
        payload = len(req.model_dump_json())
        if payload > INLINE_BUDGET:
            raise too_large(f"inline uploads are limited to about {INLINE_BUDGET * 3 // 4} bytes per request "
                            "(Temporal payload limit); upload large files to the object store and ingest them "
                            "by {'object_key'}")
        batch_id = req.batch_id = (idempotent_suffix(mission, idempotency_key) if idempotency_key
                                   else req.resolved_batch_id())
        started = await start_workflow(client, INGEST_WORKFLOW, req, workflow_id=workflow_id_for(mission, batch_id),
                                       task_queue=queues.INGESTION, mission=mission, idempotent=bool(idempotency_key),
                                       attach_running=True)
        request.state.audit_target = started.workflow_id
        request.state.audit_detail = {"documents": [d.label for d in req.documents][:50], "batch_id": batch_id}
        return started_body(started, mission, f"/workflows/{started.workflow_id}") | {
            "batch_id": batch_id, "documents": len(req.documents)}

    # ------------------------------------------------------------ research
    @app.post("/missions/{mission}/research", status_code=202, name="research.start", tags=["research"],
              summary="start a research workflow", response_model=WorkflowStarted,
              responses=error_responses(400, *AUTH_ERRORS, 404, 409, 413, 415, 422),
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": _ref(ResearchRequest)}}}})
    async def start_research(request: Request, idempotency_key: IdempotencyKey = None,
                             access: MissionAccess = Depends(mission_access(WRITE)),
                             client: Client = Depends(get_temporal)):
        mission = access.mission
        body = await read_json(request, RESEARCH_BODY_LIMIT)
        if not isinstance(body, dict):
            raise validation_error(("body",), "expected a JSON object {query: ...}")
        parse_model(ResearchRequest, body)  # the API's rules (no unknown fields)
        req = parse_model(ResearchInput, body, mission=mission)
        suffix = idempotent_suffix(mission, idempotency_key) if idempotency_key else uuid.uuid4().hex[:20]
        started = await start_workflow(client, RESEARCH_WORKFLOW, req, workflow_id=f"research-{mission}-{suffix}",
                                       task_queue=queues.RESEARCH, mission=mission, idempotent=bool(idempotency_key))
        request.state.audit_target = started.workflow_id
        request.state.audit_detail = {"query": req.query[:500]}
        return started_body(started, mission, f"/research/{started.workflow_id}")

    @app.get("/research/{workflow_id}", tags=["research"], summary="research status; the result when done",
             response_model=ResearchStatus, responses=error_responses(*AUTH_ERRORS, 404, 422))
    async def research_status(request: Request, workflow_id: WorkflowIdPath,
                              principal: Principal = Depends(principal_dep), client: Client = Depends(get_temporal)):
        handle, desc, mission = await describe_for(request, client, principal, workflow_id, READ, RESEARCH_WORKFLOW)
        out: dict[str, Any] = {"workflow_id": workflow_id, "run_id": desc.run_id, "mission": mission,
                               "status": status_name(desc.status),
                               "start_time": desc.start_time, "close_time": desc.close_time}
        if desc.status == WorkflowExecutionStatus.RUNNING:
            try:
                out["progress"] = await handle.query("progress", rpc_timeout=QUERY_RPC_TIMEOUT)
            except Exception as exc:  # no research worker polling: status from Temporal only
                out["progress"] = None
                out["progress_error"] = f"progress query failed: {type(exc).__name__}"
        elif desc.status == WorkflowExecutionStatus.COMPLETED:
            out["result"] = await handle.result()
        else:
            try:
                await handle.result()
            except WorkflowFailureError as exc:
                cause = exc.cause
                out["error"] = getattr(cause, "message", None) or str(cause or exc)
        return out

    @app.delete("/research/{workflow_id}", status_code=202, name="research.cancel", tags=["research"],
                summary="cancel a research workflow", response_model=CancelRequested,
                responses=error_responses(*AUTH_ERRORS, 404, 409, 422))
    async def cancel_research(request: Request, workflow_id: WorkflowIdPath,
                              principal: Principal = Depends(principal_dep), client: Client = Depends(get_temporal)):
        request.state.audit_target = workflow_id
        handle, desc, mission = await describe_for(request, client, principal, workflow_id, WRITE, RESEARCH_WORKFLOW)
        if desc.status != WorkflowExecutionStatus.RUNNING:
            raise ApiError(409, "not_running", f"research {workflow_id!r} is already {status_name(desc.status)}")
        await handle.cancel()
        return CancelRequested(workflow_id=workflow_id, mission=mission)

    # ------------------------------------------------------------ any workflow
    @app.get("/workflows/{workflow_id}", tags=["workflows"], summary="any workflow: type, status, mission",
             response_model=WorkflowInfo, responses=error_responses(*AUTH_ERRORS, 404, 422))
    async def get_workflow(request: Request, workflow_id: WorkflowIdPath,
                           principal: Principal = Depends(principal_dep), client: Client = Depends(get_temporal)):
        handle, desc, mission = await describe_for(request, client, principal, workflow_id, READ)
        out = {
            "workflow_id": desc.id, "run_id": desc.run_id, "type": desc.workflow_type,
            "status": status_name(desc.status), "task_queue": desc.task_queue, "mission": mission,
            "start_time": desc.start_time, "close_time": desc.close_time, "history_length": desc.history_length,
        }
        query = PROGRESS_QUERIES.get(desc.workflow_type)
        if query and desc.status == WorkflowExecutionStatus.RUNNING:
            try:
                out["progress"] = await handle.query(query, rpc_timeout=QUERY_RPC_TIMEOUT)
            except Exception as exc:  # no worker polling its queue: what Temporal knows is still useful
                out["progress"], out["progress_error"] = None, f"{query} query failed: {type(exc).__name__}"
        return jsonable_encoder(out)


async def multipart_documents(request: Request, limit: int) -> dict:
    """{documents, batch_id} from a multipart upload (already read within its limit)."""
    try:
        form = await request.form()
    except HTTPException:
        raise
    except StarletteHTTPException as exc:  # MultiPartException: Starlette's 400
        raise ApiError(400, "bad_request", f"unreadable multipart body: {exc.detail}") from None
    except (UnicodeDecodeError, ValueError, KeyError, AssertionError) as exc:
        raise ApiError(400, "bad_request", f"unreadable multipart body ({type(exc).__name__})") from None
    docs, extra = [], {}
    for name, value in form.multi_items():
        if hasattr(value, "read"):
            data = await value.read()
            if len(data) > limit:
                raise too_large(f"{value.filename} is {len(data)} bytes; the limit is {limit}")
            if not value.filename:
                raise validation_error(("body", name), "uploaded files need a file name")
            docs.append({"name": value.filename, "content_b64": base64.b64encode(data).decode()})
        elif name == "batch_id":
            extra["batch_id"] = value
    body = {"documents": docs, **extra}
    _no_nul(body, ("body",))
    return body


app = create_app()
