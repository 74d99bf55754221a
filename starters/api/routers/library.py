"""A mission's library (workflows/library.py, queue research-tasks): its documents with
the ingestions still running and the latest failures, the stored text around a cited
span, its research history; and `GET /me`, the caller as the API sees them. Each read
waits for its short workflow; the analyst page (routers/web.py) is built on these and
the other routes, with the same checks."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowFailureError

from starters.api.deps import MissionAccess, get_temporal, mission_access, principal_dep
from starters.api.errors import AUTH_ERRORS, ApiError, error_responses, validation_error
from starters.api.temporal_ops import (
    DOCUMENT_EXCERPT_WORKFLOW, INGEST_WORKFLOW, LIST_DOCUMENTS_WORKFLOW, LIST_RESEARCH_WORKFLOW, running_of_mission,
)
from starters.auth import PLATFORM_ADMIN, READ, Principal
from starters.failures import failure_message, failure_type
from stratmaster import queues
from stratmaster.contracts import library as lib
from stratmaster.contracts.common import MISSION_ID_PATTERN
from stratmaster.errors import BAD_INPUT, UNKNOWN_MISSION
from stratmaster.search_attributes import for_mission

router = APIRouter(tags=["library"])

LOOKUP_TIMEOUT = timedelta(seconds=30)
MAX_RUNNING_LISTED = 20

DocumentPath = Annotated[str, Path(description="the document's id", pattern=lib.UUID_PATTERN,
                                   examples=["0b5f3c1e-8f6a-5b9e-9c1d-2a7e4f6b8c90"])]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000)]
Limit = Annotated[int, Query(ge=0, le=lib.MAX_PAGE, description="entries in the page")]


class RunningIngestion(BaseModel):
    workflow_id: str
    start_time: datetime | None


class DocumentListing(lib.DocumentList):
    ingesting: list[RunningIngestion] = Field(default_factory=list,
                                              description="the mission's ingestions still running (pending documents)")


class Me(BaseModel):
    username: str
    roles: list[str]
    platform_admin: bool
    dev: bool = Field(description="the API runs in dev mode (no tokens, loopback only)")
    mission: str | None = None
    permissions: list[Literal["admin", "read", "write"]] | None = Field(
        default=None, description="with ?mission=: what the caller may do there, by the API's own rule "
                                  "(whether the mission exists is not checked)")


async def _execute(client: Client, workflow: str, arg, *, prefix: str, mission: str, result_type, what: str):
    try:
        return await client.execute_workflow(
            workflow, arg, id=f"{prefix}-{mission}-{uuid.uuid4().hex[:12]}", task_queue=queues.RESEARCH,
            execution_timeout=LOOKUP_TIMEOUT, result_type=result_type, search_attributes=for_mission(mission))
    except WorkflowFailureError as exc:
        kind, message = failure_type(exc), failure_message(exc, root=True)
        if kind == lib.DOCUMENT_NOT_FOUND:
            raise ApiError(404, "document_not_found", message) from None
        if kind == lib.SPAN_OUTSIDE:
            raise ApiError(409, "span_outside_document", message) from None
        if kind == UNKNOWN_MISSION:
            raise ApiError(404, "unknown_mission", message) from None
        if kind == BAD_INPUT:
            raise validation_error(("query",), message) from None
        raise ApiError(503, "unavailable", f"{what} did not complete (is the {queues.RESEARCH} worker running?)") \
            from None


@router.get("/me", summary="the caller: name and roles as the API sees them", response_model=Me,
            responses=error_responses(*AUTH_ERRORS, 422))
async def me(principal: Principal = Depends(principal_dep),
             mission: Annotated[str | None, Query(pattern=MISSION_ID_PATTERN, description="a mission id")] = None):
    # no Temporal call: the page shows what the caller may do at once, from the same rule every route applies
    return Me(username=principal.actor, roles=sorted(principal.roles)[:200],
              platform_admin=PLATFORM_ADMIN in principal.roles, dev=principal.dev, mission=mission,
              permissions=sorted(principal.permissions(mission)) if mission else None)


@router.get("/missions/{mission}/documents",
            summary="the mission's documents, newest first; its running ingestions and latest failures (read) "
                    "-> ListDocumentsWorkflow",
            response_model=DocumentListing, responses=error_responses(*AUTH_ERRORS, 404, 422, 503))
async def list_documents(access: MissionAccess = Depends(mission_access(READ)), client: Client = Depends(get_temporal),
                         offset: Offset = 0, limit: Limit = 50):
    mission = access.mission
    listed = await _execute(client, LIST_DOCUMENTS_WORKFLOW, lib.ListDocumentsInput(
        mission=mission, offset=offset, limit=limit), prefix="documents", mission=mission,
        result_type=lib.DocumentList, what="the document listing")
    running: list[RunningIngestion] = []
    async for wf in client.list_workflows(running_of_mission(INGEST_WORKFLOW, mission), limit=MAX_RUNNING_LISTED):
        running.append(RunningIngestion(workflow_id=wf.id, start_time=wf.start_time))
    return DocumentListing(**listed.model_dump(), ingesting=running)


@router.get("/missions/{mission}/documents/{document_id}/excerpt",
            summary="the document's stored text around a span (a citation's start, and end - start as length), with "
                    "the span's offsets in it (read) -> DocumentExcerptWorkflow; 409 when the document is shorter",
            response_model=lib.Excerpt, responses=error_responses(*AUTH_ERRORS, 404, 422, 503))
async def document_excerpt(document_id: DocumentPath, access: MissionAccess = Depends(mission_access(READ)),
                           client: Client = Depends(get_temporal),
                           start: Annotated[int, Query(ge=0, le=2**31 - 1, description="the span's first character")] = 0,
                           length: Annotated[int, Query(ge=0, le=lib.MAX_SPAN,
                                                        description="the span's characters (a citation's end - start)")] = 0,
                           context: Annotated[int, Query(ge=0, le=lib.MAX_CONTEXT,
                                                         description="characters either side")] = 1200):
    mission = access.mission
    return await _execute(client, DOCUMENT_EXCERPT_WORKFLOW, lib.ExcerptInput(
        mission=mission, document_id=document_id, start=start, end=start + length, context=context),
        prefix="excerpt", mission=mission, result_type=lib.Excerpt, what="the excerpt")


@router.get("/missions/{mission}/research", summary="the mission's research runs, newest first (read) "
                                                    "-> ListResearchWorkflow",
            response_model=lib.ResearchList, responses=error_responses(*AUTH_ERRORS, 404, 422, 503))
async def list_research(access: MissionAccess = Depends(mission_access(READ)), client: Client = Depends(get_temporal),
                        offset: Offset = 0, limit: Limit = 50):
    mission = access.mission
    return await _execute(client, LIST_RESEARCH_WORKFLOW, lib.ListResearchInput(
        mission=mission, offset=offset, limit=limit), prefix="history", mission=mission,
        result_type=lib.ResearchList, what="the research history")
