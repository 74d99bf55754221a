"""The one way a test connects to the test PostgreSQL outside the `pg` fixture."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from stratmaster.settings import Settings


@contextlib.asynccontextmanager
async def pg_connect(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """One connection to the test PostgreSQL, closed on exit."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        yield conn
    finally:
        await conn.close()
