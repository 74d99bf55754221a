"""The headline: activate a mission (ActivateMissionWorkflow), ingest documents
(IngestDocumentsWorkflow), run a research (ResearchWorkflow), back it up, wipe the
mission from every store, restore — and get identical BM25 + dense hits and
identical rows. All real workers in-process on their real queues."""
from __future__ import annotations

import asyncio
import base64
import contextlib
from pathlib import Path

import asyncpg
import pytest
import yaml

from activities.stores.factory import build_stores
from stratmaster import queues
from stratmaster.contracts.maintenance import BackupInput, RestoreInput, VerifyBackupInput
from stratmaster.search_attributes import for_mission
from tests.support.postgres import pg_connect
from tests.support.workers import queue_worker
from tests.ops_support import maintenance_worker, new_mission, store_counts, wipe_mission
from workflows.backup import BackupWorkflow, workflow_id_for
from workflows.restore import RestoreWorkflow, VerifyBackupWorkflow

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
DOCS = {
    "battery.md": "# Grid batteries\n\nLithium iron phosphate cells dominate grid-scale battery storage. "
                  "Sodium-ion batteries promise lower cost because sodium is abundant.\n\n"
                  "Flow batteries store energy in liquid electrolytes and suit long-duration storage.\n",
    "hydro.md": "# Pumped hydro\n\nPumped hydro storage moves water uphill when power is cheap and releases it "
                "through turbines at peak demand. It remains the largest source of stored energy worldwide.\n",
    "policy.md": "# Policy\n\nThe Inflation Reduction Act gives tax credits for standalone storage projects. "
                 "European rules under the Net-Zero Industry Act target domestic battery manufacturing.\n",
}
QUERIES = ["sodium-ion battery cost", "pumped hydro peak demand", "tax credits for storage"]
TABLES = ("documents", "chunks", "research_sessions", "claims")


async def _rows(settings, mission: str) -> dict[str, list]:
    """Every row of the mission's main tables, in a stable order (ids, text, offsets, JSON...)."""
    async with pg_connect(settings) as conn:
        tid = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", mission)
        return {t: [tuple(r) for r in await conn.fetch(f"SELECT * FROM {t} WHERE tenant_id = $1 ORDER BY id", tid)]
                for t in TABLES} if tid else {t: [] for t in TABLES}


async def _hits(stores, embedder, mission: str) -> dict:
    out = {}
    for q in QUERIES:
        out["bm25:" + q] = [(h.chunk_id, h.document_id, round(h.score, 6)) for h in await stores.fulltext.search(mission, q, 5)]
        vec = (await asyncio.to_thread(embedder.embed, [q]))[0]
        out["dense:" + q] = [(h.chunk_id, h.document_id, round(h.score, 5)) for h in await stores.vectors.search(mission, vec, 5)]
    return out


async def test_backup_wipe_restore_gives_identical_search_and_rows(client, settings):
    from activities.ingest.embedding import get_embedder
    from stratmaster.contracts.ingestion import DocumentRef, IngestInput
    from stratmaster.contracts.missions import ActivateMissionInput
    from stratmaster.contracts.research import ResearchInput
    from workflows.ingestion import IngestDocumentsWorkflow
    from workflows.missions import ActivateMissionWorkflow
    from workflows.research import ResearchWorkflow

    mission = new_mission("head")
    cartridge = yaml.safe_load((SAMPLES / "cartridges" / "demo.yaml").read_text())
    cartridge["metadata"]["id"] = mission
    stores = build_stores(settings)
    embedder = get_embedder(settings)

    async with contextlib.AsyncExitStack() as stack:
        for queue in (queues.MISSIONS, queues.INGESTION, queues.RESEARCH):
            await stack.enter_async_context(queue_worker(client, settings, queue))
        await stack.enter_async_context(maintenance_worker(client, settings, stores))

        activated = await client.execute_workflow(
            ActivateMissionWorkflow.run, ActivateMissionInput(cartridge=cartridge, actor="test"),
            id=f"mission-activate-{mission}-1.0.0", task_queue=queues.MISSIONS, search_attributes=for_mission(mission))
        assert activated.status == "activated", activated
        docs = [DocumentRef(name=n, content_b64=base64.b64encode(t.encode()).decode()) for n, t in DOCS.items()]
        await client.execute_workflow(IngestDocumentsWorkflow.run, IngestInput(mission=mission, documents=docs),
                                      id=f"ingest-{mission}-head", task_queue=queues.INGESTION,
                                      search_attributes=for_mission(mission))
        await client.execute_workflow(ResearchWorkflow.run, ResearchInput(mission=mission,
                                                                          query="How does grid battery storage compare?"),
                                      id=f"research-{mission}-head", task_queue=queues.RESEARCH,
                                      search_attributes=for_mission(mission))

        before_rows, before_hits = await _rows(settings, mission), await _hits(stores, embedder, mission)
        before_stores = await store_counts(stores, mission)
        assert all(before_rows[t] for t in TABLES), {t: len(v) for t, v in before_rows.items()}
        assert len(before_rows["documents"]) == len(DOCS) and before_stores["vectors"] == len(before_rows["chunks"])
        assert all(before_hits.values())

        req = BackupInput(scope="mission", mission=mission, backup_id=f"{mission}-head")
        backup = await client.execute_workflow(BackupWorkflow.run, req, id=workflow_id_for(req),
                                               task_queue=queues.MAINTENANCE, search_attributes=for_mission(mission))
        verify = await client.execute_workflow(VerifyBackupWorkflow.run, VerifyBackupInput(backup_id=backup.backup_id),
                                               id=f"verify-{backup.backup_id}", task_queue=queues.MAINTENANCE)
        assert verify.ok, verify.problems

        await wipe_mission(settings, stores, mission)
        assert await _rows(settings, mission) == {t: [] for t in TABLES}
        assert not any((await store_counts(stores, mission)).values())
        assert not any((await _hits(stores, embedder, mission)).values())

        await client.execute_workflow(RestoreWorkflow.run, RestoreInput(backup_id=backup.backup_id),
                                      id=f"restore-{backup.backup_id}", task_queue=queues.MAINTENANCE,
                                      search_attributes=for_mission(mission))

    assert await _rows(settings, mission) == before_rows  # same rows, same ids and content
    assert {t: len(v) for t, v in (await _rows(settings, mission)).items()} == \
        {t: len(v) for t, v in before_rows.items()}
    assert await store_counts(stores, mission) == before_stores
    assert await _hits(stores, embedder, mission) == before_hits
    conn = await asyncpg.connect(settings.database_url)
    try:  # the mission's active cartridge came back too
        assert await conn.fetchval("SELECT active_version FROM tenants WHERE name = $1", mission) == "1.0.0"
    finally:
        await conn.close()


pytestmark = pytest.mark.timeout(300)
