"""Documents: uploads start IngestDocumentsWorkflow (ingestion-tasks); an ingestion's
progress streams as Server-Sent Events."""
from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from starters.api.audit import audit
from starters.api.bodies import (
    DOCUMENTS_JSON_LIMIT, INLINE_BUDGET, JSON_MEDIA_TYPES, MULTIPART_OVERHEAD, NO_NUL, media_type, no_nul, parse_model,
    read_json, read_limited, unsupported_media_type,
)
from starters.api.deps import IdempotencyKey, MissionAccess, WorkflowIdPath, get_temporal, mission_access, principal_dep
from starters.api.errors import AUTH_ERRORS, ApiError, error_responses, too_large, validation_error
from starters.api.events import EventStream, changed, event_stream_responses, workflow_events
from starters.api.openapi import body_ref
from starters.api.temporal_ops import (
    INGEST_WORKFLOW, WorkflowStarted, closed_outcome, describe_for, idempotent_suffix, start_workflow, started_body,
    status_name,
)
from starters.auth import READ, WRITE, Principal
from stratmaster import principals, queues
from stratmaster.contracts.ingestion import BATCH_ID_PATTERN, IngestInput, workflow_id_for
from stratmaster.contracts.sources import SOURCE_BATCH_PREFIX
from stratmaster.settings import Settings

router = APIRouter(tags=["documents"])


class IngestStarted(WorkflowStarted):
    batch_id: str
    documents: int


class DocumentUpload(BaseModel):
    """One document: inline (name + content_b64), an object-store key of the mission, or a
    path on the worker's filesystem (platform-admin only)."""
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"oneOf": [
        {"required": ["content_b64", "name"], "not": {"anyOf": [{"required": ["path"]}, {"required": ["object_key"]}]}},
        {"required": ["object_key"], "not": {"anyOf": [{"required": ["path"]}, {"required": ["content_b64"]}]}},
        {"required": ["path"], "not": {"anyOf": [{"required": ["object_key"]}, {"required": ["content_b64"]}]}},
    ]})
    # absent, never null (the schema says string): a None default that pydantic never validates,
    # which pydantic's typing cannot express (hence the ignores)
    name: Annotated[str, Field(min_length=1, max_length=1024, pattern=NO_NUL)] = None  # type: ignore[assignment]
    content_b64: Annotated[str, Field(json_schema_extra={"format": "byte"})] = None  # type: ignore[assignment]
    object_key: Annotated[str, Field(min_length=1, max_length=1024, pattern=NO_NUL)] = None  # type: ignore[assignment]
    path: Annotated[str, Field(min_length=1, max_length=4096, pattern=NO_NUL)] = None  # type: ignore[assignment]


class IngestRequest(BaseModel):
    """The JSON body of POST /missions/{mission}/documents."""
    model_config = ConfigDict(extra="forbid", strict=True)
    documents: list[DocumentUpload] = Field(min_length=1)
    batch_id: Annotated[str, Field(pattern=BATCH_ID_PATTERN)] = Field(  # type: ignore[assignment]  # (as above)
        default=None, description="default: a hash of the documents")


@router.post("/missions/{mission}/documents", status_code=202, name="documents.ingest",
             summary="ingest documents (multipart files, or JSON {documents: [...]})", response_model=IngestStarted,
             responses=error_responses(400, *AUTH_ERRORS, 404, 409, 413, 415, 422, 429),
             openapi_extra={"requestBody": {"required": True, "content": {
                 "multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {
                     "files": {"type": "array", "minItems": 1,
                               "items": {"type": "string", "format": "binary"}},
                     "batch_id": {"type": "string", "pattern": BATCH_ID_PATTERN}}}},
                 "application/json": {"schema": body_ref(IngestRequest)}}}})
