"""Hostile backups and inputs against real PostgreSQL, the embedded stores (MinIO
for the object-key test) and the Temporal dev server, maintenance worker in-process.

A real backup is taken, then its manifest/artefacts are tampered with in the
object store (sizes and sha256 recomputed, so only the restore's own checks can
catch it). Every crafted backup must fail with a non-retryable error naming the
problem BEFORE anything is touched: the target mission (restored with replace,
which would wipe it first) and the other mission keep exactly their data."""
from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import os
import uuid
from datetime import datetime, timezone

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.resources import Resources
from activities.stores.factory import Stores
from stratmaster import queues
from stratmaster.contracts.maintenance import (
    Artefact, BackupInput, Manifest, RestoreInput, VerifyBackupInput,
)
from stratmaster.search_attributes import for_mission
from tests.adapters_support import MINIO_ENV, make_minio, require_server
from tests.ops_support import (
    maintenance_worker, new_mission, pg_counts, seed_mission, store_counts, wipe_mission,
)
from workflows.backup import BackupWorkflow, workflow_id_for
from workflows.restore import RestoreWorkflow, VerifyBackupWorkflow
from tests.support.postgres import pg_connect


async def _backup(client, mission: str, **kw):
    req = BackupInput(scope="mission", mission=mission, backup_id=f"{mission}-{uuid.uuid4().hex[:6]}", **kw)
    return await client.execute_workflow(BackupWorkflow.run, req, id=workflow_id_for(req), task_queue=queues.MAINTENANCE,
                                         search_attributes=for_mission(mission))


async def _restore(client, backup_id: str, **kw):
    return await client.execute_workflow(RestoreWorkflow.run, RestoreInput(backup_id=backup_id, **kw),
                                         id=f"restore-{backup_id}-{uuid.uuid4().hex[:6]}", task_queue=queues.MAINTENANCE)


def _failure(exc: WorkflowFailureError) -> tuple[str | None, str]:
    cause = exc.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.cause
    return (cause.type, cause.message) if cause else (None, str(exc))


class Tamper:
    """Edit a backup in the object store the way an attacker with write access
    to system/backups/ would: artefacts rewritten, sizes and sha256 updated."""

    def __init__(self, stores, backup_id: str, manifest: Manifest):
        self.stores, self.backup_id, self.manifest = stores, backup_id, manifest

    @classmethod
    async def load(cls, stores, backup_id: str) -> "Tamper":
        raw = await stores.objects.get_system(f"backups/{backup_id}/manifest.json")
        return cls(stores, backup_id, Manifest.model_validate_json(raw))

    def artefact(self, name_suffix: str) -> Artefact:
        return next(a for a in self.manifest.artefacts if a.name.endswith(name_suffix))

    async def read(self, art: Artefact) -> bytes:
        return await self.stores.objects.get_system(f"backups/{self.backup_id}/{art.name}")

    async def write(self, art: Artefact, data: bytes) -> None:
        await self.stores.objects.put_system(f"backups/{self.backup_id}/{art.name}", data)
        art.size, art.sha256 = len(data), hashlib.sha256(data).hexdigest()
        if art not in self.manifest.artefacts:
            self.manifest.artefacts.append(art)

    async def append_row(self, table: str, mission: str, change) -> None:
        """Append (after the real rows) a copy of the table's last row, edited by `change`."""
        art = self.artefact(f"postgres/{mission}/{table}.csv")
        data = await self.read(art)
        rows = list(csv.DictReader(io.StringIO(data.decode())))
        header = next(csv.reader(io.StringIO(data.decode())))
        row = dict(rows[-1]) if rows else {c: "" for c in header}
        change(row)
        out = io.StringIO()
        csv.DictWriter(out, fieldnames=header, lineterminator="\n").writerow(row)
        await self.write(art, data + out.getvalue().encode())

    async def save(self) -> None:
        await self.stores.objects.put_system(f"backups/{self.backup_id}/manifest.json",
                                             self.manifest.model_dump_json().encode())


