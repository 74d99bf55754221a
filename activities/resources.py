"""Lazily opened clients shared by the methods of an activities class."""
from __future__ import annotations

import asyncpg

from stratmaster.settings import Settings


class ActivityResources:
    """A PostgreSQL pool and a Stores bundle, opened on first use.

    `stores` may be a Stores bundle or a callable returning the worker's shared
    one: embedded Qdrant allows one client per storage directory, so the
    activities classes of one worker share a bundle."""

    pool_max_size = 4

    def __init__(self, settings: Settings, stores=None):
        self.settings = settings
        self._stores = stores
        self._pool: asyncpg.Pool | None = None

    @property
    def stores(self):
        if self._stores is None:
            from activities.stores.factory import build_stores

            self._stores = build_stores(self.settings)
        return self._stores() if callable(self._stores) else self._stores

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            from activities.stores.postgres import create_pool

            self._pool = await create_pool(self.settings.database_url, max_size=self.pool_max_size)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
