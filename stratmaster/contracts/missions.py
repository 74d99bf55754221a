"""The contracts of the mission lifecycle workflows (workflows/missions.py): activate,
roll back, deactivate, purge, list, show and export a mission, and their activities' inputs
and results.

The cartridge itself is stratmaster/contracts/cartridge.py; reading one from text,
stratmaster/contracts/cartridge_validation.py.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from stratmaster.contracts.cartridge import Cartridge
from stratmaster.contracts.common import MissionId

# ---------------------------------------------------------------- workflow contracts
# Workflow inputs carry the mission as a plain string and validate it inside the
# workflow, so a hostile id fails the workflow with a clear BadInput error instead
# of a payload-decoding failure retried forever.

ActivationStatus = Literal["activated", "unchanged", "reactivated", "rolled_back"]


class ActivateMissionInput(BaseModel):
    """Either `cartridge_text` (YAML/JSON text) or `cartridge` (an object)."""
    cartridge_text: str | None = Field(default=None, max_length=512 * 1024)
    cartridge: dict[str, Any] | None = None
    actor: str = "system"
    source: str | None = None  # file name, for the audit log


class RollbackMissionInput(BaseModel):
    mission: str
    to_version: str | None = None  # default: the version active before the current one
    actor: str = "system"


class DeactivateMissionInput(BaseModel):
    mission: str
    actor: str = "system"
    retention_days: int | None = Field(default=None, ge=0, le=3650, description="override retention.deactivated_days")


class MissionRef(BaseModel):
    mission: str
    version: str | None = None


class ListMissionsInput(BaseModel):
    include_deactivated: bool = True


class PurgeExpiredInput(BaseModel):
    now: datetime | None = None  # the workflow fills in workflow.now()
    actor: str = "maintenance"
    missions: list[str] | None = None  # only these (default: every expired mission)


class ActivationResult(BaseModel):
    mission: str
    version: str
    status: ActivationStatus
    previous_version: str | None = None
    steps: list[str] = Field(default_factory=list)
    sha256: str | None = None


class DeactivationResult(BaseModel):
    mission: str
    status: Literal["deactivated", "unchanged"]
    purge_after: datetime | None


class PurgeResult(BaseModel):
    purged: list[str] = Field(default_factory=list)
    waiting: dict[str, datetime] = Field(default_factory=dict)  # deactivated, retention not yet over


class MissionSummary(BaseModel):
    mission: str
    name: str | None = None
    status: str
    active_version: str | None = None
    previous_version: str | None = None
    versions: int = 0
    purge_after: datetime | None = None
    updated_at: datetime | None = None


class MissionList(BaseModel):
    missions: list[MissionSummary]


class HistoryEntry(BaseModel):
    at: datetime
    action: str
    version: str | None
    replaced_version: str | None = None
    actor: str


class MissionDetail(BaseModel):
    summary: MissionSummary
    versions: list[str]
    history: list[HistoryEntry]
    cartridge: Cartridge | None = None


class ExportResult(BaseModel):
    mission: str
    version: str
    sha256: str
    cartridge: Cartridge
    yaml: str


# ---------------------------------------------------------------- activity I/O

class ValidateInput(BaseModel):
    cartridge_text: str | None = None
    cartridge: dict[str, Any] | None = None


class ValidatedCartridge(BaseModel):
    cartridge: Cartridge
    sha256: str


class ActivationPlan(BaseModel):
    """What exists before this activation, so compensation undoes only this run's work."""
    mission: str
    version: str
    sha256: str
    cartridge: Cartridge
    action: Literal["activate", "rollback"] = "activate"
    unchanged: bool = False
    tenant_existed: bool
    version_existed: bool
    previous_status: str | None = None
    previous_version: str | None = None  # tenants.active_version before this run
    previous_previous: str | None = None  # tenants.previous_version before this run
    previous_purge_after: datetime | None = None
    new_previous: str | None = None  # what tenants.previous_version becomes
    vector_dim: int = 384


class StepInput(BaseModel):
    plan: ActivationPlan
    actor: str
    workflow_id: str


class StepResult(BaseModel):
    step: str
    detail: str = ""


ProvisionStep = Literal["postgres", "vectors", "fulltext", "graph", "objects", "record"]


class UndoInput(BaseModel):
    step: StepInput
    name: ProvisionStep


class PlanRollbackInput(BaseModel):
    mission: MissionId
    to_version: str | None = None


class PlanActivationInput(BaseModel):
    validated: ValidatedCartridge


class DeactivateStep(BaseModel):
    mission: MissionId
    actor: str
    now: datetime
    retention_days: int | None = None
    workflow_id: str = ""


class MissionConfig(BaseModel):
    """A mission's active cartridge as activities read it (activities/mission_config.py)."""
    mission: str
    version: str | None  # None: no cartridge activated (defaults)
    status: str  # active | deactivated | provisioning | purging | unknown
    revision: int
    cartridge: Cartridge
