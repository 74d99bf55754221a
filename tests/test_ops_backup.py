"""Backup, restore and verification against real PostgreSQL, the embedded stores
and the Temporal dev server (maintenance worker in-process on its real queue)."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import asyncpg
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.resources import Resources
from stratmaster import queues
from stratmaster.contracts.knowledge import Chunk
from stratmaster.contracts.maintenance import (
    MAX_DETAIL, BackupInput, BackupPart, Manifest, RestoreInput, VerifyBackupInput,
)
from stratmaster.search_attributes import for_mission
from tests.ops_support import (
    DIM, maintenance_worker, new_mission, pg_counts, replay_histories, seed_mission, store_counts, wipe_mission,
)
from workflows.backup import BackupWorkflow, workflow_id_for
from workflows.restore import RestoreWorkflow, VerifyBackupWorkflow
from tests.support.postgres import pg_connect

QUERIES = ["supply chain resilience", "pricing margin forecast", "audit compliance carbon"]


async def _backup(client, mission: str, backup_id: str | None = None):
    req = BackupInput(scope="mission", mission=mission, backup_id=backup_id or f"{mission}-{uuid.uuid4().hex[:6]}")
    return await client.execute_workflow(BackupWorkflow.run, req, id=workflow_id_for(req), task_queue=queues.MAINTENANCE,
                                         search_attributes=for_mission(mission))


async def _restore(client, backup_id: str, mission: str, replace: bool = False):
    return await client.execute_workflow(RestoreWorkflow.run, RestoreInput(backup_id=backup_id, replace=replace),
                                         id=f"restore-{backup_id}-{uuid.uuid4().hex[:6]}", task_queue=queues.MAINTENANCE,
                                         search_attributes=for_mission(mission))


async def _search_snapshot(stores, mission: str) -> dict:
    out = {}
    for q in QUERIES:
        out[f"bm25:{q}"] = [(h.chunk_id, round(h.score, 6)) for h in await stores.fulltext.search(mission, q, 5)]
    import random
    for i in range(3):
        vec = [random.Random(i).uniform(-1, 1) for _ in range(DIM)]
        out[f"dense:{i}"] = [(h.chunk_id, round(h.score, 6)) for h in await stores.vectors.search(mission, vec, 5)]
    return out


def _failure_type(exc: WorkflowFailureError) -> tuple[str | None, str]:
    cause = exc.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.cause
    return (cause.type, cause.message) if cause else (None, str(exc))


async def test_mission_backup_manifest_and_restore_into_wiped_mission(client, settings, stores):
    mission = new_mission()
    expected = await seed_mission(settings, stores, mission)
    before_rows, before_stores = await pg_counts(settings, mission), await store_counts(stores, mission)
    before_search = await _search_snapshot(stores, mission)
    assert before_rows == expected and before_stores["vectors"] == expected["chunks"]

    async with maintenance_worker(client, settings, stores):
        result = await _backup(client, mission)
        # manifest in the object store: every artefact with size + sha256
        raw = await stores.objects.get_system(f"backups/{result.backup_id}/manifest.json")
        manifest = Manifest.model_validate_json(raw)
        kinds = {a.kind for a in manifest.artefacts}
        assert {"postgres-table", "vectors", "fulltext", "graph", "object"} <= kinds
        for art in manifest.artefacts:
            data = await stores.objects.get_system(f"backups/{result.backup_id}/{art.name}")
            assert len(data) == art.size and __import__("hashlib").sha256(data).hexdigest() == art.sha256
        assert manifest.counts[mission]["chunks"] == expected["chunks"]
        assert manifest.counts[mission]["vectors"] == expected["chunks"]
        assert manifest.counts[mission]["objects"] == expected["documents"]

        await wipe_mission(settings, stores, mission)
        assert (await pg_counts(settings, mission))["chunks"] == 0 and (await store_counts(stores, mission))["vectors"] == 0

        restored = await _restore(client, result.backup_id, mission)
    assert restored.missions == [mission]
    assert await pg_counts(settings, mission) == before_rows
    assert await store_counts(stores, mission) == before_stores
    assert await _search_snapshot(stores, mission) == before_search


async def test_restore_refuses_non_empty_target_unless_replace(client, settings, stores):
    mission = new_mission()
    await seed_mission(settings, stores, mission, docs=2)
    before = await pg_counts(settings, mission)
    async with maintenance_worker(client, settings, stores):
        result = await _backup(client, mission)
        with pytest.raises(WorkflowFailureError) as err:
            await _restore(client, result.backup_id, mission)
        kind, message = _failure_type(err.value)
        assert kind == "TargetNotEmpty" and "not empty" in message and "replace" in message
        # replace wipes then restores: same data, not doubled
        await _restore(client, result.backup_id, mission, replace=True)
    assert await pg_counts(settings, mission) == before
    assert (await store_counts(stores, mission))["vectors"] == before["chunks"]


@pytest.mark.parametrize("damage", ["flip_byte", "delete_artefact", "bad_manifest"])
async def test_corrupt_or_incomplete_backup_refused_before_anything_changes(client, settings, stores, damage):
    mission = new_mission()
    await seed_mission(settings, stores, mission, docs=2)
    async with maintenance_worker(client, settings, stores):
        result = await _backup(client, mission)
        manifest = Manifest.model_validate_json(
            await stores.objects.get_system(f"backups/{result.backup_id}/manifest.json"))
        # change the live mission after the backup: a wipe + restore would visibly undo this
        async with pg_connect(settings) as conn:
            await conn.execute("""INSERT INTO research_sessions (tenant_id, query)
                                  SELECT id, 'after the backup' FROM tenants WHERE name = $1""", mission)
        await stores.fulltext.index(mission, [Chunk(chunk_id=str(uuid.uuid4()), document_id=str(uuid.uuid4()), ordinal=0,
                                                    text="written after the backup", start=0, end=24, token_count=4)])
        before_rows, before_stores = await pg_counts(settings, mission), await store_counts(stores, mission)
        target = next(a for a in manifest.artefacts if a.name.endswith("chunks.csv"))
        key = f"backups/{result.backup_id}/{target.name}"
        if damage == "flip_byte":
            data = bytearray(await stores.objects.get_system(key))
            data[len(data) // 2] ^= 0x01
            await stores.objects.put_system(key, bytes(data))
        elif damage == "delete_artefact":
            await stores.objects.delete_system(f"backups/{result.backup_id}/" + next(
                a.name for a in manifest.artefacts if a.kind == "vectors"))
        else:
            await stores.objects.put_system(f"backups/{result.backup_id}/manifest.json", b"{not json")

        # replace=True would wipe the target: validation must refuse first
        with pytest.raises(WorkflowFailureError) as err:
            await _restore(client, result.backup_id, mission, replace=True)
        kind, message = _failure_type(err.value)
        assert kind == "CorruptBackup", message
        assert {"flip_byte": "sha256 mismatch", "delete_artefact": "missing",
                "bad_manifest": "not a valid manifest"}[damage] in message

        verify = await client.execute_workflow(VerifyBackupWorkflow.run, VerifyBackupInput(backup_id=result.backup_id),
                                               id=f"verify-{result.backup_id}", task_queue=queues.MAINTENANCE)
    assert not verify.ok and not verify.checksums_ok and verify.problems
    assert before_rows["research_sessions"] == 3  # the two seeded + the one added after the backup
    assert await pg_counts(settings, mission) == before_rows
    assert await store_counts(stores, mission) == before_stores


async def test_verify_backup_drills_into_scratch_namespace_and_drops_it(client, settings, stores):
    mission = new_mission()
    expected = await seed_mission(settings, stores, mission, docs=2)
    async with maintenance_worker(client, settings, stores):
        result = await _backup(client, mission)
        # no id: the newest backup of the mission (what the nightly schedule verifies)
        verify = await client.execute_workflow(VerifyBackupWorkflow.run, VerifyBackupInput(mission=mission),
                                               id=f"verify-{result.backup_id}", task_queue=queues.MAINTENANCE)
    assert verify.backup_id == result.backup_id
    assert verify.ok, verify.problems
    assert verify.checksums_ok
    (drill,) = verify.drill_missions
    assert drill.startswith(f"{mission}_drill_")
    for key, want in expected.items():
        assert verify.restored[mission][key] == want
    assert verify.restored[mission]["vectors"] == expected["chunks"]
    # scratch namespace dropped everywhere; the live mission untouched
    assert await store_counts(stores, drill) == {"vectors": 0, "fulltext_docs": 0, "graph_entities": 0,
                                                 "graph_relations": 0, "objects": 0}
    async with pg_connect(settings) as conn:
        assert not await conn.fetchval("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name LIKE 'drill_%'")
        assert await conn.fetchval("SELECT COUNT(*) FROM tenants WHERE name = $1", drill) == 0
    assert await pg_counts(settings, mission) == expected


async def test_system_backup_pg_dump_and_verify(client, settings, stores):
    mission = new_mission()
    await seed_mission(settings, stores, mission, docs=1, sessions=1)
    async with maintenance_worker(client, settings, stores):
        await seed_mission(settings, stores, new_mission(), docs=1, sessions=1)
        # small pages, one page per run: the missions span several runs (continue-as-new)
        req = BackupInput(scope="system", backup_id=f"sys-{uuid.uuid4().hex[:8]}", page_size=2, pages_per_run=1)
        result = await client.execute_workflow(BackupWorkflow.run, req, id=workflow_id_for(req),
                                               task_queue=queues.MAINTENANCE)
        manifest = Manifest.model_validate_json(
            await stores.objects.get_system(f"backups/{result.backup_id}/manifest.json"))
        dump = next(a for a in manifest.artefacts if a.kind == "postgres-dump")
        assert (await stores.objects.get_system(f"backups/{result.backup_id}/{dump.name}"))[:5] == b"PGDMP"
        assert mission in manifest.missions and manifest.server_version and len(manifest.missions) >= 2
        assert result.missions == len(manifest.missions) and len(result.counts) == min(result.missions, MAX_DETAIL)
        assert [a.name for a in manifest.artefacts].count("postgres/stratmaster.dump") == 1
        verify = await client.execute_workflow(VerifyBackupWorkflow.run,
                                               VerifyBackupInput(backup_id=result.backup_id, page_size=2, pages_per_run=1),
                                               id=f"verify-{result.backup_id}", task_queue=queues.MAINTENANCE)
    assert verify.ok, verify.problems
    assert verify.mission_count == len(manifest.missions)
    short = verify.drill_missions[0].rsplit('_', 1)[1]
    assert verify.drill_missions == [f"{m[:30]}_drill_{short}" for m in manifest.missions][:MAX_DETAIL]
    runs = [wf async for wf in client.list_workflows(f"WorkflowId = '{workflow_id_for(req)}'")]
    assert len(runs) >= 2  # continued as new

    # workflow determinism: replay every ops workflow this module ran
    import workers.maintenance

    spec = await workers.maintenance.build(settings, stores)
    replayed = await replay_histories(client, spec.workflows, ["BackupWorkflow", "RestoreWorkflow", "VerifyBackupWorkflow"])
    assert replayed >= 5


async def test_unknown_mission_backup_is_a_clear_non_retryable_error(client, settings, stores):
    async with maintenance_worker(client, settings, stores):
        with pytest.raises(WorkflowFailureError) as err:
            await _backup(client, "nosuch_mission_x")
    kind, message = _failure_type(err.value)
    assert kind == "UnknownMission" and "nosuch_mission_x" in message


async def test_system_dump_restores_into_an_empty_database(settings, stores, postgres):
    """Disaster recovery path: pg_restore of the system dump into a fresh database
    (a scratch one here, so the shared test database is not clobbered)."""
    from activities.ops.backup import BackupActivities
    from activities.ops.restore import RestoreActivities
    from stratmaster.contracts.maintenance import BackupStep, RestoreStep

    await seed_mission(settings, stores, new_mission(), docs=1, sessions=1)
    acts = BackupActivities(Resources(settings, stores=stores))
    backup_id = f"sysdr-{uuid.uuid4().hex[:8]}"
    step = BackupStep(backup_id=backup_id, mission="")
    summary = await acts.backup_postgres_system(step)
    assert summary.artefacts == 1  # a summary; the artefact itself is in the step's part
    part = BackupPart.model_validate_json(await stores.objects.get_system(f"backups/{backup_id}/parts/_system/pg_dump.json"))
    manifest = Manifest(backup_id=backup_id, scope="system", missions=[], created_at=datetime.now(timezone.utc),
                        artefacts=part.artefacts)
    await stores.objects.put_system(f"backups/{backup_id}/manifest.json", manifest.model_dump_json().encode())
    scratch = f"scratch_{uuid.uuid4().hex[:8]}"
    async with pg_connect(settings) as conn:
        await conn.execute(f"CREATE DATABASE {scratch}")
        want = {t: await conn.fetchval(f"SELECT COUNT(*) FROM {t}") for t in ("tenants", "documents", "chunks", "claims")}
    scratch_url = settings.database_url.rsplit("/", 1)[0] + "/" + scratch
    target = RestoreActivities(Resources(settings.model_copy(update={"database_url": scratch_url}), stores=stores))
    try:
        await target.restore_postgres_system(RestoreStep(backup_id=backup_id, source_mission="", target_mission=""))
        sconn = await asyncpg.connect(scratch_url)
        try:
            got = {t: await sconn.fetchval(f"SELECT COUNT(*) FROM {t}") for t in want}
        finally:
            await sconn.close()
        assert got == want and want["chunks"] > 0
        # a second restore into the now non-empty database is refused without replace
        with pytest.raises(ApplicationError, match="replace"):
            await target.restore_postgres_system(RestoreStep(backup_id=backup_id, source_mission="", target_mission=""))
    finally:
        await target.resources.close()
        await acts.resources.close()
        async with pg_connect(settings) as conn:
            await conn.execute(f"DROP DATABASE IF EXISTS {scratch}")
