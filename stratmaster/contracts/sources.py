"""Contracts of the Sources area (workflows/sources.py, task queue `ingestion-tasks`).

A mission registers sources that are synced into its knowledge base:

  directory  a directory on the ingestion workers' filesystem. Only a platform
             admin may register one (`actor_roles` must hold "platform-admin"; the
             CLI runs as the operator): it lets the workers read any file there.
  s3         an S3-compatible bucket and prefix. `credentials_profile` names a
             profile the workers resolve from their own environment
             (STRATMASTER_S3_PROFILE_<NAME>_ACCESS_KEY / _SECRET_KEY, optionally
             _ENDPOINT to pin the endpoint the profile may be used with): no secret
             is stored in PostgreSQL or ever crosses a workflow history.

Workflow ids are business keys:
  source-add-<mission>-<source_id>      AddSourceWorkflow (row + Temporal Schedule)
  source-remove-<mission>-<source_id>   RemoveSourceWorkflow (schedule, documents, manifest, row)
  source-sync-<mission>-<source_id>     SourceSyncWorkflow on demand; the schedule
                                        (id stratmaster-source-sync-<mission>-<source_id>)
                                        starts the same id plus Temporal's timestamp.
Everything here is plain JSON, so `temporal workflow start` works too.

The request/response models at the end (`*Request`, `*Started`) are for the REST
API routes (see docs/operations.md, "Sources").
"""
from __future__ import annotations

import posixpath
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator

from stratmaster.contracts.common import MissionId, PlainText, clipped
from stratmaster.contracts.ingestion import MAX_LISTED_FAILURES, SOURCE_ID_PATTERN, DocumentRef

SourceId = Annotated[str, StringConstraints(pattern=SOURCE_ID_PATTERN)]
ProfileName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]

PLATFORM_ADMIN = "platform-admin"  # the role a directory source needs
DEFAULT_INTERVAL_S = 3600
MIN_INTERVAL_S = 60

# Error types (non-retryable; the workflows fail with them as themselves).
FORBIDDEN = "Forbidden"                  # the actor lacks the role (directory sources: platform-admin)
UNKNOWN_SOURCE = "UnknownSource"         # no such source in this mission
SOURCE_EXISTS = "SourceExists"           # the id is taken by a different definition
SOURCE_UNAVAILABLE = "SourceUnavailable"  # directory missing/unreadable, bucket or credentials unusable
SOURCE_EMPTY = "SourceEmpty"             # a pass listed nothing but the manifest has files: nothing deleted
SOURCE_REMOVED = "SourceRemoved"         # the source is being removed
SYNC_SUPERSEDED = "SyncSuperseded"       # another sync took the source's lease
SOURCE_ERRORS = [FORBIDDEN, UNKNOWN_SOURCE, SOURCE_EXISTS, SOURCE_UNAVAILABLE, SOURCE_EMPTY, SOURCE_REMOVED,
                 SYNC_SUPERSEDED]
SYNC_RUNNING = "SyncRunning"             # retryable: removal waits for a running sync to stop

# Ingestion batches of source syncs: `src-<source_id>-g<generation>-p<page>`. Only documents
# a sync created (documents.batch_id with this prefix) are deleted when no file refers to them
# any more; a document first ingested by hand stays.
SOURCE_BATCH_PREFIX = "src-"

_ENDPOINT = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def sync_workflow_id(mission: str, source_id: str) -> str:
    return f"source-sync-{mission}-{source_id}"


def add_workflow_id(mission: str, source_id: str) -> str:
    return f"source-add-{mission}-{source_id}"


def remove_workflow_id(mission: str, source_id: str) -> str:
    return f"source-remove-{mission}-{source_id}"


def schedule_id_for(mission: str, source_id: str) -> str:
    return f"stratmaster-source-sync-{mission}-{source_id}"


