"""LLM token usage and cost per mission (rows in llm_usage)."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from stratmaster.contracts.common import MissionId


class LlmCall(BaseModel):
    """One LLM call's usage; call_key makes recording idempotent."""
    mission: str
    model: str
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    cost_usd: float = Field(default=0.0, ge=0)
    workflow_id: str | None = None
    purpose: str = ""
    call_key: str


class LlmUsageQuery(BaseModel):
    mission: MissionId
    since: datetime | None = None


class ModelUsage(BaseModel):
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class LlmUsageSummary(BaseModel):
    mission: str
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    by_model: list[ModelUsage] = Field(default_factory=list)
