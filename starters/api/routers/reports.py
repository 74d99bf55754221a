"""Shareable research reports (RenderReportWorkflow, queue research-tasks): download a
completed research's report as Markdown, HTML, PDF or DOCX, or render and store every
format. The research's mission comes from its workflow's Mission search attribute, as
for the other /research/{id} routes: a research the caller may not read answers like
one that does not exist (404), and the workflow looks the session up within that
mission only. The bytes travel in the workflow's result: the API never reads the
object store."""
from __future__ import annotations

import base64
import re
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from temporalio.client import Client, WorkflowFailureError

from starters.api.audit import audit
from starters.api.bodies import StrictBody, read_model
from starters.api.deps import WorkflowIdPath, get_temporal, principal_dep
from starters.api.errors import AUTH_ERRORS, BODY_ERRORS, ApiError, error_responses
from starters.api.openapi import json_request_body
from starters.api.temporal_ops import (
    RENDER_REPORT_WORKFLOW, RESEARCH_WORKFLOW, describe_for, )
from starters.failures import failure_message, failure_type
from starters.auth import READ, WRITE, Principal
from stratmaster import queues
from stratmaster.workflow_ids import report_workflow_id
from stratmaster.contracts.reports import (
    CONTENT_TYPES, FORMATS, REPORT_NOT_FOUND, RenderedReport, RenderReportInput, ReportArtifacts, ReportFormat,
)
from stratmaster.errors import UNKNOWN_MISSION
from stratmaster.search_attributes import for_mission

router = APIRouter(tags=["reports"])

RENDER_TIMEOUT = timedelta(minutes=5)
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_TEXT = {"schema": {"type": "string"}}


class ReportRenderRequest(StrictBody):
    """The body of POST /research/{workflow_id}/report: nothing to say ({} or empty)."""


async def render(client: Client, mission: str, workflow_id: str, formats: list[ReportFormat],
                 fetch: ReportFormat | None, reuse: bool = False) -> RenderedReport:
    req = RenderReportInput(mission=mission, workflow_id=workflow_id, formats=formats, fetch=fetch, reuse=reuse)
    try:
        return await client.execute_workflow(
            RENDER_REPORT_WORKFLOW, req, id=report_workflow_id(mission, workflow_id, uuid.uuid4().hex[:8]),
            task_queue=queues.RESEARCH, execution_timeout=RENDER_TIMEOUT, result_type=RenderedReport,
            search_attributes=for_mission(mission))
    except WorkflowFailureError as exc:
        kind = failure_type(exc)
        if kind in (REPORT_NOT_FOUND, UNKNOWN_MISSION):
            raise ApiError(404, "report_not_found", failure_message(exc, root=True)) from None
        if kind is not None:
            raise ApiError(409, "conflict", failure_message(exc, root=True)) from None
        raise ApiError(503, "unavailable", f"the report did not render (is the {queues.RESEARCH} worker "
                                           "running?)") from None


def _filename(session_id: str, fmt: str) -> str:
    return f"research-{re.sub(r'[^A-Za-z0-9_.-]', '_', session_id)[:100]}.{fmt}"


@router.get("/research/{workflow_id}/report", name="report.download",
            summary="a completed research's report as a file: md, html, pdf (default) or docx (read) "
                    "-> RenderReportWorkflow",
            description="Renders the report (the format is also stored under the mission's artifacts, "
                        "`research/<session>/report.<format>`; html, pdf and docx already stored there are answered "
                        "as they are, not rendered again) and answers it as an attachment. 404: no completed "
                        "research by that id in a mission the caller may read; 409: the file is over 1 MB (the "
                        "workflow result's limit; it is stored, fetch it from the object store).",
            response_class=Response,
            responses={200: {"description": "the report file",
                             "headers": {"Content-Disposition": {"schema": {"type": "string"},
                                                                 "description": 'attachment; filename="research-'
                                                                                '<session>.<format>"'}},
                             "content": {"text/markdown": _TEXT, "text/html": _TEXT, "application/pdf": _BINARY,
                                         CONTENT_TYPES["docx"]: _BINARY}},
                       **error_responses(*AUTH_ERRORS, 404, 409, 422)})
async def download_report(request: Request, workflow_id: WorkflowIdPath,
                          fmt: Annotated[ReportFormat, Query(alias="format", description="md | html | pdf | docx")] = "pdf",
                          principal: Principal = Depends(principal_dep), client: Client = Depends(get_temporal)):
    _, _, mission = await describe_for(request, client, principal, workflow_id, READ, RESEARCH_WORKFLOW)
    out = await render(client, mission, workflow_id, [fmt], fmt, reuse=True)  # a stored rendering as it is
    if out.content_b64 is None:
        raise ApiError(409, "report_too_large", f"{out.content_omitted or 'the report is too large'}; it is stored "
                                                f"at {next((a.key for a in out.artifacts if a.format == fmt), '?')}")
    headers = {"Content-Disposition": f'attachment; filename="{_filename(out.session_id, fmt)}"',
               # document text is untrusted: never run or sniff anything from it
               "Content-Security-Policy": "default-src 'none'; sandbox", "X-Content-Type-Options": "nosniff"}
    return Response(base64.b64decode(out.content_b64), media_type=CONTENT_TYPES[fmt], headers=headers)


@router.post("/research/{workflow_id}/report", name="report.render",
             summary="render a completed research's report in every format and store them (write) "
                     "-> RenderReportWorkflow",
             description="Stores `report.{md,html,pdf,docx}` under the mission's "
                         "`artifacts/research/<session>/` and answers their keys, sizes and sha256.",
             response_model=ReportArtifacts, responses=error_responses(*BODY_ERRORS, *AUTH_ERRORS, 404, 409),
             openapi_extra=json_request_body(ReportRenderRequest, required=False))
async def render_report(request: Request, workflow_id: WorkflowIdPath,
                        principal: Principal = Depends(principal_dep), client: Client = Depends(get_temporal)):
    audit(request, target=workflow_id)
    _, _, mission = await describe_for(request, client, principal, workflow_id, WRITE, RESEARCH_WORKFLOW)
    await read_model(request, ReportRenderRequest, required=False)
    out = await render(client, mission, workflow_id, list(FORMATS), None)
    audit(request, formats=[a.format for a in out.artifacts])
    return ReportArtifacts(mission=out.mission, workflow_id=out.workflow_id, session_id=out.session_id,
                           artifacts=out.artifacts)
