"""The operations CLI (`stratmaster backup|restore|maintenance|analytics`) against the
dev server with the maintenance worker in-process: results printed, errors as one line."""
from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from activities.stores.factory import build_stores
from tests.ops_support import maintenance_worker, new_mission, replay_histories, seed_mission


@pytest.fixture
def cli(temporal_env, monkeypatch):
    from starters.cli import app
    from stratmaster.settings import get_settings

    monkeypatch.setenv("STRATMASTER_TEMPORAL_ADDRESS", temporal_env.client.service_client.config.target_host)
    get_settings.cache_clear()
    runner = CliRunner()

    async def invoke(*args: str):
        # the CLI runs its own event loop: give it a thread
        result = await asyncio.to_thread(runner.invoke, app, list(args))
        result.text = " ".join(result.output.split())  # rich wraps long lines
        return result
    yield invoke
    get_settings.cache_clear()


def _json(output: str) -> dict:
    return json.loads(output[output.index("{"):])


async def test_backup_restore_maintenance_analytics_commands(client, settings, cli):
    stores = build_stores(settings)
    mission = new_mission("cli")
    await seed_mission(settings, stores, mission, docs=1, sessions=1)
    bid = f"{mission}-cli"
    async with maintenance_worker(client, settings, stores):
        r = await cli("backup", "create")
        assert r.exit_code == 2 and "exactly one of" in r.text

        r = await cli("backup", "create", "--mission", mission, "--id", bid)
        assert r.exit_code == 0, r.output
        assert _json(r.output)["backup_id"] == bid

        r = await cli("backup", "list", "--mission", mission, "--json")
        assert r.exit_code == 0, r.output
        assert [b["backup_id"] for b in _json(r.output)["backups"]] == [bid]

        r = await cli("backup", "verify", bid)
        assert r.exit_code == 0, r.output
        assert _json(r.output)["ok"] is True

        r = await cli("restore", f"system/backups/{bid}/manifest.json")
        assert r.exit_code == 1 and "not empty" in r.text and "Traceback" not in r.output

        r = await cli("restore", bid, "--replace")
        assert r.exit_code == 0, r.output
        assert _json(r.output)["counts"][mission]["chunks"] == 4

        r = await cli("restore", "no-such-backup")
        assert r.exit_code == 1 and "manifest.json not found" in r.text

        r = await cli("maintenance", "run", "capacity")
        assert r.exit_code == 0, r.output
        assert mission in {m["mission"] for m in _json(r.output)["capacity"]["missions"]}
        r = await cli("maintenance", "run", "bogus")
        assert r.exit_code == 2 and "unknown maintenance kind" in r.text

        r = await cli("analytics", "export", "--mission", mission)
        assert r.exit_code == 0, r.output
        rows = _json(r.output)["rows"]
        assert [(x["tenant_name"], x["total_sessions"], x["total_claims"]) for x in rows] == [(mission, 1, 2)]

    import workers.maintenance

    spec = await workers.maintenance.build(settings, stores)
    assert await replay_histories(client, spec.workflows, ["ListBackupsWorkflow"]) >= 1