async def _ids(settings, sql: str, *args) -> list:
    async with pg_connect(settings) as conn:
        return [r[0] for r in await conn.fetch(sql, *args)]


SCENARIOS = {
    # name -> (expected error type, words in the message)
    "traversal_table": ("CorruptBackup", "is not a mission table"),
    "unknown_table": ("CorruptBackup", "'audit_log' is not a mission table"),
    "foreign_tenant_row": ("CorruptBackup", "row(s) of another mission"),
    "foreign_reference": ("CorruptBackup", "reference research_sessions rows outside this mission's backup"),
    "mission_column": ("CorruptBackup", "naming another mission in column 'mission'"),
    "object_key_traversal": ("CorruptBackup", "'..' segment"),
    "bad_store_dump": ("CorruptBackup", "graph.jsonl: line 2 is not JSON"),
    "key_of_another_mission": ("TargetNotEmpty", "of another mission's rows"),
}


@pytest.mark.parametrize("attack", list(SCENARIOS))
async def test_crafted_backup_is_refused_before_anything_changes(client, settings, stores, attack):
    a, b = new_mission("hx"), new_mission("hy")
    await seed_mission(settings, stores, a, docs=2)
    await seed_mission(settings, stores, b, docs=1)
    (tid_a,) = await _ids(settings, "SELECT id FROM tenants WHERE name = $1", a)
    (tid_b,) = await _ids(settings, "SELECT id FROM tenants WHERE name = $1", b)
    marker = uuid.uuid4().hex[:10]
    escaped = settings.abs_data_dir / "tmp" / f"escaped_{marker}.csv"
    async with maintenance_worker(client, settings, stores):
        backup = await _backup(client, a)
        t = await Tamper.load(stores, backup.backup_id)
        if attack == "traversal_table":
            # the old restore wrote <workdir>/../../../escaped_<marker>.csv, then loaded "table" of that name
            name = f"../../../escaped_{marker}"
            await t.write(Artefact(name=f"postgres/{a}/evil.csv", kind="postgres-table", size=0, sha256="",
                                   mission=a, source_key=name, format="csv"), b"id\n1\n")
            t.manifest.tables.append(name)
        elif attack == "unknown_table":
            await t.write(Artefact(name=f"postgres/{a}/audit_log.csv", kind="postgres-table", size=0, sha256="",
                                   mission=a, source_key="audit_log", format="csv"),
                          f"actor,action,mission\nhostile-{marker},smuggled,{b}\n".encode())
            t.manifest.tables.append("audit_log")
        elif attack == "foreign_tenant_row":
            # the first row is the mission's own: only a later row belongs to another mission
            def to_b(row):
                row.update(id=str(uuid.uuid4()), tenant_id=str(tid_b),
                           sha256=hashlib.sha256(marker.encode()).hexdigest())
            await t.append_row("documents", a, to_b)
        elif attack == "foreign_reference":
            (session_b,) = await _ids(settings, "SELECT id FROM research_sessions WHERE tenant_id = $1 LIMIT 1", tid_b)

            def cite_b(row):
                row.update(id=str(uuid.uuid4()), session_id=str(session_b), text=f"claim {marker}")
            await t.append_row("claims", a, cite_b)
        elif attack == "mission_column":
            def usage_of_b(row):
                row.update(id=str(9_000_000_000 + int(marker[:6], 16)), tenant_id=str(tid_a), mission=b, model="m",
                           prompt_tokens="1", completion_tokens="1", cost_usd="0", purpose="x")
            await t.append_row("llm_usage", a, usage_of_b)
        elif attack == "object_key_traversal":
            await t.write(Artefact(name=f"objects/{a}/evil", kind="object", size=0, sha256="", mission=a,
                                   source_key=f"documents/../../{b}/documents/evil.txt"), b"evil")
        elif attack == "bad_store_dump":
            art = t.artefact(f"stores/{a}/graph.jsonl")
            lines = (await t.read(art)).decode().splitlines()
            await t.write(art, "\n".join([lines[0], "{not json", *lines[1:]]).encode() + b"\n")
        elif attack == "key_of_another_mission":
            (doc_b,) = await _ids(settings, "SELECT id FROM documents WHERE tenant_id = $1 LIMIT 1", tid_b)

            def steal_id(row):
                row.update(id=str(doc_b), sha256=hashlib.sha256(marker.encode()).hexdigest())
            await t.append_row("documents", a, steal_id)
        await t.save()

        before = {m: (await pg_counts(settings, m), await store_counts(stores, m)) for m in (a, b)}
        # replace=True: the old restore wiped the target before it ever looked at the rows
        with pytest.raises(WorkflowFailureError) as err:
            await _restore(client, backup.backup_id, replace=True)
        kind, message = _failure(err.value)
        want_kind, want_words = SCENARIOS[attack]
        assert kind == want_kind and want_words in message, (kind, message)

        verify = await client.execute_workflow(VerifyBackupWorkflow.run, VerifyBackupInput(backup_id=backup.backup_id),
                                               id=f"verify-{backup.backup_id}", task_queue=queues.MAINTENANCE)
    assert not verify.ok and verify.problems
    if want_kind == "CorruptBackup":
        assert want_words in verify.problems[0]
    assert {m: (await pg_counts(settings, m), await store_counts(stores, m)) for m in (a, b)} == before
    assert not escaped.exists()
    assert not await _ids(settings, "SELECT id FROM audit_log WHERE actor = $1", f"hostile-{marker}")
    assert not await _ids(settings, "SELECT id FROM claims WHERE text = $1", f"claim {marker}")
    assert not await _ids(settings, "SELECT id FROM llm_usage WHERE mission = $1 AND tenant_id = $2", b, tid_a)
    async with pg_connect(settings) as conn:
        assert not await conn.fetchval("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name LIKE 'drill_%'")