async def ingest_documents(request: Request, idempotency_key: IdempotencyKey = None,
                           access: MissionAccess = Depends(mission_access(WRITE)),
                           client: Client = Depends(get_temporal)):
    settings: Settings = request.app.state.settings
    mission, principal = access.mission, access.principal
    await request.app.state.limits.admit(principal.actor, mission)
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
    if body.batch_id and body.batch_id.startswith(SOURCE_BATCH_PREFIX):
        # a source sync's batches: their documents are the sync's to delete, their workflow ids its own
        raise validation_error(("body", "batch_id"), f"batch ids starting with {SOURCE_BATCH_PREFIX!r} are "
                                                     "reserved for source syncs")
    req = parse_model(IngestInput, {"documents": [d.model_dump(exclude_none=True) for d in body.documents],
                                    "batch_id": body.batch_id}, mission=mission)
    for i, ref in enumerate(req.documents):
        if ref.path is not None:
            if not principal.is_platform_admin:
                raise ApiError(403, "forbidden", f"documents[{i}]: 'path' reads the worker's filesystem; "
                                                 "platform-admin only (upload the file or use 'object_key')")
            # the worker reads a path only with this platform's signed grant for it (stratmaster/principals.py)
            ref.grant = principals.sign_path(principals.load_key(settings), mission, ref.path)
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
    await request.app.state.inflight.admit(client, mission, INGEST_WORKFLOW, "ingestions")
    started = await start_workflow(client, INGEST_WORKFLOW, req, workflow_id=workflow_id_for(mission, batch_id),
                                   task_queue=queues.INGESTION, mission=mission, idempotent=bool(idempotency_key),
                                   attach_running=True)
    audit(request, target=started.workflow_id, documents=[d.label for d in req.documents][:50], batch_id=batch_id)
    return started_body(started, mission, f"/workflows/{started.workflow_id}") | {
        "batch_id": batch_id, "documents": len(req.documents)}


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
        if isinstance(value, UploadFile):
            data = await value.read()
            if len(data) > limit:
                raise too_large(f"{value.filename} is {len(data)} bytes; the limit is {limit}")
            if not value.filename:
                raise validation_error(("body", name), "uploaded files need a file name")
            docs.append({"name": value.filename, "content_b64": base64.b64encode(data).decode()})
        elif name == "batch_id":
            extra["batch_id"] = value
    body = {"documents": docs, **extra}
    no_nul(body, ("body",))
    return body


# ---------------------------------------------------------------- progress as Server-Sent Events

PROGRESS_FIELDS = ("total", "done", "ingested", "duplicates", "failed", "chunks", "current", "finished")


def ingestion_events(seen: dict, progress: Any) -> list[tuple[str, Any]]:
    """`progress` (documents done/failed counts and the documents in flight) when it changed."""
    if not isinstance(progress, dict):
        return []
    snapshot = {k: progress.get(k) for k in PROGRESS_FIELDS}
    if changed(seen, "progress", snapshot):
        return [("progress", {"mission": progress.get("mission"), "batch_id": progress.get("batch_id"), **snapshot})]
    return []


@router.get("/ingestions/{workflow_id}/events", summary="an ingestion's progress as Server-Sent Events (read)",
            response_class=EventStream,
            description="Events: `status` ({status}; first and before the end), `progress` (total, done, ingested, "
                        "duplicates, failed, chunks, current: the documents in flight; whenever it changes, polled "
                        "every 0.5 s), `result` (last: {workflow_id, mission, status, result: the IngestResult, or "
                        "error}). `: keep-alive` comments every 15 s while nothing changes. A workflow of a mission "
                        "the caller may not read is a 404, like a missing one.",
            responses={**event_stream_responses("the ingestion's progress until it closes, then its result",
                                                ("status", "progress", "result")),
                       **error_responses(*AUTH_ERRORS, 404, 422, 429)})
async def ingestion_events_stream(request: Request, workflow_id: WorkflowIdPath,
                                  principal: Principal = Depends(principal_dep),
                                  client: Client = Depends(get_temporal)):
    handle, desc, mission = await describe_for(request, client, principal, workflow_id, READ, INGEST_WORKFLOW)

    async def outcome(h: WorkflowHandle, closed, fetched: dict | None) -> dict:
        return {"workflow_id": workflow_id, "mission": mission, "status": status_name(closed.status),
                **(fetched if fetched is not None else await closed_outcome(h, closed.status))}

    opening = {"workflow_id": workflow_id, "mission": mission, "status": status_name(desc.status)}
    # 429 when the caller or the mission has its streams open already; the slot is freed as the stream ends
    return EventStream(await request.app.state.limits.open_stream(principal.actor, mission, workflow_events(
        request, handle, opening=opening, query="progress", differ=ingestion_events, outcome=outcome,
        mission=mission, closed_desc=None if desc.status == WorkflowExecutionStatus.RUNNING else desc,
        until=principal.expires_at)))
