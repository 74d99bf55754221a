"""Contracts of the audit trail (RecordAuditWorkflow, task queue `maintenance-tasks`).

Plain JSON works from the CLI:
  temporal workflow start --type RecordAuditWorkflow --task-queue maintenance-tasks \
    --input '{"request_id": "r-1", "actor": "ops", "action": "backup.start"}'
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


def audit_workflow_id(request_id: str) -> str:
    return f"audit-{request_id}"


class AuditEntry(BaseModel):
    request_id: str = Field(pattern=REQUEST_ID_PATTERN, description="idempotency key of the row")
    actor: str = Field(min_length=1, max_length=255)  # token subject/username, "dev", or a service name
    action: str = Field(min_length=1, max_length=100)  # e.g. "research.start", "mission.activate"
    mission: str | None = None
    target: str | None = None  # usually the workflow id the request started/cancelled
    status: int | None = None  # HTTP status answered
    detail: dict[str, Any] = Field(default_factory=dict)
    at: datetime | None = None  # when the request arrived (the API's clock); default: insert time


class AuditRecorded(BaseModel):
    request_id: str
    inserted: bool  # False: a row with this request_id already existed
