"""How activities read a mission's active cartridge: hot reload without restarts.

    reader = MissionConfigReader(settings)          # one per worker process
    cfg = await reader.get("demo")                  # MissionConfig
    cfg.cartridge.quality.min_confidence, cfg.cartridge.engines.graph,
    cfg.cartridge.entity_keywords(), cfg.cartridge.model_for("synthesis", default)

Cartridge versions are immutable, so their content is cached forever by
(mission, version). What can change is which version is active: every
activation, rollback or deactivation bumps tenants.config_revision, and the
reader re-checks that one indexed row at most every `ttl` seconds
(STRATMASTER_MISSION_CONFIG_TTL_SECONDS, default 2). A worker therefore sees a
new version within `ttl` seconds of its activation, with no restart; the
mission worker that recorded the activation sees it at once (invalidate()).

A mission without an activated cartridge (e.g. rows created by tests or older
tooling) gets default_cartridge(mission): every threshold at its default.
"""
from __future__ import annotations

import asyncio
import json
import time

import asyncpg

from activities.stores.postgres import create_pool
from stratmaster.contracts.common import check_mission
from stratmaster.contracts.cartridge import Cartridge, default_cartridge
from stratmaster.contracts.missions import MissionConfig
from stratmaster.settings import Settings

DEFAULT_TTL_SECONDS = 2.0


class MissionConfigReader:
    def __init__(self, settings: Settings | None = None, *, dsn: str | None = None, pool: asyncpg.Pool | None = None,
                 ttl: float | None = None):
        self._dsn = dsn or (settings.database_url if settings else None)
        self._pool = pool
        self._own_pool = pool is None
        self.ttl = ttl if ttl is not None else float(getattr(settings, "mission_config_ttl_seconds", DEFAULT_TTL_SECONDS))
        self._current: dict[str, tuple[float, MissionConfig]] = {}  # mission -> (checked at, config)
        self._versions: dict[tuple[str, str], Cartridge] = {}  # immutable content
        self._lock = asyncio.Lock()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    if not self._dsn:
                        raise ValueError("MissionConfigReader needs settings, a dsn or a pool")
                    self._pool = await create_pool(self._dsn, max_size=2)
        return self._pool

    def invalidate(self, mission: str | None = None) -> None:
        if mission is None:
            self._current.clear()
        else:
            self._current.pop(mission, None)

    async def get(self, mission: str) -> MissionConfig:
        check_mission(mission)
        now = time.monotonic()
        cached = self._current.get(mission)
        if cached and now - cached[0] < self.ttl:
            return cached[1]
        pool = await self._get_pool()
        row = await pool.fetchrow(
            "SELECT id, status, active_version, config_revision FROM tenants WHERE name = $1", mission)
        if row is None:
            config = MissionConfig(mission=mission, version=None, status="unknown", revision=-1,
                                   cartridge=default_cartridge(mission))
        elif cached and cached[1].revision == row["config_revision"] and cached[1].version == row["active_version"]:
            config = cached[1]
        else:
            version = row["active_version"]
            cartridge = self._versions.get((mission, version)) if version else None
            if version and cartridge is None:
                raw = await pool.fetchval(
                    "SELECT cartridge FROM mission_versions WHERE tenant_id = $1 AND version = $2", row["id"], version)
                if raw is not None:
                    cartridge = Cartridge.model_validate(json.loads(raw))
                    self._versions[(mission, version)] = cartridge
            config = MissionConfig(mission=mission, version=version if cartridge else None, status=row["status"],
                                   revision=row["config_revision"], cartridge=cartridge or default_cartridge(mission))
        self._current[mission] = (time.monotonic(), config)
        return config

    async def close(self) -> None:
        if self._pool is not None and self._own_pool:
            await self._pool.close()
        self._pool = None
