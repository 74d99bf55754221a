"""The starter REST API (FastAPI): `uvicorn starters.api:app`.

It only starts, signals, queries, cancels and looks up Temporal workflows; the
workflows' activities do every store read and write (mission lookups run
ListMissionsWorkflow/ShowMissionWorkflow, health checks HealthCheckWorkflow, audit rows
RecordAuditWorkflow). Auth: starters/auth.py. OpenAPI docs at /docs.

Idempotency: POSTs accept an `Idempotency-Key` header; the workflow id is
derived from (mission, key) and started with WorkflowIDReusePolicy
REJECT_DUPLICATE, so a repeated request returns the first workflow's id
instead of starting a second one.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from starters.auth import (
    READ, WRITE, OidcVerifier, Principal, authenticate, bearer_scheme, check_auth_config,
)
from stratmaster import queues
from stratmaster.contracts.audit import AuditEntry, audit_workflow_id
from stratmaster.contracts.common import validate_mission_id
from stratmaster.contracts.health import HealthCheckInput, HealthReport
from stratmaster.contracts.ingestion import IngestInput, workflow_id_for
from stratmaster.contracts.missions import (
    ActivateMissionInput, ListMissionsInput, MissionDetail, MissionList, MissionRef, MissionSummary, validate_cartridge,
)
from stratmaster.contracts.research import ResearchInput
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
LOOKUP_TIMEOUT = timedelta(seconds=5)
HEALTH_TIMEOUT = timedelta(seconds=15)
HEALTH_CACHE_SECONDS = 5.0
MISSION_CACHE_SECONDS = 10.0
QUERY_RPC_TIMEOUT = timedelta(seconds=3)


# ---------------------------------------------------------------- errors

class ApiError(HTTPException):
    """HTTPException with a machine-readable code next to the message."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(status, detail=message)
        self.code, self.extra = code, extra


def _error_body(status: int, message: Any, code: str | None = None, **extra: Any) -> dict:
    default = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict", 413: "payload_too_large",
               422: "invalid_input", 503: "unavailable"}.get(status, "error")
    return {"error": code or default, "detail": message, **extra}


def validation_error(loc: tuple, message: str, input_value: Any = None) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": message, "input": input_value}])


def pydantic_errors(exc: ValidationError, prefix: tuple = ("body",)) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": prefix + tuple(e["loc"])}
                                   for e in exc.errors(include_url=False, include_context=False)])


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
    return ApiError(503, "unavailable", f"mission directory unavailable (is the {queues.MISSIONS} worker running?): "
                                       f"{exc.cause or exc}")


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


