from __future__ import annotations

from stratmaster.settings import Settings
from workers.registry import QueueSpec


async def build(settings: Settings) -> QueueSpec:
    raise SystemExit("this task queue has no workflows yet")
