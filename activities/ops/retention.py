"""Retention from the missions' active cartridges (`retention` section):

  research_days  research sessions older than this are deleted (claims cascade)
                 with their report objects;
  backups_keep   only the newest N mission-scope backups of the mission are kept;
  documents_days documents first ingested (documents.created_at) longer ago than
                 this are deleted from every store (expire_documents, below).
                 None keeps documents forever.

The cartridge is read from PostgreSQL (view mission_retention, 050_ops.sql).
Expired deactivated missions are purged by the missions area's
PurgeExpiredMissionsWorkflow, which MaintenanceWorkflow runs as a child.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import asyncpg

from activities.ops.system_area import system_delete, system_get, system_list, system_list_modified
from stratmaster.contracts.maintenance import BACKUP_PREFIX, ExpireDocumentsResult, Manifest, RetentionReport
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
    """Delete this mission's mission-scope backups beyond the newest `keep`, newest
    by the object store's own timestamp of manifest.json (a manifest's `created_at`
    is only data: a manifest dated in the future must not push real backups out)."""
    manifests = []
    for key, modified in await system_list_modified(objects, BACKUP_PREFIX):
        if key.endswith("/manifest.json"):
            try:
                m = Manifest.model_validate_json(await system_get(objects, key) or b"")
            except ValueError:
                continue
            own_folder = key == f"{BACKUP_PREFIX}{m.backup_id}/manifest.json"
            if m.scope == "mission" and m.missions == [mission] and own_folder:
                manifests.append((modified, key, m))
    manifests.sort(key=lambda e: (e[0], e[1]), reverse=True)
    removed = []
    for _modified, _key, m in manifests[keep:]:
        folder = f"{BACKUP_PREFIX}{m.backup_id}/"
        # manifest first: a half-deleted backup is then "incomplete", never "corrupt but listed"
        await system_delete(objects, folder + "manifest.json")
        for key in await system_list(objects, folder):
            await system_delete(objects, key)
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
    return report


# ---------------------------------------------------------------- documents_days
#
# One document is deleted store by store -- vectors, full text, graph, objects --
# and its PostgreSQL row LAST, in the same transaction as its audit row: the row
# is the to-do list, so a crash anywhere leaves it in place and the next call
# finishes the job (every store delete is a no-op for what is already gone).
# chunks cascade with the row. Research evidence (claim_evidence, claims'
# JSONB) has no foreign key to documents or chunks: claims that cited the
# document keep their stored quotes, document_id and chunk_id as history.

RETENTION_ACTOR = "retention"
# the columns purge_document reads from the documents row
DOCUMENT_COLUMNS = "id, tenant_id, sha256, source, object_key, extracted_key, chunk_count, created_at"


async def purge_document(stores, conn: asyncpg.Connection, mission: str, doc, *, actor: str, action: str,
                         detail: dict, op_key: str, also=None) -> dict:
    """Delete one document from every store, its PostgreSQL row last together with
    its audit row (`action` by `actor`, `detail` added to the document's own facts;
    `op_key` makes the audit row once-only however often a retry runs it). The
    one document-deletion path: retention (below) and source syncs
    (activities/ingest/source_manifest.py: deleted or replaced files) both call it. `doc` holds
    DOCUMENT_COLUMNS; `also(conn)`, when given, runs in the row's transaction (a
    caller's bookkeeping that must count each deletion exactly once)."""
    doc_id = str(doc["id"])
    await stores.vectors.delete_document(mission, doc_id)  # (returns no count)
    removed = {
        "fulltext_chunks": await stores.fulltext.delete_document(mission, doc_id),
        "graph_mentions": await stores.graph.delete_document(mission, doc_id),
    }
    # the original and the extracted text live under documents/<sha256>/ (activities/ingest/activities.py)
    keys = set(await stores.objects.list(mission, f"documents/{doc['sha256'].strip()}/"))
    keys |= {k for k in (doc["object_key"], doc["extracted_key"]) if k}
    objects = 0
    for key in sorted(keys):
        try:
            objects += bool(await stores.objects.delete(mission, key))
        except FileNotFoundError:
            pass
    removed["objects"] = objects
    audit = {"document_id": doc_id, "sha256": doc["sha256"].strip(), "source": doc["source"],
             "ingested_at": doc["created_at"], **detail, "chunks": doc["chunk_count"], "removed": removed}
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO audit_log (actor, mission, action, target, detail, op_key)
               VALUES ($1, $2, $3, $4, $5::jsonb, $6)
               ON CONFLICT (op_key) WHERE op_key IS NOT NULL DO NOTHING""",
            actor, mission, action, doc_id, json.dumps(audit, default=str), op_key)
        gone = await conn.execute("DELETE FROM documents WHERE id = $1 AND tenant_id = $2", doc["id"], doc["tenant_id"])
        if also is not None and gone != "DELETE 0":
            await also(conn)
    return removed


async def delete_document_everywhere(stores, conn: asyncpg.Connection, mission: str, doc, cutoff: datetime,
                                     days: int) -> dict:
    return await purge_document(
        stores, conn, mission, doc, actor=RETENTION_ACTOR, action="retention.document_deleted",
        detail={"cutoff": cutoff, "documents_days": days},
        # one audit row per deletion of this ingestion, however often a retry runs it
        op_key=f"retention-document/{doc['id']}/{doc['created_at'].isoformat()}")


async def expire_documents(pool: asyncpg.Pool, stores, now: datetime, limit: int, heartbeat) -> ExpireDocumentsResult:
    """Delete at most `limit` documents older than their mission's documents_days
    (oldest first); `more` tells the workflow to call again."""
    result = ExpireDocumentsResult()
    async with pool.acquire() as conn:
        policies = await retention_policies(conn)
    budget = limit
    for mission, (tenant_id, section) in sorted(policies.items()):
        days = _positive(section.get("documents_days"))
        if not days:
            continue  # None: documents are kept forever
        if budget == 0:
            result.more = True
            break
        cutoff = now - timedelta(days=days)
        async with pool.acquire() as conn:
            docs = await conn.fetch(
                f"""SELECT {DOCUMENT_COLUMNS}
                   FROM documents WHERE tenant_id = $1 AND created_at < $2
                   ORDER BY created_at, id LIMIT $3""", tenant_id, cutoff, budget + 1)
            if len(docs) > budget:
                result.more, docs = True, docs[:budget]
            for doc in docs:
                heartbeat({"mission": mission, "document_id": str(doc["id"])})
                await delete_document_everywhere(stores, conn, mission, doc, cutoff, days)
                result.deleted.setdefault(mission, []).append(str(doc["id"]))
        budget -= len(docs)
    return result
