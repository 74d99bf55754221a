"""The manifest of a source (table source_files): one row per file or object, whatever the
source's kind, with what a sync pass saw (size, mtime or ETag, sha256), its status
(pending | indexed | failed) and the document that serves it.

Here: the rows a listing page is classified against, what a page and the ingestion's
outcome record, and the deletion of documents the manifest no longer refers to. A document
is deleted only when no row of the mission refers to it any more and a source sync created
it (documents.batch_id `src-...`); a changed file's old version is kept as
`replaced_document_id` until it is deleted, so a crash in between leaves a to-do, never an
orphan. Every statement is filtered by the mission's tenant id and idempotent.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

from pydantic import TypeAdapter

from activities.heartbeat import heartbeat
from activities.ingest.source_walk import Entry
from activities.ops.retention import DOCUMENT_COLUMNS, purge_document
from stratmaster.contracts.ingestion import DocumentRef, SourceObjectRef
from stratmaster.contracts.sources import (
    SOURCE_BATCH_PREFIX, ApplyItem, DirectorySpec, ManifestEntry, S3Spec, SourceSpec,
)
from stratmaster.errors import redact

_SPEC = TypeAdapter(SourceSpec)


def spec_of(row) -> DirectorySpec | S3Spec:
    """The source definition of a `sources` row."""
    return _SPEC.validate_python(json.loads(row["spec"]) if isinstance(row["spec"], str) else row["spec"])


def _uuid(value) -> uuid.UUID | None:
    return None if value is None else (value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def source_ref(source_id: str, path: str, size: int | None = None, file_id: str | None = None) -> DocumentRef:
    """How ingestion reads a source's file: by the source's id and the file's path in it (the worker
    looks the source up in the mission's own rows: no path or endpoint travels in the workflow)."""
    return DocumentRef(source_object=SourceObjectRef(source_id=source_id, key=path, size=size, file_id=file_id))


async def manifest_rows(conn, tenant, source_id: str, paths: list[str]) -> dict:
    """path -> the manifest row of each of `paths`, with whether its document is still indexed."""
    return {r["path"]: r for r in await conn.fetch(
        """SELECT f.path, f.size_bytes, f.mtime_ns, f.etag, f.sha256, f.status, f.reason_type, f.added_generation,
                  (d.id IS NOT NULL AND d.status = 'indexed') AS doc_ok
           FROM source_files f LEFT JOIN documents d ON d.id = f.document_id AND d.tenant_id = f.tenant_id
           WHERE f.tenant_id = $1 AND f.source_id = $2 AND f.path = ANY($3::text[])""",
        tenant, source_id, paths)}


async def record_page(conn, tenant, source_id: str, generation: int, batch_id: str, unchanged: list[str],
                      touched: list[tuple], pending: list[tuple[Entry, str | None, bool]]) -> None:
    """What a listing page found: `unchanged` rows seen by this pass, `touched` ones with new
    metadata but the same content, `pending` (entry, sha256, new) ones for this page's batch."""
    if unchanged:
        await conn.execute(
            """UPDATE source_files SET seen_generation = $3
               WHERE tenant_id = $1 AND source_id = $2 AND path = ANY($4::text[])""",
            tenant, source_id, generation, unchanged)
    if touched:
        await conn.executemany(
            """UPDATE source_files SET size_bytes = $4, mtime_ns = $5, seen_generation = $3, updated_at = NOW()
               WHERE tenant_id = $1 AND source_id = $2 AND path = $6""",
            [(tenant, source_id, generation, size, mtime, path) for path, size, mtime in touched])
    if pending:
        await conn.executemany(
            """INSERT INTO source_files (tenant_id, source_id, path, size_bytes, mtime_ns, etag, sha256, status,
                                         batch_id, seen_generation, added_generation)
               VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $9)
               ON CONFLICT (tenant_id, source_id, path) DO UPDATE SET
                   size_bytes = EXCLUDED.size_bytes, mtime_ns = EXCLUDED.mtime_ns, etag = EXCLUDED.etag,
                   sha256 = EXCLUDED.sha256, status = 'pending', reason_type = NULL, reason = NULL,
                   batch_id = EXCLUDED.batch_id, seen_generation = EXCLUDED.seen_generation,
                   updated_at = NOW()""",
            [(tenant, source_id, e.path, e.size, e.mtime_ns, e.etag, sha, batch_id, generation)
             for e, sha, _new in pending])


