"""Mission (tenant) rows: every mission-scoped activity resolves its mission here
first, so unknown or deactivated missions fail fast with a non-retryable error."""
from __future__ import annotations

import uuid

import asyncpg

from stratmaster.errors import UNKNOWN_MISSION, bad_input


async def require_mission(pool: asyncpg.Pool, mission: str) -> uuid.UUID:
    row = await pool.fetchrow("SELECT id, status FROM tenants WHERE name = $1", mission)
    if row is None:
        raise bad_input(f"unknown mission {mission!r}: activate it first (stratmaster missions activate)", UNKNOWN_MISSION)
    if row["status"] != "active":
        raise bad_input(f"mission {mission!r} is {row['status']}", UNKNOWN_MISSION)
    return row["id"]


async def ensure_tenant(pool: asyncpg.Pool, mission: str, display_name: str | None = None) -> uuid.UUID:
    """Create (or reactivate) the mission row; idempotent upsert."""
    return await pool.fetchval(
        """INSERT INTO tenants (name, display_name, status) VALUES ($1, $2, 'active')
           ON CONFLICT (name) DO UPDATE SET status = 'active', updated_at = NOW()
           RETURNING id""",
        mission, display_name or mission,
    )
