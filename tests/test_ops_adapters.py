"""Backup/restore with the production adapters: MinIO object store (mission
objects and the system/backups area) and the OpenSearch full-text index, on the
real servers that scripts/services/{minio,opensearch}.sh start (skipped locally
when unset, failing under CI)."""
from __future__ import annotations

import uuid

import pytest
from temporalio.client import WorkflowFailureError

from activities.stores.factory import Stores
from activities.stores.graph_sqlite import SqliteGraphStore
from activities.stores.vectors_qdrant import QdrantVectorStore
from stratmaster import queues
from stratmaster.contracts.maintenance import BackupInput, Manifest, RestoreInput, VerifyBackupInput
from tests.adapters_support import make_minio, make_opensearch
from tests.ops_support import maintenance_worker, new_mission, pg_counts, seed_mission, store_counts, wipe_mission
from workflows.backup import BackupWorkflow, workflow_id_for
from workflows.restore import RestoreWorkflow, VerifyBackupWorkflow

pytestmark = [pytest.mark.minio, pytest.mark.opensearch]


@pytest.fixture
async def server_stores(settings):
    stores = Stores(objects=make_minio(bucket=f"ops-{uuid.uuid4().hex[:8]}"),
                    vectors=QdrantVectorStore.from_settings(settings),
                    fulltext=make_opensearch(), graph=SqliteGraphStore(settings.abs_data_dir))
    yield stores
    await stores.close()


async def test_backup_restore_verify_on_minio_and_opensearch(client, settings, server_stores):
    stores = server_stores
    mission = new_mission("srv")
    expected = await seed_mission(settings, stores, mission, docs=2)
    before_rows, before_counts = await pg_counts(settings, mission), await store_counts(stores, mission)
    before_bm25 = [(h.chunk_id, round(h.score, 4)) for h in await stores.fulltext.search(mission, "supply chain pricing", 5)]
    assert before_counts["fulltext_docs"] == expected["chunks"] and before_bm25

    async with maintenance_worker(client, settings, stores):
        req = BackupInput(scope="mission", mission=mission, backup_id=f"{mission}-srv")
        backup = await client.execute_workflow(BackupWorkflow.run, req, id=workflow_id_for(req),
                                               task_queue=queues.MAINTENANCE)
        manifest = Manifest.model_validate_json(await stores.objects.get_system(f"backups/{backup.backup_id}/manifest.json"))
        assert {a.kind for a in manifest.artefacts} >= {"postgres-table", "vectors", "fulltext", "graph", "object"}
        verify = await client.execute_workflow(VerifyBackupWorkflow.run, VerifyBackupInput(backup_id=backup.backup_id),
                                               id=f"verify-{backup.backup_id}", task_queue=queues.MAINTENANCE)
        assert verify.ok, verify.problems

        await wipe_mission(settings, stores, mission)
        assert not any((await store_counts(stores, mission)).values())
        await client.execute_workflow(RestoreWorkflow.run, RestoreInput(backup_id=backup.backup_id),
                                      id=f"restore-{backup.backup_id}", task_queue=queues.MAINTENANCE)
        assert await pg_counts(settings, mission) == before_rows
        assert await store_counts(stores, mission) == before_counts
        after = [(h.chunk_id, round(h.score, 4)) for h in await stores.fulltext.search(mission, "supply chain pricing", 5)]
        assert after == before_bm25

        # a flipped byte in MinIO is caught before the (replacing) restore touches anything
        key = f"backups/{backup.backup_id}/" + next(a.name for a in manifest.artefacts if a.kind == "fulltext")
        data = bytearray(await stores.objects.get_system(key))
        data[0] ^= 0x01
        await stores.objects.put_system(key, bytes(data))
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(RestoreWorkflow.run, RestoreInput(backup_id=backup.backup_id, replace=True),
                                          id=f"restore-{backup.backup_id}-corrupt", task_queue=queues.MAINTENANCE)
    assert await store_counts(stores, mission) == before_counts
