"""Small units of the operations area: heartbeats during long copies, ids and
names derived for backups/drills, cartridge retention parsing, schedule
definitions, pg_dump binary choice."""
from __future__ import annotations

import asyncio
import hashlib
import re
import subprocess

import asyncpg
import pytest
from temporalio.testing import ActivityEnvironment

import activities.heartbeat as heartbeat_mod
from activities.ops.backup import BackupActivities
from activities.ops.restore import RestoreActivities
from activities.ops.pg_dumps import client_bindir
from activities.ops.retention import retention_section
from activities.resources import Resources
from stratmaster import schedules as sched
from stratmaster.contracts.maintenance import BackupInput, BackupPart, BackupStep
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
    monkeypatch.setattr(heartbeat_mod, "HEARTBEAT_EVERY_S", 0.05)
    beats = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    acts = BackupActivities(Resources(settings, stores=_Stores()))
    result = await env.run(acts.backup_vectors, BackupStep(backup_id="hb-test", mission="hb_mission"))
    assert result.counts == {"vectors": 1} and result.artefacts == 1  # a summary: the list is in parts/
    part = BackupPart.model_validate_json(acts.stores.objects.system["backups/hb-test/parts/hb_mission/vectors.json"])
    assert part.artefacts[0].rows == 1 and part.artefacts[0].name == "stores/hb_mission/vectors.jsonl"
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


async def test_mission_tables_allowlist_matches_the_schema(postgres):
    """Restore loads only pg_dumps.MISSION_TABLES: every table keyed by tenant_id
    after the migrations must be in it (a new one is added there, deliberately)."""
    from activities.ops.pg_dumps import MISSION_TABLES, NOT_BACKED_UP, mission_tables, tenant_tables

    conn = await asyncpg.connect(postgres.dsn)
    try:
        found = set(await tenant_tables(conn))
        assert found - NOT_BACKED_UP == set(MISSION_TABLES), "add the new table to MISSION_TABLES or NOT_BACKED_UP"
        known, unknown = await mission_tables(conn)
        assert unknown == [] and known.index("documents") < known.index("chunks")
    finally:
        await conn.close()


BAD_KEYS = ["loose.txt", "other/x.txt", "documents/a\\b.txt", "documents/x\ny", "documents/x\x01y", "documents//x",
            "documents/../x", "documents/./x", "/documents/x", "documents/" + "y" * 256, "documents/" + "z/" * 450 + "z",
            "documents/", ""]


async def test_one_object_key_rule_for_upload_backup_and_restore(tmp_path):
    """What the adapters' put refuses is exactly what backup skips and restore
    refuses (objects_fs.mission_key_problem); what put accepts backs up and restores."""
    from activities.stores.objects_fs import FsObjectStore, mission_key_problem
    from temporalio.exceptions import ApplicationError

    store = FsObjectStore(tmp_path / "objects" / "b")
    for key in BAD_KEYS:
        assert mission_key_problem(key), key
        with pytest.raises(ApplicationError) as err:
            await store.put("keys_m", key, b"x")
        assert err.value.type == "BadInput" and err.value.non_retryable
    good = ["documents/a/b.txt", "artifacts/cartridge/1.0.0.json", "documents/%2e%2e/x", "documents/é ü.txt",
            "documents/" + "y" * 255, "embeddings/trail."]
    for key in good:
        assert mission_key_problem(key) is None, key
        await store.put("keys_m", key, b"x")
    assert await store.list("keys_m") == sorted(good)


def _art(name, kind, mission="m_one", source_key=None, fmt="raw"):
    from stratmaster.contracts.maintenance import Artefact

    return Artefact(name=name, kind=kind, size=1, sha256="0" * 64, mission=mission, source_key=source_key, format=fmt)


