"""Research: start ResearchWorkflow (research-tasks; optionally wait for its result),
its status and result, cancellation, and its progress as Server-Sent Events."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from starters.api.audit import audit
from starters.api.bodies import NO_NUL, RESEARCH_BODY_LIMIT, integral_numbers, parse_model, read_json
from starters.api.deps import IdempotencyKey, MissionAccess, WorkflowIdPath, get_temporal, mission_access, principal_dep
from starters.api.errors import AUTH_ERRORS, ApiError, error_responses, validation_error
from starters.api.events import EventStream, changed, event_stream_responses, workflow_events
from starters.api.openapi import body_ref
from starters.api.temporal_ops import (
    QUERY_RPC_TIMEOUT, RESEARCH_WORKFLOW, WorkflowStarted, closed_outcome, describe_for, idempotent_suffix,
    outcome_when_closed, start_workflow, started_body, status_name,
)
from starters.auth import READ, WRITE, Principal
from stratmaster import queues
from stratmaster.contracts.research import ResearchInput, ResearchProgress, ResearchResult

router = APIRouter(tags=["research"])

MAX_WAIT_SECONDS = 30.0


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
        return integral_numbers(cls, data)


async def research_status_body(handle: WorkflowHandle, desc, mission: str | None,
                               outcome: dict | None = None) -> dict[str, Any]:
    """GET /research/{id}: status, the progress query while running, the result or error once
    closed (`outcome`: already fetched by the caller)."""
    out: dict[str, Any] = {"workflow_id": handle.id, "run_id": desc.run_id, "mission": mission,
                           "status": status_name(desc.status),
                           "start_time": desc.start_time, "close_time": desc.close_time}
    if desc.status == WorkflowExecutionStatus.RUNNING:
        try:
            out["progress"] = await handle.query("progress", rpc_timeout=QUERY_RPC_TIMEOUT)
        except Exception as exc:  # no research worker polling: status from Temporal only
            out["progress"] = None
            out["progress_error"] = f"progress query failed: {type(exc).__name__}"
    else:  # as it always said
        out.update(outcome if outcome is not None else await closed_outcome(handle, desc.status, root=False))
    return out


@router.post("/missions/{mission}/research", status_code=202, name="research.start",
             summary="start a research workflow (?wait=s: its result when it completes within s seconds)",
             description="202 with the workflow id (poll `GET /research/{id}` or stream `GET /research/{id}/events`). "
                         "With `wait` (seconds, at most 30) the request waits that long for the research to "
                         "close and answers 200 with its status and result when it does (a cached answer takes "
                         "tens of milliseconds), else 202 as without it.",
             response_model=WorkflowStarted,
             responses={200: {"model": ResearchStatus, "description": "the research closed within `wait`"},
                        **error_responses(400, *AUTH_ERRORS, 404, 409, 413, 415, 422, 429)},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": body_ref(ResearchRequest)}}}})
async def start_research(request: Request, idempotency_key: IdempotencyKey = None,
                         wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS, allow_inf_nan=False,
                                                      description="seconds to wait for the result (0-30)")] = 0,
                         access: MissionAccess = Depends(mission_access(WRITE)),
                         client: Client = Depends(get_temporal)):
    mission = access.mission
    await request.app.state.limits.admit(access.principal.actor, mission)
    body = await read_json(request, RESEARCH_BODY_LIMIT)
    if not isinstance(body, dict):
        raise validation_error(("body",), "expected a JSON object {query: ...}")
    parse_model(ResearchRequest, body)  # the API's rules (no unknown fields)
    req = parse_model(ResearchInput, body, mission=mission)
    suffix = idempotent_suffix(mission, idempotency_key) if idempotency_key else uuid.uuid4().hex[:20]
    await request.app.state.inflight.admit(client, mission, RESEARCH_WORKFLOW, "research runs")
    started = await start_workflow(client, RESEARCH_WORKFLOW, req, workflow_id=f"research-{mission}-{suffix}",
                                   task_queue=queues.RESEARCH, mission=mission, idempotent=bool(idempotency_key))
    audit(request, target=started.workflow_id, query=req.query[:500])
    if wait > 0:
        handle = client.get_workflow_handle(started.workflow_id)
        try:
            # the result is kept: fetching it again after describe() cost a round trip and a decode
            outcome = await asyncio.wait_for(outcome_when_closed(handle, root=False), timeout=wait)
        except asyncio.TimeoutError:
            pass
        else:
            desc = await handle.describe()
            return JSONResponse(ResearchStatus.model_validate(
                await research_status_body(handle, desc, mission, outcome)).model_dump(mode="json"))
    return started_body(started, mission, f"/research/{started.workflow_id}")


@router.get("/research/{workflow_id}", summary="research status; the result when done",
            response_model=ResearchStatus, responses=error_responses(*AUTH_ERRORS, 404, 422))
async def research_status(request: Request, workflow_id: WorkflowIdPath,
                          principal: Principal = Depends(principal_dep), client: Client = Depends(get_temporal)):
    handle, desc, mission = await describe_for(request, client, principal, workflow_id, READ, RESEARCH_WORKFLOW)
    return await research_status_body(handle, desc, mission)


@router.delete("/research/{workflow_id}", status_code=202, name="research.cancel",
               summary="cancel a research workflow", response_model=CancelRequested,
               responses=error_responses(*AUTH_ERRORS, 404, 409, 422))
async def cancel_research(request: Request, workflow_id: WorkflowIdPath,
                          principal: Principal = Depends(principal_dep), client: Client = Depends(get_temporal)):
    audit(request, target=workflow_id)
    handle, desc, mission = await describe_for(request, client, principal, workflow_id, WRITE, RESEARCH_WORKFLOW)
    if desc.status != WorkflowExecutionStatus.RUNNING:
        raise ApiError(409, "not_running", f"research {workflow_id!r} is already {status_name(desc.status)}")
    await handle.cancel()
    return CancelRequested(workflow_id=workflow_id, mission=mission)


# ---------------------------------------------------------------- progress as Server-Sent Events

TOP_HITS = 10


def research_events(seen: dict, progress: Any) -> list[tuple[str, Any]]:
    """Step changes, the planned sub-questions, hits retrieved, findings so far: each when it changed."""
    if not isinstance(progress, dict):
        return []
    out: list[tuple[str, Any]] = []
    step = {"status": "running", "step": progress.get("status"), "session_id": progress.get("session_id"),
            "error": progress.get("error")}
    if changed(seen, "step", step):
        out.append(("status", step))
    subquestions = progress.get("subquestions") or []
    if subquestions and changed(seen, "subquestions", subquestions):
        out.append(("subquestions", {"subquestions": subquestions}))
    hits = progress.get("hits") or []
    retrieved = {"retrieved": progress.get("retrieved") or {}, "hits": len(hits)}
    if (retrieved["retrieved"] or hits) and changed(seen, "hits", retrieved):
        top = [{k: h.get(k) for k in ("document_id", "chunk_id", "title", "score", "source")} for h in hits[:TOP_HITS]]
        out.append(("hits", {**retrieved, "top": top}))
    claims = progress.get("claims") or []
    if claims and changed(seen, "findings", claims):
        out.append(("findings", {"claims": claims}))
    return out


@router.get("/research/{workflow_id}/events", summary="a research's progress as Server-Sent Events (read)",
            response_class=EventStream,
            description="Events: `status` (first: {status}; then each step: planning, retrieving, synthesising, "
                        "... with the session id), `subquestions` (the plan), `hits` (hits retrieved per "
                        "sub-question, their number and the top ones), `findings` (the claims so far), each when it "
                        "changes (the workflow's `progress` query, polled every 0.5 s); last `status` (the closed "
                        "status) and `result` (as `GET /research/{id}`: the result, or the error). `: keep-alive` "
                        "comments every 15 s while nothing changes. A workflow of a mission the caller may not read "
                        "is a 404, like a missing one.",
            responses={**event_stream_responses("the research's progress until it closes, then its result",
                                                ("status", "subquestions", "hits", "findings", "result")),
                       **error_responses(*AUTH_ERRORS, 404, 422, 429)})
async def research_events_stream(request: Request, workflow_id: WorkflowIdPath,
                                 principal: Principal = Depends(principal_dep),
                                 client: Client = Depends(get_temporal)):
    handle, desc, mission = await describe_for(request, client, principal, workflow_id, READ, RESEARCH_WORKFLOW)

    async def outcome(h: WorkflowHandle, closed, fetched: dict | None) -> dict:
        return ResearchStatus.model_validate(await research_status_body(h, closed, mission, fetched)).model_dump(
            mode="json")

    opening = {"workflow_id": workflow_id, "mission": mission, "status": status_name(desc.status)}
    # 429 when the caller or the mission has its streams open already; the slot is freed as the stream ends
    return EventStream(await request.app.state.limits.open_stream(principal.actor, mission, workflow_events(
        request, handle, opening=opening, query="progress", differ=research_events, outcome=outcome,
        mission=mission, root=False, closed_desc=None if desc.status == WorkflowExecutionStatus.RUNNING else desc,
        until=principal.expires_at)))
