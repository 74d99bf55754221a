"""Audit trail writes (audit_log): the API records every write request through
RecordAuditWorkflow, so the API itself never touches the database."""
from __future__ import annotations

import asyncio
import json

import asyncpg
from temporalio import activity

from stratmaster.contracts.audit import AuditEntry, AuditRecorded
from stratmaster.errors import bad_input
from stratmaster.settings import Settings


def storable(value):
    """`value` with U+0000 shown as U+2400 (PostgreSQL text and jsonb cannot hold
    NUL; the audit row of a refused hostile request must still be written)."""
    if isinstance(value, str):
        return value.replace("\x00", "\u2400")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value


class LazyPool:
    """One asyncpg pool per worker, opened on first use (a worker whose queue
    never audits never connects)."""

    def __init__(self, settings: Settings, max_size: int = 4):
        self.settings = settings
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    from activities.stores.postgres import create_pool

                    self._pool = await create_pool(self.settings.database_url, min_size=1, max_size=self.max_size)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class AuditActivities:
    def __init__(self, settings: Settings, pool: LazyPool | None = None):
        self.pool = pool or LazyPool(settings)

    @activity.defn(name="record_audit")
    async def record_audit(self, entry: AuditEntry) -> AuditRecorded:
        pool = await self.pool.get()
        e = AuditEntry.model_validate(storable(entry.model_dump()))
        # request_id is unique: a retried activity or a duplicate start inserts once.
        try:
            row_id = await pool.fetchval(
                """INSERT INTO audit_log (request_id, at, actor, mission, action, target, status, detail)
                   VALUES ($1, COALESCE($2, NOW()), $3, $4, $5, $6, $7, $8::jsonb)
                   ON CONFLICT (request_id) DO NOTHING RETURNING id""",
                e.request_id, e.at, e.actor, e.mission, e.action, e.target, e.status,
                json.dumps(e.detail, default=str),
            )
        except asyncpg.DataError as exc:  # the entry itself cannot be stored: retrying changes nothing
            raise bad_input(f"audit entry {e.request_id} cannot be stored: {exc}") from None
        return AuditRecorded(request_id=entry.request_id, inserted=row_id is not None)

    async def close(self) -> None:
        await self.pool.close()
