"""MaintenanceWorkflow against real PostgreSQL and the embedded stores: vacuum +
statistics, index optimisation, cartridge retention (+ the missions area's purge
as a child workflow), health as a child workflow, capacity report."""
from __future__ import annotations

import json
import uuid


from stratmaster import queues
from stratmaster.contracts.maintenance import BackupInput, MaintenanceInput
from tests.support.postgres import pg_connect
from tests.support.workers import queue_worker
from tests.ops_support import maintenance_worker, new_mission, replay_histories, seed_mission
from workflows.backup import BackupWorkflow, workflow_id_for
from workflows.maintenance import MaintenanceWorkflow


async def _run(client, kind: str):
    return await client.execute_workflow(MaintenanceWorkflow.run, MaintenanceInput(kind=kind),
                                         id=f"maintenance-{kind}-{uuid.uuid4().hex[:8]}", task_queue=queues.MAINTENANCE)


async def _set_cartridge(conn, mission: str, retention: dict) -> None:
    """The active cartridge as the missions area stores it (tenants.active_version ->
    mission_versions.cartridge); only the retention section matters here."""
    tid = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", mission)
    cartridge = {"format": 1, "metadata": {"id": mission, "name": mission, "version": "1.0.0"}, "retention": retention}
    await conn.execute(
        """INSERT INTO mission_versions (tenant_id, version, cartridge, sha256, created_by, activated_at)
           VALUES ($1, '1.0.0', $2::jsonb, $3, 'test', NOW())""", tid, json.dumps(cartridge), "0" * 64)
    await conn.execute("UPDATE tenants SET active_version = '1.0.0' WHERE id = $1", tid)


async def test_retention_from_cartridge_and_purge_of_expired_missions(client, settings, stores):
    keep_all, limited, expired = new_mission("ret"), new_mission("ret"), new_mission("ret")
    for m in (keep_all, limited, expired):
        await seed_mission(settings, stores, m, docs=1, sessions=2)
    async with pg_connect(settings) as conn:
        await _set_cartridge(conn, limited, {"research_days": 7, "backups_keep": 1})
        await _set_cartridge(conn, keep_all, {"research_days": None})
        for m in (keep_all, limited):  # one session of each is 30 days old
            await conn.execute(
                """UPDATE research_sessions SET created_at = NOW() - interval '30 days'
                   WHERE id = (SELECT id FROM research_sessions WHERE tenant_id = (SELECT id FROM tenants WHERE name = $1)
                               ORDER BY workflow_id LIMIT 1)""", m)
        await conn.execute("UPDATE tenants SET status = 'deactivated', deactivated_at = NOW() - interval '40 days', "
                           "purge_after = NOW() - interval '10 days' WHERE name = $1", expired)

    async with maintenance_worker(client, settings, stores), queue_worker(client, settings, queues.MISSIONS):
        backups = []
        for i in range(2):
            req = BackupInput(scope="mission", mission=limited, backup_id=f"{limited}-{i}")
            backups.append(await client.execute_workflow(BackupWorkflow.run, req, id=workflow_id_for(req),
                                                         task_queue=queues.MAINTENANCE))
        report = await _run(client, "retention")

    r = report.retention
    assert r.purged_sessions.get(limited) == 1
    assert keep_all not in r.purged_sessions  # research_days unset: kept forever
    assert r.pruned_backups == {limited: [backups[0].backup_id]}
    assert expired in r.purged_missions
    async with pg_connect(settings) as conn:
        async def sessions(m):
            return await conn.fetchval("SELECT COUNT(*) FROM research_sessions rs JOIN tenants t ON t.id = rs.tenant_id "
                                       "WHERE t.name = $1", m)
        assert await sessions(limited) == 1 and await sessions(keep_all) == 2
        # claims of the deleted session went with it
        assert await conn.fetchval("SELECT COUNT(*) FROM claims c JOIN tenants t ON t.id = c.tenant_id WHERE t.name = $1",
                                   limited) == 2
    assert await stores.objects.get_system(f"backups/{backups[1].backup_id}/manifest.json")
    assert not await stores.objects.list_system(f"backups/{backups[0].backup_id}/")
    assert await stores.vectors.count(expired) == 0


async def test_vacuum_optimise_health_capacity(client, settings, stores):
    mission = new_mission("cap")
    expected = await seed_mission(settings, stores, mission, docs=3, chunks_per_doc=4)
    async with maintenance_worker(client, settings, stores):
        vacuum = (await _run(client, "vacuum")).vacuum
        optimise = (await _run(client, "optimise")).optimise
        health = (await _run(client, "health")).health
        capacity_report = await _run(client, "capacity")

    stats = {s.table: s for s in vacuum.stats}
    assert {"documents", "chunks", "research_sessions", "claims"} <= set(vacuum.tables)
    assert stats["chunks"].last_vacuum is not None and stats["chunks"].last_analyze is not None
    assert stats["chunks"].live_rows >= expected["chunks"] and stats["chunks"].total_bytes > 0

    actions = optimise.actions[mission]
    assert actions["fulltext"].startswith("optimized"), actions
    assert actions["vectors"] == "vacuum analyze"  # pgvector: the mission table vacuumed and analysed

    assert health.ok, health.services
    assert {"database", "objects", "vectors", "fulltext", "graph"} <= {s.name for s in health.services}

    capacity = {m.mission: m for m in capacity_report.capacity.missions}[mission]
    assert capacity.rows["chunks"] == expected["chunks"] and capacity.rows["documents"] == expected["documents"]
    assert capacity.vectors == expected["chunks"] and capacity.index_docs == expected["chunks"]
    assert capacity.objects == expected["documents"] and capacity.object_bytes > 0
    assert capacity.graph_entities == 5 and capacity.graph_relations == 4
    assert capacity_report.capacity.database_bytes > 0
    assert capacity_report.finished_at >= capacity_report.started_at

    # replay every maintenance run (with its child workflow commands) under the current code
    import workers.maintenance

    spec = await workers.maintenance.build(settings, stores)
    assert await replay_histories(client, spec.workflows, ["MaintenanceWorkflow"]) >= 5
