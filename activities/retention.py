"""Retention from the missions' active cartridges (`retention` section):

  research_days  research sessions older than this are deleted (claims cascade)
                 with their report objects;
  backups_keep   only the newest N mission-scope backups of the mission are kept.

The cartridge is read from PostgreSQL (view mission_retention, 050_ops.sql).
Expired deactivated missions are purged by the missions area's
PurgeExpiredMissionsWorkflow, which MaintenanceWorkflow runs as a child.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import asyncpg

from activities.system_area import system_delete, system_get, system_list
from stratmaster.contracts.maintenance import BACKUP_PREFIX, Manifest, RetentionReport
from stratmaster.settings import Settings


def retention_section(cartridge) -> dict:
    if isinstance(cartridge, (str, bytes)):
        try:
            cartridge = json.loads(cartridge)
        except ValueError:
            return {}
    section = (cartridge or {}).get("retention") if isinstance(cartridge, dict) else None
    return section if isinstance(section, dict) else {}


def _positive(value) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


async def retention_policies(conn: asyncpg.Connection) -> dict[str, tuple[object, dict]]:
    """mission -> (tenant id, retention section of its active cartridge)."""
    return {r["mission"]: (r["tenant_id"], retention_section(r["cartridge"]))
            for r in await conn.fetch("SELECT tenant_id, mission, cartridge FROM mission_retention")}


async def purge_old_sessions(conn: asyncpg.Connection, tenant_id, cutoff: datetime) -> list[str | None]:
    rows = await conn.fetch(
        "DELETE FROM research_sessions WHERE tenant_id = $1 AND created_at < $2 RETURNING report_key",
        tenant_id, cutoff)
    return [r["report_key"] for r in rows]


async def prune_backups(settings: Settings, objects, mission: str, keep: int) -> list[str]:
    """Delete this mission's mission-scope backups beyond the newest `keep`."""
    manifests = []
    for key in await system_list(settings, objects, BACKUP_PREFIX):
        if key.endswith("/manifest.json"):
            try:
                m = Manifest.model_validate_json(await system_get(settings, objects, key) or b"")
            except ValueError:
                continue
            if m.scope == "mission" and m.missions == [mission]:
                manifests.append(m)
    manifests.sort(key=lambda m: m.created_at, reverse=True)
    removed = []
    for m in manifests[keep:]:
        folder = f"{BACKUP_PREFIX}{m.backup_id}/"
        # manifest first: a half-deleted backup is then "incomplete", never "corrupt but listed"
        await system_delete(settings, objects, folder + "manifest.json")
        for key in await system_list(settings, objects, folder):
            await system_delete(settings, objects, key)
        removed.append(m.backup_id)
    return removed


async def enforce_retention(settings: Settings, pool: asyncpg.Pool, stores, now: datetime, heartbeat) -> RetentionReport:
    report = RetentionReport()
    async with pool.acquire() as conn:
        policies = await retention_policies(conn)
    for mission, (tenant_id, section) in sorted(policies.items()):
        heartbeat(mission)
        days = _positive(section.get("research_days"))
        if days:
            async with pool.acquire() as conn:
                report_keys = await purge_old_sessions(conn, tenant_id, now - timedelta(days=days))
            report.purged_sessions[mission] = len(report_keys)
            for key in filter(None, report_keys):
                try:
                    await stores.objects.delete(mission, key)
                except FileNotFoundError:
                    pass
        keep = _positive(section.get("backups_keep"))
        if keep:
            removed = await prune_backups(settings, stores.objects, mission, keep)
            if removed:
                report.pruned_backups[mission] = removed
        if _positive(section.get("documents_days")):
            report.notes.append(f"{mission}: documents_days is not enforced yet (documents are kept)")
    return report