def batch_id_for(source_id: str, generation: int, page: int) -> str:
    return f"{SOURCE_BATCH_PREFIX}{source_id}-g{generation}-p{page}"


# ---------------------------------------------------------------- definitions
class DirectorySpec(BaseModel):
    """A directory on the ingestion workers' filesystem (platform admin only).
    Regular files below it are synced; hidden files/directories (leading '.') and
    symbolic links are skipped."""
    kind: Literal["directory"] = "directory"
    path: PlainText = Field(min_length=1, max_length=4096)

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("a directory source needs an absolute path (as the ingestion workers see it)")
        v = posixpath.normpath(v)
        if v == "/":
            raise ValueError("refusing to sync the whole filesystem")
        return v

    def location(self) -> str:
        return self.path


class S3Spec(BaseModel):
    """An S3-compatible bucket/prefix. `endpoint` is host[:port] (no scheme: `secure`
    picks https); `prefix` is literal and, when given, ends with '/' (added if
    missing). Credentials: `credentials_profile`, resolved by the workers."""
    kind: Literal["s3"] = "s3"
    endpoint: str = Field(min_length=1, max_length=260)
    bucket: str = Field(min_length=3, max_length=63)
    prefix: PlainText = Field(default="", max_length=512)
    credentials_profile: ProfileName
    secure: bool = True
    region: str | None = Field(default=None, pattern=r"^[a-z0-9-]{1,32}$")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not _ENDPOINT.fullmatch(v):
            raise ValueError("endpoint is host[:port] without scheme or path (e.g. s3.example.com or 10.0.0.5:9000)")
        return v

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _BUCKET.fullmatch(v) or ".." in v:
            raise ValueError("not a valid S3 bucket name")
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v.startswith("/"):
            raise ValueError("prefix must not start with '/'")
        return v if not v or v.endswith("/") else v + "/"

    def location(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.endpoint}/{self.bucket}/{self.prefix}"


SourceSpec = Annotated[DirectorySpec | S3Spec, Field(discriminator="kind")]


class SourceDefinition(BaseModel):
    source_id: SourceId
    spec: SourceSpec
    # the Temporal Schedule's interval (seconds between passes)
    interval_seconds: int = Field(default=DEFAULT_INTERVAL_S, ge=MIN_INTERVAL_S, le=30 * 86400)


# ---------------------------------------------------------------- add / remove
class AddSourceInput(BaseModel):
    mission: MissionId
    source: SourceDefinition
    actor: PlainText = Field(default="unknown", max_length=200)
    # roles of the actor as the starter says (recorded in the audit row, never trusted: a plain JSON
    # start bypasses the API); kind "directory" needs `principal`, a platform admin's principal for
    # this mission signed by the API or the CLI (stratmaster/principals.py)
    actor_roles: list[Annotated[str, StringConstraints(max_length=200)]] = Field(default_factory=list, max_length=100)
    principal: str | None = Field(default=None, max_length=4096)


class AddSourceResult(BaseModel):
    mission: str
    source_id: str
    status: Literal["created", "updated", "unchanged"]  # updated: only the interval changed
    location: str
    interval_seconds: int
    schedule_id: str
    sync_workflow_id: str


class RemoveSourceInput(BaseModel):
    mission: MissionId
    source_id: SourceId
    actor: PlainText = Field(default="unknown", max_length=200)
    batch: int = Field(default=200, ge=1, le=1000)  # manifest rows per activity call
    resume: "RemoveState | None" = None  # internal (continue-as-new)


class RemoveState(BaseModel):
    files: int = 0
    documents: int = 0
    schedule_deleted: bool = False


class RemoveBegin(BaseModel):
    found: bool
    kind: str | None = None


class RemovePage(BaseModel):
    mission: MissionId
    source_id: SourceId
    limit: int


class RemovePageResult(BaseModel):
    files: int = 0
    documents: int = 0
    more: bool = False


