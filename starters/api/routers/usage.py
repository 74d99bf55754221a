"""LLM token usage and cost per mission (read): LlmUsageWorkflow on maintenance-tasks
reads the llm_usage table (activities/llm/usage.py)."""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BeforeValidator
from temporalio.client import Client, WorkflowFailureError

from starters.api.deps import MissionAccess, get_temporal, mission_access
from starters.api.errors import AUTH_ERRORS, ApiError, error_responses
from starters.api.temporal_ops import LLM_USAGE_WORKFLOW
from starters.failures import failure_type
from starters.auth import READ
from stratmaster import queues
from stratmaster.contracts.llm_usage import LlmUsageQuery, LlmUsageSummary
from stratmaster.errors import UNKNOWN_MISSION
from stratmaster.search_attributes import for_mission
from stratmaster.workflow_ids import llm_usage_workflow_id

router = APIRouter(tags=["usage"])


_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def not_a_number(value):
    """A date-time, as the schema says: pydantic would read "0.5" as a Unix timestamp."""
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("expected an ISO 8601 date-time, not a number")
    return value


def as_utc(value: datetime) -> datetime:
    """Naive times are UTC; an offset beyond datetime's range clamps to its end."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        return (datetime.min if value.year == datetime.min.year else datetime.max).replace(tzinfo=timezone.utc)

USAGE_TIMEOUT = timedelta(seconds=30)


@router.get("/missions/{mission}/usage", summary="LLM calls, tokens and cost of a mission, per model (read)",
            response_model=LlmUsageSummary, responses=error_responses(*AUTH_ERRORS, 404, 422))
async def mission_usage(access: MissionAccess = Depends(mission_access(READ)), client: Client = Depends(get_temporal),
                        since: Annotated[datetime | None, BeforeValidator(not_a_number),
                                         Query(description="only calls at or after this time (ISO 8601)")] = None):
    mission = access.mission
    if since is not None:
        since = as_utc(since)
    try:
        return await client.execute_workflow(
            LLM_USAGE_WORKFLOW, LlmUsageQuery(mission=mission, since=since),
            id=llm_usage_workflow_id(mission, uuid.uuid4().hex[:12]), task_queue=queues.MAINTENANCE,
            execution_timeout=USAGE_TIMEOUT, result_type=LlmUsageSummary, search_attributes=for_mission(mission))
    except WorkflowFailureError as exc:
        if failure_type(exc) == UNKNOWN_MISSION:
            raise ApiError(404, "unknown_mission", f"unknown mission {mission!r}") from None
        raise ApiError(503, "unavailable", f"LLM usage did not complete (is the {queues.MAINTENANCE} worker "
                                           "running?)") from None
