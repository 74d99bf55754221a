"""The one resources holder handed to every activities class: `XActivities(resources)`.

A worker builds one Resources (workers/<queue>.py) and closes it once. What it holds
opens on first use -- a health-only worker never connects, the research worker opens
its pool before polling (`await resources.open_pool()`) -- and is shared by every
activities class of the worker: one PostgreSQL pool, one Stores bundle (embedded Qdrant
allows one client per storage directory), one embedder. What a test or another worker
hands in (`stores=`, `pool=`) is used, not closed.
"""
from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from stratmaster.settings import Settings


class Resources:
    def __init__(self, settings: Settings, *, stores: Any = None, pool: asyncpg.Pool | None = None,
                 embedder: Any = None, sentence_encoder: Any = None, pool_max_size: int = 10):
        self.settings = settings
        self._stores, self._own_stores = stores, stores is None
        self._pool, self._own_pool = pool, pool is None
        self._embedder = embedder
        self._sentence_encoder = sentence_encoder
        self.pool_max_size = pool_max_size
        self._lock = asyncio.Lock()

    @property
    def stores(self) -> Any:
        if self._stores is None:
            from activities.stores.factory import build_stores

            self._stores = build_stores(self.settings)
        return self._stores

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from activities.ingest.embedding import get_embedder

            self._embedder = get_embedder(self.settings)
        return self._embedder

    @property
    def sentence_encoder(self) -> Any:
        """The encoder research scores sentences with (and ingestion stores their vectors by)."""
        if self._sentence_encoder is None:
            from activities.ingest.sentence_encoder import get_sentence_encoder

            self._sentence_encoder = get_sentence_encoder(self.settings)
        return self._sentence_encoder

    async def open_pool(self) -> asyncpg.Pool:
        """The PostgreSQL pool, opened on the first call."""
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    from activities.stores.postgres import create_pool

                    self._pool = await create_pool(self.settings.database_url, max_size=self.pool_max_size)
        return self._pool

    @property
    def pool(self) -> asyncpg.Pool:
        """The pool of a worker that opened it before polling (research, ingestion)."""
        if self._pool is None:
            raise RuntimeError("the PostgreSQL pool is not open: await resources.open_pool() first")
        return self._pool

    async def close(self) -> None:
        if self._own_pool and self._pool is not None:
            await self._pool.close()
        self._pool = None
        if self._own_stores and self._stores is not None:
            await self._stores.close()
        self._stores = None


class ActivityResources:
    """Base of the activities classes that open what they use lazily (missions, backup,
    maintenance, webhooks, LLM usage): `self.settings`, `self.stores`, `await self.pool()`."""

    def __init__(self, resources: Resources):
        self.resources = resources
        self.settings = resources.settings

    @property
    def stores(self) -> Any:
        return self.resources.stores

    async def pool(self) -> asyncpg.Pool:
        return await self.resources.open_pool()
