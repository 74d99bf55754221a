"""Isolation between missions in every store, and hostile mission ids rejected
everywhere: cartridge, contracts, workflows, activities, stores, config reader, CLI."""
from __future__ import annotations

import asyncio
import uuid

import pydantic
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from typer.testing import CliRunner

from activities.stores.base import ObjectNotFound
from activities.stores.tenants import require_mission
from stratmaster import queues
from stratmaster.contracts.knowledge import Chunk, Entity, Relation
from stratmaster.contracts.cartridge_validation import validate_cartridge
from stratmaster.contracts.missions import (
    DeactivateMissionInput, DeactivateStep, MissionRef, PlanRollbackInput, RollbackMissionInput,
)
from tests.support.postgres import pg_connect
from tests.missions_support import activate, cartridge_dict, cartridge_text, mission_worker, new_mission
from workflows.missions import (
    DeactivateMissionWorkflow, ExportMissionWorkflow, MissionConfigWorkflow, RollbackMissionWorkflow,
    ShowMissionWorkflow,
)

HOSTILE = ["../a", "a;drop", "Upper", "a" * 49, "", "a/b", "tenants/x", "a b", "x\x00y"]


@pytest.fixture(scope="module")
async def worker(temporal_env, settings):
    async with mission_worker(temporal_env.client, settings) as spec:
        yield spec


async def test_mission_b_cannot_read_mission_a(client, settings, worker):
    a, b = new_mission("a"), new_mission("b")
    await activate(client, cartridge_text(a, quality={"min_confidence": 0.11}))
    await activate(client, cartridge_text(b, quality={"min_confidence": 0.22}))
    stores = worker.extra["stores"]
    secret = "ultrasecret xylophone ledger"
    doc_id = str(uuid.uuid4())
    chunk = Chunk(chunk_id=str(uuid.uuid5(uuid.UUID(doc_id), "0")), document_id=doc_id, ordinal=0, text=secret,
                  start=0, end=len(secret), token_count=3)
    vector = [1.0] + [0.0] * 383
    full_key = await stores.objects.put(a, f"documents/{doc_id}/secret.txt", secret.encode())
    await stores.vectors.upsert(a, [chunk], [vector])
    await stores.fulltext.index(a, [chunk])
    await stores.graph.upsert(a, [Entity(entity_id="x1", name="Xylophone", type="CONCEPT"),
                                  Entity(entity_id="l1", name="Ledger", type="CONCEPT")],
                              [Relation(source_id="x1", target_id="l1", type="RELATES_TO")])
    async with pg_connect(settings) as conn:
        tid_a = await require_mission(conn, a)
        await conn.execute(
            """INSERT INTO documents (id, tenant_id, sha256, source, object_key, content_type, size_bytes)
               VALUES ($1, $2, $3, 'secret.txt', $4, 'text/plain', 28)""",
            uuid.UUID(doc_id), tid_a, "0" * 64, full_key)
        tid_b = await require_mission(conn, b)
        assert await conn.fetchval("SELECT count(*) FROM documents WHERE tenant_id = $1", tid_b) == 0

    # A sees its own data (so the checks below can fail)...
    assert await stores.vectors.search(a, vector, 5)
    assert await stores.fulltext.search(a, "xylophone", 5)
    assert await stores.graph.neighbours(a, ["Xylophone"])
    # ...B sees none of it, whichever way it asks.
    assert await stores.objects.list(b) == ["artifacts/cartridge/1.0.0.json"]
    assert await stores.vectors.search(b, vector, 5) == []
    assert await stores.fulltext.search(b, "xylophone ultrasecret", 5) == []
    assert await stores.graph.neighbours(b, ["Xylophone"]) == []
    with pytest.raises(ObjectNotFound):
        await stores.objects.get(b, f"documents/{doc_id}/secret.txt")
    for key in (full_key, f"../{a}/documents/{doc_id}/secret.txt", f"documents/../../{a}/documents/{doc_id}/secret.txt"):
        with pytest.raises(ApplicationError) as err:
            await stores.objects.get(b, key)
        assert err.value.type == "BadInput"

    # mission-scoped activities for B return B's data only
    cfg = await client.execute_workflow(MissionConfigWorkflow.run, MissionRef(mission=b),
                                        id=f"cfg-{b}", task_queue=queues.MISSIONS)
    assert cfg.mission == b and cfg.cartridge.quality.min_confidence == 0.22
    exported = await client.execute_workflow(ExportMissionWorkflow.run, MissionRef(mission=b),
                                             id=f"export-{b}", task_queue=queues.MISSIONS)
    assert exported.cartridge.metadata.id == b and a not in exported.yaml
    detail = await client.execute_workflow(ShowMissionWorkflow.run, MissionRef(mission=b),
                                           id=f"show-{b}", task_queue=queues.MISSIONS)
    assert detail.summary.mission == b and a not in detail.model_dump_json()


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_ids_rejected_by_cartridge_and_contracts(bad):
    data = cartridge_dict("placeholder")
    data["metadata"]["id"] = bad
    result = validate_cartridge(data=data)
    assert not result.ok and [p.path for p in result.problems] == ["metadata.id"]
    with pytest.raises(pydantic.ValidationError):
        PlanRollbackInput(mission=bad)
    with pytest.raises(pydantic.ValidationError):
        DeactivateStep(mission=bad, actor="x", now="2026-01-01T00:00:00Z")


async def test_hostile_ids_rejected_by_workflows_activities_stores_and_reader(client, worker):
    stores = worker.extra["stores"]
    missions = worker.extra["missions"]
    for bad in HOSTILE[:4]:
        for run, arg in ((ShowMissionWorkflow.run, MissionRef(mission=bad)),
                         (ExportMissionWorkflow.run, MissionRef(mission=bad)),
                         (RollbackMissionWorkflow.run, RollbackMissionInput(mission=bad)),
                         (DeactivateMissionWorkflow.run, DeactivateMissionInput(mission=bad))):
            with pytest.raises(WorkflowFailureError) as err:
                await client.execute_workflow(run, arg, id=f"hostile-{uuid.uuid4().hex[:8]}",
                                              task_queue=queues.MISSIONS)
            assert err.value.cause.type == "BadInput" and "invalid mission id" in err.value.cause.message
        for call in (lambda: missions.show_mission(MissionRef(mission=bad)),
                     lambda: missions.export_mission(MissionRef(mission=bad)),
                     lambda: missions.reader.get(bad),
                     lambda: stores.objects.put(bad, "documents/x/y.txt", b"x"),
                     lambda: stores.objects.list(bad),
                     lambda: stores.vectors.ensure_collection(bad, 4),
                     lambda: stores.fulltext.ensure_index(bad),
                     lambda: stores.graph.ensure_space(bad)):
            with pytest.raises(ApplicationError) as err:
                await call()
            assert err.value.type == "BadInput"


async def test_cli_rejects_hostile_ids_and_invalid_files(tmp_path):
    from starters.cli import app

    runner = CliRunner()
    for args in (["missions", "show", "../a"], ["missions", "export", "a;drop"], ["missions", "rollback", "Upper"],
                 ["missions", "deactivate", "../../etc"]):
        res = await asyncio.to_thread(runner.invoke, app, args)
        assert res.exit_code == 2, res.output
        assert "invalid mission id" in res.output and "Traceback" not in res.output
