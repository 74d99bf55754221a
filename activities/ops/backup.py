"""Backup activities: a backup of one mission or of the whole system, step by step into the
object store (layout: activities/ops/backup_area.py), the manifest written last from the
steps' parts, and the list of complete backups.

Object keys follow the object stores' one rule (objects_fs.mission_key_problem);
an object under a mission's prefix that breaks it (MinIO lets a mission's own
user write any key there) is skipped and recorded in the manifest's `skipped`,
never a failure: one mission's odd object cannot fail a system backup.
"""
from __future__ import annotations

import re
import shutil
import uuid

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeat, keep_alive
from activities.ops import pg_dumps, store_dumps
from activities.ops.backup_area import BackupArea, problems_text, sha256_hex, show_value
from activities.ops.backup_checks import (
    manifest_problems, object_artefact_name, store_artefact_name, table_artefact_name,
)
from activities.ops.system_area import system_delete, system_get, system_list, system_list_modified, system_put
from activities.stores.objects_fs import mission_key_problem
from stratmaster.contracts.maintenance import (
    BACKUP_ID, BACKUP_PREFIX, MAX_DETAIL, Artefact, BackupPage, BackupPart, BackupResult, BackupStep, BackupSummary,
    BeginBackupInput, Empty, ListBackupsInput, ListBackupsResult, Manifest, PlanInput, PlannedMission, Skipped,
    StepResult, WriteManifestInput, backup_dir, clip,
)
from stratmaster.errors import BAD_INPUT, CORRUPT_BACKUP, UNKNOWN_MISSION, bad_input

SYSTEM_PART = "_system"  # parts/ folder of the system-wide steps (not a valid mission id)
MAX_SKIPPED_PER_STEP = 1000


class BackupActivities(BackupArea):
    """Writing a backup (BackupWorkflow) and listing the complete ones."""

    async def _upload(self, backup_id: str, name: str, data: bytes, kind: str, *, mission: str | None = None,
                      rows: int | None = None, fmt: str = "raw", source_key: str | None = None) -> Artefact:
        async with keep_alive(f"upload {name}"):
            await system_put(self.stores.objects, backup_dir(backup_id) + name, data)
        return Artefact(name=name, kind=kind, size=len(data), sha256=sha256_hex(data), mission=mission, rows=rows,
                        format=fmt, source_key=source_key)

    async def _write_part(self, backup_id: str, part: BackupPart) -> StepResult:
        """The step's artefact list goes to the object store; the workflow gets a summary."""
        key = f"{backup_dir(backup_id)}parts/{part.mission or SYSTEM_PART}/{part.step}.json"
        await system_put(self.stores.objects, key, part.model_dump_json().encode(), "application/json")
        return StepResult(artefacts=len(part.artefacts), bytes=sum(a.size for a in part.artefacts), counts=part.counts,
                          skipped=len(part.skipped), server_version=part.server_version)

    # -------------------------------------------------------------- backup

    @activity.defn(name="begin_backup")
    async def begin_backup(self, req: BeginBackupInput) -> Empty:
        """A new backup id (an existing complete backup is never overwritten); parts
        left by an earlier failed run of the same id are cleared."""
        if not re.fullmatch(BACKUP_ID, req.backup_id or ""):
            raise bad_input(f"bad backup id {show_value(req.backup_id)}: {BACKUP_ID}")
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

    async def _backup_store(self, kind: str, step: BackupStep) -> StepResult:
        store = self._store(kind)
        async with keep_alive(f"dump {kind}"):
            payload, fmt, n = await store_dumps.dump(store, step.mission, heartbeat)
        art = await self._upload(step.backup_id, store_artefact_name(step.mission, kind, fmt), payload, kind,
                                 mission=step.mission, rows=n if fmt == "jsonl" else None, fmt=fmt)
        part = BackupPart(mission=step.mission, step=kind, artefacts=[art],
                          counts=await self._store_counts(kind, step.mission))
        return await self._write_part(step.backup_id, part)
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
                part.skipped.append(Skipped(mission=step.mission, what=f"object {show_value(key)}", reason=reason))

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
            raise bad_input(f"backup {req.backup_id}: the manifest would not restore: {problems_text(problems)}",
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
    def all(self) -> list:
        return [self.begin_backup, self.plan_backup, self.backup_postgres_mission, self.backup_postgres_system,
                self.backup_vectors, self.backup_fulltext, self.backup_graph, self.backup_objects,
                self.write_manifest, self.list_backups]
