"""Sources: directories on the ingestion workers and S3-compatible bucket prefixes
that a mission keeps in sync with its knowledge base (workflows/sources.py).

Tables (infra/postgres/migrations/080_sources.sql), every query filtered by the
mission's tenant id:
  sources       one row per (mission, source id): the definition (no secrets), the
                sync lease (owner workflow id + token) and the last pass's outcome;
  source_files  the manifest: one row per file/object with its size, mtime (directory)
                or ETag (S3), content hash, status (pending | indexed | failed), the
                reason of a failure and the document that serves it.

A pass (generation, from a global sequence) lists the source page by page in path
order (a cursor, never the whole listing in one payload). Per entry: unchanged when
size+mtime (directory) or ETag+size (S3) match an indexed row whose document still
exists; a directory file whose metadata changed is hashed and only counts as changed
when its sha256 differs. New and changed entries are marked pending (with the page's
ingestion batch id) and handed to IngestDocumentsWorkflow; `apply_page` then records
each file's outcome from the ingestion result. Rows the pass did not see are deleted
files: `delete_missing` removes their documents from every store (the one deletion
path, activities/ops/retention.py: purge_document) and then their rows.

A document is deleted only when no manifest row of the mission refers to it any
more and a source sync created it (documents.batch_id `src-...`): the same bytes
under two paths, or ingested by hand before, stay. A changed file's old version is
recorded as `replaced_document_id` in the same statement that points the row at the
new version, and deleted afterwards, so a crash in between leaves a to-do, never an
orphan; every step is idempotent (retries and resumed runs change nothing twice).

This module holds the activities (the `sources` rows: definitions, the sync lease) and
`read_source_object`, through which the ingestion activity reads a source's file. The
source kinds and the manifest live beside it:
  source_walk.py      directory sources: the walker, hashing and reads (never following a link);
  source_s3.py        S3 sources: credentials profiles, the client cache, listing, bounded reads;
  source_manifest.py  the manifest's SQL (source_files) and the deletion of documents it drops.
"""
from __future__ import annotations

import asyncio
import json
import os
import posixpath
import uuid
from typing import Any, Literal

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeat, keep_alive
from activities.ingest import source_manifest
from activities.ingest.source_manifest import source_ref, spec_of
from activities.ingest.source_s3 import list_bucket, read_object, s3_call, s3_client
from activities.ingest.source_walk import Entry, check_root, read_beneath, sha256_beneath, walk_directory
from activities.resources import Resources
from activities.stores.tenants import require_mission
from stratmaster import principals, schedules
from stratmaster.contracts.ingestion import EMPTY_DOCUMENT, SourceObjectRef
from stratmaster.contracts.sources import (
    FORBIDDEN, PLATFORM_ADMIN, SOURCE_EMPTY, SOURCE_EXISTS, SOURCE_REMOVED, SOURCE_UNAVAILABLE, SYNC_RUNNING,
    SYNC_SUPERSEDED, UNKNOWN_SOURCE, AddSourceInput, AddSourceResult, ApplyPageInput, ApplyPageResult,
    DeleteMissingInput, DeleteMissingResult, DirectorySpec, FinishSyncInput, FinishSyncResult, ListPageInput,
    ListPageResult, ListSourcesInput, PendingFile, RemoveBegin, RemovePage, RemovePageResult, RemoveSourceInput,
    S3Spec, ScheduleSourceInput, SourceList, SourceStatus, SourceStatusInput, SourceSummary, SyncBeginInput,
    SyncBeginResult, SyncTotals, batch_id_for, schedule_id_for, sync_workflow_id,
)
from stratmaster.errors import BAD_INPUT, NON_RETRYABLE, UNKNOWN_MISSION, bad_input, redact

MAX_PAGE_BYTES = 256 * 1024  # a page's pending references stay far below Temporal's 2 MB payload limit
# a failed file is tried again only when it changes; other failures (timeouts) every pass
PERMANENT_FAILURES = {*NON_RETRYABLE, EMPTY_DOCUMENT}


