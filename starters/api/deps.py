"""Shared route dependencies: the Temporal client, the caller (Principal), the
platform-admin requirement, mission access (permission, then existence, then
state) with a short cache of mission lookups, and the path/header parameters."""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from starters.api.errors import ApiError, validation_error
from starters.api.temporal_ops import LIST_MISSIONS_WORKFLOW, LOOKUP_TIMEOUT, SHOW_MISSION_WORKFLOW
from starters.auth import PLATFORM_ADMIN, READ, Principal, authenticate, bearer_scheme
from stratmaster import queues, telemetry
from stratmaster.contracts.common import MISSION_ID_PATTERN, validate_mission_id
from stratmaster.contracts.missions import ListMissionsInput, MissionDetail, MissionList, MissionRef, MissionSummary
from stratmaster.errors import UNKNOWN_MISSION
from stratmaster.temporal_client import connect
from stratmaster.workflow_ids import list_missions_workflow_id, show_workflow_id

log = logging.getLogger("stratmaster.api")

MISSION_CACHE_SECONDS = 10.0
# any printable id: control characters (U+0000 above all) never name a workflow
WORKFLOW_ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"

MissionPath = Annotated[str, Path(description="mission id", examples=["demo"], pattern=MISSION_ID_PATTERN)]
WorkflowIdPath = Annotated[str, Path(description="workflow id", min_length=1, max_length=400,
                                     pattern=WORKFLOW_ID_PATTERN)]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255,
    description="repeat-safe POST: the same key returns the first request's workflow instead of starting another")]


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


def platform_admin_refusal() -> ApiError:
    return ApiError(403, "forbidden", "this action needs the platform-admin role")


def require_platform_admin(principal: Principal = Depends(principal_dep)) -> Principal:
    if not principal.is_platform_admin:
        raise platform_admin_refusal()
    return principal


class Cached:
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


# ---------------------------------------------------------------- missions

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
            id=list_missions_workflow_id(f"api-{uuid.uuid4().hex}"), task_queue=queues.MISSIONS,
            execution_timeout=LOOKUP_TIMEOUT, result_type=MissionList,
        )
    except WorkflowFailureError as exc:
        raise _directory_unavailable(exc) from None
    return result.missions


async def show_mission(client: Client, mission: str) -> MissionDetail | None:
    """The mission's detail, or None when it does not exist."""
    try:
        return await client.execute_workflow(
            SHOW_MISSION_WORKFLOW, MissionRef(mission=mission), id=show_workflow_id(mission, f"api-{uuid.uuid4().hex}"),
            task_queue=queues.MISSIONS, execution_timeout=LOOKUP_TIMEOUT, result_type=MissionDetail,
        )
    except WorkflowFailureError as exc:
        if isinstance(exc.cause, ApplicationError) and exc.cause.type == UNKNOWN_MISSION:
            return None
        raise _directory_unavailable(exc) from None


def check_mission_path(mission: str) -> str:
    try:
        return validate_mission_id(mission)  # the path pattern states the same rule
    except ValueError as exc:
        raise validation_error(("path", "mission"), str(exc)) from None


def mission_access(permission: str, *, require_active: bool | None = None, fresh: bool = False):
    """Dependency factory: the caller may `permission` the path's mission (READ,
    WRITE, ADMIN, or PLATFORM_ADMIN: the platform-admin role), which exists.

    require_active (default: for anything but READ) answers 409 for a mission that is
    not active; fresh bypasses the lookup cache (lifecycle operations)."""
    if require_active is None:
        require_active = permission != READ

    async def dep(request: Request, mission: MissionPath, principal: Principal = Depends(principal_dep),
                  client: Client = Depends(get_temporal)) -> MissionAccess:
        check_mission_path(mission)
        request.state.audit_mission = mission
        # Permission before existence: a caller without rights learns nothing about the mission.
        if permission == PLATFORM_ADMIN:
            if not principal.is_platform_admin:
                raise platform_admin_refusal()
        elif not principal.can(mission, permission):
            raise ApiError(403, "forbidden", f"{principal.actor!r} may not {permission} mission {mission!r}")
        cache: MissionDirectoryCache = request.app.state.missions
        detail = None if fresh else cache.get(mission)
        if detail is None:
            detail = await show_mission(client, mission)
            if detail is None:
                cache.forget(mission)
                raise ApiError(404, "unknown_mission", f"unknown mission {mission!r}: activate it first (POST /missions)")
            cache.put(detail)
        if require_active and detail.summary.status != "active":
            raise ApiError(409, "mission_inactive", f"mission {mission!r} is {detail.summary.status}")
        return MissionAccess(mission, principal, detail)

    return dep
