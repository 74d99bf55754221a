"""Contracts for operations: backup, restore, verification, maintenance, analytics.

Backups live in the object store under `system/backups/<backup_id>/`; the
manifest (`manifest.json`) lists every artefact with its size and sha256 so a
restore can validate the whole backup before it touches any store.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from stratmaster.contracts.common import MissionId
from stratmaster.contracts.health import HealthReport

MANIFEST_FORMAT = 2  # 2: object artefacts named by the sha256 of their key (1: by the key; still restorable)
BACKUP_PREFIX = "backups/"  # under the object store's system/ area
BACKUP_ID = r"^[a-z0-9][a-z0-9_.-]{2,100}$"
# Workflow results name at most this many missions (with their counts) and problems:
# they stay far below Temporal's 2 MB payload limit however many missions a backup
# holds. The manifest in the object store has everything.
MAX_DETAIL = 100
MAX_PROBLEMS = 50
MAX_PROBLEM_CHARS = 500


def backup_dir(backup_id: str) -> str:
    """Key (relative to system/) of a backup's folder."""
    return f"{BACKUP_PREFIX}{backup_id}/"


def clip(text: str, limit: int = MAX_PROBLEM_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ---------------------------------------------------------------- backup

class BackupProgress(BaseModel):
    """Carried across continue-as-new by BackupWorkflow (internal)."""
    after: str | None = None  # last mission backed up (missions go in name order)
    created_at: datetime
    system_done: bool = False
    runs: int = 1


class BackupInput(BaseModel):
    scope: Literal["mission", "system"] = "mission"
    mission: MissionId | None = None
    # Business key of the run (e.g. the schedule's date); the workflow derives one when empty.
    backup_id: str | None = Field(default=None, pattern=BACKUP_ID)
    # Missions per page (their copies run in parallel) and pages per workflow run
    # before continue-as-new (a bounded history whatever the number of missions).
    page_size: int = Field(default=25, ge=1, le=200)
    pages_per_run: int = Field(default=20, ge=1, le=1000)
    progress: BackupProgress | None = None

    @model_validator(mode="after")
    def _mission_for_mission_scope(self) -> "BackupInput":
        if self.scope == "mission" and not self.mission:
            raise ValueError("scope 'mission' needs a mission id")
        return self


class Artefact(BaseModel):
    name: str  # relative to the backup folder, e.g. "postgres/<mission>/chunks.csv"
    kind: str  # postgres-table | postgres-dump | vectors | fulltext | graph | object
    size: int
    sha256: str
    mission: str | None = None
    rows: int | None = None  # records inside, when the artefact is a table/dump of records
    source_key: str | None = None  # object artefacts: the original key under the mission prefix; tables: the table
    format: str = "raw"  # csv | jsonl | raw | pg_dump


class Skipped(BaseModel):
    """Something a backup left out, and why (e.g. an object key no adapter can read)."""
    mission: str | None = None
    what: str
    reason: str


class BackupStep(BaseModel):
    """Input of every per-store backup activity."""
    backup_id: str
    mission: str
    tenant_id: str | None = None


class BeginBackupInput(BaseModel):
    backup_id: str


class PlanInput(BaseModel):
    backup_id: str
    scope: Literal["mission", "system"]
    mission: str | None = None
    after: str | None = None  # page after this mission name
    limit: int = Field(default=25, ge=1, le=200)


class PlannedMission(BaseModel):
    name: str
    tenant_id: str


class BackupPage(BaseModel):
    """One page of the missions to back up (at most PlanInput.limit)."""
    missions: list[PlannedMission]
    tables: list[str] = Field(default_factory=list)  # mission tables in FK order
    more: bool = False


class StepResult(BaseModel):
    """What one per-store backup activity wrote: a summary only (the artefact list
    goes to the backup's parts/ folder, see BackupPart), so it stays small."""
    artefacts: int = 0
    bytes: int = 0
    counts: dict[str, int] = Field(default_factory=dict)
    skipped: int = 0
    server_version: str | None = None


class BackupPart(BaseModel):
    """`parts/<mission|_system>/<step>.json` in the backup folder: one step's artefacts;
    write_manifest assembles the manifest from them."""
    mission: str | None = None
    step: str
    artefacts: list[Artefact] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    skipped: list[Skipped] = Field(default_factory=list)
    server_version: str | None = None
    vanished: bool = False  # the mission was deleted while it was being backed up
    tables: list[str] = Field(default_factory=list)


class Manifest(BaseModel):
    format: int = MANIFEST_FORMAT
    backup_id: str
    scope: str
    missions: list[str]
    created_at: datetime  # informational: ordering uses the object store's own timestamp
    tables: list[str] = Field(default_factory=list)
    artefacts: list[Artefact]
    # expected counts per mission: documents, chunks, research_sessions, claims, vectors, fulltext_docs, ...
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    server_version: str | None = None
    skipped: list[Skipped] = Field(default_factory=list)


class WriteManifestInput(BaseModel):
    backup_id: str
    scope: Literal["mission", "system"]
    created_at: datetime


class BackupResult(BaseModel):
    backup_id: str
    manifest_key: str
    missions: int = 0
    artefacts: int
    total_bytes: int
    counts: dict[str, dict[str, int]]  # at most MAX_DETAIL missions (truncated says when more)
    skipped: int = 0
    skipped_examples: list[str] = Field(default_factory=list)
    truncated: bool = False


class BackupSummary(BaseModel):
    backup_id: str
    scope: str
    missions: list[str]  # the first 20
    mission_count: int = 0
    created_at: datetime  # as written in the manifest
    modified_at: datetime | None = None  # the object store's timestamp of manifest.json: the ordering
    artefacts: int
    total_bytes: int
    problem: str | None = None  # the manifest does not parse or names another folder


class ListBackupsInput(BaseModel):
    mission: str | None = None
    limit: int = Field(default=50, ge=1, le=500)


class ListBackupsResult(BaseModel):
    backups: list[BackupSummary]  # newest first (object store timestamp), at most `limit`
    more: bool = False


# ---------------------------------------------------------------- restore / verify

class RestoreProgress(BaseModel):
    """Carried across continue-as-new by RestoreWorkflow (internal)."""
    manifest_sha256: str
    phase: Literal["prepare", "system", "load"] = "prepare"
    after: str | None = None
    mission_count: int = 0
    missions: list[str] = Field(default_factory=list)
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)


