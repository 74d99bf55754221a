"""LlmUsageWorkflow (task queue `maintenance-tasks`): a mission's LLM token usage and
cost from the llm_usage table (activities/llm/usage.py), for the API's
GET /missions/{mission}/usage. Read-only and short.

Plain JSON works from the CLI:
  temporal workflow execute --type LlmUsageWorkflow --task-queue maintenance-tasks \
    --input '{"mission": "demo", "since": "2026-01-01T00:00:00Z"}'
"""
from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from workflows.options import retry

with workflow.unsafe.imports_passed_through():
    from activities.llm.usage import LlmUsageActivities
    from stratmaster.contracts.llm_usage import LlmUsageQuery, LlmUsageSummary
    from stratmaster.errors import WORKFLOW_INPUT_ERRORS


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class LlmUsageWorkflow:
    @workflow.run
    async def run(self, req: LlmUsageQuery) -> LlmUsageSummary:
        return await workflow.execute_activity_method(
            LlmUsageActivities.usage_summary, req,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=retry(3),
        )
