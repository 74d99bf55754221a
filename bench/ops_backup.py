"""Backup / validate / restore figures for one mission on the embedded stores and
a throwaway local PostgreSQL: seconds, artefact bytes, MB/s, restore/backup ratio.
Fake 384-d vectors (no model). Activities are called directly (no Temporal).
Writes bench/results/ops_backup.md.

    python bench/ops_backup.py [--docs 100] [--chunks 10]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tests.ops_support as ops  # noqa: E402
from activities.ops.backup import BackupActivities  # noqa: E402
from activities.ops.restore import RestoreActivities  # noqa: E402
from activities.resources import Resources  # noqa: E402
from activities.stores.factory import build_stores  # noqa: E402
from stratmaster.migrations import apply_migrations  # noqa: E402
from stratmaster.contracts.maintenance import (  # noqa: E402
    BackupStep, BeginBackupInput, PlanInput, RestoreStep, ValidateInput, WriteManifestInput,
)
from stratmaster.local_postgres import LocalPostgres  # noqa: E402
from stratmaster.settings import Settings  # noqa: E402
from bench.results import recorded  # noqa: E402


async def run(docs: int, chunks: int) -> None:
    from datetime import datetime, timezone

    from tests.support.ports import free_port

    ops.DIM = 384
    tmp = Path(tempfile.mkdtemp(prefix="bench-ops-"))
    pg = LocalPostgres(data_dir=tmp / "pg", port=free_port())
    pg.start()
    try:
        await apply_migrations(pg.dsn)
        settings = Settings(_env_file=None, data_dir=tmp / "data", database_url=pg.dsn)
        stores = build_stores(settings)
        mission = "bench_ops"
        t0 = time.perf_counter()
        await ops.seed_mission(settings, stores, mission, docs=docs, chunks_per_doc=chunks, sessions=5)
        seed_s = time.perf_counter() - t0
        acts = BackupActivities(Resources(settings, stores=stores))
        restore = RestoreActivities(acts.resources)
        await acts.begin_backup(BeginBackupInput(backup_id="bench-1"))
        plan = await acts.plan_backup(PlanInput(backup_id="bench-1", scope="mission", mission=mission))
        step = BackupStep(backup_id="bench-1", mission=mission, tenant_id=plan.missions[0].tenant_id)

        t0 = time.perf_counter()
        await asyncio.gather(acts.backup_postgres_mission(step), acts.backup_vectors(step),
                             acts.backup_fulltext(step), acts.backup_graph(step), acts.backup_objects(step))
        result = await acts.write_manifest(WriteManifestInput(backup_id="bench-1", scope="mission",
                                                              created_at=datetime.now(timezone.utc)))
        backup_s = time.perf_counter() - t0
        total = result.total_bytes

        t0 = time.perf_counter()
        validated = await restore.validate_backup(ValidateInput(backup_id="bench-1"))
        validate_s = time.perf_counter() - t0

        await ops.wipe_mission(settings, stores, mission)
        rstep = RestoreStep(backup_id="bench-1", source_mission=mission, target_mission=mission,
                            manifest_sha256=validated.manifest_sha256)
        t0 = time.perf_counter()
        await restore.prepare_restore_target(rstep)
        parts = {}

        async def timed(name, coro):
            t = time.perf_counter()
            await coro
            parts[name] = time.perf_counter() - t
        await asyncio.gather(timed("postgres", restore.restore_postgres_mission(rstep)),
                             timed("vectors", restore.restore_vectors(rstep)),
                             timed("fulltext", restore.restore_fulltext(rstep)), timed("graph", restore.restore_graph(rstep)),
                             timed("objects", restore.restore_objects(rstep)))
        restore_s = time.perf_counter() - t0
        n = docs * chunks
        assert await stores.vectors.count(mission) == n
        print(f"mission: {docs} documents, {n} chunks (384-d vectors), seeded in {seed_s:.1f}s")
        print(f"artefacts: {result.artefacts}, {total / 1e6:.2f} MB")
        print(f"backup   {backup_s:7.2f}s  {total / 1e6 / backup_s:6.1f} MB/s  {n / backup_s:8.0f} chunks/s")
        print(f"validate {validate_s:7.2f}s  {total / 1e6 / validate_s:6.1f} MB/s")
        print(f"restore  {restore_s:7.2f}s  {total / 1e6 / restore_s:6.1f} MB/s  {n / restore_s:8.0f} chunks/s")
        print("  restore parts (in parallel): " + ", ".join(f"{k} {v:.2f}s" for k, v in parts.items()))
        print(f"restore/backup time ratio: {restore_s / backup_s:.2f}")
        await acts.resources.close()
    finally:
        pg.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100)
    ap.add_argument("--chunks", type=int, default=10)
    args = ap.parse_args()
    with recorded(__file__, "Backup and restore"):
        asyncio.run(run(args.docs, args.chunks))


if __name__ == "__main__":
    main()
