"""Backup, restore and restore-drill activities.

A backup is a folder `system/backups/<backup_id>/` in the object store:
  postgres/<mission>/<table>.csv   mission tables (pg_dumps.MISSION_TABLES): that mission's rows
  postgres/stratmaster.dump        system scope: pg_dump -Fc
  stores/<mission>/{vectors,fulltext,graph}.<jsonl|bin>   the stores' dump hooks
  objects/<mission>/<sha256 of key>  the mission's objects (key in the manifest's source_key)
  parts/<mission|_system>/<step>.json  what each step wrote (BackupPart)
  manifest.json                    written last, from the parts: size + sha256 of every artefact

Activities return summaries, never artefact lists: a payload stays small whatever
the number of missions, tables or objects (the manifest in the object store has
everything).

Object keys follow the object stores' one rule (objects_fs.mission_key_problem);
an object under a mission's prefix that breaks it (MinIO lets a mission's own
user write any key there) is skipped and recorded in the manifest's `skipped`,
never a failure: one mission's odd object cannot fail a system backup.

Restore trusts nothing in a backup: validate_backup checks every name against
what the backup code derives (activities/ops/backup_checks.py), every artefact's size
and sha256, the store dumps' shape, and stages every PostgreSQL row in temporary
tables to check it belongs to its mission (pg_dumps.stage_mission) -- all before
the first write. Later steps re-read only the manifest validate_backup checked
(its sha256) and stage the rows again before inserting them.

Every activity is idempotent (deterministic artefact names, upserting loads,
restores in one transaction) and heartbeats while it copies.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import uuid
from pathlib import Path

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeat, keep_alive
from activities.ops import pg_dumps, store_dumps
from activities.ops.backup_checks import (
    STORE_KINDS, manifest_problems, object_artefact_name, store_artefact_name, store_payload_problem,
    table_artefact_name,
)
from activities.resources import ActivityResources
from activities.stores.objects_fs import mission_key_problem
from activities.ops.system_area import system_delete, system_get, system_list, system_list_modified, system_put
from stratmaster.contracts.maintenance import (
    BACKUP_ID, BACKUP_PREFIX, MAX_DETAIL, Artefact, BackupPage, BackupPart, BackupResult, BackupStep, BackupSummary,
    BeginBackupInput, CountInput, DropDrillInput, Empty, ListBackupsInput, ListBackupsResult, Manifest, MissionCounts,
    MissionEntry, MissionsPage, MissionsPageInput, PlanInput, PlannedMission, RestoreStep, Skipped, StepResult,
    ValidatedBackup, ValidateInput, WriteManifestInput, backup_dir, clip,
)
from stratmaster.errors import BAD_INPUT, CORRUPT_BACKUP, UNKNOWN_MISSION, bad_input

TARGET_NOT_EMPTY = "TargetNotEmpty"
SYSTEM_PART = "_system"  # parts/ folder of the system-wide steps (not a valid mission id)
MAX_SKIPPED_PER_STEP = 1000
MAX_REPORTED = 10  # problems named in one error message


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _show(value, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


def _joined(problems: list[str]) -> str:
    return clip("; ".join(problems[:MAX_REPORTED]) + (f" (+{len(problems) - MAX_REPORTED} more)"
                                                     if len(problems) > MAX_REPORTED else ""), 2000)


class BackupActivities(ActivityResources):
    _manifest_cache: tuple[str, str, Manifest] | None = None  # (backup id, sha256, checked manifest)

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
            await system_put(self.stores.objects, backup_dir(backup_id) + name, data)
        return Artefact(name=name, kind=kind, size=len(data), sha256=_sha256(data), mission=mission, rows=rows,
                        format=fmt, source_key=source_key)

    async def _write_part(self, backup_id: str, part: BackupPart) -> StepResult:
        """The step's artefact list goes to the object store; the workflow gets a summary."""
        key = f"{backup_dir(backup_id)}parts/{part.mission or SYSTEM_PART}/{part.step}.json"
        await system_put(self.stores.objects, key, part.model_dump_json().encode(), "application/json")
        return StepResult(artefacts=len(part.artefacts), bytes=sum(a.size for a in part.artefacts), counts=part.counts,
                          skipped=len(part.skipped), server_version=part.server_version)

    async def _get_checked(self, backup_id: str, art: Artefact) -> tuple[bytes, str | None]:
        """(the artefact's bytes, None), or (b"", what is wrong with it)."""
        data = await system_get(self.stores.objects, backup_dir(backup_id) + art.name)
        if data is None:
            return b"", f"{art.name}: missing"
        if len(data) != art.size:
            return b"", f"{art.name}: size {len(data)} != {art.size}"
        if _sha256(data) != art.sha256:
            return b"", f"{art.name}: sha256 mismatch"
        return data, None

    async def _fetch(self, backup_id: str, art: Artefact) -> bytes:
        data, problem = await self._get_checked(backup_id, art)
        if problem:
            raise bad_input(f"backup {backup_id}: artefact {problem}", CORRUPT_BACKUP)
        return data

    async def _read_manifest(self, backup_id: str) -> tuple[bytes, Manifest]:
        if not re.fullmatch(BACKUP_ID, backup_id or ""):
            raise bad_input(f"bad backup id {_show(backup_id)}")
        raw = await system_get(self.stores.objects, backup_dir(backup_id) + "manifest.json")
        if raw is None:
            raise bad_input(f"backup {backup_id}: manifest.json not found (incomplete or unknown backup)",
                            CORRUPT_BACKUP)
        try:
            return raw, Manifest.model_validate_json(raw)
        except ValueError as exc:
            raise bad_input(f"backup {backup_id}: manifest.json is not a valid manifest: {clip(str(exc), 600)}",
                            CORRUPT_BACKUP)

    async def _manifest(self, backup_id: str, expect_sha256: str | None = None) -> Manifest:
        """The manifest, checked; with `expect_sha256`, only the very manifest
        validate_backup checked (a manifest swapped since is refused)."""
        raw = await system_get(self.stores.objects, backup_dir(backup_id) + "manifest.json") \
            if re.fullmatch(BACKUP_ID, backup_id or "") else None
        sha = _sha256(raw) if raw is not None else None
        if expect_sha256 and sha != expect_sha256:
            raise bad_input(f"backup {backup_id}: manifest.json changed since it was validated", CORRUPT_BACKUP)
        cached = self._manifest_cache
        if cached and cached[0] == backup_id and cached[1] == sha:
            return cached[2]
        raw, manifest = await self._read_manifest(backup_id)
        problems = manifest_problems(manifest, backup_id)
        if problems:
            raise bad_input(f"backup {backup_id} is corrupt, nothing restored: {_joined(problems)}", CORRUPT_BACKUP)
        self._manifest_cache = (backup_id, _sha256(raw), manifest)
        return manifest

    async def _tenant_id(self, conn, mission: str, schema: str = "public"):
        return await conn.fetchval(f'SELECT id FROM "{schema}".tenants WHERE name = $1', mission)

    # -------------------------------------------------------------- backup

    @activity.defn(name="begin_backup")
    async def begin_backup(self, req: BeginBackupInput) -> Empty:
        """A new backup id (an existing complete backup is never overwritten); parts
        left by an earlier failed run of the same id are cleared."""
        if not re.fullmatch(BACKUP_ID, req.backup_id or ""):
            raise bad_input(f"bad backup id {_show(req.backup_id)}: {BACKUP_ID}")
        folder = backup_dir(req.backup_id)
        if await system_get(self.stores.objects, folder + "manifest.json") is not None:
            raise bad_input(f"backup {req.backup_id} already exists: choose another backup id")
        for key in await system_list(self.stores.objects, folder + "parts/"):
            await system_delete(self.stores.objects, key)
        return Empty()

    @activity.defn(name="plan_backup")
    async def plan_backup(self, req: PlanInput) -> BackupPage:
        """One page of the missions to back up, in name order after `req.after`."""
        pool = await self.pool()
        async with pool.acquire() as conn:
            tables, _unknown = await pg_dumps.mission_tables(conn)
            if req.scope == "mission":
                rows = await conn.fetch("SELECT id, name FROM tenants WHERE name = $1", req.mission)
                if not rows:
                    raise bad_input(f"unknown mission {req.mission!r}: nothing to back up", UNKNOWN_MISSION)
            else:
                rows = await conn.fetch('SELECT id, name FROM tenants WHERE $1::text IS NULL OR name > $1 COLLATE "C" '
                                        'ORDER BY name COLLATE "C" LIMIT $2', req.after, req.limit + 1)
        return BackupPage(missions=[PlannedMission(name=r["name"], tenant_id=str(r["id"])) for r in rows[:req.limit]],
                          tables=tables, more=len(rows) > req.limit)

    @activity.defn(name="backup_postgres_mission")
    async def backup_postgres_mission(self, step: BackupStep) -> StepResult:
        """That mission's rows, table by table, as CSV (COPY ... WHERE tenant_id)."""
        pool = await self.pool()
        work = self._workdir(step.backup_id)
        tid = uuid.UUID(step.tenant_id)
        part = BackupPart(mission=step.mission, step="postgres")
        try:
            async with pool.acquire() as conn:
                # one snapshot for every table: parents and children agree
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    part.server_version = await conn.fetchval("SHOW server_version")
                    part.tables, _unknown = await pg_dumps.mission_tables(conn)
                    for i, table in enumerate([pg_dumps.TENANTS, *part.tables]):
                        path = work / f"{i:03d}.csv"  # never a name from data
                        async with keep_alive(f"copy {table}"):
                            n = await pg_dumps.export_table(conn, table, tid, path)
                        if table == pg_dumps.TENANTS and n != 1:
                            part.vanished = True  # deleted (or re-created) since the plan
                            break
                        if table != pg_dumps.TENANTS:
                            part.counts[table] = n
                        part.artefacts.append(await self._upload(
                            step.backup_id, table_artefact_name(step.mission, table), path.read_bytes(),
                            "postgres-table", mission=step.mission, rows=n, fmt="csv", source_key=table))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if part.vanished:
            part.artefacts, part.counts = [], {}
            part.skipped = [Skipped(mission=step.mission, what="mission",
                                    reason="deleted while the backup ran: not in this backup")]
        return await self._write_part(step.backup_id, part)

    @activity.defn(name="backup_postgres_system")
    async def backup_postgres_system(self, step: BackupStep) -> StepResult:
        """The whole database with pg_dump -Fc (client binaries matching the server)."""
        pool = await self.pool()
        work = self._workdir(step.backup_id)
        try:
            version_num = int(await pool.fetchval("SHOW server_version_num"))
            path = work / "stratmaster.dump"
            await pg_dumps.pg_dump(self.settings.database_url, version_num, path, heartbeat)
            art = await self._upload(step.backup_id, "postgres/stratmaster.dump", path.read_bytes(), "postgres-dump",
                                     fmt="pg_dump")
            part = BackupPart(step="pg_dump", artefacts=[art],
                              server_version=await pool.fetchval("SHOW server_version"))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return await self._write_part(step.backup_id, part)

    @activity.defn(name="count_postgres_rows")
    async def count_postgres_rows(self, req: CountInput) -> MissionCounts:
        pool = await self.pool()
        schema = req.scratch_schema or "public"
        async with pool.acquire() as conn:
            tables, _unknown = await pg_dumps.mission_tables(conn)
            tid = await self._tenant_id(conn, req.pg_mission or req.mission, schema)
            counts = {t: 0 for t in tables} if tid is None else await pg_dumps.tenant_row_counts(conn, tables, tid, schema)
        return MissionCounts(mission=req.mission, counts=counts)

    async def _backup_store(self, kind: str, step: BackupStep) -> StepResult:
        store = self._store(kind)
        async with keep_alive(f"dump {kind}"):
            payload, fmt, n = await store_dumps.dump(store, step.mission, heartbeat)
        art = await self._upload(step.backup_id, store_artefact_name(step.mission, kind, fmt), payload, kind,
                                 mission=step.mission, rows=n if fmt == "jsonl" else None, fmt=fmt)
        part = BackupPart(mission=step.mission, step=kind, artefacts=[art],
                          counts=await self._store_counts(kind, step.mission))
        return await self._write_part(step.backup_id, part)

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
        """Copy every object under the mission's prefix into the backup. A key the
        object stores' rule refuses (written straight into MinIO by the mission's
        own user) cannot be read back or restored: skipped, with the reason."""
        objects = self.stores.objects
        part = BackupPart(mission=step.mission, step="objects")
        skipped = 0

        def skip(key: str, reason: str) -> None:
            nonlocal skipped
            skipped += 1
            if len(part.skipped) < MAX_SKIPPED_PER_STEP:
                part.skipped.append(Skipped(mission=step.mission, what=f"object {_show(key)}", reason=reason))

        for i, key in enumerate(sorted(await objects.list(step.mission))):
            problem = mission_key_problem(key)
            if problem:
                skip(key, f"{problem}: the object stores refuse this key, so it cannot be restored")
                continue
            try:
                async with keep_alive(f"object {key}"):
                    data = await objects.get(step.mission, key)
            except FileNotFoundError:  # ObjectNotFound: deleted since the listing
                skip(key, "deleted while the backup ran")
                continue
            except ApplicationError as exc:
                if exc.type != BAD_INPUT:
                    raise
                skip(key, f"{exc.message}: the object store refuses to read it")  # e.g. a planted symlink
                continue
            part.artefacts.append(await self._upload(step.backup_id, object_artefact_name(step.mission, key), data,
                                                     "object", mission=step.mission, source_key=key))
            if i % 50 == 0:
                heartbeat(i)
        if skipped > len(part.skipped):
            part.skipped.append(Skipped(mission=step.mission, what=f"{skipped - len(part.skipped)} more objects",
                                        reason="skipped for the same kind of reasons (not listed)"))
        part.counts = {"objects": len(part.artefacts)}
        return await self._write_part(step.backup_id, part)

    @activity.defn(name="write_manifest")
    async def write_manifest(self, req: WriteManifestInput) -> BackupResult:
        """The manifest from the steps' parts, written last: a backup without a
        manifest is incomplete by construction. Returns a bounded summary."""
        folder = backup_dir(req.backup_id)
        parts: list[BackupPart] = []
        for i, key in enumerate(await system_list(self.stores.objects, folder + "parts/")):
            if key.endswith(".json"):
                raw = await system_get(self.stores.objects, key)
                if raw is None:  # listed a moment ago: retried
                    raise RuntimeError(f"backup {req.backup_id}: part {key} vanished while the manifest was written")
                parts.append(BackupPart.model_validate_json(raw))
            if i % 50 == 0:
                heartbeat(i)
        vanished = {p.mission for p in parts if p.vanished}
        artefacts: list[Artefact] = []
        skipped: list[Skipped] = []
        counts: dict[str, dict[str, int]] = {}
        server_version: str | None = None
        for p in parts:
            skipped.extend(p.skipped)
            server_version = server_version or p.server_version
            if p.mission is not None and p.mission in vanished:
                continue
            artefacts.extend(p.artefacts)
            if p.mission is not None:
                counts.setdefault(p.mission, {}).update(p.counts)
        if req.scope == "mission" and (vanished or not counts):
            raise bad_input(f"backup {req.backup_id}: the mission was deleted while it was backed up",
                            UNKNOWN_MISSION)
        pool = await self.pool()
        async with pool.acquire() as conn:
            tables, unknown = await pg_dumps.mission_tables(conn)
        skipped.extend(Skipped(what=f"table {t}", reason="keyed by tenant_id but not one of the mission tables "
                                                         "this code knows (pg_dumps.MISSION_TABLES): not backed up")
                       for t in unknown)
        missions = sorted(counts)
        manifest = Manifest(backup_id=req.backup_id, scope=req.scope, missions=missions, created_at=req.created_at,
                            tables=tables, artefacts=sorted(artefacts, key=lambda a: a.name), counts=counts,
                            server_version=server_version, skipped=skipped)
        problems = manifest_problems(manifest, req.backup_id)  # what restore will check, checked now
        if problems:  # a bug, not bad luck: retrying would not help
            raise bad_input(f"backup {req.backup_id}: the manifest would not restore: {_joined(problems)}",
                            CORRUPT_BACKUP)
        await system_put(self.stores.objects, folder + "manifest.json",
                         manifest.model_dump_json(indent=1).encode(), "application/json")
        return BackupResult(
            backup_id=req.backup_id, manifest_key=f"system/{folder}manifest.json", missions=len(missions),
            artefacts=len(artefacts), total_bytes=sum(a.size for a in artefacts),
            counts={m: counts[m] for m in missions[:MAX_DETAIL]}, skipped=len(skipped),
            skipped_examples=[clip(f"{s.mission or 'system'}: {s.what}: {s.reason}", 300) for s in skipped[:10]],
            truncated=len(missions) > MAX_DETAIL)

    @activity.defn(name="list_backups")
    async def list_backups(self, req: ListBackupsInput) -> ListBackupsResult:
        """Complete backups, newest first by the object store's own timestamp of
        manifest.json (what the store recorded for the write; `created_at` inside
        the manifest is only data). At most `req.limit`."""
        entries = [(key, modified) for key, modified in
                   await system_list_modified(self.stores.objects, BACKUP_PREFIX)
                   if key.endswith("/manifest.json")]
        entries.sort(key=lambda e: (e[1], e[0]), reverse=True)
        out: list[BackupSummary] = []
        more = False
        for i, (key, modified) in enumerate(entries):
            if i % 20 == 0:
                heartbeat(i)
            raw = await system_get(self.stores.objects, key)
            try:
                m = Manifest.model_validate_json(raw or b"")
            except ValueError:
                m = None
            if m is None or key != backup_dir(m.backup_id) + "manifest.json":  # a manifest names its own folder
                folder_id = key[len(BACKUP_PREFIX):-len("/manifest.json")]
                if req.mission or not re.fullmatch(BACKUP_ID, folder_id):
                    continue  # whose it is cannot be told
                # listed, not hidden: verifying "the newest" must report it rather than an older backup
                summary = BackupSummary(backup_id=folder_id, scope="invalid", missions=[], created_at=modified,
                                        modified_at=modified, artefacts=0, total_bytes=0,
                                        problem="manifest.json is not a valid manifest of this backup")
            elif req.mission and req.mission not in m.missions:
                continue
            else:
                summary = BackupSummary(backup_id=m.backup_id, scope=m.scope, missions=m.missions[:20],
                                        mission_count=len(m.missions), created_at=m.created_at, modified_at=modified,
                                        artefacts=len(m.artefacts), total_bytes=sum(a.size for a in m.artefacts))
            if len(out) == req.limit:
                more = True
                break
            out.append(summary)
        return ListBackupsResult(backups=out, more=more)

    # -------------------------------------------------------------- validate

    @activity.defn(name="validate_backup")
    async def validate_backup(self, req: ValidateInput) -> ValidatedBackup:
        """The whole backup before anything is touched: the manifest's names and
        structure, every artefact present with the recorded size and sha256, the
        store dumps' shape, and every PostgreSQL row of the missions to restore
        staged and checked against its mission (in a transaction rolled back)."""
        raw, manifest = await self._read_manifest(req.backup_id)
        problems = manifest_problems(manifest, req.backup_id)
        if problems:
            raise bad_input(f"backup {req.backup_id} is corrupt or crafted, nothing restored: {_joined(problems)}",
                            CORRUPT_BACKUP)
        if req.mission and req.mission not in manifest.missions:
            raise bad_input(f"backup {req.backup_id} has no mission {req.mission!r}", BAD_INPUT)
        if req.full_database and manifest.scope != "system":
            raise bad_input("full_database needs a system backup", BAD_INPUT)
        selected = {req.mission} if req.mission else set(manifest.missions)
        stage = not req.full_database  # a full-database restore loads the pg_dump, not the CSV files
        tables_of: dict[str, list[Artefact]] = {}
        async with keep_alive("validate"):
            for i, art in enumerate(manifest.artefacts):
                if art.kind == "postgres-table" and stage and art.mission in selected:
                    tables_of.setdefault(art.mission, []).append(art)  # checked (and staged) below
                    continue
                data, problem = await self._get_checked(req.backup_id, art)
                if problem:
                    problems.append(problem)
                elif art.kind in STORE_KINDS and art.mission in selected:
                    problem = store_payload_problem(art.kind, data, art.format)
                    if problem:
                        problems.append(f"{art.name}: {problem}")
                if i % 20 == 0:
                    heartbeat(i)
            clashes = []
            if tables_of:
                pool = await self.pool()
                async with pool.acquire() as conn:
                    tables, _unknown = await pg_dumps.mission_tables(conn)
                    for mission in sorted(tables_of):
                        staged = await self._stage_checked(conn, req.backup_id, mission, tables_of[mission], tables,
                                                           live=req.live, only_check=True)
                        problems += staged.problems
                        clashes += staged.clashes
        if problems:
            raise bad_input(f"backup {req.backup_id} is corrupt or crafted, nothing restored: {_joined(problems)}",
                            CORRUPT_BACKUP)
        if clashes:
            raise bad_input(f"backup {req.backup_id} cannot be restored, nothing changed: {_joined(clashes)}",
                            TARGET_NOT_EMPTY)
        return ValidatedBackup(backup_id=req.backup_id, scope=manifest.scope, manifest_sha256=_sha256(raw),
                               missions=len(manifest.missions), artefacts=len(manifest.artefacts),
                               total_bytes=sum(a.size for a in manifest.artefacts))

    async def _stage_checked(self, conn, backup_id: str, mission: str, arts: list[Artefact], tables: list[str], *,
                             live: bool, only_check: bool) -> pg_dumps.Staged:
        """Fetch (size + sha256 checked) and stage one mission's CSV files. With
        `only_check` everything happens in a transaction that is rolled back."""
        work = self._workdir(backup_id)
        try:
            files: dict[str, Path] = {}
            problems: list[str] = []
            # table artefacts name their table (manifest_problems checked it)
            for i, art in enumerate(sorted(arts, key=lambda a: a.source_key or "")):
                data, problem = await self._get_checked(backup_id, art)
                table = art.source_key
                if problem or table is None:
                    problems.append(problem or f"{art.name}: no table")
                    continue
                files[table] = work / f"{i:03d}.csv"  # never a name from the manifest
                files[table].write_bytes(data)
            if problems:
                return pg_dumps.Staged(mission=mission, problems=problems)
            if not only_check:
                return await pg_dumps.stage_mission(conn, mission, files, tables, live=live)
            tr = conn.transaction()
            await tr.start()
            try:
                async with keep_alive(f"stage {mission}"):
                    return await pg_dumps.stage_mission(conn, mission, files, tables, live=live)
            finally:
                await tr.rollback()
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @activity.defn(name="backup_missions")
    async def backup_missions(self, req: MissionsPageInput) -> MissionsPage:
        """One page of the validated backup's missions (name order), with the counts it recorded."""
        manifest = await self._manifest(req.backup_id, req.manifest_sha256)
        names = sorted(m for m in manifest.missions
                       if req.mission in (None, m) and (req.after is None or m > req.after))
        return MissionsPage(missions=[MissionEntry(name=m, counts=manifest.counts.get(m, {}))
                                      for m in names[:req.limit]], more=len(names) > req.limit)

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
        await self._manifest(step.backup_id, step.manifest_sha256)  # still the backup that was validated
        pool = await self.pool()
        async with pool.acquire() as conn:
            if step.scratch_schema:
                tables, _unknown = await pg_dumps.mission_tables(conn)
                await pg_dumps.drop_scratch_schema(conn, step.scratch_schema)
                await pg_dumps.create_scratch_schema(conn, step.scratch_schema, tables)
                await self._wipe_stores(step.target_mission)  # the drill namespace is ours alone
                return Empty()
            tables = await pg_dumps.tenant_tables(conn)
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
        """The mission's rows, staged and checked again (pg_dumps.stage_mission), then
        inserted -- in one transaction, replacing rows a previous attempt left."""
        manifest = await self._manifest(step.backup_id, step.manifest_sha256)
        arts = [a for a in manifest.artefacts if a.kind == "postgres-table" and a.mission == step.source_mission]
        if not any(a.source_key == pg_dumps.TENANTS for a in arts):
            raise bad_input(f"backup {step.backup_id} has no PostgreSQL rows for mission {step.source_mission}",
                            CORRUPT_BACKUP)
        live = not step.scratch_schema
        if live and step.source_mission != step.target_mission:
            raise bad_input("a restore into the live tables keeps the mission's name (drills use a scratch schema)")
        pool = await self.pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                tables, _unknown = await pg_dumps.mission_tables(conn)
                staged = await self._stage_checked(conn, step.backup_id, step.source_mission, arts, tables, live=live,
                                                   only_check=False)
                if staged.problems:
                    raise bad_input(f"backup {step.backup_id} is corrupt or crafted, nothing restored: "
                                    f"{_joined(staged.problems)}", CORRUPT_BACKUP)
                if staged.clashes:
                    raise bad_input(f"backup {step.backup_id} cannot be restored: {_joined(staged.clashes)}",
                                    TARGET_NOT_EMPTY)
                if live:
                    # prepare_restore_target found the target empty (or wiped it): rows here are an empty
                    # re-created mission row or a previous attempt of this restore; replace them
                    every = await pg_dumps.tenant_tables(conn)
                    for tid in staged.owners:
                        await pg_dumps.delete_tenant_rows(conn, every, tid)
                async with keep_alive("insert rows"):
                    counts = await pg_dumps.insert_staged(conn, staged, step.scratch_schema or "public")
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise bad_input(f"backup {step.backup_id}: its rows clash with existing data ({exc}); is the mission "
                            "restored under another name?", TARGET_NOT_EMPTY) from None
        counts.pop(pg_dumps.TENANTS, None)
        return MissionCounts(mission=step.target_mission, counts=counts)

    @activity.defn(name="restore_postgres_system")
    async def restore_postgres_system(self, step: RestoreStep) -> Empty:
        """pg_restore of a system dump (--clean with replace): disaster recovery."""
        manifest = await self._manifest(step.backup_id, step.manifest_sha256)
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
            await pg_dumps.pg_restore(self.settings.database_url, version_num, path, heartbeat, clean=step.replace)
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
                        raise bad_input(f"backup {req.backup_id}: {clip(str(exc))}", CORRUPT_BACKUP)
                    if "TABLE DATA public tenants" not in toc:
                        raise bad_input(f"backup {req.backup_id}: the dump has no tenants data", CORRUPT_BACKUP)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return Empty()

    async def _restore_store(self, kind: str, step: RestoreStep) -> MissionCounts:
        manifest = await self._manifest(step.backup_id, step.manifest_sha256)
        art = next((a for a in manifest.artefacts if a.kind == kind and a.mission == step.source_mission), None)
        if art is None:
            return MissionCounts(mission=step.target_mission, counts={})
        payload = await self._fetch(step.backup_id, art)
        problem = store_payload_problem(kind, payload, art.format)
        if problem:
            raise bad_input(f"backup {step.backup_id}: {art.name}: {problem}", CORRUPT_BACKUP)
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
        manifest = await self._manifest(step.backup_id, step.manifest_sha256)  # source keys checked there
        n = 0
        for art in manifest.artefacts:
            if art.kind == "object" and art.mission == step.source_mission:
                async with keep_alive(f"object {art.source_key}"):
                    await self.stores.objects.put(step.target_mission, art.source_key,
                                                  await self._fetch(step.backup_id, art))
                n += 1
                heartbeat(n)
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
        return [self.begin_backup, self.plan_backup, self.backup_postgres_mission, self.backup_postgres_system,
                self.count_postgres_rows, self.backup_vectors, self.backup_fulltext, self.backup_graph,
                self.backup_objects, self.write_manifest, self.list_backups, self.validate_backup, self.backup_missions,
                self.prepare_restore_target, self.restore_postgres_mission, self.restore_postgres_system,
                self.check_pg_dump, self.restore_vectors, self.restore_fulltext, self.restore_graph,
                self.restore_objects, self.count_store_records, self.drop_drill]
