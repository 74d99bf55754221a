"""The audit trail of the API: every authenticated write request (accepted or
refused) becomes an audit_log row through RecordAuditWorkflow (maintenance-tasks).

Fair-use refusals (429) are the one exception: a flood must not make the platform run a
workflow for each request it turns away. The first 429 of a caller for an action in a
mission is recorded at once; the ones that follow within a minute are only counted, and the
next 429 recorded for that caller, mission and action carries the count
(`detail.refused_unrecorded`). A flood costs at most one row a minute per caller, mission and
action; every 429 is also in the request metrics (`http_requests_total`)."""
from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timezone

from starlette.requests import Request

from starters.api.deps import resolve_temporal
from starters.api.temporal_ops import AUDIT_WORKFLOW
from starters.auth import Principal
from stratmaster import queues
from stratmaster.contracts.audit import AuditEntry, audit_workflow_id
from stratmaster.search_attributes import for_mission

log = logging.getLogger("stratmaster.api")

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
REFUSALS_WINDOW_S = 60.0
MAX_REFUSAL_KEYS = 50_000


def audit(request, *, mission: str | None = None, target: str | None = None, **detail) -> None:
    """What the audit row of this request says, set by the route as it learns it."""
    if mission is not None:
        request.state.audit_mission = mission
    if target is not None:
        request.state.audit_target = target
    if detail:
        request.state.audit_detail = {**(getattr(request.state, "audit_detail", None) or {}), **detail}


class AuditMiddleware:
    """Every authenticated write request (accepted or refused) becomes an audit_log
    row through RecordAuditWorkflow, started before the response goes out.

    The action is the route's name ("research.start", ...); routes set
    request.state.audit_mission / audit_target / audit_detail as they learn them."""

    def __init__(self, app):
        self.app = app
        # (actor, mission, action) -> (when its last 429 was recorded, 429s since not recorded)
        self._refusals: dict[tuple, tuple[float, int]] = {}

    def _refusal_recorded(self, key: tuple) -> int | None:
        """For a 429: None when it is only counted, else the count of unrecorded ones before it."""
        now = time.monotonic()
        last, unrecorded = self._refusals.get(key, (None, 0))
        if last is not None and now - last < REFUSALS_WINDOW_S:
            self._refusals[key] = (last, unrecorded + 1)
            return None
        if len(self._refusals) >= MAX_REFUSAL_KEYS:  # keep memory bounded: forget quiet callers
            self._refusals = {k: v for k, v in self._refusals.items() if now - v[0] < REFUSALS_WINDOW_S}
        self._refusals[key] = (now, 0)
        return unrecorded

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
        # the route's name ("research.start", ...), or method and path for unmatched requests
        action = getattr(scope.get("route"), "name", None) or f"{scope['method']} {scope.get('path')}"
        mission = state.get("audit_mission") or (scope.get("path_params") or {}).get("mission")
        extra: dict = {}
        if status == 429:
            unrecorded = self._refusal_recorded((principal.actor, mission, action))
            if unrecorded is None:
                return
            if unrecorded:
                extra["refused_unrecorded"] = unrecorded
        entry = AuditEntry(
            request_id=request_id, actor=principal.actor, at=arrived, status=status, action=action,
            mission=state.get("audit_mission"), target=state.get("audit_target"),
            detail={"method": scope["method"], "path": scope.get("path"), "client_id": principal.client_id,
                    "request_header_id": request.headers.get("x-request-id"), **(state.get("audit_detail") or {}),
                    **extra},
        )
        try:
            client = await resolve_temporal(request)
            await client.start_workflow(AUDIT_WORKFLOW, entry, id=audit_workflow_id(request_id),
                                        task_queue=queues.MAINTENANCE,
                                        search_attributes=for_mission(entry.mission) if entry.mission else None)
        except Exception as exc:  # the write already happened; never turn it into a 500 here
            log.error("audit record not started", extra={"error": f"{type(exc).__name__}: {exc}",
                                                          "audit": entry.model_dump(mode="json")})