class RemoveSourceResult(BaseModel):
    mission: str
    source_id: str
    status: Literal["removed", "not_found"]
    files_removed: int = 0
    documents_deleted: int = 0
    schedule_deleted: bool = False


class ScheduleSourceInput(BaseModel):
    mission: MissionId
    source_id: SourceId
    interval_seconds: int = DEFAULT_INTERVAL_S
    action: Literal["upsert", "delete"] = "upsert"


# ---------------------------------------------------------------- sync
class SyncTotals(BaseModel):
    listed: int = 0      # files/objects seen by the listing
    unchanged: int = 0   # same size+mtime (directory) / ETag (S3) as indexed: not read
    touched: int = 0     # metadata changed, same content hash: not re-ingested
    new: int = 0
    changed: int = 0
    ingested: int = 0
    duplicates: int = 0  # content already indexed (e.g. by another file)
    failed: int = 0
    deleted: int = 0     # files gone from the source, removed from the manifest
    documents_deleted: int = 0  # documents removed from every store (deleted or replaced versions)
    pages: int = 0
    runs: int = 0        # workflow runs (continue-as-new)


class SourceSyncInput(BaseModel):
    mission: MissionId
    source_id: SourceId
    # a listing page examines at most `scan_limit` entries and stops early once `page_size`
    # new/changed files are pending; those go to one IngestDocumentsWorkflow child. page_size is
    # capped so the child's result lists every failure (MAX_LISTED_FAILURES).
    scan_limit: int = Field(default=1000, ge=1, le=10_000)
    page_size: int = Field(default=100, ge=1, le=MAX_LISTED_FAILURES)
    # the workflow continues as new after this many pages (history stays bounded)
    pages_per_run: int = Field(default=20, ge=1, le=1000)
    delete_batch: int = Field(default=200, ge=1, le=1000)
    slice_size: int = Field(default=10, ge=1, le=500)  # the ingestion child's fan-out
    resume: "SyncState | None" = None  # internal (continue-as-new)


class SyncState(BaseModel):
    token: str
    generation: int
    kind: str
    phase: Literal["list", "delete", "done"] = "list"
    cursor: str | None = None  # last path/key examined
    page: int = 0
    totals: SyncTotals = Field(default_factory=SyncTotals)


class SyncBeginInput(BaseModel):
    mission: MissionId
    source_id: SourceId
    owner: str  # workflow id
    token: str  # first run id of the chain


class SyncBeginResult(BaseModel):
    outcome: Literal["started", "busy", "gone", "inactive", "removed"]
    generation: int = 0
    kind: str = ""
    detail: str = ""


class ListPageInput(BaseModel):
    mission: MissionId
    source_id: SourceId
    token: str
    generation: int
    page: int
    cursor: str | None = None
    scan_limit: int = 1000
    page_size: int = 100


class PendingFile(BaseModel):
    path: str  # relative path / key
    ref: DocumentRef
    new: bool


class ListPageResult(BaseModel):
    next_cursor: str | None = None
    done: bool
    listed: int = 0
    unchanged: int = 0
    touched: int = 0
    pending: list[PendingFile] = Field(default_factory=list)


class ApplyItem(BaseModel):
    path: str
    status: Literal["ingested", "duplicate", "failed", "missing"]
    document_id: str | None = None
    sha256: str | None = None
    reason_type: str | None = None
    reason: Annotated[str | None, clipped(500)] = None


class ApplyPageInput(BaseModel):
    mission: MissionId
    source_id: SourceId
    token: str
    batch_id: str
    items: list[ApplyItem]


class ApplyPageResult(BaseModel):
    indexed: int = 0
    failed: int = 0
    documents_deleted: int = 0  # older versions removed


class DeleteMissingInput(BaseModel):
    mission: MissionId
    source_id: SourceId
    token: str
    generation: int
    listed_total: int  # what the pass listed: 0 with a non-empty manifest refuses (SourceEmpty)
    limit: int = 200


