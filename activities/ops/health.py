"""Health checks of every configured service (activities: they touch the stores)."""
from __future__ import annotations

import time

import asyncpg
from temporalio import activity

from activities.resources import Resources
from stratmaster.contracts.health import HealthCheckInput, ServiceHealth


class HealthActivities:
    def __init__(self, resources: Resources):
        self.settings = resources.settings

    async def _probe(self, name: str, backend: str, fn) -> ServiceHealth:
        t0 = time.perf_counter()
        try:
            detail = await fn()
            return ServiceHealth(name=name, ok=True, backend=backend, detail=str(detail or ""),
                                 latency_ms=(time.perf_counter() - t0) * 1000)
        except Exception as exc:  # a failing probe is a finding, not an activity failure
            return ServiceHealth(name=name, ok=False, backend=backend, detail=f"{type(exc).__name__}: {exc}",
                                 latency_ms=(time.perf_counter() - t0) * 1000)

    async def _postgres(self) -> str:
        conn = await asyncpg.connect(self.settings.database_url, timeout=5)
        try:
            return await conn.fetchval("SELECT version()")
        finally:
            await conn.close()

    @activity.defn(name="check_services")
    async def check_services(self, req: HealthCheckInput) -> list[ServiceHealth]:
        probes = {"database": ("postgres", self._postgres)}
        probes.update(self.extra_probes())
        wanted = req.services or list(probes)
        return [await self._probe(n, probes[n][0], probes[n][1]) for n in wanted if n in probes]

    def extra_probes(self) -> dict:
        """Store-specific probes (object store, vectors, full text, graph, LLM, web search)."""
        from activities.stores.factory import health_probes

        return health_probes(self.settings)
