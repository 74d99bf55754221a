"""Activation is a saga: a malformed cartridge never creates anything; a failure
(or cancellation) at a late step undoes every completed step in reverse; an
existing mission that fails to move to a new version keeps its data and its
previous active version. Failures are injected by registering a test-only
activity under the real activity's name."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError

from activities.missions import cartridge_key
from stratmaster.contracts.missions import StepInput, StepResult
from stratmaster.contracts.knowledge import Chunk, Entity
from tests.missions_support import (
    INVALID, activate, cartridge_text, mission_worker, namespace_state, new_mission, pg_state, replay,
    start_activation,
)

CLEAN = {"vectors": False, "fulltext": False, "graph": False, "objects": False}


def _queue() -> str:
    return f"test-missions-{uuid.uuid4().hex[:8]}"


@activity.defn(name="mission_record_active")
async def failing_record(req: StepInput) -> StepResult:
    raise ApplicationError("injected failure at the last step", type="InjectedFailure", non_retryable=True)


async def test_malformed_cartridge_never_activates_anything(client, settings):
    queue = _queue()
    mission = new_mission()
    schema_errors = INVALID.read_text().replace("../Demo", mission)  # valid id, every other problem kept
    syntax_error = cartridge_text(mission).replace("metadata:", "metadata: [", 1)
    async with mission_worker(client, settings, task_queue=queue) as spec:
        handles = []
        for text, expect in ((schema_errors, "metadata.version"), (syntax_error, "invalid YAML")):
            h = await start_activation(client, text, task_queue=queue)
            handles.append(h)
            with pytest.raises(WorkflowFailureError) as err:
                await h.result()
            cause = err.value.cause
            assert cause.type == "InvalidCartridge" and expect in cause.message
        problems = err.value.cause.details[0]  # the syntax error, as (path, reason, line) records
        assert problems[0]["path"] == "<document>" and problems[0]["line"] == 4
        assert await namespace_state(spec.extra["stores"], mission) == CLEAN
    pg = await pg_state(settings, mission)
    assert pg == {"tenant": None, "versions": [], "audit": []}
    await replay(client, handles)


async def test_late_failure_undoes_every_step_of_a_new_mission(client, settings):
    queue = _queue()
    mission = new_mission()
    async with mission_worker(client, settings, {"mission_record_active": failing_record}, queue) as spec:
        h = await start_activation(client, cartridge_text(mission), actor="carol", task_queue=queue)
        with pytest.raises(WorkflowFailureError) as err:
            await h.result()
        assert err.value.cause.type == "InjectedFailure"
        assert "failed at step record" in err.value.cause.message
        assert await namespace_state(spec.extra["stores"], mission) == CLEAN
    pg = await pg_state(settings, mission)
    assert pg["tenant"] is None and pg["versions"] == []
    undone = [a["action"] for a in pg["audit"] if ".undo." in a["action"]]
    assert undone == ["activate.undo.record", "activate.undo.objects", "activate.undo.graph",
                      "activate.undo.fulltext", "activate.undo.vectors", "activate.undo.postgres"]
    assert {a["actor"] for a in pg["audit"]} == {"carol"}
    await replay(client, [h])


async def test_failed_upgrade_keeps_existing_data_and_version(client, settings):
    queue = _queue()
    mission = new_mission()

    def record_then_fail(spec):
        real = spec.extra["missions"].record_active

        @activity.defn(name="mission_record_active")
        async def flaky(req: StepInput) -> StepResult:
            await real(req)  # the version switch happened, then the reply is lost for good
            raise ApplicationError("injected failure after recording", type="InjectedFailure", non_retryable=True)
        return {"mission_record_active": flaky}

    async with mission_worker(client, settings, task_queue=queue) as spec:
        await activate(client, cartridge_text(mission, "1.0.0", quality={"min_confidence": 0.3}), task_queue=queue)
        stores = spec.extra["stores"]
        chunk = Chunk(chunk_id=str(uuid.uuid4()), document_id=str(uuid.uuid4()), ordinal=0, text="zinc air cells",
                      start=0, end=14, token_count=3)
        await stores.objects.put(mission, "documents/d/zinc.txt", b"zinc air cells")
        await stores.vectors.upsert(mission, [chunk], [[0.1] * 384])
        await stores.fulltext.index(mission, [chunk])
        await stores.graph.upsert(mission, [Entity(entity_id="e1", name="Zinc", type="CONCEPT")], [])
    async with mission_worker(client, settings, record_then_fail, queue) as spec:
        h = await start_activation(client, cartridge_text(mission, "2.0.0", quality={"min_confidence": 0.9}),
                                   task_queue=queue)
        with pytest.raises(WorkflowFailureError):
            await h.result()
        stores = spec.extra["stores"]
        assert await stores.objects.get(mission, "documents/d/zinc.txt") == b"zinc air cells"
        assert await stores.objects.exists(mission, cartridge_key("1.0.0"))
        assert not await stores.objects.exists(mission, cartridge_key("2.0.0"))
        assert await stores.vectors.count(mission) == 1
        assert await stores.fulltext.count(mission) == 1
        assert (await stores.graph.count(mission))[0] == 1
        cfg = await spec.extra["missions"].reader.get(mission)
        assert (cfg.version, cfg.status, cfg.cartridge.quality.min_confidence) == ("1.0.0", "active", 0.3)
    pg = await pg_state(settings, mission)
    assert pg["tenant"]["status"] == "active" and pg["tenant"]["active_version"] == "1.0.0"
    assert pg["versions"] == ["1.0.0"]
    undo_record = [a for a in pg["audit"] if a["action"] == "activate.undo.record"]
    assert undo_record[0]["detail"]["result"] == "active version restored to 1.0.0"
    await replay(client, [h])


async def test_cancellation_also_undoes(client, settings):
    queue = _queue()
    mission = new_mission()
    started = asyncio.Event()

    @activity.defn(name="mission_provision_objects")
    async def hang(req: StepInput) -> StepResult:
        started.set()
        while True:
            activity.heartbeat()
            await asyncio.sleep(0.1)

    async with mission_worker(client, settings, {"mission_provision_objects": hang}, queue) as spec:
        h = await start_activation(client, cartridge_text(mission), task_queue=queue)
        await asyncio.wait_for(started.wait(), 30)
        assert (await namespace_state(spec.extra["stores"], mission))["graph"]  # earlier steps done
        await h.cancel()
        with pytest.raises(WorkflowFailureError) as err:
            await h.result()
        assert isinstance(err.value.cause, CancelledError)
        assert await namespace_state(spec.extra["stores"], mission) == CLEAN
    pg = await pg_state(settings, mission)
    assert pg["tenant"] is None
    assert [a["action"] for a in pg["audit"]][-1] == "activate.undo.postgres"
    await replay(client, [h])


async def test_stale_plan_cannot_overwrite_a_concurrent_activation(client, settings):
    """Two activations racing: the one whose plan went stale fails its compare-and-set
    and its undo removes only its own version, never the mission's data."""
    from stratmaster.contracts.cartridge_validation import validate_cartridge
    from stratmaster.contracts.missions import PlanActivationInput, UndoInput, ValidatedCartridge

    queue = _queue()
    mission = new_mission()
    async with mission_worker(client, settings, task_queue=queue) as spec:
        missions = spec.extra["missions"]
        await activate(client, cartridge_text(mission, "1.0.0"), task_queue=queue)
        v2 = validate_cartridge(cartridge_text(mission, "2.0.0"))
        stale = await missions.plan_activation(PlanActivationInput(
            validated=ValidatedCartridge(cartridge=v2.cartridge, sha256=v2.sha256)))
        assert stale.tenant_existed and stale.previous_version == "1.0.0"
        await activate(client, cartridge_text(mission, "3.0.0"), task_queue=queue)  # wins the race

        step = StepInput(plan=stale, actor="racer", workflow_id="race")
        await missions.provision_postgres(step)
        with pytest.raises(ApplicationError) as err:
            await missions.record_active(step)
        assert err.value.type == "ConcurrentMissionChange"
        for name in ("record", "objects", "graph", "fulltext", "vectors", "postgres"):
            await missions.undo(UndoInput(step=step, name=name))
        assert all((await namespace_state(spec.extra["stores"], mission)).values())
    pg = await pg_state(settings, mission)
    assert pg["tenant"]["active_version"] == "3.0.0" and pg["versions"] == ["1.0.0", "3.0.0"]
