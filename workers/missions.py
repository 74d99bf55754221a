"""mission-tasks: cartridge activation, rollback, deactivation, purge, export."""
from __future__ import annotations

from stratmaster.settings import Settings
from workers.registry import QueueSpec


async def build(settings: Settings) -> QueueSpec:
    from activities.missions import MissionActivities
    from activities.stores.factory import build_stores
    from workflows.missions import WORKFLOWS

    stores = build_stores(settings)
    missions = MissionActivities(settings, stores=stores)

    async def close() -> None:
        await missions.close()
        await stores.close()

    return QueueSpec(workflows=list(WORKFLOWS), activities=missions.all(), close=close,
                     extra={"missions": missions, "stores": stores})
