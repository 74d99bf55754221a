"""Contracts of a mission's library reads (workflows/library.py, research-tasks): its
documents with their state, the stored text around a cited span, and its research
history. They serve the analyst page and the API; every input is checked by the worker
too (a Temporal client can start these workflows directly)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from stratmaster.contracts.common import MissionId, clipped

# A page of documents or runs is small enough for one Temporal payload (far below 2 MB).
MAX_PAGE = 200
# The text an excerpt returns: the cited span (a quote is at most a few sentences) and the
# context either side, so that a citation opens in its paragraph, not the whole document.
MAX_SPAN = 20_000
MAX_CONTEXT = 4_000
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
DOCUMENT_NOT_FOUND = "DocumentNotFound"
SPAN_OUTSIDE = "SpanOutsideDocument"  # the document is shorter than the span (it changed since the citation)

Short = Annotated[str, clipped(500)]


class MissionPage(BaseModel):
    """A page of one of a mission's listings."""
    mission: MissionId
    offset: int = Field(default=0, ge=0, le=1_000_000_000)
    limit: int = Field(default=50, ge=0, le=MAX_PAGE)


class ListDocumentsInput(MissionPage):
    pass


class DocumentEntry(BaseModel):
    document_id: str
    source: Short  # the original name, path or key
    title: Short | None = None
    content_type: str
    size_bytes: int
    chunk_count: int
    status: str  # indexed
    created_at: datetime | None = None


class IngestionFailureEntry(BaseModel):
    """A document refused or failed by an ingestion, and why (ingestion_failures)."""
    batch_id: str
    source: Short
    reason_type: str
    reason: Short
    created_at: datetime | None = None


class DocumentList(BaseModel):
    mission: str
    total: int  # documents indexed
    offset: int
    documents: list[DocumentEntry]
    failures: list[IngestionFailureEntry] = Field(default_factory=list)  # the latest, newest first


class ExcerptInput(BaseModel):
    mission: MissionId
    document_id: str = Field(pattern=UUID_PATTERN)
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    context: int = Field(default=1_200, ge=0, le=MAX_CONTEXT)


class Excerpt(BaseModel):
    """The document's stored text from `text_start` to `text_end` (its extracted text, the
    text every citation's offsets point into); the cited span is text[start - text_start :
    end - text_start]."""
    mission: str
    document_id: str
    title: Short | None = None
    source: Short
    char_count: int
    text_start: int
    text_end: int
    text: str
    start: int
    end: int


class ListResearchInput(MissionPage):
    pass


class ResearchEntry(BaseModel):
    workflow_id: str
    query: Annotated[str, clipped(1_000)]
    status: str  # the session's: pending ... completed, failed, cancelled
    outcome: Literal["answered", "contested", "insufficient_evidence"] | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None


class ResearchList(BaseModel):
    mission: str
    total: int
    offset: int
    runs: list[ResearchEntry]
