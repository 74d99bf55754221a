"""Any workflow by id: type, status, mission, progress while it runs, the result
(or the error) once closed. This is where the 202 answers of long operations point."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowExecutionStatus

from starters.api.deps import WorkflowIdPath, get_temporal, principal_dep
from starters.api.errors import AUTH_ERRORS, error_responses
from starters.api.temporal_ops import PROGRESS_QUERIES, QUERY_RPC_TIMEOUT, closed_outcome, describe_for, status_name
from starters.auth import READ, Principal

router = APIRouter(tags=["workflows"])


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
    result: Any = Field(default=None, description="the workflow's result once completed")
    error: str | None = Field(default=None, description="why it did not complete (failed, canceled, terminated, "
                                                        "timed out)")


@router.get("/workflows/{workflow_id}", summary="any workflow: type, status, mission, progress, result",
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
    if desc.status == WorkflowExecutionStatus.RUNNING:
        if query:
            try:
                out["progress"] = await handle.query(query, rpc_timeout=QUERY_RPC_TIMEOUT)
            except Exception as exc:  # no worker polling its queue: what Temporal knows is still useful
                out["progress"], out["progress_error"] = None, f"{query} query failed: {type(exc).__name__}"
    else:
        out.update(await closed_outcome(handle, desc.status))
    return jsonable_encoder(out)
