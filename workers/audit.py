"""The API's support on the maintenance worker: RecordAuditWorkflow writes one
audit_log row per API write request; LlmUsageWorkflow reads a mission's LLM usage
(the API never touches a store itself)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from activities.ops.audit import AuditActivities
from activities.llm.usage import LlmUsageActivities
from activities.resources import Resources
from workflows.audit import RecordAuditWorkflow
from workflows.llm_usage import LlmUsageWorkflow


@dataclass
class ApiSupport:
    workflows: list[type]
    activities: list[Callable[..., Any]]


def api_support(resources: Resources) -> ApiSupport:
    """On the worker's shared resources (its close closes them)."""
    audit = AuditActivities(resources)
    usage = LlmUsageActivities(resources)
    return ApiSupport(workflows=[RecordAuditWorkflow, LlmUsageWorkflow],
                      activities=[audit.record_audit, usage.usage_summary])