class DeleteMissingResult(BaseModel):
    files: int = 0
    documents: int = 0
    more: bool = False


class FinishSyncInput(BaseModel):
    mission: MissionId
    source_id: SourceId
    token: str
    workflow_id: str
    status: Literal["ok", "failed", "cancelled"]
    error: Annotated[str | None, clipped(2000)] = None
    totals: SyncTotals


class FinishSyncResult(BaseModel):
    recorded: bool  # False: the lease had been taken over, nothing recorded
    files_deleted: int = 0      # exact counts of the pass (counted where the deletions commit)
    documents_deleted: int = 0


class SourceSyncProgress(SyncTotals):
    mission: str = ""
    source_id: str = ""
    phase: str = "starting"
    generation: int = 0
    ingesting: int = 0  # files of the current page in the ingestion child
    finished: bool = False


class SourceSyncResult(BaseModel):
    mission: str
    source_id: str
    workflow_id: str
    outcome: Literal["synced", "busy", "gone", "inactive", "removed"]
    detail: str = ""
    generation: int = 0
    totals: SyncTotals = Field(default_factory=SyncTotals)


# ---------------------------------------------------------------- read-only
class ListSourcesInput(BaseModel):
    mission: MissionId


class SourceSummary(BaseModel):
    source_id: str
    kind: str
    location: str
    interval_seconds: int
    status: str  # active | removing
    created_by: str
    created_at: datetime
    schedule_id: str
    syncing: str | None = None  # workflow id holding the sync lease
    last_sync_status: str | None = None
    last_sync_at: datetime | None = None
    last_sync_workflow: str | None = None
    last_sync_error: str | None = None
    last_sync_totals: SyncTotals | None = None
    files: dict[str, int] = Field(default_factory=dict)  # manifest rows per status


class SourceList(BaseModel):
    mission: str
    sources: list[SourceSummary]


ManifestStatus = Literal["pending", "indexed", "failed"]


class SourceStatusInput(BaseModel):
    mission: MissionId
    source_id: SourceId
    status: ManifestStatus | None = None  # only files in this state
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=100, ge=0, le=1000)


class ManifestEntry(BaseModel):
    path: Annotated[str, clipped(1100)]
    status: str
    size_bytes: int | None = None
    mtime: datetime | None = None
    etag: str | None = None
    sha256: str | None = None
    document_id: str | None = None
    reason_type: str | None = None
    reason: Annotated[str | None, clipped(1000)] = None
    updated_at: datetime | None = None
    indexed_at: datetime | None = None


class SourceStatus(BaseModel):
    mission: str
    source: SourceSummary
    files: list[ManifestEntry]
    matching: int  # files matching the filter (the page is files[offset:offset+limit] of them)
    offset: int
    limit: int


# ---------------------------------------------------------------- REST API (proposed)
class SourceCreateRequest(BaseModel):
    """POST /missions/{mission}/sources. kind "directory" needs platform-admin;
    kind "s3" the mission's admin role."""
    source_id: SourceId
    spec: SourceSpec
    interval_seconds: int = Field(default=DEFAULT_INTERVAL_S, ge=MIN_INTERVAL_S, le=30 * 86400)

    def definition(self) -> SourceDefinition:
        return SourceDefinition(source_id=self.source_id, spec=self.spec, interval_seconds=self.interval_seconds)


class SourceSyncRequest(BaseModel):
    """POST /missions/{mission}/sources/{source_id}/sync (body optional)."""
    page_size: int = Field(default=100, ge=1, le=MAX_LISTED_FAILURES)


class SourceWorkflowStarted(BaseModel):
    """Answer of POST .../sources, POST .../sync and DELETE .../sources/{id}: the
    workflow to follow with GET /workflows/{id}."""
    workflow_id: str
    created: bool = True  # False: attached to the one already running


RemoveSourceInput.model_rebuild()
SourceSyncInput.model_rebuild()
