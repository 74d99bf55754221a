"""The restore drill's own activities (VerifyBackupWorkflow, workflows/restore.py): a backup is
restored into a scratch schema and a drill namespace with the restore activities
(activities/ops/restore.py); these check the pg_dump archive, count what the drill restored
against what the backup recorded, and drop the drill again.
"""
from __future__ import annotations

import shutil

from temporalio import activity

from activities.ops import pg_dumps
from activities.ops.backup_area import BackupArea
from activities.ops.backup_checks import STORE_KINDS
from stratmaster.contracts.maintenance import CountInput, DropDrillInput, Empty, MissionCounts, ValidateInput, clip
from stratmaster.errors import CORRUPT_BACKUP, bad_input


class DrillActivities(BackupArea):
    """The drill's checks and clean-up (VerifyBackupWorkflow)."""

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

    @activity.defn(name="count_postgres_rows")
    async def count_postgres_rows(self, req: CountInput) -> MissionCounts:
        pool = await self.pool()
        schema = req.scratch_schema or "public"
        async with pool.acquire() as conn:
            tables, _unknown = await pg_dumps.mission_tables(conn)
            tid = await self._tenant_id(conn, req.pg_mission or req.mission, schema)
            counts = {t: 0 for t in tables} if tid is None else await pg_dumps.tenant_row_counts(conn, tables, tid, schema)
        return MissionCounts(mission=req.mission, counts=counts)

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
        return [self.check_pg_dump, self.count_postgres_rows, self.count_store_records, self.drop_drill]
