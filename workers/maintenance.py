from __future__ import annotations

from activities.health import HealthActivities
from stratmaster.settings import Settings
from workers.registry import QueueSpec
from workflows.health import HealthCheckWorkflow


async def build(settings: Settings) -> QueueSpec:
    health = HealthActivities(settings)
    return QueueSpec(workflows=[HealthCheckWorkflow], activities=[health.check_services])
