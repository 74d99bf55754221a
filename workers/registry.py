"""Which workflows and activities each task queue runs.

Each queue has a builder module `workers/<area>.py` exposing
`async def build(settings) -> QueueSpec`; imports stay lazy so a worker only
loads what its queue needs (the research worker does not import the parsers).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from stratmaster import queues
from stratmaster.settings import Settings


@dataclass
class QueueSpec:
    workflows: list[type]
    activities: list[Callable[..., Any]]
    close: Callable[[], Awaitable[None]] | None = None
    # sync (def) activities run in this many threads
    max_concurrent_activities: int = 8
    extra: dict[str, Any] = field(default_factory=dict)


BUILDERS: dict[str, str] = {
    queues.RESEARCH: "workers.research",
    queues.INGESTION: "workers.ingestion",
    queues.MISSIONS: "workers.missions",
    queues.MAINTENANCE: "workers.maintenance",
}


async def build(queue: str, settings: Settings) -> QueueSpec:
    if queue not in BUILDERS:
        raise SystemExit(f"unknown task queue {queue!r}; known: {', '.join(BUILDERS)}")
    module = importlib.import_module(BUILDERS[queue])
    return await module.build(settings)
