"""Backup, restore and restore-drill activities.

A backup is a folder `system/backups/<backup_id>/` in the object store:
  postgres/<mission>/<table>.csv   mission scope: that mission's rows (COPY ... WHERE tenant_id)
  postgres/stratmaster.dump        system scope: pg_dump -Fc
  stores/<mission>/{vectors,fulltext,graph}.<jsonl|bin>   the stores' dump hooks
  objects/<mission>/<key>          mirror of the mission's objects
  manifest.json                    written last: size + sha256 of every artefact

Every activity is idempotent (deterministic artefact names, upserting loads,
restores in one transaction) and heartbeats while it copies.
"""
from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import shutil
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from temporalio import activity

from activities import pg_dumps, store_dumps
from activities.resources import ActivityResources
from activities.system_area import system_get, system_list, system_put
from stratmaster.contracts.maintenance import (
    BACKUP_PREFIX, Artefact, BackupInput, BackupPlan, BackupResult, BackupStep, BackupSummary, CountInput,
    DropDrillInput, Empty, ListBackupsInput, ListBackupsResult, Manifest, MissionCounts, RestoreStep, StepResult,
    ValidatedBackup, ValidateInput, WriteManifestInput, backup_dir,
)
from stratmaster.errors import CORRUPT_BACKUP, UNKNOWN_MISSION, bad_input

TARGET_NOT_EMPTY = "TargetNotEmpty"
STORE_KINDS = ("vectors", "fulltext", "graph")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _heartbeat(*details: Any) -> None:
    if activity.in_activity():
        activity.heartbeat(*details)


HEARTBEAT_EVERY_S = 10.0


