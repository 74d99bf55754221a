"""Mission lifecycle against the real Temporal dev server, PostgreSQL and the
embedded stores: activation provisions every store, same-version re-activation
is a no-op, a new version hot-reloads, rollback, export/import, deactivation
with retention and purge, an audit row for every write, replay determinism."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from temporalio.client import WorkflowFailureError
from temporalio.worker import Worker

from activities.missions import MissionActivities, cartridge_key
from activities.resources import Resources
from activities.stores.tenants import require_mission
from stratmaster import queues
from stratmaster.contracts.cartridge_validation import validate_cartridge
from stratmaster.contracts.missions import DeactivateMissionInput, MissionRef, PurgeExpiredInput, RollbackMissionInput
from activities.mission_config import MissionConfigReader
from tests.support.postgres import pg_connect
from tests.missions_support import (
    activate, cartridge_text, mission_worker, namespace_state, new_mission, pg_state, replay, start_activation,
)
from workflows.missions import (
    DeactivateMissionWorkflow, ExportMissionWorkflow, MissionConfigWorkflow, PurgeExpiredMissionsWorkflow,
    RollbackMissionWorkflow, ShowMissionWorkflow,
)


@pytest.fixture(scope="module")
async def worker(temporal_env, settings):
    async with mission_worker(temporal_env.client, settings) as spec:
        yield spec


def _id(kind: str, mission: str) -> str:
    return f"mission-{kind}-{mission}-{uuid.uuid4().hex[:6]}"


async def test_activate_provisions_every_store_and_audits(client, settings, worker):
    mission = new_mission()
    handle = await start_activation(client, cartridge_text(mission), actor="alice")
    res = await handle.result()
    assert (res.mission, res.version, res.status) == (mission, "1.0.0", "activated")
    assert res.steps == ["postgres", "vectors", "fulltext", "graph", "objects", "record"]

    stores = worker.extra["stores"]
    assert await namespace_state(stores, mission) == {"vectors": True, "fulltext": True, "graph": True, "objects": True}
    stored = await stores.objects.get(mission, cartridge_key("1.0.0"))
    assert b'"min_confidence": 0.3' in stored  # the demo cartridge's bar

    pg = await pg_state(settings, mission)
    assert pg["tenant"]["status"] == "active" and pg["tenant"]["active_version"] == "1.0.0"
    assert pg["versions"] == ["1.0.0"]
    actions = [a["action"] for a in pg["audit"]]
    assert actions == ["activate.provision.postgres", "activate.provision.vectors", "activate.provision.fulltext",
                       "activate.provision.graph", "activate.provision.objects", "activate"]
    assert {a["actor"] for a in pg["audit"]} == {"alice"}
    assert pg["audit"][-1]["detail"]["workflow_id"] == handle.id

    # mission-scoped activities of other areas now accept the mission
    async with pg_connect(settings) as conn:
        assert await require_mission(conn, mission)

    # same version again: a no-op, nothing written
    again = await activate(client, cartridge_text(mission))
    assert again.status == "unchanged"
    pg2 = await pg_state(settings, mission)
    assert len(pg2["audit"]) == len(pg["audit"])
    assert pg2["tenant"]["config_revision"] == pg["tenant"]["config_revision"]
    await replay(client, [handle])


async def test_same_version_with_different_content_is_rejected(client, settings, worker):
    mission = new_mission()
    await activate(client, cartridge_text(mission))
    with pytest.raises(WorkflowFailureError) as err:
        await activate(client, cartridge_text(mission, quality={"min_confidence": 0.9}))
    assert err.value.cause.type == "InvalidCartridge"
    assert "already exists with different content" in err.value.cause.message
    pg = await pg_state(settings, mission)
    assert pg["versions"] == ["1.0.0"] and pg["tenant"]["active_version"] == "1.0.0"


async def test_new_version_hot_reloads_in_a_running_worker(client, settings, worker, temporal_env):
    """A second worker (as another process would) keeps running; its activity
    sees the new thresholds within the reader's TTL, without a restart."""
    mission = new_mission()
    await activate(client, cartridge_text(mission, quality={"min_confidence": 0.5}))
    other = MissionActivities(Resources(settings, stores=worker.extra["stores"]),
                              reader=MissionConfigReader(settings, ttl=0.5))
    queue = f"test-config-{uuid.uuid4().hex[:6]}"

    async def seen() -> float:
        cfg = await client.execute_workflow(MissionConfigWorkflow.run, MissionRef(mission=mission),
                                            id=_id("config", mission), task_queue=queue)
        return cfg.cartridge.quality.min_confidence, cfg.version

    async with Worker(client, task_queue=queue, workflows=[MissionConfigWorkflow], activities=[other.effective_config]):
        assert await seen() == (0.5, "1.0.0")
        res = await activate(client, cartridge_text(mission, "1.1.0", quality={"min_confidence": 0.8}))
        assert (res.status, res.previous_version) == ("activated", "1.0.0")
        deadline = asyncio.get_running_loop().time() + 5
        while (got := await seen()) != (0.8, "1.1.0"):
            assert asyncio.get_running_loop().time() < deadline, got
            await asyncio.sleep(0.2)
    await other.close()
    await other.resources.close()
    # the mission worker itself invalidates on activation: it sees the change at once
    cfg = await client.execute_workflow(MissionConfigWorkflow.run, MissionRef(mission=mission),
                                        id=_id("config", mission), task_queue=queues.MISSIONS)
    assert cfg.cartridge.quality.min_confidence == 0.8


