"""Contracts of the shareable research reports (RenderReportWorkflow, task queue
`research-tasks`).

A completed research session's report is rendered to Markdown, HTML, PDF and DOCX
and stored at `tenants/<mission>/artifacts/research/<session_id>/report.<format>`;
the workflow result carries the bytes of the format asked for (`fetch`), so
starters never read the object store. Plain JSON works:
  temporal workflow start --type RenderReportWorkflow --task-queue research-tasks \
    --input '{"mission": "demo", "workflow_id": "research-demo-...", "fetch": "pdf"}'
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from stratmaster.contracts.common import MissionId, PlainText

ReportFormat = Literal["md", "html", "pdf", "docx"]
FORMATS: tuple[ReportFormat, ...] = ("md", "html", "pdf", "docx")
CONTENT_TYPES = {
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}
# the bytes of one format travel in the workflow result: far below Temporal's 2 MB payload limit
MAX_CONTENT_BYTES = 1_000_000
REPORT_NOT_FOUND = "ReportNotFound"  # no completed research with that id in that mission


def _unique(formats: list[str]) -> list[str]:
    return list(dict.fromkeys(formats))


def report_key(session_id: str, fmt: str) -> str:
    """Object key relative to tenants/<mission>/."""
    return f"artifacts/research/{session_id}/report.{fmt}"


class RenderReportInput(BaseModel):
    mission: MissionId
    workflow_id: PlainText = Field(min_length=1, max_length=1000, description="the research workflow id")
    formats: Annotated[list[ReportFormat], AfterValidator(_unique)] = Field(
        default_factory=lambda: list(FORMATS), min_length=1, max_length=4)
    fetch: ReportFormat | None = Field(default=None, description="return this format's bytes (rendered if not in formats)")
    reuse: bool = Field(default=False, description="answer a format this activity rendered and stored before as it is "
                                                    "(a completed session's report does not change) instead of "
                                                    "rendering it again")


class ReportArtifact(BaseModel):
    format: ReportFormat
    key: str  # full object key: tenants/<mission>/artifacts/research/<session>/report.<format>
    size: int
    sha256: str
    content_type: str


class RenderedReport(BaseModel):
    mission: str
    workflow_id: str
    session_id: str
    artifacts: list[ReportArtifact]
    fetch: ReportFormat | None = None
    content_b64: str | None = None  # the `fetch` format's bytes, base64
    content_omitted: str | None = None  # why the bytes are not included (too large)


# ---------------------------------------------------------------- REST API (proposed routes)

class ReportQuery(BaseModel):
    """GET /research/{workflow_id}/report?format=pdf -> the file (Content-Type from CONTENT_TYPES,
    Content-Disposition: attachment; filename="research-<session>.pdf")."""
    format: ReportFormat = "pdf"


class ReportArtifacts(BaseModel):
    """POST /research/{workflow_id}/report -> 200: every format rendered and stored."""
    mission: str
    workflow_id: str
    session_id: str
    artifacts: list[ReportArtifact]