@contextlib.asynccontextmanager
async def keep_alive(detail: str, every: float | None = None):
    """Heartbeat every few seconds while one long call runs (a big COPY, a store
    dump): the workflow's heartbeat timeout then only fires for a dead worker."""
    if not activity.in_activity():
        yield
        return

    async def beat():
        while True:
            activity.heartbeat(detail)
            await asyncio.sleep(every or HEARTBEAT_EVERY_S)
    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class BackupActivities(ActivityResources):
    # -------------------------------------------------------------- plumbing

    def _store(self, kind: str):
        return getattr(self.stores, kind)  # vectors | fulltext | graph

    def _workdir(self, backup_id: str) -> Path:
        d = self.settings.abs_data_dir / "tmp" / "backups" / backup_id / uuid.uuid4().hex[:8]
        d.mkdir(parents=True, exist_ok=True)
        return d

    async def _upload(self, backup_id: str, name: str, data: bytes, kind: str, *, mission: str | None = None,
                      rows: int | None = None, fmt: str = "raw", source_key: str | None = None) -> Artefact:
        async with keep_alive(f"upload {name}"):
            await system_put(self.settings, self.stores.objects, backup_dir(backup_id) + name, data)
        return Artefact(name=name, kind=kind, size=len(data), sha256=_sha256(data), mission=mission, rows=rows,
                        format=fmt, source_key=source_key)

    async def _fetch(self, backup_id: str, art: Artefact) -> bytes:
        data = await system_get(self.settings, self.stores.objects, backup_dir(backup_id) + art.name)
        if data is None or len(data) != art.size or _sha256(data) != art.sha256:
            raise bad_input(f"backup {backup_id}: artefact {art.name} is missing or corrupt", CORRUPT_BACKUP)
        return data

    async def _manifest(self, backup_id: str) -> Manifest:
        """The manifest only; artefacts are checked as they are read (_fetch). The
        workflow ran validate_backup over everything before the first write."""
        raw = await system_get(self.settings, self.stores.objects, backup_dir(backup_id) + "manifest.json")
        if raw is None:
            raise bad_input(f"backup {backup_id}: manifest.json not found", CORRUPT_BACKUP)
        try:
            return Manifest.model_validate_json(raw)
        except ValueError as exc:
            raise bad_input(f"backup {backup_id}: manifest.json is not a valid manifest: {exc}", CORRUPT_BACKUP)

    async def _tenant_id(self, conn, mission: str, schema: str = "public"):
        return await conn.fetchval(f'SELECT id FROM "{schema}".tenants WHERE name = $1', mission)

    # -------------------------------------------------------------- backup

    @activity.defn(name="plan_backup")
    async def plan_backup(self, req: BackupInput) -> BackupPlan:
        pool = await self.pool()
        async with pool.acquire() as conn:
            tables = await pg_dumps.tenant_tables(conn)
            if req.scope == "mission":
                rows = await conn.fetch("SELECT id, name FROM tenants WHERE name = $1", req.mission)
                if not rows:
                    raise bad_input(f"unknown mission {req.mission!r}: nothing to back up", UNKNOWN_MISSION)
            else:
                rows = await conn.fetch("SELECT id, name FROM tenants ORDER BY name")
        return BackupPlan(backup_id=req.backup_id or "", scope=req.scope, missions=[r["name"] for r in rows],
                          tenant_ids={r["name"]: str(r["id"]) for r in rows}, tables=tables)

    @activity.defn(name="backup_postgres_mission")
    async def backup_postgres_mission(self, step: BackupStep) -> StepResult:
        """That mission's rows, table by table, as CSV (COPY ... WHERE tenant_id)."""
        pool = await self.pool()
        work = self._workdir(step.backup_id)
        tid = uuid.UUID(step.tenant_id)
        out = StepResult()
        try:
            async with pool.acquire() as conn:
                # one snapshot for every table: parents and children agree
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    out.server_version = await conn.fetchval("SHOW server_version")
                    for table in [pg_dumps.TENANTS, *await pg_dumps.tenant_tables(conn)]:
                        path = work / f"{table}.csv"
                        async with keep_alive(f"copy {table}"):
                            n = await pg_dumps.export_table(conn, table, tid, path)
                        if table != pg_dumps.TENANTS:
                            out.counts[table] = n
                        out.artefacts.append(await self._upload(
                            step.backup_id, f"postgres/{step.mission}/{table}.csv", path.read_bytes(),
                            "postgres-table", mission=step.mission, rows=n, fmt="csv", source_key=table))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return out

    @activity.defn(name="backup_postgres_system")
    async def backup_postgres_system(self, step: BackupStep) -> StepResult:
        """The whole database with pg_dump -Fc (client binaries matching the server)."""
        pool = await self.pool()
        work = self._workdir(step.backup_id)
        try:
            version_num = int(await pool.fetchval("SHOW server_version_num"))
            path = work / "stratmaster.dump"
            await pg_dumps.pg_dump(self.settings.database_url, version_num, path, _heartbeat)
            art = await self._upload(step.backup_id, "postgres/stratmaster.dump", path.read_bytes(), "postgres-dump",
                                     fmt="pg_dump")
            return StepResult(artefacts=[art], server_version=await pool.fetchval("SHOW server_version"))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @activity.defn(name="count_postgres_rows")
    async def count_postgres_rows(self, req: CountInput) -> MissionCounts:
        pool = await self.pool()
        schema = req.scratch_schema or "public"
        async with pool.acquire() as conn:
            tables = await pg_dumps.tenant_tables(conn)
            tid = await self._tenant_id(conn, req.pg_mission or req.mission, schema)
            counts = {t: 0 for t in tables} if tid is None else await pg_dumps.tenant_row_counts(conn, tables, tid, schema)
        return MissionCounts(mission=req.mission, counts=counts)

    async def _backup_store(self, kind: str, step: BackupStep) -> StepResult:
        store = self._store(kind)
        async with keep_alive(f"dump {kind}"):
            payload, fmt, n = await store_dumps.dump(store, step.mission, _heartbeat)
        ext = "jsonl" if fmt == "jsonl" else "bin"
        art = await self._upload(step.backup_id, f"stores/{step.mission}/{kind}.{ext}", payload, kind,
                                 mission=step.mission, rows=n if fmt == "jsonl" else None, fmt=fmt)
        return StepResult(artefacts=[art], counts=await self._store_counts(kind, step.mission))

    async def _store_counts(self, kind: str, mission: str) -> dict[str, int]:
        if kind == "vectors":
            return {"vectors": await self.stores.vectors.count(mission)}
        if kind == "fulltext":
            return {"fulltext_docs": await self.stores.fulltext.count(mission)}
        entities, relations = await self.stores.graph.count(mission)
        return {"graph_entities": entities, "graph_relations": relations}

    @activity.defn(name="backup_vectors")
    async def backup_vectors(self, step: BackupStep) -> StepResult:
        return await self._backup_store("vectors", step)

    @activity.defn(name="backup_fulltext")
    async def backup_fulltext(self, step: BackupStep) -> StepResult:
        return await self._backup_store("fulltext", step)

    @activity.defn(name="backup_graph")
    async def backup_graph(self, step: BackupStep) -> StepResult:
        return await self._backup_store("graph", step)

    @activity.defn(name="backup_objects")
    async def backup_objects(self, step: BackupStep) -> StepResult:
        """Mirror every object under the mission's prefix into the backup."""
        objects = self.stores.objects
        keys = sorted(await objects.list(step.mission))
        out = StepResult(counts={"objects": len(keys)})
        for key in keys:
            async with keep_alive(f"object {key}"):
                data = await objects.get(step.mission, key)
            out.artefacts.append(await self._upload(step.backup_id, f"objects/{step.mission}/{key}", data, "object",
                                                    mission=step.mission, source_key=key))
        return out

    @activity.defn(name="write_manifest")
    async def write_manifest(self, req: WriteManifestInput) -> BackupResult:
        m = req.manifest
        data = m.model_dump_json(indent=2).encode()
        # written last: a backup without a manifest is incomplete by construction
        await system_put(self.settings, self.stores.objects, backup_dir(m.backup_id) + "manifest.json", data,
                         "application/json")
        return BackupResult(backup_id=m.backup_id, manifest_key=f"system/{backup_dir(m.backup_id)}manifest.json",
                            artefacts=len(m.artefacts), total_bytes=sum(a.size for a in m.artefacts), counts=m.counts)

    @activity.defn(name="list_backups")
    async def list_backups(self, req: ListBackupsInput) -> ListBackupsResult:
        out = []
        for key in await system_list(self.settings, self.stores.objects, BACKUP_PREFIX):
            if not key.endswith("/manifest.json"):
                continue
            raw = await system_get(self.settings, self.stores.objects, key)
            try:
                m = Manifest.model_validate_json(raw or b"")
            except ValueError:
                continue
            if req.mission and req.mission not in m.missions:
                continue
            out.append(BackupSummary(backup_id=m.backup_id, scope=m.scope, missions=m.missions, created_at=m.created_at,
                                     artefacts=len(m.artefacts), total_bytes=sum(a.size for a in m.artefacts)))
        return ListBackupsResult(backups=sorted(out, key=lambda b: b.created_at, reverse=True))

    # -------------------------------------------------------------- validate

    @activity.defn(name="validate_backup")
    async def validate_backup(self, req: ValidateInput) -> ValidatedBackup:
        """The whole backup before anything is touched: manifest present and parseable,
        every artefact present with the recorded size and sha256."""
        raw = await system_get(self.settings, self.stores.objects, backup_dir(req.backup_id) + "manifest.json")
        if raw is None:
            raise bad_input(f"backup {req.backup_id}: manifest.json not found (incomplete or unknown backup)", CORRUPT_BACKUP)
        try:
            manifest = Manifest.model_validate_json(raw)
        except ValueError as exc:
            raise bad_input(f"backup {req.backup_id}: manifest.json is not a valid manifest: {exc}", CORRUPT_BACKUP)
        if manifest.backup_id != req.backup_id:
            raise bad_input(f"backup {req.backup_id}: manifest names backup {manifest.backup_id}", CORRUPT_BACKUP)
        problems = []
        async with keep_alive("validate"):
            problems = await self._check_artefacts(req.backup_id, manifest)
        if problems:
            raise bad_input(f"backup {req.backup_id} is corrupt or incomplete, nothing restored: " + "; ".join(problems[:10])
                            + (f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""), CORRUPT_BACKUP)
        return ValidatedBackup(manifest=manifest)

    async def _check_artefacts(self, backup_id: str, manifest: Manifest) -> list[str]:
        problems = []
        for i, art in enumerate(manifest.artefacts):
            data = await system_get(self.settings, self.stores.objects, backup_dir(backup_id) + art.name)
            if data is None:
                problems.append(f"{art.name}: missing")
            elif len(data) != art.size:
                problems.append(f"{art.name}: size {len(data)} != {art.size}")
            elif _sha256(data) != art.sha256:
                problems.append(f"{art.name}: sha256 mismatch")
            if i % 20 == 0:
                _heartbeat(i)
        return problems

    # -------------------------------------------------------------- restore

    async def _store_namespace_used(self, mission: str) -> list[str]:
        used = []
        if await self.stores.vectors.count(mission):
            used.append("vectors")
        if await self.stores.fulltext.count(mission):
            used.append("full-text index")
        if any(await self.stores.graph.count(mission)):
            used.append("graph")
        if await self.stores.objects.list(mission):
            used.append("objects")
        return used

    async def _wipe_stores(self, mission: str) -> None:
        await self.stores.vectors.drop(mission)
        await self.stores.fulltext.drop(mission)
        await self.stores.graph.drop(mission)
        await self.stores.objects.delete_mission(mission)

    @activity.defn(name="prepare_restore_target")
    async def prepare_restore_target(self, step: RestoreStep) -> Empty:
        """Refuse a non-empty target (non-retryable) unless `replace`, which wipes it first.
        A drill gets a fresh scratch schema and a clean drill namespace."""
        pool = await self.pool()
        async with pool.acquire() as conn:
            tables = await pg_dumps.tenant_tables(conn)
            if step.scratch_schema:
                await pg_dumps.drop_scratch_schema(conn, step.scratch_schema)
                await pg_dumps.create_scratch_schema(conn, step.scratch_schema, tables)
                await self._wipe_stores(step.target_mission)  # the drill namespace is ours alone
                return Empty()
            tid = await self._tenant_id(conn, step.target_mission)
            rows = {t: n for t, n in (await pg_dumps.tenant_row_counts(conn, tables, tid)).items() if n} if tid else {}
        used = [f"{t} ({n} rows)" for t, n in rows.items()] + await self._store_namespace_used(step.target_mission)
        if used and not step.replace:
            raise bad_input(f"mission {step.target_mission!r} is not empty ({', '.join(used)}): restore refuses to "
                            "overwrite; wipe it or pass replace=true", TARGET_NOT_EMPTY)
        if used:
            async with pool.acquire() as conn, conn.transaction():
                await pg_dumps.delete_tenant_rows(conn, tables, tid)
            await self._wipe_stores(step.target_mission)
        return Empty()

    @activity.defn(name="restore_postgres_mission")
    async def restore_postgres_mission(self, step: RestoreStep) -> MissionCounts:
        manifest = await self._manifest(step.backup_id)
        arts = {a.source_key: a for a in manifest.artefacts
                if a.kind == "postgres-table" and a.mission == step.source_mission}
        if pg_dumps.TENANTS not in arts:
            raise bad_input(f"backup {step.backup_id} has no PostgreSQL rows for mission {step.source_mission}", CORRUPT_BACKUP)
        schema = step.scratch_schema or "public"
        work = self._workdir(step.backup_id)
        pool = await self.pool()
        counts: dict[str, int] = {}
        try:
            paths = {}
            for table in [pg_dumps.TENANTS, *[t for t in manifest.tables if t in arts]]:
                paths[table] = work / f"{table}.csv"
                paths[table].write_bytes(await self._fetch(step.backup_id, arts[table]))
            with open(paths[pg_dumps.TENANTS], newline="") as fh:
                backup_tid = uuid.UUID(next(csv.DictReader(fh))["id"])
            async with pool.acquire() as conn, conn.transaction():
                if schema == "public":
                    # prepare_restore_target found the target empty (or wiped it), so rows here can only
                    # be an empty re-created mission row or a previous attempt of this restore: clear them,
                    # so a retry reloads instead of colliding on primary keys.
                    owner = await conn.fetchval("SELECT name FROM tenants WHERE id = $1", backup_tid)
                    if owner not in (None, step.target_mission):
                        raise bad_input(f"backup {step.backup_id}: its mission id belongs to mission {owner!r} "
                                        "now; restore refuses to touch another mission", TARGET_NOT_EMPTY)
                    tables = await pg_dumps.tenant_tables(conn)
                    for tid in {backup_tid, await self._tenant_id(conn, step.target_mission)} - {None}:
                        await pg_dumps.delete_tenant_rows(conn, tables, tid)
                for table, path in paths.items():
                    async with keep_alive(f"copy {table}"):
                        n = await pg_dumps.import_table(conn, table, path, schema)
                    if table != pg_dumps.TENANTS:
                        counts[table] = n
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise bad_input(f"backup {step.backup_id}: its rows clash with existing data ({exc}); is the mission "
                            "restored under another name?", TARGET_NOT_EMPTY) from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return MissionCounts(mission=step.target_mission, counts=counts)

    @activity.defn(name="restore_postgres_system")
    async def restore_postgres_system(self, step: RestoreStep) -> Empty:
        """pg_restore of a system dump (--clean with replace): disaster recovery."""
        manifest = await self._manifest(step.backup_id)
        art = next((a for a in manifest.artefacts if a.kind == "postgres-dump"), None)
        if art is None:
            raise bad_input(f"backup {step.backup_id} has no pg_dump artefact", CORRUPT_BACKUP)
        pool = await self.pool()
        version_num = int(await pool.fetchval("SHOW server_version_num"))
        has_missions = await pool.fetchval(
            "SELECT to_regclass('public.tenants') IS NOT NULL")  # a fresh database has no schema yet
        if has_missions:
            has_missions = await pool.fetchval("SELECT COUNT(*) FROM tenants")
        if not step.replace and has_missions:
            raise bad_input("the database already has missions: a system restore needs replace=true", TARGET_NOT_EMPTY)
        work = self._workdir(step.backup_id)
        try:
            path = work / "stratmaster.dump"
            path.write_bytes(await self._fetch(step.backup_id, art))
            await pg_dumps.pg_restore(self.settings.database_url, version_num, path, _heartbeat, clean=step.replace)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return Empty()

    @activity.defn(name="check_pg_dump")
    async def check_pg_dump(self, req: ValidateInput) -> Empty:
        """pg_restore -l reads the archive's table of contents: a truncated or
        foreign file fails here."""
        manifest = await self._manifest(req.backup_id)
        pool = await self.pool()
        version_num = int(await pool.fetchval("SHOW server_version_num"))
        work = self._workdir(req.backup_id)
        try:
            for art in manifest.artefacts:
                if art.kind == "postgres-dump":
                    path = work / "stratmaster.dump"
                    path.write_bytes(await self._fetch(req.backup_id, art))
                    try:
                        toc = await pg_dumps.pg_restore_list(self.settings.database_url, version_num, path)
                    except ValueError as exc:
                        raise bad_input(f"backup {req.backup_id}: {exc}", CORRUPT_BACKUP)
                    if "TABLE DATA public tenants" not in toc:
                        raise bad_input(f"backup {req.backup_id}: the dump has no tenants data", CORRUPT_BACKUP)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return Empty()

    async def _restore_store(self, kind: str, step: RestoreStep) -> MissionCounts:
        manifest = await self._manifest(step.backup_id)
        art = next((a for a in manifest.artefacts if a.kind == kind and a.mission == step.source_mission), None)
        if art is None:
            return MissionCounts(mission=step.target_mission, counts={})
        payload = await self._fetch(step.backup_id, art)
        async with keep_alive(f"load {kind}"):
            await store_dumps.load(self._store(kind), step.target_mission, payload, art.format)
        return MissionCounts(mission=step.target_mission, counts=await self._store_counts(kind, step.target_mission))

    @activity.defn(name="restore_vectors")
    async def restore_vectors(self, step: RestoreStep) -> MissionCounts:
        return await self._restore_store("vectors", step)

    @activity.defn(name="restore_fulltext")
    async def restore_fulltext(self, step: RestoreStep) -> MissionCounts:
        return await self._restore_store("fulltext", step)

    @activity.defn(name="restore_graph")
    async def restore_graph(self, step: RestoreStep) -> MissionCounts:
        return await self._restore_store("graph", step)

    @activity.defn(name="restore_objects")
    async def restore_objects(self, step: RestoreStep) -> MissionCounts:
        manifest = await self._manifest(step.backup_id)
        n = 0
        for art in manifest.artefacts:
            if art.kind == "object" and art.mission == step.source_mission:
                async with keep_alive(f"object {art.source_key}"):
                    await self.stores.objects.put(step.target_mission, art.source_key,
                                                  await self._fetch(step.backup_id, art))
                n += 1
                _heartbeat(n)
        return MissionCounts(mission=step.target_mission, counts={"objects": len(await self.stores.objects.list(step.target_mission))})

    @activity.defn(name="count_store_records")
    async def count_store_records(self, req: CountInput) -> MissionCounts:
        counts: dict[str, int] = {"objects": len(await self.stores.objects.list(req.mission))}
        for kind in STORE_KINDS:
            counts.update(await self._store_counts(kind, req.mission))
        return MissionCounts(mission=req.mission, counts=counts)

    @activity.defn(name="drop_drill")
    async def drop_drill(self, req: DropDrillInput) -> Empty:
        pool = await self.pool()
        async with pool.acquire() as conn:
            await pg_dumps.drop_scratch_schema(conn, req.scratch_schema)
        await self._wipe_stores(req.mission)
        return Empty()

    def all(self) -> list:
        return [self.plan_backup, self.backup_postgres_mission, self.backup_postgres_system, self.count_postgres_rows,
                self.backup_vectors, self.backup_fulltext, self.backup_graph, self.backup_objects, self.write_manifest,
                self.list_backups, self.validate_backup, self.prepare_restore_target, self.restore_postgres_mission,
                self.restore_postgres_system, self.check_pg_dump, self.restore_vectors, self.restore_fulltext, self.restore_graph,
                self.restore_objects, self.count_store_records, self.drop_drill]