async def test_rollback_restores_previous_version(client, settings, worker):
    mission = new_mission()
    await activate(client, cartridge_text(mission, "1.0.0", quality={"min_confidence": 0.4}))
    await activate(client, cartridge_text(mission, "2.0.0", quality={"min_confidence": 0.6}))
    await activate(client, cartridge_text(mission, "3.0.0", quality={"min_confidence": 0.7}))

    h1 = await client.start_workflow(RollbackMissionWorkflow.run, RollbackMissionInput(mission=mission, actor="bob"),
                                     id=_id("rollback", mission), task_queue=queues.MISSIONS)
    res = await h1.result()
    assert (res.status, res.version, res.previous_version) == ("rolled_back", "2.0.0", "3.0.0")
    h2 = await client.start_workflow(RollbackMissionWorkflow.run, RollbackMissionInput(mission=mission, actor="bob"),
                                     id=_id("rollback", mission), task_queue=queues.MISSIONS)
    res = await h2.result()
    assert (res.version, res.previous_version) == ("1.0.0", "2.0.0")
    cfg = await worker.extra["missions"].reader.get(mission)
    assert (cfg.version, cfg.cartridge.quality.min_confidence) == ("1.0.0", 0.4)

    with pytest.raises(WorkflowFailureError) as err:  # nothing before 1.0.0
        await client.execute_workflow(RollbackMissionWorkflow.run, RollbackMissionInput(mission=mission),
                                      id=_id("rollback", mission), task_queue=queues.MISSIONS)
    assert "no previous version" in err.value.cause.message

    # explicit target
    res = await client.execute_workflow(RollbackMissionWorkflow.run,
                                        RollbackMissionInput(mission=mission, to_version="3.0.0"),
                                        id=_id("rollback", mission), task_queue=queues.MISSIONS)
    assert (res.version, res.previous_version) == ("3.0.0", "1.0.0")
    pg = await pg_state(settings, mission)
    assert pg["tenant"]["active_version"] == "3.0.0" and pg["versions"] == ["1.0.0", "2.0.0", "3.0.0"]
    assert [a["action"] for a in pg["audit"]].count("rollback") == 3
    detail = await client.execute_workflow(ShowMissionWorkflow.run, MissionRef(mission=mission),
                                           id=_id("show", mission), task_queue=queues.MISSIONS)
    assert [h.action for h in detail.history][:3] == ["rollback", "rollback", "rollback"]
    assert detail.cartridge.version == "3.0.0"
    await replay(client, [h1, h2])


async def test_export_then_import_round_trips(client, settings, worker):
    mission = new_mission()
    original = cartridge_text(mission, "1.2.0", entities=[{"name": "GADGET", "keywords": ["widget"],
                                                          "patterns": [r"\bW-\d+\b"]}])
    await activate(client, original)
    h = await client.start_workflow(ExportMissionWorkflow.run, MissionRef(mission=mission),
                                    id=_id("export", mission), task_queue=queues.MISSIONS)
    exported = await h.result()
    assert exported.version == "1.2.0"
    assert exported.sha256 == validate_cartridge(original).sha256 == validate_cartridge(exported.yaml).sha256
    assert exported.cartridge.entity_keywords() == {"GADGET": ["widget"]}
    assert [p.pattern for p in exported.cartridge.entity_patterns()["GADGET"]] == [r"\bW-\d+\b"]
    # importing the export is a no-op; importing it under another id makes a new mission
    assert (await activate(client, exported.yaml)).status == "unchanged"
    data = yaml.safe_load(exported.yaml)
    twin = new_mission("twin")
    data["metadata"]["id"] = twin
    res = await activate(client, yaml.safe_dump(data))
    assert (res.mission, res.status) == (twin, "activated")
    twin_cfg = await worker.extra["missions"].reader.get(twin)
    assert twin_cfg.cartridge.entity_keywords()["GADGET"] == ["widget"]
    await replay(client, [h])