async def test_verify_takes_the_newest_backup_by_the_stores_timestamp(client, settings, stores):
    """A manifest claiming a later created_at (it is only data) is not the 'newest':
    the object store's own timestamp of manifest.json orders backups."""
    mission = new_mission("hn")
    await seed_mission(settings, stores, mission, docs=1, sessions=1)
    async with maintenance_worker(client, settings, stores):
        old = await _backup(client, mission)
        t = await Tamper.load(stores, old.backup_id)
        t.manifest.created_at = datetime(2999, 1, 1, tzinfo=timezone.utc)
        await t.save()
        await asyncio.sleep(0.05)  # distinct timestamps, also on coarse clocks
        new = await _backup(client, mission)
        verify = await client.execute_workflow(VerifyBackupWorkflow.run, VerifyBackupInput(mission=mission),
                                               id=f"verify-newest-{mission}", task_queue=queues.MAINTENANCE)
        assert verify.backup_id == new.backup_id and verify.ok, verify.problems
        # the newest manifest of all does not even parse: verifying "the newest" reports it, never skips it
        junk = f"{mission}-junk"
        await stores.objects.put_system(f"backups/{junk}/manifest.json", b"{not json")
        try:
            verify = await client.execute_workflow(VerifyBackupWorkflow.run, VerifyBackupInput(),
                                                   id=f"verify-newest-all-{mission}", task_queue=queues.MAINTENANCE)
        finally:
            await stores.objects.delete_system(f"backups/{junk}/manifest.json")
        assert verify.backup_id == junk and not verify.ok and "not a valid manifest" in verify.problems[0]

        # a restore in small pages, one page per run (continue-as-new between prepare and load)
        before = await pg_counts(settings, mission), await store_counts(stores, mission)
        await wipe_mission(settings, stores, mission)
        restored = await _restore(client, new.backup_id, page_size=1, pages_per_run=1)
    assert restored.missions == [mission] and restored.mission_count == 1 and not restored.truncated
    assert (await pg_counts(settings, mission), await store_counts(stores, mission)) == before


