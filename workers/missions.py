"""mission-tasks: cartridge activation, rollback, deactivation, purge, export."""
from __future__ import annotations

from stratmaster.settings import Settings
from workers.registry import QueueSpec


async def build(settings: Settings) -> QueueSpec:
    from activities.missions import MissionActivities
    from activities.resources import Resources
    from workflows.missions import WORKFLOWS

    resources = Resources(settings)
    missions = MissionActivities(resources)

    async def close() -> None:
        await missions.close()
        await resources.close()

    return QueueSpec(workflows=list(WORKFLOWS), activities=missions.all(), close=close,
                     extra={"missions": missions, "stores": resources.stores, "resources": resources})