async def test_deactivate_keeps_data_until_retention_then_purge(client, settings, worker):
    mission = new_mission()
    await activate(client, cartridge_text(mission, retention={"deactivated_days": 10}))
    stores = worker.extra["stores"]
    await stores.objects.put(mission, "documents/d1/a.txt", b"kept during retention")

    hd = await client.start_workflow(DeactivateMissionWorkflow.run, DeactivateMissionInput(mission=mission, actor="ops"),
                                     id=_id("deactivate", mission), task_queue=queues.MISSIONS)
    res = await hd.result()
    assert res.status == "deactivated"
    now = datetime.now(timezone.utc)
    assert timedelta(days=9, hours=23) < res.purge_after - now < timedelta(days=10, minutes=1)
    pg = await pg_state(settings, mission)
    assert pg["tenant"]["status"] == "deactivated" and pg["tenant"]["purge_after"] == res.purge_after
    assert pg["audit"][-1]["action"] == "deactivate" and pg["audit"][-1]["actor"] == "ops"
    again = await client.execute_workflow(DeactivateMissionWorkflow.run, DeactivateMissionInput(mission=mission),
                                          id=_id("deactivate", mission), task_queue=queues.MISSIONS)
    assert again.status == "unchanged" and again.purge_after == res.purge_after

    # retention not over: purge leaves it alone
    hp1 = await client.start_workflow(PurgeExpiredMissionsWorkflow.run, PurgeExpiredInput(missions=[mission]),
                                      id=_id("purge", mission), task_queue=queues.MISSIONS)
    early = await hp1.result()
    assert early.purged == [] and mission in early.waiting
    assert all((await namespace_state(stores, mission)).values())
    assert await stores.objects.get(mission, "documents/d1/a.txt") == b"kept during retention"

    # retention over: every store and the rows are gone
    later = res.purge_after + timedelta(seconds=1)
    hp2 = await client.start_workflow(PurgeExpiredMissionsWorkflow.run,
                                      PurgeExpiredInput(now=later, missions=[mission], actor="maint"),
                                      id=_id("purge", mission), task_queue=queues.MISSIONS)
    done = await hp2.result()
    assert done.purged == [mission]
    assert not any((await namespace_state(stores, mission)).values())
    pg = await pg_state(settings, mission)
    assert pg["tenant"] is None and pg["versions"] == []
    assert pg["audit"][-1]["action"] == "purge" and pg["audit"][-1]["actor"] == "maint"
    await replay(client, [hd, hp1, hp2])


async def test_deactivated_mission_can_be_reactivated(client, settings, worker):
    mission = new_mission()
    await activate(client, cartridge_text(mission))
    await client.execute_workflow(DeactivateMissionWorkflow.run, DeactivateMissionInput(mission=mission),
                                  id=_id("deactivate", mission), task_queue=queues.MISSIONS)
    res = await activate(client, cartridge_text(mission))
    assert res.status == "reactivated"
    pg = await pg_state(settings, mission)
    assert pg["tenant"]["status"] == "active" and pg["tenant"]["purge_after"] is None


async def test_plain_json_input_works(client, worker):
    """What `temporal workflow start --input '{...}'` sends: a plain JSON object."""
    mission = new_mission()
    from workflows.missions import ActivateMissionWorkflow

    res = await client.execute_workflow(
        "ActivateMissionWorkflow", {"cartridge": yaml.safe_load(cartridge_text(mission))},
        id=_id("activate", mission), task_queue=queues.MISSIONS, result_type=dict)
    assert res["status"] == "activated" and res["mission"] == mission
    assert ActivateMissionWorkflow  # same type name as registered


async def test_a_version_stored_before_a_schema_addition_stays_the_same_version(client, settings, worker):
    """A cartridge section added later (e.g. `cache`) gets its defaults when an older
    stored version is read back: re-importing the same file is still `unchanged`
    (not "already exists with different content") and the export passes its checksum."""
    import asyncpg

    from stratmaster.contracts.cartridge import stored_digest

    mission = new_mission()
    text = cartridge_text(mission)
    await activate(client, text)
    conn = await asyncpg.connect(settings.database_url)
    try:  # rewrite the stored version as an older release wrote it: no `cache` section, its digest
        raw = await conn.fetchval("""SELECT v.cartridge FROM mission_versions v JOIN tenants t ON t.id = v.tenant_id
                                     WHERE t.name = $1""", mission)
        import json

        old = json.dumps({k: v for k, v in json.loads(raw).items() if k != "cache"})
        await conn.execute("""UPDATE mission_versions v SET cartridge = $2, sha256 = $3 FROM tenants t
                              WHERE t.id = v.tenant_id AND t.name = $1""", mission, old, stored_digest(old))
    finally:
        await conn.close()
    assert (await activate(client, text)).status == "unchanged"
    h = await client.start_workflow(ExportMissionWorkflow.run, MissionRef(mission=mission),
                                    id=_id("export", mission), task_queue=queues.MISSIONS)
    exported = await h.result()
    assert exported.cartridge.cache.research_ttl_seconds == 3600
