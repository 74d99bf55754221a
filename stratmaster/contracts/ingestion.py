"""Contracts of IngestDocumentsWorkflow (task queue `ingestion-tasks`).

Plain JSON works from `temporal workflow start --input`:
  {"mission": "demo", "documents": [{"path": "/abs/file.pdf"}, {"object_key": "uploads/a.md"},
                                    {"name": "note.txt", "content_b64": "aGVsbG8="}]}
The workflow id is the business key `ingest-<mission>-<batch_id>`; batch_id
defaults to a hash of the document references, so starting the same batch twice
attaches to (or re-runs) the same workflow instead of duplicating work.
"""
from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from stratmaster.contracts.common import MissionId, PlainText, clipped

BATCH_ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
EMPTY_DOCUMENT = "EmptyDocument"  # non-retryable reason type besides stratmaster.errors'
# A mission's registered source (stratmaster/contracts/sources.py); short enough for batch ids.
SOURCE_ID_PATTERN = r"^[a-z][a-z0-9_-]{1,31}$"


class SourceObjectRef(BaseModel):
    """A file of one of the mission's sources (table `sources`): `key` is relative to
    the S3 source's prefix or the directory source's root. The ingestion worker looks
    the source up in the mission's own rows (and resolves an S3 credentials profile
    locally), so no path, endpoint or secret travels in the workflow. `size` (from the
    listing) only decides whether the document can join a group of small ones;
    `file_id` ("device:inode", directories) is the file the listing saw."""

    source_id: str = Field(pattern=SOURCE_ID_PATTERN)
    key: PlainText = Field(min_length=1, max_length=1024)
    size: int | None = Field(default=None, ge=0)
    file_id: str | None = Field(default=None, pattern=r"^\d{1,20}:\d{1,20}$")


class DocumentRef(BaseModel):
    """Exactly one source: a path readable by the worker, a key under the
    mission's object-store prefix, inline base64 content with a name, or an
    object of one of the mission's S3 sources."""

    path: PlainText | None = Field(default=None, max_length=4096)
    object_key: PlainText | None = Field(default=None, max_length=1024)
    name: PlainText | None = Field(default=None, max_length=1024)
    content_b64: str | None = None
    source_object: SourceObjectRef | None = None
    # `path` only: the starter's signed grant to read that path for this mission (stratmaster/principals.py);
    # the worker refuses a path without one (a Temporal client bypasses the API's platform-admin check)
    grant: str | None = Field(default=None, max_length=4096)

    @model_validator(mode="after")
    def _one_source(self) -> "DocumentRef":
        sources = [s for s in (self.path, self.object_key, self.content_b64, self.source_object) if s is not None]
        if len(sources) != 1:
            raise ValueError("a document needs exactly one of 'path', 'object_key', 'content_b64' or 'source_object'")
        if self.content_b64 is not None and not self.name:
            raise ValueError("inline documents ('content_b64') need a 'name'")
        return self

    @property
    def label(self) -> str:
        """Human-readable source, also the key of its ingestion_failures row."""
        if self.path is not None:
            return self.path
        if self.object_key is not None:
            return f"object:{self.object_key}"
        if self.source_object is not None:
            return f"source:{self.source_object.source_id}:{self.source_object.key}"
        return f"inline:{self.name}"

    def fingerprint(self) -> str:
        if self.content_b64 is not None:
            return "inline:" + (self.name or "") + ":" + hashlib.sha256(self.content_b64.encode()).hexdigest()
        return self.label


def default_batch_id(documents: list[DocumentRef]) -> str:
    """Deterministic batch id from the references (order-insensitive)."""
    keys = sorted(d.fingerprint() for d in documents)
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:16]


def workflow_id_for(mission: str, batch_id: str) -> str:
    return f"ingest-{mission}-{batch_id}"


class IngestInput(BaseModel):
    mission: MissionId
    documents: list[DocumentRef] = Field(min_length=1)
    batch_id: str | None = Field(default=None, pattern=BATCH_ID_PATTERN)
    # Fan-out: child workflow per slice of `slice_size` documents, at most
    # `max_concurrent_slices` running; documents inside a slice run `doc_concurrency` at a time.
    slice_size: int = Field(default=10, ge=1, le=500)
    max_concurrent_slices: int = Field(default=2, ge=1, le=50)
    doc_concurrency: int = Field(default=2, ge=1, le=16)
    # Small documents (each at most `group_doc_bytes`) go `group_docs` at a time through one
    # `ingest_documents` activity with one batched embedding call; 1 turns grouping off.
    group_docs: int = Field(default=16, ge=1, le=100)
    group_doc_bytes: int = Field(default=64 * 1024, ge=0)
    # The parent continues as new after this many slices so its history stays bounded.
    slices_per_run: int = Field(default=200, ge=1)
    # A crashed worker's document is retried elsewhere after this long without a heartbeat.
    heartbeat_timeout_s: int = Field(default=20, ge=2, le=600)
    document_timeout_s: int = Field(default=1800, ge=10, le=86400)
    # Children report finished documents to the parent at most this often (0: after every document).
    progress_every_s: float = Field(default=1.0, ge=0, le=60)
    # Internal: set by the workflow itself when it continues as new.
    resume: "IngestState | None" = None

    def resolved_batch_id(self) -> str:
        return self.batch_id or default_batch_id(self.documents)


