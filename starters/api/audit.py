"""The audit trail of the API: every authenticated write request (accepted or
refused) becomes an audit_log row through RecordAuditWorkflow (maintenance-tasks)."""
from __future__ import annotations

import logging
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
