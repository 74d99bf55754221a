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

MANIFEST_FORMAT = 1
BACKUP_PREFIX = "backups/"  # under the object store's system/ area


def backup_dir(backup_id: str) -> str:
    """Key (relative to system/) of a backup's folder."""
    return f"{BACKUP_PREFIX}{backup_id}/"


# ---------------------------------------------------------------- backup

class BackupInput(BaseModel):
    scope: Literal["mission", "system"] = "mission"
    mission: MissionId | None = None
    # Business key of the run (e.g. the schedule's date); the workflow derives one when empty.
    backup_id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_.-]{2,100}$")

    @model_validator(mode="after")
    def _mission_for_mission_scope(self) -> "BackupInput":
        if self.scope == "mission" and not self.mission:
            raise ValueError("scope 'mission' needs a mission id")
        return self


class Artefact(BaseModel):
    name: str  # relative to the backup folder, e.g. "postgres/chunks.csv"
    kind: str  # postgres-table | postgres-dump | vectors | fulltext | graph | object
    size: int
    sha256: str
    mission: str | None = None
    rows: int | None = None  # records inside, when the artefact is a table/dump of records
    source_key: str | None = None  # object artefacts: the original key under the mission prefix
    format: str = "raw"  # csv | jsonl | raw | pg_dump


class BackupStep(BaseModel):
    """Input of every per-store backup activity."""
    backup_id: str
    mission: str
    tenant_id: str | None = None


class BackupPlan(BaseModel):
    backup_id: str
    scope: str
    missions: list[str]
    tenant_ids: dict[str, str] = Field(default_factory=dict)
    tables: list[str] = Field(default_factory=list)  # tenant-keyed tables in FK order


class Manifest(BaseModel):
    format: int = MANIFEST_FORMAT
    backup_id: str
    scope: str
    missions: list[str]
    created_at: datetime
    tables: list[str] = Field(default_factory=list)
    artefacts: list[Artefact]
    # expected counts per mission: documents, chunks, research_sessions, claims, vectors, fulltext_docs, ...
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    server_version: str | None = None


class WriteManifestInput(BaseModel):
    manifest: Manifest


class BackupResult(BaseModel):
    backup_id: str
    manifest_key: str
    artefacts: int
    total_bytes: int
    counts: dict[str, dict[str, int]]


class BackupSummary(BaseModel):
    backup_id: str
    scope: str
    missions: list[str]
    created_at: datetime
    artefacts: int
    total_bytes: int


class ListBackupsInput(BaseModel):
    mission: str | None = None


class ListBackupsResult(BaseModel):
    backups: list[BackupSummary]


# ---------------------------------------------------------------- restore / verify

class RestoreInput(BaseModel):
    backup_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{2,100}$")
    # Wipe the target mission's data first instead of refusing a non-empty target.
    replace: bool = False
    mission: MissionId | None = Field(default=None, description="which mission of a system backup (default: all)")
    # System backups only: pg_restore the whole database from the pg_dump instead of
    # restoring mission by mission (disaster recovery; needs replace on a non-empty database).
    full_database: bool = False


class ValidateInput(BaseModel):
    backup_id: str


class ValidatedBackup(BaseModel):
    manifest: Manifest


DRILL_MISSION = r"^[a-z][a-z0-9_]*_drill_[0-9a-f]{8}$"
DRILL_SCHEMA = r"^drill_[0-9a-f]{8}_[0-9]+$"


class RestoreStep(BaseModel):
    backup_id: str
    source_mission: str  # mission as named in the backup
    target_mission: str  # where it goes (differs only for a drill)
    replace: bool = False
    # Drill: PostgreSQL rows go into this scratch schema instead of the live tables.
    scratch_schema: str | None = Field(default=None, pattern=DRILL_SCHEMA)

    @model_validator(mode="after")
    def _drill_targets_are_drill_names(self) -> "RestoreStep":
        # a drill wipes its target namespace first: never let that be a real mission
        if self.scratch_schema and not re.fullmatch(DRILL_MISSION, self.target_mission):
            raise ValueError("a drill's target must be a drill namespace (<mission>_drill_<8 hex>)")
        return self


class RestoreResult(BaseModel):
    backup_id: str
    missions: list[str]
    counts: dict[str, dict[str, int]]


class MissionCounts(BaseModel):
    mission: str
    counts: dict[str, int]


class CountInput(BaseModel):
    mission: str  # store namespace
    pg_mission: str | None = None  # name in the tenants table, when it differs (drill)
    scratch_schema: str | None = Field(default=None, pattern=DRILL_SCHEMA)


class VerifyBackupInput(BaseModel):
    # Empty: the newest backup (of `mission` when given) — what the nightly schedule verifies.
    backup_id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_.-]{2,100}$")
    mission: MissionId | None = None


class VerifyBackupResult(BaseModel):
    backup_id: str
    ok: bool
    checksums_ok: bool
    drill_missions: list[str]
    expected: dict[str, dict[str, int]]
    restored: dict[str, dict[str, int]]
    problems: list[str] = Field(default_factory=list)


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


class StepResult(BaseModel):
    """What one per-store backup activity wrote."""
    artefacts: list[Artefact] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    server_version: str | None = None
