"""PostgreSQL: connection pool and schema migrations (infra/postgres/migrations)."""
from __future__ import annotations

from pathlib import Path

import asyncpg

from stratmaster.errors import ServiceUnavailable

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "infra" / "postgres" / "migrations"


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    try:
        return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise ServiceUnavailable(f"PostgreSQL is not reachable at {dsn}: {exc}") from exc


async def apply_migrations(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending *.sql files in name order, each once, under an advisory lock
    so concurrent workers starting together do not race."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise ServiceUnavailable(f"PostgreSQL is not reachable at {dsn}: {exc}") from exc
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock(727001)")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ DEFAULT NOW())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for path in sorted(directory.glob("*.sql")):
            if path.name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
            applied.append(path.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(727001)")
        await conn.close()
    return applied