async def test_bad_input_fails_the_workflow_instead_of_retrying(client, settings, stores):
    """What the `temporal` CLI can start: inputs that do not decode, a used backup id."""
    mission = new_mission("hb")
    await seed_mission(settings, stores, mission, docs=1, sessions=1)
    async with maintenance_worker(client, settings, stores):
        for workflow_name, arg in (("RestoreWorkflow", {"backup_id": "../../etc"}),
                                   ("VerifyBackupWorkflow", {"backup_id": "Not An Id"}),
                                   ("BackupWorkflow", {"scope": "mission"}),
                                   ("BackupWorkflow", {"scope": "mission", "mission": "../x"})):
            handle = await client.start_workflow(workflow_name, arg, id=f"bad-{uuid.uuid4().hex[:8]}",
                                                 task_queue=queues.MAINTENANCE)
            try:
                with pytest.raises(WorkflowFailureError):
                    await asyncio.wait_for(handle.result(), timeout=60)
            finally:
                desc = await handle.describe()
                if desc.status and desc.status.name == "RUNNING":
                    await handle.terminate("test cleanup")
        done = await _backup(client, mission)
        again = BackupInput(scope="mission", mission=mission, backup_id=done.backup_id)
        with pytest.raises(WorkflowFailureError) as err:
            await client.execute_workflow(BackupWorkflow.run, again, id=f"again-{done.backup_id}",
                                          task_queue=queues.MAINTENANCE)
        kind, message = _failure(err.value)
        assert kind == "BadInput" and "already exists" in message
        with pytest.raises(WorkflowFailureError) as err:
            await _restore(client, done.backup_id, mission="hb_not_in_it")
        kind, message = _failure(err.value)
        assert kind == "BadInput" and "has no mission 'hb_not_in_it'" in message


@pytest.mark.minio
async def test_an_object_key_only_minio_accepts_does_not_fail_a_system_backup(client, settings, stores):
    """A mission's own MinIO user may write any key under tenants/<mission>/ (the
    tenant policy); keys the object stores' rule refuses are skipped and recorded,
    the other missions (and the mission's good objects) are backed up and restore."""
    from minio import Minio

    endpoint = require_server(MINIO_ENV, "minio.sh")
    minio = make_minio(bucket=f"hostile-{uuid.uuid4().hex[:8]}")
    mixed = Stores(objects=minio, vectors=stores.vectors, fulltext=stores.fulltext, graph=stores.graph)
    a, b = new_mission("hm"), new_mission("hn")
    try:
        await seed_mission(settings, mixed, a, docs=2)
        await seed_mission(settings, mixed, b, docs=1)
        raw = Minio(endpoint, access_key=os.environ["STRATMASTER_TEST_MINIO_ACCESS_KEY"],
                    secret_key=os.environ["STRATMASTER_TEST_MINIO_SECRET_KEY"], secure=False)
        bad = ["loose.txt", "notes/x.txt", "documents/a\\b.txt", "documents/x\x01y.txt"]
        for key in bad:
            raw.put_object(minio.bucket, f"tenants/{a}/{key}", io.BytesIO(b"x"), 1)
        assert set(bad) <= set(await minio.list(a))  # listed, but no adapter call can read them
        # the capacity report sizes them from the listing (it read each object before: a bad key failed it)
        from datetime import datetime, timezone

        from temporalio.testing import ActivityEnvironment

        from activities.ops.maintenance import MaintenanceActivities
        from stratmaster.contracts.maintenance import RetentionInput

        acts = MaintenanceActivities(Resources(settings, stores=mixed))
        try:
            report = await ActivityEnvironment().run(acts.capacity_report, RetentionInput(now=datetime.now(timezone.utc)))
        finally:
            await acts.resources.close()
        capacity = {m.mission: m for m in report.missions}
        assert capacity[a].objects == len(await minio.list(a)) >= 2 + len(bad)
        assert capacity[a].object_bytes >= len(bad)
        before = await pg_counts(settings, a), await store_counts(mixed, a)
        async with maintenance_worker(client, settings, mixed):
            req = BackupInput(scope="system", backup_id=f"sysm-{uuid.uuid4().hex[:8]}")
            result = await client.execute_workflow(BackupWorkflow.run, req, id=workflow_id_for(req),
                                                   task_queue=queues.MAINTENANCE)
            manifest = Manifest.model_validate_json(await minio.get_system(f"backups/{result.backup_id}/manifest.json"))
            skipped = {s.what for s in manifest.skipped if s.mission == a}
            assert skipped == {f"object {k!r}" for k in bad} and result.skipped >= len(bad)
            assert all("cannot be restored" in s.reason for s in manifest.skipped if s.mission == a)
            objects = {(x.mission, x.source_key) for x in manifest.artefacts if x.kind == "object"}
            assert len([o for o in objects if o[0] == a]) == 2 and len([o for o in objects if o[0] == b]) == 1
            assert {a, b} <= set(manifest.missions)

            restored = await _restore(client, result.backup_id, mission=a, replace=True)
        assert restored.counts[a]["objects"] == 2
        assert await pg_counts(settings, a) == before[0]
        assert await store_counts(mixed, a) == {**before[1], "objects": 2}
    finally:
        for m in (a, b):
            await minio.delete_mission(m)
        await minio.close()


