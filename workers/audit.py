"""The API's audit trail on the maintenance worker: RecordAuditWorkflow writes
one audit_log row per API write request."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from activities.audit import AuditActivities
from stratmaster.settings import Settings
from workflows.audit import RecordAuditWorkflow


@dataclass
class ApiSupport:
    workflows: list[type]
    activities: list[Callable[..., Any]]
    close: Callable[[], Awaitable[None]]


def api_support(settings: Settings) -> ApiSupport:
    audit = AuditActivities(settings)
    return ApiSupport(workflows=[RecordAuditWorkflow], activities=[audit.record_audit], close=audit.close)
