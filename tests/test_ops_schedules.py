"""Temporal Schedules against the real dev server: idempotent install (create,
then update in place), list, pause/unpause (survives a re-install), trigger
(a workflow run appears), delete — through stratmaster.schedules and the CLI."""
from __future__ import annotations

import asyncio
import json

import pytest
from temporalio.client import ScheduleOverlapPolicy
from temporalio.service import RPCError, RPCStatusCode
from typer.testing import CliRunner

from stratmaster import schedules as sched


@pytest.fixture
async def clean_schedules(client):
    async def wipe():
        async for s in await client.list_schedules():
            if s.id.startswith(sched.PREFIX):
                try:
                    await client.get_schedule_handle(s.id).delete()
                except RPCError as exc:  # listing is eventually consistent: a schedule the test deleted may still be listed
                    if exc.status != RPCStatusCode.NOT_FOUND:
                        raise
    await wipe()
    yield
    await wipe()  # no schedule may fire into later tests


async def _ids(client) -> set[str]:
    # schedule listing is eventually consistent (visibility); poll briefly
    want = {sched.schedule_id(d) for d in sched.DEFINITIONS}
    for _ in range(50):
        found = {s.id async for s in await client.list_schedules() if s.id.startswith(sched.PREFIX)}
        if found >= want:
            return found
        await asyncio.sleep(0.2)
    return found


async def test_install_is_idempotent_and_pause_trigger_delete_work(client, clean_schedules):
    first = await sched.install(client)
    assert set(first.values()) == {"created"} and len(first) == len(sched.DEFINITIONS)
    described = {sid: await client.get_schedule_handle(sid).describe() for sid in first}
    second = await sched.install(client)
    assert set(second.values()) == {"updated"} and set(second) == set(first)
    assert await _ids(client) == set(first)

    for sid, before in described.items():
        after = await client.get_schedule_handle(sid).describe()
        assert after.schedule.spec == before.schedule.spec
        assert after.schedule.action.workflow == before.schedule.action.workflow
        assert after.schedule.action.id == before.schedule.action.id
    backup = await client.get_schedule_handle("stratmaster-backup-nightly").describe()
    assert backup.schedule.policy.overlap == ScheduleOverlapPolicy.BUFFER_ONE
    health = await client.get_schedule_handle("stratmaster-health-hourly").describe()
    assert health.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert backup.schedule.action.workflow == "BackupWorkflow"
    assert backup.schedule.action.args and json.loads(backup.schedule.action.args[0].data)["scope"] == "system"

    # pause -> paused, and a re-install keeps it paused
    await sched.pause(client, "vacuum-daily")
    assert (await client.get_schedule_handle("stratmaster-vacuum-daily").describe()).schedule.state.paused
    await sched.install(client)
    assert (await client.get_schedule_handle("stratmaster-vacuum-daily").describe()).schedule.state.paused
    await sched.unpause(client, "vacuum-daily")
    assert not (await client.get_schedule_handle("stratmaster-vacuum-daily").describe()).schedule.state.paused

    # trigger -> a workflow run appears, with the schedule's workflow id prefix
    await sched.trigger(client, "health-hourly")
    run_id = None
    for _ in range(50):
        info = (await client.get_schedule_handle("stratmaster-health-hourly").describe()).info
        if info.recent_actions:
            run_id = info.recent_actions[-1].action.workflow_id
            break
        await asyncio.sleep(0.2)
    assert run_id and run_id.startswith("health-hourly")
    desc = await client.get_workflow_handle(run_id).describe()
    assert desc.workflow_type == "HealthCheckWorkflow"
    await client.get_workflow_handle(run_id).terminate("test: no worker needed")

    rows = {r["id"]: r for r in await sched.list_installed(client)}
    assert rows["stratmaster-health-hourly"]["runs"] >= 1 and not rows["stratmaster-health-hourly"]["paused"]
    assert rows["stratmaster-capacity-weekly"]["next"]

    await sched.delete(client, "capacity-weekly")
    assert "stratmaster-capacity-weekly" not in {r["id"] for r in await sched.list_installed(client)}
    with pytest.raises(KeyError, match="unknown schedule"):
        sched.by_name("nope")


def test_cli_schedules(temporal_env, clean_schedules, monkeypatch):
    from starters.cli import app
    from stratmaster.settings import get_settings

    monkeypatch.setenv("STRATMASTER_TEMPORAL_ADDRESS", temporal_env.client.service_client.config.target_host)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        for _ in range(2):  # twice: second run updates
            result = runner.invoke(app, ["schedules", "install"])
            assert result.exit_code == 0, result.output
        assert "stratmaster-backup-nightly: updated" in result.output
        result = runner.invoke(app, ["schedules", "pause", "backup-nightly"])
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["schedules", "list", "--json"])
        rows = {r["id"]: r for r in json.loads(result.output)}
        assert rows["stratmaster-backup-nightly"]["paused"] and not rows["stratmaster-health-hourly"]["paused"]
        result = runner.invoke(app, ["schedules", "pause", "no-such"])
        assert result.exit_code == 2 and "unknown schedule" in result.output and "Traceback" not in result.output
        result = runner.invoke(app, ["schedules", "delete", "backup-nightly"])
        assert result.exit_code == 0
        result = runner.invoke(app, ["schedules", "trigger", "backup-nightly"])
        assert result.exit_code == 1 and "not installed" in result.output
    finally:
        get_settings.cache_clear()