async def read_source_object(pool: asyncpg.Pool, mission: str, ref: SourceObjectRef, limit: int,
                             allow_private: bool = False) -> tuple[str, bytes]:
    """(file name, bytes) of a file of one of the mission's sources, for the ingestion
    activity: an S3 object, or a file below a directory source's root (read without following
    any link, and only if it is the file the listing saw). A missing object or source, or one
    over `limit`, fails the document (non-retryable); an unreachable endpoint is retried."""
    tenant = await require_mission(pool, mission)
    row = await pool.fetchrow("SELECT kind, spec FROM sources WHERE tenant_id = $1 AND source_id = $2",
                              tenant, ref.source_id)
    if row is None:
        raise bad_input(f"mission {mission!r} has no source {ref.source_id!r}", BAD_INPUT)
    spec = spec_of(row)
    if isinstance(spec, DirectorySpec):
        check_root(spec.path)
        data = await asyncio.to_thread(read_beneath, spec.path, ref.key, ref.file_id, limit)
        return posixpath.basename(ref.key) or "file", data
    return await read_object(await s3_client(spec, mission, allow_private), spec, ref, limit)


def _op_key(suffix: str) -> str | None:
    if not activity.in_activity():
        return None
    info = activity.info()
    return f"{info.workflow_run_id}/{info.activity_id}/{suffix}"


async def _audit(conn, actor: str, mission: str, action: str, target: str, detail: dict, op_key: str | None) -> None:
    await conn.execute(
        """INSERT INTO audit_log (actor, mission, action, target, detail, op_key) VALUES ($1, $2, $3, $4, $5::jsonb, $6)
           ON CONFLICT (op_key) WHERE op_key IS NOT NULL DO NOTHING""",
        actor, mission, action, target, json.dumps(detail, default=str), op_key)