async def record_outcomes(conn, tenant, source_id: str, batch_id: str, items: list[ApplyItem]) -> tuple[int, int]:
    """(indexed, failed): the ingestion outcome of a page's pending files, on rows still pending
    in this batch only (a retry changes nothing); the versions they replace are left to delete."""
    indexed = failed = 0
    rows = {r["path"]: r for r in await conn.fetch(
        """SELECT path, status, batch_id, document_id, sha256 FROM source_files
           WHERE tenant_id = $1 AND source_id = $2 AND path = ANY($3::text[]) FOR UPDATE""",
        tenant, source_id, [i.path for i in items])}
    for item in items:
        r = rows.get(item.path)
        if r is None or r["status"] != "pending" or r["batch_id"] != batch_id:
            continue
        old = r["document_id"]
        if item.status in ("ingested", "duplicate") and item.document_id:
            new = uuid.UUID(item.document_id)
            await conn.execute(
                """UPDATE source_files SET status = 'indexed', document_id = $4,
                       replaced_document_id = $5, sha256 = COALESCE($6, sha256), reason_type = NULL,
                       reason = NULL, indexed_at = NOW(), updated_at = NOW()
                   WHERE tenant_id = $1 AND source_id = $2 AND path = $3""",
                tenant, source_id, item.path, new, old if old and old != new else None, item.sha256)
            indexed += 1
        elif item.status == "failed":
            # the file changed into something that does not ingest: its old version goes too
            # (the index never serves content the source no longer has)
            await conn.execute(
                """UPDATE source_files SET status = 'failed', document_id = NULL, replaced_document_id = $4,
                       reason_type = $5, reason = $6, updated_at = NOW()
                   WHERE tenant_id = $1 AND source_id = $2 AND path = $3""",
                tenant, source_id, item.path, old, item.reason_type or "Failed",
                redact(item.reason or "")[:4000])
            failed += 1
        elif (found := await outcome(conn, tenant, source_id, batch_id, item.path, r["sha256"])) is not None:
            # no usable result in the payload (a label clipped alike): PostgreSQL has the outcome
            status, doc, reason_type, reason = found
            await conn.execute(
                """UPDATE source_files SET status = $4, document_id = $5, replaced_document_id = $6,
                       reason_type = $7, reason = $8, updated_at = NOW(),
                       indexed_at = CASE WHEN $4 = 'indexed' THEN NOW() ELSE indexed_at END
                   WHERE tenant_id = $1 AND source_id = $2 AND path = $3""",
                tenant, source_id, item.path, status, doc, old if old and old != doc else None,
                reason_type, reason)
            indexed += status == "indexed"
            failed += status == "failed"
        else:  # no result: stays pending, tried again next pass
            await conn.execute(
                """UPDATE source_files SET reason_type = 'NoResult', updated_at = NOW(),
                       reason = 'the ingestion returned no result for this file; tried again next sync'
                   WHERE tenant_id = $1 AND source_id = $2 AND path = $3""",
                tenant, source_id, item.path)
    return indexed, failed


async def outcome(conn, tenant, source_id: str, batch_id: str, path: str, sha: str | None):
    """(status, document id, reason type, reason) of a file of `batch_id` from PostgreSQL:
    its ingestion_failures row, or (directories: the hash is known) its document."""
    label = source_ref(source_id, path).label
    failure = await conn.fetchrow(
        "SELECT reason_type, reason FROM ingestion_failures WHERE tenant_id = $1 AND batch_id = $2 AND source = $3",
        tenant, batch_id, label[:2000])
    if failure is not None:
        return "failed", None, failure["reason_type"], failure["reason"]
    if sha:
        doc = await conn.fetchval(
            "SELECT id FROM documents WHERE tenant_id = $1 AND sha256 = $2 AND status = 'indexed'",
            tenant, sha.strip())
        if doc is not None:
            return "indexed", doc, None, None
    return None