class RestoreInput(BaseModel):
    backup_id: str = Field(pattern=BACKUP_ID)
    # Wipe the target mission's data first instead of refusing a non-empty target.
    replace: bool = False
    mission: MissionId | None = Field(default=None, description="which mission of a system backup (default: all)")
    # System backups only: pg_restore the whole database from the pg_dump instead of
    # restoring mission by mission (disaster recovery; needs replace on a non-empty database).
    full_database: bool = False
    page_size: int = Field(default=25, ge=1, le=200)
    pages_per_run: int = Field(default=20, ge=1, le=1000)
    progress: RestoreProgress | None = None


class ValidateInput(BaseModel):
    backup_id: str
    # restore only this mission of the backup (its rows are checked against the live tables)
    mission: str | None = None
    # a restore into the live tables: also refuse rows whose keys belong to another mission now
    live: bool = False
    full_database: bool = False


class ValidatedBackup(BaseModel):
    backup_id: str
    scope: str
    manifest_sha256: str  # restore steps check they read this very manifest
    missions: int
    artefacts: int
    total_bytes: int


class MissionsPageInput(BaseModel):
    backup_id: str
    manifest_sha256: str
    after: str | None = None
    limit: int = Field(default=25, ge=1, le=200)
    mission: str | None = None


class MissionEntry(BaseModel):
    name: str
    counts: dict[str, int] = Field(default_factory=dict)  # as recorded by the backup


class MissionsPage(BaseModel):
    missions: list[MissionEntry]
    more: bool = False


DRILL_MISSION = r"^[a-z][a-z0-9_]*_drill_[0-9a-f]{8}$"
DRILL_SCHEMA = r"^drill_[0-9a-f]{8}_[0-9]+$"


class RestoreStep(BaseModel):
    backup_id: str
    source_mission: str  # mission as named in the backup
    target_mission: str  # where it goes (differs only for a drill)
    replace: bool = False
    # Drill: PostgreSQL rows go into this scratch schema instead of the live tables.
    scratch_schema: str | None = Field(default=None, pattern=DRILL_SCHEMA)
    # the manifest validate_backup checked; a different one is refused
    manifest_sha256: str | None = None

    @model_validator(mode="after")
    def _drill_targets_are_drill_names(self) -> "RestoreStep":
        # a drill wipes its target namespace first: never let that be a real mission
        if self.scratch_schema and not re.fullmatch(DRILL_MISSION, self.target_mission):
            raise ValueError("a drill's target must be a drill namespace (<mission>_drill_<8 hex>)")
        return self


class RestoreResult(BaseModel):
    backup_id: str
    missions: list[str]  # at most MAX_DETAIL (mission_count has them all)
    mission_count: int = 0
    counts: dict[str, dict[str, int]]
    truncated: bool = False


class MissionCounts(BaseModel):
    mission: str
    counts: dict[str, int]


class CountInput(BaseModel):
    mission: str  # store namespace
    pg_mission: str | None = None  # name in the tenants table, when it differs (drill)
    scratch_schema: str | None = Field(default=None, pattern=DRILL_SCHEMA)


class VerifyProgress(BaseModel):
    """Carried across continue-as-new by VerifyBackupWorkflow (internal)."""
    backup_id: str
    manifest_sha256: str
    short: str
    after: str | None = None
    index: int = 0
    drill_missions: list[str] = Field(default_factory=list)
    expected: dict[str, dict[str, int]] = Field(default_factory=dict)
    restored: dict[str, dict[str, int]] = Field(default_factory=dict)
    problems: list[str] = Field(default_factory=list)
    problems_total: int = 0