def test_manifest_names_are_checked_against_what_backup_writes():
    from datetime import datetime, timezone

    from activities.ops.backup_checks import manifest_problems, object_artefact_name
    from stratmaster.contracts.maintenance import Manifest

    def manifest(*extra, tables=("documents",), missions=("m_one",), scope="mission"):
        arts = [_art("postgres/m_one/tenants.csv", "postgres-table", source_key="tenants", fmt="csv"),
                _art("postgres/m_one/documents.csv", "postgres-table", source_key="documents", fmt="csv"),
                _art("stores/m_one/vectors.jsonl", "vectors", fmt="jsonl"),
                _art(object_artefact_name("m_one", "documents/d/a.txt"), "object", source_key="documents/d/a.txt"),
                *extra]
        return Manifest(backup_id="b-1", scope=scope, missions=list(missions), created_at=datetime.now(timezone.utc),
                        tables=list(tables), artefacts=arts)

    assert manifest_problems(manifest(), "b-1") == []
    # format 1 named objects by their key: still fine when the key is
    assert manifest_problems(manifest(_art("objects/m_one/documents/d/b.txt", "object", source_key="documents/d/b.txt")),
                             "b-1") == []
    crafted = {
        "not a mission table": manifest(_art("postgres/m_one/../../x.csv", "postgres-table",
                                             source_key="../../tmp/x", fmt="csv"), tables=("documents", "../../tmp/x")),
        "audit_log' is not a mission table": manifest(_art("postgres/m_one/audit_log.csv", "postgres-table",
                                                           source_key="audit_log", fmt="csv")),
        "must be 'postgres/m_one/chunks.csv'": manifest(_art("postgres/m_one/../chunks.csv", "postgres-table",
                                                             source_key="chunks", fmt="csv")),
        "'..' segment": manifest(_art("objects/m_one/x", "object", source_key="documents/../../m_two/documents/x")),
        "must be 'objects/m_one/": manifest(_art("objects/m_one/../../x", "object", source_key="documents/x")),
        "bad mission id": manifest(missions=("m_one", "../etc")),
        "not one of the backup's missions": manifest(_art("stores/m_two/graph.jsonl", "graph", mission="m_two",
                                                          fmt="jsonl")),
        "a pg_dump must be": manifest(_art("postgres/stratmaster.dump", "postgres-dump", mission=None, fmt="pg_dump")),
        "unknown kind": manifest(_art("x/y", "shell")),
        "listed twice": manifest(_art("stores/m_one/vectors.jsonl", "vectors", fmt="jsonl")),
        "names backup": manifest(),
    }
    for expected, m in crafted.items():
        problems = manifest_problems(m, "b-2" if expected == "names backup" else "b-1")
        assert any(expected in p for p in problems), (expected, problems)


async def test_backup_results_stay_small_whatever_the_number_of_missions(settings, tmp_path):
    """write_manifest assembles the manifest from the steps' parts in the object
    store; what goes back to the workflow is bounded (MAX_DETAIL missions)."""
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from activities.ops.backup_checks import table_artefact_name
    from activities.stores.objects_fs import FsObjectStore
    from stratmaster.contracts.maintenance import (
        MAX_DETAIL, Artefact, ListBackupsInput, Manifest, MissionsPageInput, WriteManifestInput,
    )

    objects = FsObjectStore(tmp_path / "objects" / "b")
    acts = BackupActivities(Resources(settings, stores=SimpleNamespace(objects=objects)))
    n = 1200
    try:
        for i in range(n):
            mission = f"many_{i:05d}"
            await acts._write_part("many-1", BackupPart(
                mission=mission, step="postgres", counts={"documents": i, "chunks": 2 * i},
                artefacts=[Artefact(name=table_artefact_name(mission, "tenants"), kind="postgres-table", size=10,
                                    sha256="0" * 64, mission=mission, source_key="tenants", format="csv")]))
        result = await acts.write_manifest(WriteManifestInput(backup_id="many-1", scope="system",
                                                              created_at=datetime.now(timezone.utc)))
        assert result.missions == n and result.truncated and len(result.counts) == MAX_DETAIL
        assert len(result.model_dump_json()) < 64 * 1024
        manifest = Manifest.model_validate_json(await objects.get_system("backups/many-1/manifest.json"))
        assert len(manifest.missions) == n and manifest.counts["many_01199"]["chunks"] == 2398

        listed = await acts.list_backups(ListBackupsInput())
        assert [b.backup_id for b in listed.backups] == ["many-1"]
        assert listed.backups[0].mission_count == n and len(listed.backups[0].missions) == 20
        assert len(listed.model_dump_json()) < 16 * 1024
        raw = await objects.get_system("backups/many-1/manifest.json")
        page = await RestoreActivities(acts.resources).backup_missions(MissionsPageInput(
            backup_id="many-1", manifest_sha256=hashlib.sha256(raw).hexdigest(), after="many_00010", limit=25))
        assert [m.name for m in page.missions][:2] == ["many_00011", "many_00012"] and len(page.missions) == 25
        assert page.more
    finally:
        await acts.resources.close()
