"""The API's support on the maintenance worker: RecordAuditWorkflow writes one
audit_log row per API write request; LlmUsageWorkflow reads a mission's LLM usage
(the API never touches a store itself)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from activities.ops.audit import AuditActivities
from activities.llm.usage import LlmUsageActivities
from stratmaster.settings import Settings
from workflows.audit import RecordAuditWorkflow
from workflows.llm_usage import LlmUsageWorkflow


@dataclass
class ApiSupport:
    workflows: list[type]
    activities: list[Callable[..., Any]]
    close: Callable[[], Awaitable[None]]


def api_support(settings: Settings) -> ApiSupport:
    audit = AuditActivities(settings)
    usage = LlmUsageActivities(settings)

    async def close() -> None:
        await audit.close()
        await usage.close()

    return ApiSupport(workflows=[RecordAuditWorkflow, LlmUsageWorkflow],
                      activities=[audit.record_audit, usage.usage_summary], close=close)
