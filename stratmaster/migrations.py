"""PostgreSQL schema migrations (infra/postgres/migrations/*.sql), applied in name order, each once.

In the core, not in activities: the dev stack (a starter) applies them before any worker starts,
and starters do not reach into activities."""
from __future__ import annotations

from pathlib import Path

import asyncpg

from stratmaster.errors import ServiceUnavailable

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "infra" / "postgres" / "migrations"
_LOCK = 727001  # advisory lock id: concurrent workers starting together do not race


async def apply_migrations(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending *.sql files in name order, each once and in its own transaction, under an
    advisory lock. Returns the names applied."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise ServiceUnavailable(f"PostgreSQL is not reachable at {dsn}: {exc}") from exc
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK)
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
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK)
        await conn.close()
    return applied