async def drop_document(stores, conn, tenant, mission: str, source_id: str, doc_id, path: str, why: str) -> bool:
    """Delete a document from every store unless another manifest row (of any of the
    mission's sources) still refers to it, or it was not created by a source sync."""
    doc_id = _uuid(doc_id)
    if doc_id is None:
        return False
    doc = await conn.fetchrow(f"SELECT {DOCUMENT_COLUMNS}, batch_id FROM documents WHERE id = $1 AND tenant_id = $2",
                              doc_id, tenant)
    if doc is None:
        return False  # already gone (a previous attempt, retention)
    if not (doc["batch_id"] or "").startswith(SOURCE_BATCH_PREFIX):
        return False  # ingested outside the sources (by hand, the API): not ours to delete
    still = await conn.fetchval(
        """SELECT 1 FROM source_files WHERE tenant_id = $1 AND document_id = $2
             AND NOT (source_id = $3 AND path = $4) LIMIT 1""", tenant, doc_id, source_id, path)
    if still:
        return False
    heartbeat({"deleting": str(doc_id)})

    async def count(c) -> None:  # in the document row's transaction: counted once, whatever retries
        await c.execute("""UPDATE sources SET pass_documents_deleted = pass_documents_deleted + 1
                           WHERE tenant_id = $1 AND source_id = $2""", tenant, source_id)

    await purge_document(
        stores, conn, mission, doc, actor=f"source:{source_id}", action="source.document_deleted",
        detail={"source_id": source_id, "path": path, "why": why},
        op_key=f"source-document/{doc_id}/{doc['created_at'].isoformat()}", also=count)
    return True


async def delete_row(conn, tenant, source_id: str, path: str, before_generation: int | None = None) -> bool:
    """Delete a manifest row and count it for the pass, in one transaction."""
    async with conn.transaction():
        gone = await conn.execute(
            """DELETE FROM source_files WHERE tenant_id = $1 AND source_id = $2 AND path = $3
                 AND ($4::bigint IS NULL OR seen_generation < $4)""", tenant, source_id, path, before_generation)
        if gone == "DELETE 0":
            return False
        await conn.execute("""UPDATE sources SET pass_files_deleted = pass_files_deleted + 1
                              WHERE tenant_id = $1 AND source_id = $2""", tenant, source_id)
    return True


async def cleanup_replaced(stores, conn, tenant, mission: str, source_id: str, paths: list[str] | None) -> int:
    """Delete the older versions recorded in replaced_document_id (of `paths`, or all)."""
    rows = await conn.fetch(
        """SELECT path, replaced_document_id FROM source_files
           WHERE tenant_id = $1 AND source_id = $2 AND replaced_document_id IS NOT NULL
             AND ($3::text[] IS NULL OR path = ANY($3::text[]))""", tenant, source_id, paths)
    deleted = 0
    for r in rows:
        deleted += await drop_document(stores, conn, tenant, mission, source_id, r["replaced_document_id"],
                                       r["path"], "replaced")
        await conn.execute(
            """UPDATE source_files SET replaced_document_id = NULL
               WHERE tenant_id = $1 AND source_id = $2 AND path = $3 AND replaced_document_id = $4""",
            tenant, source_id, r["path"], r["replaced_document_id"])
    return deleted


async def manifest_page(conn, tenant, source_id: str, status: str | None, offset: int,
                        limit: int) -> tuple[int, list[ManifestEntry]]:
    """(rows matching `status`, a page of them): failed files first, then pending, then by path."""
    matching = await conn.fetchval(
        """SELECT count(*) FROM source_files WHERE tenant_id = $1 AND source_id = $2
             AND ($3::text IS NULL OR status = $3)""", tenant, source_id, status)
    rows = await conn.fetch(
        """SELECT path, status, size_bytes, mtime_ns, etag, sha256, document_id, reason_type, reason, updated_at,
                  indexed_at
           FROM source_files WHERE tenant_id = $1 AND source_id = $2 AND ($3::text IS NULL OR status = $3)
           ORDER BY (status = 'failed') DESC, (status = 'pending') DESC, path OFFSET $4 LIMIT $5""",
        tenant, source_id, status, offset, limit)
    files = [ManifestEntry(
        path=r["path"], status=r["status"], size_bytes=r["size_bytes"],
        mtime=datetime.fromtimestamp(r["mtime_ns"] / 1e9, tz=timezone.utc) if r["mtime_ns"] is not None else None,
        etag=r["etag"], sha256=r["sha256"].strip() if r["sha256"] else None,
        document_id=str(r["document_id"]) if r["document_id"] else None, reason_type=r["reason_type"],
        reason=r["reason"], updated_at=r["updated_at"], indexed_at=r["indexed_at"]) for r in rows]
    return matching, files
