from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class HealthCheckInput(BaseModel):
    services: list[str] = Field(default_factory=list, description="empty: all configured services")


class ServiceHealth(BaseModel):
    name: str
    ok: bool
    backend: str  # e.g. "postgres", "qdrant-local", "opensearch"
    detail: str = ""
    latency_ms: float = 0.0


class HealthReport(BaseModel):
    checked_at: datetime
    ok: bool
    services: list[ServiceHealth]