class VerifyBackupInput(BaseModel):
    # Empty: the newest backup (of `mission` when given) — what the nightly schedule verifies.
    backup_id: str | None = Field(default=None, pattern=BACKUP_ID)
    mission: MissionId | None = None
    page_size: int = Field(default=25, ge=1, le=200)
    pages_per_run: int = Field(default=10, ge=1, le=1000)
    progress: VerifyProgress | None = None


class VerifyBackupResult(BaseModel):
    backup_id: str
    ok: bool
    checksums_ok: bool
    drill_missions: list[str]  # at most MAX_DETAIL, like expected/restored
    expected: dict[str, dict[str, int]]
    restored: dict[str, dict[str, int]]
    problems: list[str] = Field(default_factory=list)  # at most MAX_PROBLEMS (problems_total has the count)
    mission_count: int = 0
    problems_total: int = 0
    truncated: bool = False


class DropDrillInput(BaseModel):
    mission: str = Field(pattern=DRILL_MISSION)
    scratch_schema: str = Field(pattern=DRILL_SCHEMA)


# ---------------------------------------------------------------- maintenance

MaintenanceKind = Literal["vacuum", "optimise", "retention", "health", "capacity", "all"]


class MaintenanceInput(BaseModel):
    kind: MaintenanceKind = "all"
    # documents_days retention: documents deleted per activity call (the workflow loops)
    document_batch: int = Field(default=50, ge=1, le=1000)


class TableStats(BaseModel):
    table: str
    live_rows: int
    dead_rows: int
    seq_scans: int
    index_scans: int
    last_vacuum: datetime | None = None
    last_analyze: datetime | None = None
    total_bytes: int = 0


class VacuumReport(BaseModel):
    tables: list[str]
    stats: list[TableStats]


class OptimiseReport(BaseModel):
    # mission -> store -> what was done ("optimized", "no-op: <reason>")
    actions: dict[str, dict[str, str]]


class RetentionReport(BaseModel):
    # mission -> what was removed
    purged_sessions: dict[str, int] = Field(default_factory=dict)
    pruned_backups: dict[str, list[str]] = Field(default_factory=dict)
    purged_missions: list[str] = Field(default_factory=list)  # from PurgeExpiredMissionsWorkflow
    waiting_missions: list[str] = Field(default_factory=list)  # deactivated, retention not over yet
    expired_documents: dict[str, int] = Field(default_factory=dict)  # documents_days: mission -> deleted
    notes: list[str] = Field(default_factory=list)


class MissionCapacity(BaseModel):
    mission: str
    rows: dict[str, int]
    vectors: int
    index_docs: int
    graph_entities: int = 0
    graph_relations: int = 0
    objects: int
    object_bytes: int


class CapacityReport(BaseModel):
    generated_at: datetime
    missions: list[MissionCapacity]
    database_bytes: int


class MaintenanceReport(BaseModel):
    kind: str
    started_at: datetime
    finished_at: datetime
    vacuum: VacuumReport | None = None
    optimise: OptimiseReport | None = None
    retention: RetentionReport | None = None
    health: HealthReport | None = None
    capacity: CapacityReport | None = None


class Empty(BaseModel):
    pass


class RetentionInput(BaseModel):
    now: datetime  # from workflow.now(): the cut-off is deterministic per run


class ExpireDocumentsInput(BaseModel):
    now: datetime  # one value for every batch of a run: the cut-off does not move
    limit: int = Field(default=50, ge=1, le=1000)  # documents deleted by this call at most


class ExpireDocumentsResult(BaseModel):
    deleted: dict[str, list[str]] = Field(default_factory=dict)  # mission -> document ids deleted
    more: bool = False  # expired documents may remain: call again


# ---------------------------------------------------------------- analytics

ANALYTICS_FILE = "tenant_research_metrics.parquet"


def analytics_key(export_id: str) -> str:
    """Where an export's Parquet file goes in the object store, relative to its
    system/ area (and, on the worker, under <data_dir>/exports/)."""
    return f"analytics/{export_id}/{ANALYTICS_FILE}"


class AnalyticsExportInput(BaseModel):
    export_id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_.-]{2,100}$")
    missions: list[str] = Field(default_factory=list, description="empty: all missions")


class MissionMetrics(BaseModel):
    tenant_name: str
    total_sessions: int
    completed_sessions: int
    avg_duration_minutes: float | None
    total_claims: int
    avg_confidence: float | None
    flagged_claims: int


class AnalyticsExportResult(BaseModel):
    export_id: str
    parquet_path: str  # local file written by DuckDB
    object_key: str  # copy in the object store (system/analytics/...)
    rows: list[MissionMetrics]
    duckdb_version: str