# ---------------------------------------------------------------- activities
class SourceActivities:
    """Activities of the sources area (ingestion-tasks: the workers that read the
    directories are the ones that ingest them)."""

    def __init__(self, resources: Resources):
        self.settings = resources.settings
        self.pool = resources.pool
        self.stores = resources.stores

    def all(self) -> list:
        return [self.add, self.schedule, self.remove_begin, self.wait_idle, self.remove_page, self.remove_finish,
                self.sync_begin, self.list_page, self.apply_page, self.delete_missing, self.sync_finish,
                self.list_sources, self.status]

    # ------------------------------------------------------------ helpers
    async def _tenant_any(self, mission: str) -> uuid.UUID:
        """The mission's tenant id, active or not (removal and reads work on a deactivated mission)."""
        tid = await self.pool.fetchval("SELECT id FROM tenants WHERE name = $1", mission)
        if tid is None:
            raise bad_input(f"unknown mission {mission!r}", UNKNOWN_MISSION)
        return tid

    @staticmethod
    async def _lease(conn, tenant, source_id: str, token: str, *, allow_removing: bool = False) -> Any:
        """The source row, share-locked for the caller's transaction, if this sync still holds it."""
        row = await conn.fetchrow(
            "SELECT kind, spec, status, sync_token FROM sources WHERE tenant_id = $1 AND source_id = $2 FOR SHARE",
            tenant, source_id)
        if row is None:
            raise bad_input(f"source {source_id!r} was removed", SOURCE_REMOVED)
        if row["status"] == "removing" and not allow_removing:
            raise bad_input(f"source {source_id!r} is being removed", SOURCE_REMOVED)
        if row["sync_token"] != token:
            raise bad_input(f"another sync took over source {source_id!r}", SYNC_SUPERSEDED)
        return row

    @staticmethod
    async def _running(workflow_id: str) -> bool:
        from temporalio.client import WorkflowExecutionStatus
        from temporalio.service import RPCError, RPCStatusCode

        try:
            desc = await activity.client().get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return desc.status == WorkflowExecutionStatus.RUNNING

    # ------------------------------------------------------------ add / schedule / remove
    @activity.defn(name="source_add")
    async def add(self, req: AddSourceInput) -> AddSourceResult:
        """Check the actor's role and that this worker can reach the source, then store
        the definition (idempotent: the same definition again is `unchanged`; only the
        interval may change, `updated`)."""
        tenant = await require_mission(self.pool, req.mission)
        d = req.source
        spec = d.spec
        audit_roles: list[str] = req.actor_roles
        if isinstance(spec, DirectorySpec):
            # the roles must come signed (stratmaster/principals.py): the input's actor_roles are only a claim
            try:
                signer, audit_roles = principals.verify_principal(principals.load_key(self.settings), req.principal,
                                                                  req.mission)
            except principals.GrantRefused as exc:
                raise bad_input(f"only a platform admin ({PLATFORM_ADMIN}) may register a directory source, with a "
                                f"principal signed by the API or the CLI; this request has {exc}", FORBIDDEN) from None
            if PLATFORM_ADMIN not in audit_roles:
                raise bad_input(f"only a platform admin ({PLATFORM_ADMIN}) may register a directory source; "
                                f"{signer!r} is not one", FORBIDDEN)
            real = os.path.realpath(spec.path)
            if real != spec.path:  # every sync and read checks the root still is this real path
                raise bad_input(f"directory {spec.path} passes through a symbolic link; register the real path "
                                f"{real}", BAD_INPUT)
            if not os.path.isdir(real):
                raise bad_input(f"directory {spec.path} does not exist on the ingestion workers", SOURCE_UNAVAILABLE)
            if not os.access(real, os.R_OK | os.X_OK):
                raise bad_input(f"directory {spec.path} is not readable by the ingestion workers", SOURCE_UNAVAILABLE)
            data = str(self.settings.abs_data_dir)
            if real == data or real.startswith(data + os.sep) or data.startswith(real.rstrip(os.sep) + os.sep):
                raise bad_input(f"directory {spec.path} overlaps the platform's data directory", BAD_INPUT)
        else:
            client = await s3_client(spec, req.mission, self.settings.s3_allow_private)

            def probe() -> None:
                if not client.bucket_exists(spec.bucket):
                    raise bad_input(f"bucket {spec.bucket!r} does not exist at {spec.endpoint}", SOURCE_UNAVAILABLE)
                for _ in client.list_objects(spec.bucket, prefix=spec.prefix or None, recursive=True):
                    break
            await s3_call(probe, f"source {d.source_id} ({spec.location()})")

        wanted = spec.model_dump(mode="json")
        status: Literal["created", "updated", "unchanged"]
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT spec, interval_seconds, status FROM sources WHERE tenant_id = $1 AND source_id = $2 FOR UPDATE",
                tenant, d.source_id)
            if row is not None:
                if row["status"] == "removing":
                    raise bad_input(f"source {d.source_id!r} is being removed; add it again once that finished",
                                    SOURCE_EXISTS)
                if json.loads(row["spec"]) != wanted:
                    raise bad_input(f"mission {req.mission!r} already has a source {d.source_id!r} with a different "
                                    f"definition ({spec_of(row).location()}); remove it first", SOURCE_EXISTS)
                status = "unchanged"
                if row["interval_seconds"] != d.interval_seconds:
                    status = "updated"
                    await conn.execute("UPDATE sources SET interval_seconds = $3 WHERE tenant_id = $1 AND source_id = $2",
                                       tenant, d.source_id, d.interval_seconds)
            else:
                status = "created"
                await conn.execute(
                    """INSERT INTO sources (tenant_id, source_id, kind, spec, interval_seconds, created_by)
                       VALUES ($1, $2, $3, $4::jsonb, $5, $6)""",
                    tenant, d.source_id, spec.kind, json.dumps(wanted), d.interval_seconds, req.actor)
            if status != "unchanged":
                await _audit(conn, req.actor, req.mission, f"source.{'add' if status == 'created' else 'update'}",
                             d.source_id, {"kind": spec.kind, "location": spec.location(),
                                           "interval_seconds": d.interval_seconds, "roles": audit_roles},
                             _op_key("audit"))
        return AddSourceResult(mission=req.mission, source_id=d.source_id, status=status, location=spec.location(),
                               interval_seconds=d.interval_seconds,
                               schedule_id=schedule_id_for(req.mission, d.source_id),
                               sync_workflow_id=sync_workflow_id(req.mission, d.source_id))

    @activity.defn(name="source_schedule")
    async def schedule(self, req: ScheduleSourceInput) -> bool:
        """Create/update (`upsert`) or delete the source's Temporal Schedule (idempotent)."""
        client = activity.client()
        if req.action == "delete":
            return await schedules.delete_source_schedule(client, req.mission, req.source_id)
        await schedules.upsert_source_schedule(client, req.mission, req.source_id, req.interval_seconds)
        return True

    @activity.defn(name="source_remove_begin")
    async def remove_begin(self, req: RemoveSourceInput) -> RemoveBegin:
        """Mark the source `removing`: syncs stop at their next step and no new one starts."""
        tenant = await self._tenant_any(req.mission)
        kind = await self.pool.fetchval(
            "UPDATE sources SET status = 'removing' WHERE tenant_id = $1 AND source_id = $2 RETURNING kind",
            tenant, req.source_id)
        return RemoveBegin(found=kind is not None, kind=kind)

    @activity.defn(name="source_wait_idle")
    async def wait_idle(self, req: RemovePage) -> None:
        """Retryable SyncRunning while a sync still holds the lease; then release it."""
        tenant = await self._tenant_any(req.mission)
        owner = await self.pool.fetchval("SELECT sync_owner FROM sources WHERE tenant_id = $1 AND source_id = $2",
                                         tenant, req.source_id)
        if owner and await self._running(owner):
            raise ApplicationError(f"sync {owner} is still running", type=SYNC_RUNNING)
        await self.pool.execute(
            """UPDATE sources SET sync_owner = NULL, sync_token = NULL, pass_files_deleted = 0,
                   pass_documents_deleted = 0 WHERE tenant_id = $1 AND source_id = $2""", tenant, req.source_id)

    @activity.defn(name="source_remove_page")
    async def remove_page(self, req: RemovePage) -> RemovePageResult:
        """Up to `limit` manifest rows: their documents (when nothing else refers to
        them) from every store, then the rows."""
        tenant = await self._tenant_any(req.mission)
        out = RemovePageResult()
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT path, document_id, replaced_document_id FROM source_files
                   WHERE tenant_id = $1 AND source_id = $2 ORDER BY path LIMIT $3""",
                tenant, req.source_id, req.limit)
            for r in rows:
                for doc in (r["replaced_document_id"], r["document_id"]):
                    out.documents += await source_manifest.drop_document(self.stores, conn, tenant, req.mission, req.source_id, doc,
                                                               r["path"], "source removed")
                out.files += await source_manifest.delete_row(conn, tenant, req.source_id, r["path"])
        out.more = len(rows) == req.limit
        return out

    @activity.defn(name="source_remove_finish")
    async def remove_finish(self, req: RemoveSourceInput) -> RemovePageResult:
        """Delete the source row (the manifest is empty by now); what the removal deleted."""
        tenant = await self._tenant_any(req.mission)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """DELETE FROM sources WHERE tenant_id = $1 AND source_id = $2
                   RETURNING kind, spec, pass_files_deleted, pass_documents_deleted""", tenant, req.source_id)
            if row is None:  # a retry after the commit
                return RemovePageResult()
            done = RemovePageResult(files=row["pass_files_deleted"], documents=row["pass_documents_deleted"])
            await _audit(conn, req.actor, req.mission, "source.remove", req.source_id,
                         {"kind": row["kind"], "location": spec_of(row).location(), "files": done.files,
                          "documents_deleted": done.documents}, _op_key("audit"))
        return done

    # ------------------------------------------------------------ sync
    @activity.defn(name="source_sync_begin")
    async def sync_begin(self, req: SyncBeginInput) -> SyncBeginResult:
        """Take the source's sync lease and a new pass number. Another running sync keeps
        it (`busy`); a lease left by a sync that is no longer running is taken over. A
        retry of this very call returns the same pass. A source that no longer exists
        (`gone`) has its schedule deleted."""
        row = await self.pool.fetchrow("SELECT id, status FROM tenants WHERE name = $1", req.mission)
        if row is None or row["status"] != "active":
            if row is None:
                await schedules.delete_source_schedule(activity.client(), req.mission, req.source_id)
                return SyncBeginResult(outcome="gone", detail=f"mission {req.mission!r} does not exist")
            return SyncBeginResult(outcome="inactive", detail=f"mission {req.mission!r} is {row['status']}")
        tenant = row["id"]
        async with self.pool.acquire() as conn, conn.transaction():
            src = await conn.fetchrow(
                """SELECT kind, status, sync_owner, sync_token, sync_generation FROM sources
                   WHERE tenant_id = $1 AND source_id = $2 FOR UPDATE""", tenant, req.source_id)
            if src is not None and src["status"] == "active":
                if src["sync_token"] == req.token:
                    return SyncBeginResult(outcome="started", generation=src["sync_generation"], kind=src["kind"])
                owner = src["sync_owner"]
                if owner and owner != req.owner and await self._running(owner):
                    return SyncBeginResult(outcome="busy", kind=src["kind"], detail=f"{owner} is syncing this source")
                generation = await conn.fetchval("SELECT nextval('source_sync_generation')")
                await conn.execute(
                    """UPDATE sources SET sync_owner = $3, sync_token = $4, sync_generation = $5, sync_started_at = NOW(),
                           pass_files_deleted = 0, pass_documents_deleted = 0
                       WHERE tenant_id = $1 AND source_id = $2""",
                    tenant, req.source_id, req.owner, req.token, generation)
                return SyncBeginResult(outcome="started", generation=generation, kind=src["kind"])
        if src is not None:
            return SyncBeginResult(outcome="removed", kind=src["kind"], detail=f"source {req.source_id!r} is being removed")
        await schedules.delete_source_schedule(activity.client(), req.mission, req.source_id)
        return SyncBeginResult(outcome="gone", detail=f"mission {req.mission!r} has no source {req.source_id!r}")

    @activity.defn(name="source_list_page")
    async def list_page(self, req: ListPageInput) -> ListPageResult:
        """One page of the listing after `cursor`: classify each entry against the manifest,
        mark new/changed ones pending (this page's batch) and every entry seen by this pass.
        Returns the pending files' document references (at most `page_size`)."""
        tenant = await require_mission(self.pool, req.mission)
        async with self.pool.acquire() as conn, conn.transaction():
            spec = spec_of(await self._lease(conn, tenant, req.source_id, req.token))
        heartbeat({"page": req.page, "stage": "list"})
        async with keep_alive({"stage": "list"}):
            if isinstance(spec, DirectorySpec):
                entries = await asyncio.to_thread(walk_directory, spec.path, req.cursor, req.scan_limit)
            else:
                client = await s3_client(spec, req.mission, self.settings.s3_allow_private)
                entries = await s3_call(lambda: list_bucket(client, spec, req.cursor, req.scan_limit),
                                    f"source {req.source_id} ({spec.location()})")
        async with self.pool.acquire() as conn:
            manifest = await source_manifest.manifest_rows(conn, tenant, req.source_id, [e.path for e in entries])
        batch_id = batch_id_for(req.source_id, req.generation, req.page)
        unchanged: list[str] = []
        touched: list[tuple] = []
        pending: list[tuple[Entry, str | None, bool]] = []
        examined = 0
        budget = 0  # ~bytes of the pending references (and of their results): long paths make smaller pages
        limit = self.settings.max_document_bytes
        for e in entries:
            examined += 1
            r = manifest.get(e.path)
            settled = r is not None and ((r["status"] == "indexed" and r["doc_ok"])
                                         or (r["status"] == "failed" and r["reason_type"] in PERMANENT_FAILURES))
            sha = None
            if isinstance(spec, S3Spec):
                if settled and r is not None and r["etag"] == e.etag and r["size_bytes"] == e.size:
                    unchanged.append(e.path)
                    continue
            else:
                if settled and r is not None and r["size_bytes"] == e.size and r["mtime_ns"] == e.mtime_ns:
                    unchanged.append(e.path)
                    continue
                if e.size <= limit:  # bigger ones fail as Oversized in ingestion, unread
                    heartbeat({"page": req.page, "stage": "hash", "path": e.path})
                    try:
                        sha = await asyncio.to_thread(sha256_beneath, spec.path, e.path, e.file_id)
                    except FileNotFoundError:
                        continue  # deleted meanwhile: not seen, so handled as deleted
                    except ApplicationError:
                        continue  # swapped for a link or another file meanwhile: not seen (the next pass lists it anew)
                    except OSError as exc:
                        raise bad_input(f"{spec.path}/{e.path}: cannot read: {exc.strerror or exc}",
                                        SOURCE_UNAVAILABLE) from None
                    if settled and r is not None and r["sha256"] and r["sha256"].strip() == sha:
                        touched.append((e.path, e.size, e.mtime_ns))
                        continue
            pending.append((e, sha, r is None or r["added_generation"] == req.generation))
            budget += 2 * len(e.path) + len(getattr(spec, "path", "")) + 300
            if len(pending) >= req.page_size or budget >= MAX_PAGE_BYTES:
                break
        done = examined == len(entries) and len(entries) < req.scan_limit
        next_cursor = entries[examined - 1].path if examined else req.cursor

        async with self.pool.acquire() as conn, conn.transaction():
            await self._lease(conn, tenant, req.source_id, req.token)
            await source_manifest.record_page(conn, tenant, req.source_id, req.generation, batch_id, unchanged, touched,
                                              pending)

        return ListPageResult(next_cursor=next_cursor, done=done, listed=examined, unchanged=len(unchanged),
                              touched=len(touched),
                              pending=[PendingFile(path=e.path, ref=source_ref(req.source_id, e.path, e.size, e.file_id),
                                                   new=new) for e, _sha, new in pending])

    @activity.defn(name="source_apply_page")
    async def apply_page(self, req: ApplyPageInput) -> ApplyPageResult:
        """Record the ingestion outcome of a page's pending files (rows still pending in
        this batch only: a retry changes nothing), then delete the versions they replaced."""
        tenant = await require_mission(self.pool, req.mission)
        out = ApplyPageResult()
        paths = [i.path for i in req.items]
        async with self.pool.acquire() as conn:
            # an older to-do of these rows first: the column holds one
            out.documents_deleted += await source_manifest.cleanup_replaced(self.stores, conn, tenant, req.mission, req.source_id, paths)
            async with conn.transaction():
                await self._lease(conn, tenant, req.source_id, req.token, allow_removing=True)
                out.indexed, out.failed = await source_manifest.record_outcomes(conn, tenant, req.source_id,
                                                                                req.batch_id, req.items)
            out.documents_deleted += await source_manifest.cleanup_replaced(self.stores, conn, tenant, req.mission, req.source_id, paths)
        return out

    @activity.defn(name="source_delete_missing")
    async def delete_missing(self, req: DeleteMissingInput) -> DeleteMissingResult:
        """Up to `limit` rows this pass did not see (files deleted from the source): their
        documents from every store, then the rows; plus any older version still to delete.
        A pass that listed nothing while the manifest has files refuses (SourceEmpty):
        an unmounted directory must not wipe the index."""
        tenant = await require_mission(self.pool, req.mission)
        out = DeleteMissingResult()
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await self._lease(conn, tenant, req.source_id, req.token)
            if req.listed_total == 0:
                n = await conn.fetchval("SELECT count(*) FROM source_files WHERE tenant_id = $1 AND source_id = $2",
                                        tenant, req.source_id)
                if n:
                    raise bad_input(f"source {req.source_id!r} listed no files but its manifest has {n}: nothing was "
                                    "deleted (an unmounted directory? an emptied bucket?); remove the source to drop "
                                    "its documents", SOURCE_EMPTY)
            rows = await conn.fetch(
                """SELECT path, document_id, replaced_document_id, seen_generation FROM source_files
                   WHERE tenant_id = $1 AND source_id = $2
                     AND (seen_generation < $3 OR replaced_document_id IS NOT NULL)
                   ORDER BY path LIMIT $4""", tenant, req.source_id, req.generation, req.limit)
            for r in rows:
                if r["replaced_document_id"] is not None:
                    out.documents += await source_manifest.cleanup_replaced(self.stores, conn, tenant, req.mission, req.source_id, [r["path"]])
                if r["seen_generation"] < req.generation:
                    out.documents += await source_manifest.drop_document(self.stores, conn, tenant, req.mission, req.source_id,
                                                               r["document_id"], r["path"], "deleted from the source")
                    out.files += await source_manifest.delete_row(conn, tenant, req.source_id, r["path"], req.generation)
        out.more = len(rows) == req.limit
        return out

    @activity.defn(name="source_sync_finish")
    async def sync_finish(self, req: FinishSyncInput) -> FinishSyncResult:
        """Record the pass's outcome (with the exact deletion counts) and release the lease,
        only while this sync holds it. The token stays, so a retry records the same."""
        tenant = await self._tenant_any(req.mission)
        row = await self.pool.fetchrow(
            """UPDATE sources SET last_sync_status = $4, last_sync_workflow = $5, last_sync_at = NOW(),
                   last_sync_error = $6, sync_owner = NULL,
                   last_sync_totals = $7::jsonb || jsonb_build_object('deleted', pass_files_deleted,
                                                                      'documents_deleted', pass_documents_deleted)
               WHERE tenant_id = $1 AND source_id = $2 AND sync_token = $3
               RETURNING pass_files_deleted, pass_documents_deleted""",
            tenant, req.source_id, req.token, req.status, req.workflow_id,
            redact(req.error)[:2000] if req.error else None, req.totals.model_dump_json())
        if row is None:
            return FinishSyncResult(recorded=False)
        return FinishSyncResult(recorded=True, files_deleted=row["pass_files_deleted"],
                                documents_deleted=row["pass_documents_deleted"])

    # ------------------------------------------------------------ read-only
    async def _summaries(self, tenant, mission: str, source_id: str | None = None) -> list[SourceSummary]:
        rows = await self.pool.fetch(
            """SELECT * FROM sources WHERE tenant_id = $1 AND ($2::text IS NULL OR source_id = $2)
               ORDER BY source_id""", tenant, source_id)
        counts: dict[str, dict[str, int]] = {}
        for c in await self.pool.fetch(
                """SELECT source_id, status, count(*) AS n FROM source_files
                   WHERE tenant_id = $1 AND ($2::text IS NULL OR source_id = $2) GROUP BY source_id, status""",
                tenant, source_id):
            counts.setdefault(c["source_id"], {})[c["status"]] = c["n"]
        out = []
        for r in rows:
            totals = r["last_sync_totals"]
            out.append(SourceSummary(
                source_id=r["source_id"], kind=r["kind"], location=spec_of(r).location(),
                interval_seconds=r["interval_seconds"], status=r["status"], created_by=r["created_by"],
                created_at=r["created_at"], schedule_id=schedule_id_for(mission, r["source_id"]),
                syncing=r["sync_owner"], last_sync_status=r["last_sync_status"], last_sync_at=r["last_sync_at"],
                last_sync_workflow=r["last_sync_workflow"], last_sync_error=r["last_sync_error"],
                last_sync_totals=SyncTotals.model_validate_json(totals) if totals else None,
                files=counts.get(r["source_id"], {})))
        return out

    @activity.defn(name="source_list")
    async def list_sources(self, req: ListSourcesInput) -> SourceList:
        tenant = await self._tenant_any(req.mission)
        return SourceList(mission=req.mission, sources=await self._summaries(tenant, req.mission))

    @activity.defn(name="source_status")
    async def status(self, req: SourceStatusInput) -> SourceStatus:
        """The source's summary and a page of its manifest (failed files first, then by path)."""
        tenant = await self._tenant_any(req.mission)
        found = await self._summaries(tenant, req.mission, req.source_id)
        if not found:
            raise bad_input(f"mission {req.mission!r} has no source {req.source_id!r}", UNKNOWN_SOURCE)
        async with self.pool.acquire() as conn:
            matching, files = await source_manifest.manifest_page(conn, tenant, req.source_id, req.status, req.offset,
                                                                  req.limit)
        return SourceStatus(mission=req.mission, source=found[0], files=files, matching=matching, offset=req.offset,
                            limit=req.limit)