def mission_access(permission: str):
    """Dependency factory: the caller may `permission` the path's mission, which exists."""

    async def dep(request: Request, mission: str = Path(description="mission id", examples=["demo"]),
                  principal: Principal = Depends(principal_dep),
                  client: Client = Depends(get_temporal)) -> MissionAccess:
        try:
            validate_mission_id(mission)
        except ValueError as exc:
            raise validation_error(("path", "mission"), str(exc), mission) from None
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
        raise validation_error(("header", "Idempotency-Key"), "must be 1-255 characters", key)
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
    decides; system workflows (no mission) are for platform admins only."""
    if not workflow_id or len(workflow_id) > 400:
        raise validation_error(("path", "workflow_id"), "must be 1-400 characters", workflow_id)
    handle = client.get_workflow_handle(workflow_id)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ApiError(404, "unknown_workflow", f"no workflow {workflow_id!r}") from None
        raise
    mission = desc.typed_search_attributes.get(MISSION_SA)
    request.state.audit_mission = mission
    if mission is None:
        if not principal.is_platform_admin:
            raise ApiError(403, "forbidden", f"workflow {workflow_id!r} is not mission-scoped: platform-admin only")
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

def create_app(settings: Settings | None = None, *, verifier: OidcVerifier | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        check_auth_config(app.state.settings)  # refuses to start dev mode on a non-loopback bind
        if app.state.settings.auth_mode == "oidc" and app.state.verifier is None:
            s = app.state.settings
            app.state.verifier = OidcVerifier(s.keycloak_url, s.keycloak_realm, s.keycloak_audience)
        try:
            yield
        finally:
            if app.state.verifier is not None:
                await app.state.verifier.aclose()

    app = FastAPI(
        title="StratMaster API", version="0.1.0", lifespan=lifespan,
        description="Starts, queries and cancels StratMaster's Temporal workflows. "
                    "Bearer tokens from the Keycloak realm `stratmaster` (dev mode: loopback only, no token).",
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

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        code = getattr(exc, "code", None)
        extra = getattr(exc, "extra", {}) or {}
        return JSONResponse(_error_body(exc.status_code, exc.detail, code, **extra), status_code=exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(request: Request, exc: ServiceUnavailable):
        return JSONResponse(_error_body(503, str(exc)), status_code=503)

    @app.exception_handler(RPCError)
    async def rpc_error(request: Request, exc: RPCError):
        log.error("temporal rpc error", extra={"error": str(exc), "status": str(exc.status)})
        return JSONResponse(_error_body(503, f"Temporal error: {exc.message}"), status_code=503)

    _routes(app)
    return app


def _routes(app: FastAPI) -> None:
    # ------------------------------------------------------------ probes
    @app.get("/healthz", tags=["health"], summary="process alive")
    async def healthz():
        return {"status": "ok"}

    async def run_health(request: Request, client: Client, services: list[str]) -> JSONResponse:
        key = ",".join(services) or "all"
        cache = request.app.state.health_cache
        hit = cache.get(key)
        if hit and time.monotonic() - hit[0] < HEALTH_CACHE_SECONDS:
            return JSONResponse(hit[1], status_code=hit[2])
        try:
            report = await client.execute_workflow(
                HEALTH_WORKFLOW, HealthCheckInput(services=services), id=f"api-health-{uuid.uuid4().hex}",
                task_queue=queues.MAINTENANCE, execution_timeout=HEALTH_TIMEOUT, result_type=HealthReport,
            )
            body, code = report.model_dump(mode="json"), 200 if report.ok else 503
        except WorkflowFailureError as exc:
            body = {"ok": False, "error": f"health check did not complete (is the {queues.MAINTENANCE} worker running?): "
                                          f"{exc.cause or exc}", "services": []}
            code = 503
        cache[key] = (time.monotonic(), body, code)
        return JSONResponse(body, status_code=code)

    @app.get("/health/database", tags=["health"], summary="PostgreSQL reachable (runs HealthCheckWorkflow)")
    async def health_database(request: Request, client: Client = Depends(get_temporal)):
        return await run_health(request, client, ["database"])

    @app.get("/health/services", tags=["health"], summary="every configured service (runs HealthCheckWorkflow)")
    async def health_services(request: Request, client: Client = Depends(get_temporal)):
        return await run_health(request, client, [])

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics")
    async def metrics(request: Request):
        return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------ missions
    @app.post("/missions", status_code=202, name="mission.activate", tags=["missions"],
              summary="activate (or update) a mission from a cartridge (platform-admin)",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"type": "object", "description": "cartridge (see docs/cartridges)"}},
                  "application/yaml": {"schema": {"type": "string"}}}}})
    async def activate_mission(request: Request, principal: Principal = Depends(require_platform_admin),
                               client: Client = Depends(get_temporal)):
        raw = await read_limited(request, 512 * 1024)
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        if ctype in ("application/yaml", "application/x-yaml", "text/yaml", "text/plain"):
            validation = validate_cartridge(raw)
            arg = ActivateMissionInput(cartridge_text=raw.decode("utf-8", "replace"), actor=principal.actor, source="api")
        else:
            try:
                data = json.loads(raw or b"null")
            except json.JSONDecodeError as exc:
                raise validation_error(("body",), f"invalid JSON: {exc.msg}") from None
            validation = validate_cartridge(data=data)
            arg = ActivateMissionInput(cartridge=data if isinstance(data, dict) else None, actor=principal.actor,
                                       source="api")
        if not validation.ok:
            raise RequestValidationError([{"type": "value_error", "loc": ("body",) + tuple(p.path.split(".")),
                                           "msg": p.reason, "input": None} for p in validation.problems])
        mission = validation.cartridge.mission
        request.state.audit_mission = mission
        key = request.headers.get("idempotency-key")
        # the missions area's id scheme: mission-activate-<mission>-<version>
        workflow_id = f"mission-activate-{mission}-{validation.cartridge.version}"
        if key:
            workflow_id += f"-{idempotent_suffix(mission, key)}"
        started = await start_workflow(client, ACTIVATE_WORKFLOW, arg, workflow_id=workflow_id,
                                       task_queue=queues.MISSIONS, mission=mission, idempotent=bool(key),
                                       attach_running=True)
        request.app.state.missions.forget(mission)
        request.state.audit_target = started.workflow_id
        return started_body(started, mission, f"/workflows/{started.workflow_id}") | {
            "version": validation.cartridge.version}

    @app.get("/missions", tags=["missions"], summary="missions the caller may read")
    async def list_missions(principal: Principal = Depends(principal_dep), client: Client = Depends(get_temporal)):
        found = await list_all_missions(client)
        return {"missions": [m.model_dump(mode="json") for m in found if principal.can(m.mission, READ)]}

    @app.get("/missions/{mission}", tags=["missions"], summary="one mission")
    async def get_mission(access: MissionAccess = Depends(mission_access(READ))):
        return access.detail.model_dump(mode="json") | {
            "permissions": sorted(access.principal.permissions(access.mission))}

    # ------------------------------------------------------------ documents
    @app.post("/missions/{mission}/documents", status_code=202, name="documents.ingest", tags=["documents"],
              summary="ingest documents (multipart files, or JSON {documents: [...]})",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                      "batch_id": {"type": "string"}}}},
                  "application/json": {"schema": {"type": "object", "properties": {
                      "documents": {"type": "array", "items": {"type": "object", "description":
                                    "{name, content_b64} | {object_key} | {path} (path: platform-admin only)"}},
                      "batch_id": {"type": "string"}}, "required": ["documents"]}}}}})
    async def ingest_documents(request: Request, access: MissionAccess = Depends(mission_access(WRITE)),
                               client: Client = Depends(get_temporal)):
        settings: Settings = request.app.state.settings
        mission, principal = access.mission, access.principal
        ctype = request.headers.get("content-type", "")
        limit = settings.max_document_bytes
        if ctype.startswith("multipart/form-data"):
            await read_limited(request, limit + MULTIPART_OVERHEAD)
            form = await request.form()
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
        else:
            raw = await read_limited(request, limit * 4 // 3 + MULTIPART_OVERHEAD)
            try:
                body = json.loads(raw or b"null")
            except json.JSONDecodeError as exc:
                raise validation_error(("body",), f"invalid JSON: {exc.msg}") from None
            if not isinstance(body, dict):
                raise validation_error(("body",), "expected a JSON object {documents: [...]}")
        body.pop("resume", None)  # internal continue-as-new state, never from callers
        try:
            req = IngestInput.model_validate({**body, "mission": mission})
        except ValidationError as exc:
            raise pydantic_errors(exc) from None
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
        key = request.headers.get("idempotency-key")
        batch_id = req.batch_id = idempotent_suffix(mission, key) if key else req.resolved_batch_id()
        started = await start_workflow(client, INGEST_WORKFLOW, req, workflow_id=workflow_id_for(mission, batch_id),
                                       task_queue=queues.INGESTION, mission=mission, idempotent=bool(key),
                                       attach_running=True)
        request.state.audit_target = started.workflow_id
        request.state.audit_detail = {"documents": [d.label for d in req.documents][:50], "batch_id": batch_id}
        return started_body(started, mission, f"/workflows/{started.workflow_id}") | {
            "batch_id": batch_id, "documents": len(req.documents)}

    # ------------------------------------------------------------ research
    @app.post("/missions/{mission}/research", status_code=202, name="research.start", tags=["research"],
              summary="start a research workflow",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "type": "object", "required": ["query"], "properties": {
                      "query": {"type": "string"}, "max_subquestions": {"type": "integer"},
                      "top_k": {"type": "integer"}, "fusion": {"type": "string", "enum": ["minmax", "rrf"]},
                      "use_graph": {"type": "boolean"}, "use_web": {"type": "boolean"}}}}}}})
    async def start_research(request: Request, access: MissionAccess = Depends(mission_access(WRITE)),
                             client: Client = Depends(get_temporal)):
        mission = access.mission
        raw = await read_limited(request, 64 * 1024)
        try:
            body = json.loads(raw or b"null")
        except json.JSONDecodeError as exc:
            raise validation_error(("body",), f"invalid JSON: {exc.msg}") from None
        if not isinstance(body, dict):
            raise validation_error(("body",), "expected a JSON object {query: ...}")
        try:
            req = ResearchInput.model_validate({**body, "mission": mission})
        except ValidationError as exc:
            raise pydantic_errors(exc) from None
        key = request.headers.get("idempotency-key")
        suffix = idempotent_suffix(mission, key) if key else uuid.uuid4().hex[:20]
        started = await start_workflow(client, RESEARCH_WORKFLOW, req, workflow_id=f"research-{mission}-{suffix}",
                                       task_queue=queues.RESEARCH, mission=mission, idempotent=bool(key))
        request.state.audit_target = started.workflow_id
        request.state.audit_detail = {"query": req.query[:500]}
        return started_body(started, mission, f"/research/{started.workflow_id}")

    @app.get("/research/{workflow_id}", tags=["research"], summary="research status; the result when done")
    async def research_status(request: Request, workflow_id: str, principal: Principal = Depends(principal_dep),
                              client: Client = Depends(get_temporal)):
        handle, desc, mission = await describe_for(request, client, principal, workflow_id, READ, RESEARCH_WORKFLOW)
        out: dict[str, Any] = {"workflow_id": workflow_id, "run_id": desc.run_id, "mission": mission,
                               "status": status_name(desc.status),
                               "start_time": desc.start_time, "close_time": desc.close_time}
        if desc.status == WorkflowExecutionStatus.RUNNING:
            try:
                out["progress"] = await handle.query("progress", rpc_timeout=QUERY_RPC_TIMEOUT)
            except Exception as exc:  # no research worker polling: status from Temporal only
                out["progress"] = None
                out["progress_error"] = f"progress query failed: {exc}"
        elif desc.status == WorkflowExecutionStatus.COMPLETED:
            out["result"] = await handle.result()
        else:
            try:
                await handle.result()
            except WorkflowFailureError as exc:
                cause = exc.cause
                out["error"] = getattr(cause, "message", None) or str(cause or exc)
        return jsonable_encoder(out)

    @app.delete("/research/{workflow_id}", status_code=202, name="research.cancel", tags=["research"], summary="cancel a research workflow")
    async def cancel_research(request: Request, workflow_id: str, principal: Principal = Depends(principal_dep),
                              client: Client = Depends(get_temporal)):
        request.state.audit_target = workflow_id
        handle, desc, mission = await describe_for(request, client, principal, workflow_id, WRITE, RESEARCH_WORKFLOW)
        if desc.status != WorkflowExecutionStatus.RUNNING:
            raise ApiError(409, "not_running", f"research {workflow_id!r} is already {status_name(desc.status)}")
        await handle.cancel()
        return {"workflow_id": workflow_id, "mission": mission, "status": "cancel_requested"}

    # ------------------------------------------------------------ any workflow
    @app.get("/workflows/{workflow_id}", tags=["workflows"], summary="any workflow: type, status, mission")
    async def get_workflow(request: Request, workflow_id: str, principal: Principal = Depends(principal_dep),
                           client: Client = Depends(get_temporal)):
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
                out["progress"], out["progress_error"] = None, f"{query} query failed: {exc}"
        return jsonable_encoder(out)


def too_large(message: str) -> ApiError:
    return ApiError(413, "payload_too_large", message)


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (checked
    on Content-Length first, then while streaming), before anything is started."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    if hasattr(request, "_body"):
        return request._body
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    request._body = b"".join(chunks)  # request.form()/json() reuse it
    return request._body


app = create_app()
