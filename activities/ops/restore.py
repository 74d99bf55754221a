"""Restore activities: validate a backup, then restore a mission (or the whole database)
from it, into the live tables or, for the drill, into a scratch schema and namespace.

Restore trusts nothing in a backup: validate_backup checks every name against
what the backup code derives (activities/ops/backup_checks.py), every artefact's size
and sha256, the store dumps' shape, and stages every PostgreSQL row in temporary
tables to check it belongs to its mission (pg_dumps.stage_mission) -- all before
the first write. Later steps re-read only the manifest validate_backup checked
(its sha256) and stage the rows again before inserting them.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg

from temporalio import activity

from activities.heartbeat import heartbeat, keep_alive
from activities.ops import pg_dumps, store_dumps
from activities.ops.backup_area import TARGET_NOT_EMPTY, BackupArea, problems_text, sha256_hex
from activities.ops.backup_checks import STORE_KINDS, manifest_problems, store_payload_problem
from stratmaster.contracts.maintenance import (
    Artefact, Empty, MissionCounts, MissionEntry, MissionsPage, MissionsPageInput, RestoreStep, ValidatedBackup,
    ValidateInput,
)
from stratmaster.errors import BAD_INPUT, CORRUPT_BACKUP, bad_input


class RestoreActivities(BackupArea):
    """Validating a backup and restoring from it (RestoreWorkflow; the drill restores with these too)."""

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
            raise bad_input(f"backup {req.backup_id} is corrupt or crafted, nothing restored: "
                            f"{problems_text(problems)}", CORRUPT_BACKUP)
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
            raise bad_input(f"backup {req.backup_id} is corrupt or crafted, nothing restored: "
                            f"{problems_text(problems)}", CORRUPT_BACKUP)
        if clashes:
            raise bad_input(f"backup {req.backup_id} cannot be restored, nothing changed: {problems_text(clashes)}",
                            TARGET_NOT_EMPTY)
        return ValidatedBackup(backup_id=req.backup_id, scope=manifest.scope, manifest_sha256=sha256_hex(raw),
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
                                    f"{problems_text(staged.problems)}", CORRUPT_BACKUP)
                if staged.clashes:
                    raise bad_input(f"backup {step.backup_id} cannot be restored: {problems_text(staged.clashes)}",
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

    def all(self) -> list:
        return [self.validate_backup, self.backup_missions, self.prepare_restore_target, self.restore_postgres_mission,
                self.restore_postgres_system, self.restore_vectors, self.restore_fulltext, self.restore_graph,
                self.restore_objects]
