"""Work in flight per mission: a mission may have at most so many research runs and so many
ingestions running at once; one more is refused with 429 and Retry-After until some finish.
Rates (starters/api/limits.py) bound how fast work arrives; this bounds how much of the
workers one mission holds at a time, so a flood cannot take the machine from the others.

The count is Temporal's (visibility: running workflows of the type with the mission's search
attribute), so every API replica sees the same one without shared state of its own. It is read
at most once a second per mission and kind and counted up locally for each start admitted in
between, so a burst cannot slip past it; visibility lags a little, so the cap is soft by a few.
Temporal unreachable: admitted (the start itself will fail and say so)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from temporalio.client import Client

from starters.api.limits import too_many
from starters.api.temporal_ops import running_of_mission

log = logging.getLogger("stratmaster.api")

RETRY_AFTER_S = 2.0


@dataclass
class _Count:
    running: int
    read_at: float


class InFlight:
    def __init__(self, caps: dict[str, int], *, ttl: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.caps = {k: v for k, v in caps.items() if v > 0}  # workflow type -> running at most (0: no cap)
        self.ttl = ttl
        self.clock = clock
        self._counts: dict[tuple[str, str], _Count] = {}

    @classmethod
    def from_settings(cls, s) -> "InFlight":
        return cls({"ResearchWorkflow": s.api_mission_running_research,
                    "IngestDocumentsWorkflow": s.api_mission_running_ingestions})

    async def admit(self, client: Client, mission: str, workflow_type: str, what: str) -> None:
        """Before starting a `workflow_type` of `mission`: 429 when the mission has its cap running."""
        cap = self.caps.get(workflow_type)
        if cap is None:
            return
        key, now = (mission, workflow_type), self.clock()
        count = self._counts.get(key)
        if count is None or now - count.read_at >= self.ttl:
            try:
                found = await client.count_workflows(running_of_mission(workflow_type, mission))
            except Exception as exc:  # noqa: BLE001 - fail open, as the rate limits do without Redis
                log.warning("in-flight count unavailable: admitted", extra={"error": f"{type(exc).__name__}: {exc}"})
                return
            count = self._counts[key] = _Count(found.count, now)
            if len(self._counts) > 10_000:  # missions come and go: forget the stale ones
                self._counts = {k: v for k, v in self._counts.items() if now - v.read_at < self.ttl}
        if count.running >= cap:
            raise too_many(f"mission {mission!r} has {cap} {what} running already", RETRY_AFTER_S)
        count.running += 1
