"""PostgreSQL: the connection pool (schema migrations: stratmaster/migrations.py)."""
from __future__ import annotations

import asyncpg

from stratmaster.errors import ServiceUnavailable


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    try:
        return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise ServiceUnavailable(f"PostgreSQL is not reachable at {dsn}: {exc}") from exc