class IngestState(BaseModel):
    """Carried across continue-as-new: how many documents earlier runs handled
    (the new run's `documents` are the remaining ones) and what they produced."""
    offset: int = 0
    slices_done: int = 0
    totals: "IngestTotals"
    failures: list["DocumentResult"] = Field(default_factory=list)
    documents: list["DocumentResult"] = Field(default_factory=list)


class DocumentResult(BaseModel):
    source: Annotated[str, clipped(300)]
    status: Literal["ingested", "duplicate", "failed"]
    document_id: str | None = None
    sha256: str | None = None
    content_type: str | None = None
    title: Annotated[str | None, clipped(200)] = None
    object_key: Annotated[str | None, clipped(300)] = None
    chars: int = 0
    chunks: int = 0
    entities: int = 0
    relations: int = 0
    reason_type: str | None = None
    reason: Annotated[str | None, clipped(500)] = None


class IngestDocumentInput(BaseModel):
    mission: MissionId
    batch_id: str
    ref: DocumentRef


class IngestGroupInput(BaseModel):
    """Consecutive small documents of a slice, ingested in one activity call."""
    mission: MissionId
    batch_id: str
    refs: list[DocumentRef] = Field(min_length=1)
    max_doc_bytes: int = 64 * 1024  # a bigger document is handed back (None) for `ingest_document`


class IngestGroupResult(BaseModel):
    # aligned with `refs`; None: too big for a group, to be ingested alone
    results: list[DocumentResult | None]


class RecordFailureInput(BaseModel):
    mission: MissionId
    batch_id: str
    source: str
    reason_type: str
    reason: str


class CheckMissionInput(BaseModel):
    mission: MissionId


class SliceInput(BaseModel):
    mission: MissionId
    batch_id: str
    slice_index: int
    offset: int  # index of the slice's first document in the batch
    documents: list[DocumentRef]
    doc_concurrency: int = 2
    group_docs: int = 1  # default for slices started before grouping existed
    group_doc_bytes: int = 64 * 1024
    report_to: str | None = None  # parent workflow id for per-document progress signals
    heartbeat_timeout_s: int = 20
    document_timeout_s: int = 1800
    progress_every_s: float = 1.0


class SliceResult(BaseModel):
    slice_index: int
    results: list[DocumentResult]


class DocumentDone(BaseModel):
    index: int  # position in the whole batch
    result: DocumentResult


class SliceProgress(BaseModel):
    """Signal from a slice to its parent: documents finished since the last one
    (sent at most every `progress_every_s` of workflow time, to keep history and
    workflow-task CPU small when documents are tiny)."""
    done: list[DocumentDone]


class IngestTotals(BaseModel):
    total: int = 0
    done: int = 0  # finished, whatever the outcome
    ingested: int = 0
    duplicates: int = 0
    failed: int = 0
    chunks: int = 0


class IngestProgress(IngestTotals):
    mission: str = ""
    batch_id: str = ""
    current: list[str] = Field(default_factory=list)  # documents in flight
    finished: bool = False


# Result lists are capped (and their strings clipped) so the workflow result and
# the state carried across continue-as-new stay far below Temporal's 2 MB payload
# limit whatever the batch: ~1 KB per listed document at most. Every failure is
# also in the mission's ingestion_failures table, with its full reason.
MAX_LISTED_DOCUMENTS = 500
MAX_LISTED_FAILURES = 200


class IngestResult(BaseModel):
    mission: str
    batch_id: str
    totals: IngestTotals
    failures: list[DocumentResult] = Field(default_factory=list)
    documents: list[DocumentResult] = Field(default_factory=list)  # successes, first MAX_LISTED_DOCUMENTS
    documents_truncated: bool = False
    failures_truncated: bool = False  # more than MAX_LISTED_FAILURES failed: totals.failed has the count


IngestState.model_rebuild()
IngestInput.model_rebuild()
