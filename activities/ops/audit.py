"""Audit trail writes (audit_log): the API records every write request through
RecordAuditWorkflow, so the API itself never touches the database."""
from __future__ import annotations

import json

import asyncpg
from temporalio import activity

from activities.resources import ActivityResources
from stratmaster.contracts.audit import AuditEntry, AuditRecorded
from stratmaster.errors import bad_input


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


class AuditActivities(ActivityResources):

    @activity.defn(name="record_audit")
    async def record_audit(self, entry: AuditEntry) -> AuditRecorded:
        pool = await self.pool()
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