async def test_a_planted_object_does_not_fail_a_system_backup(client, settings, stores, tmp_path):
    """Files written straight into a mission's folder of the filesystem object store
    (a name the key rule refuses, a symlink out of the store) are skipped and recorded:
    the system backup of every other mission goes on, and the mission restores."""
    a, b = new_mission("hp"), new_mission("hq")
    await seed_mission(settings, stores, a, docs=2)
    await seed_mission(settings, stores, b, docs=1)
    root = stores.objects.bucket_root / "tenants" / a
    outside = tmp_path / "secret.txt"
    outside.write_text("not the mission's")
    (root / "loose.txt").write_text("x")
    (root / "documents" / "x\x01y.txt").write_text("x")
    (root / "documents" / "link.txt").symlink_to(outside)
    before = await pg_counts(settings, a), await store_counts(stores, a)
    assert before[1]["objects"] == 5
    async with maintenance_worker(client, settings, stores):
        req = BackupInput(scope="system", backup_id=f"sysp-{uuid.uuid4().hex[:8]}")
        result = await client.execute_workflow(BackupWorkflow.run, req, id=workflow_id_for(req),
                                               task_queue=queues.MAINTENANCE)
        manifest = Manifest.model_validate_json(
            await stores.objects.get_system(f"backups/{result.backup_id}/manifest.json"))
        reasons = {s.what: s.reason for s in manifest.skipped if s.mission == a}
        assert set(reasons) == {"object 'loose.txt'", "object 'documents/x\\x01y.txt'", "object 'documents/link.txt'"}
        assert "escapes its namespace" in reasons["object 'documents/link.txt'"]
        assert {a, b} <= set(manifest.missions) and manifest.counts[b]["objects"] == 1
        assert not [s for s in manifest.skipped if s.mission is None]  # every tenant-keyed table is known
        assert manifest.counts[a]["objects"] == 2 and result.skipped >= 3
        assert not any(x.kind == "object" and x.source_key == "documents/link.txt" for x in manifest.artefacts)
        restored = await _restore(client, result.backup_id, mission=a, replace=True)
    assert restored.counts[a]["objects"] == 2
    assert await pg_counts(settings, a) == before[0]
    assert outside.read_text() == "not the mission's"
