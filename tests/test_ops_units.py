"""Small units of the operations area: heartbeats during long copies, ids and
names derived for backups/drills, cartridge retention parsing, schedule
definitions, pg_dump binary choice."""
from __future__ import annotations

import asyncio
import re
import subprocess

import asyncpg
import pytest
from temporalio.testing import ActivityEnvironment

import activities.backup as backup_mod
from activities.backup import BackupActivities
from activities.pg_dumps import client_bindir
from activities.retention import retention_section
from stratmaster import schedules as sched
from stratmaster.contracts.maintenance import BackupInput, BackupStep
from workflows.backup import backup_id_from, workflow_id_for
from workflows.restore import drill_names


class _SlowVectors:
    """A vector store whose dump takes a while (a big collection)."""

    async def dump(self, mission):
        await asyncio.sleep(0.5)
        return [{"id": "1", "vector": [0.1], "payload": {}}]

    async def count(self, mission):
        return 1


class _Objects:
    def __init__(self):
        self.system = {}

    async def put_system(self, key, data, content_type="application/octet-stream"):
        self.system[key] = data


class _Stores:
    def __init__(self):
        self.vectors, self.objects = _SlowVectors(), _Objects()


async def test_long_dump_heartbeats_while_it_runs(settings, monkeypatch):
    monkeypatch.setattr(backup_mod, "HEARTBEAT_EVERY_S", 0.05)
    beats = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    acts = BackupActivities(settings, _Stores())
    result = await env.run(acts.backup_vectors, BackupStep(backup_id="hb-test", mission="hb_mission"))
    assert result.counts == {"vectors": 1} and result.artefacts[0].rows == 1
    assert len([b for b in beats if b and b[0] == "dump vectors"]) >= 5  # ~0.5 s / 0.05 s


def test_backup_ids_and_drill_names_are_valid():
    assert backup_id_from("backup-system-nightly-2026-11-25T02:00:00Z") == "backup-system-nightly-2026-11-25t02-00-00z"
    assert BackupInput(scope="system", backup_id=backup_id_from("X" * 300)).backup_id
    req = BackupInput(scope="mission", mission="demo", backup_id="demo-1")
    assert workflow_id_for(req) == "backup-mission-demo-demo-1"
    assert workflow_id_for(BackupInput(scope="system")) == "backup-system-system"
    with pytest.raises(ValueError, match="needs a mission"):
        BackupInput(scope="mission")
    drill, schema = drill_names("m" * 48, "abcd1234", 3)
    assert len(drill) <= 48 and re.fullmatch(r"[a-z][a-z0-9_]{1,47}", drill) and schema == "drill_abcd1234_3"


def test_retention_section_from_cartridge_json():
    assert retention_section('{"retention": {"research_days": 7}}') == {"research_days": 7}
    assert retention_section({"retention": None}) == {} and retention_section("not json") == {}


def test_schedule_definitions():
    names = [d.name for d in sched.DEFINITIONS]
    assert len(names) == len(set(names))
    assert {"backup-nightly", "health-hourly", "vacuum-daily", "optimise-daily", "retention-daily",
            "capacity-weekly", "verify-nightly"} <= set(names)
    for d in sched.DEFINITIONS:
        assert d.overlap in (sched.SKIP, sched.BUFFER_ONE)
        assert sched.build_schedule(d).action.task_queue == "maintenance-tasks"


async def test_pg_dump_matches_server_major(postgres):
    conn = await asyncpg.connect(postgres.dsn)
    try:
        num = int(await conn.fetchval("SHOW server_version_num"))
    finally:
        await conn.close()
    out = subprocess.run([str(client_bindir(num) / "pg_dump"), "--version"], capture_output=True, text=True).stdout
    assert int(re.search(r"(\d+)\.\d+", out).group(1)) >= num // 10000


def test_drill_inputs_cannot_name_a_real_mission():
    from pydantic import ValidationError

    from stratmaster.contracts.maintenance import DropDrillInput, RestoreStep

    with pytest.raises(ValidationError):
        DropDrillInput(mission="demo", scratch_schema="drill_abcd1234_0")
    with pytest.raises(ValidationError):
        DropDrillInput(mission="demo_drill_abcd1234", scratch_schema="public")
    with pytest.raises(ValidationError, match="drill namespace"):
        RestoreStep(backup_id="b", source_mission="demo", target_mission="demo", scratch_schema="drill_abcd1234_0")
    assert RestoreStep(backup_id="b", source_mission="demo", target_mission="demo_drill_abcd1234",
                       scratch_schema="drill_abcd1234_0")
