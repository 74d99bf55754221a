"""Sources (workflows/sources.py) against the real Temporal dev server, real PostgreSQL,
the embedded stores and, for the S3 source, the real MinIO server of
scripts/services/minio.sh: add a source (and its Schedule), sync it page by page
(continue-as-new), change/delete/add files and sync again (changed re-ingested with the
old version gone from every store, deleted gone from every store, new ingested), a
failed file with its reason in the status, idempotent re-sync, crash/retry without
duplicates, mission isolation, removal (schedule, documents, manifest), bounded
payloads over many files, and replay of every workflow history."""
from __future__ import annotations

import asyncio
import base64
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from activities.ingest.entities import document_entity
from activities.ingest.source_walk import walk_directory
from stratmaster import principals, queues
from stratmaster.contracts.ingestion import DocumentRef, IngestInput, workflow_id_for
from stratmaster.contracts.sources import (
    AddSourceInput, ApplyPageInput, ApplyPageResult, DeleteMissingInput, DeleteMissingResult, DirectorySpec,
    ListPageInput, ListPageResult, ListSourcesInput, RemoveSourceInput, S3Spec, SourceDefinition, SourceStatusInput,
    SourceSyncInput, SourceSyncProgress, SourceSyncResult, add_workflow_id, remove_workflow_id, schedule_id_for,
    sync_workflow_id,
)
from stratmaster.search_attributes import for_mission
from tests.support.postgres import pg_connect
from tests.support.workers import queue_worker
from tests.adapters_support import MINIO_ENV, require_server
from tests.ingestion_support import (
    TEST_MAX_BYTES, ingestion_settings, ingestion_worker, new_mission, store_counts, worker_env, write_small_docs,
)
from workflows.ingestion import IngestDocumentsWorkflow
from workflows.sources import (
    WORKFLOWS, AddSourceWorkflow, ListSourcesWorkflow, RemoveSourceWorkflow, SourceStatusWorkflow, SourceSyncWorkflow,
)

pytestmark = pytest.mark.timeout(600)

ADMIN = ["platform-admin"]


# ---------------------------------------------------------------- helpers
def _corrupt_pdf(path: Path) -> None:
    rnd = random.Random(11)
    path.write_bytes(b"%PDF-1.7\n" + bytes(rnd.randrange(256) for _ in range(2000)))


def _text(name: str, version: int = 1) -> str:
    marker = f"marker{name.replace('_', '')}v{version}"
    return (f"Report {name} version {version}\n\n"
            + f"The token {marker} appears only here. Zeta{name.replace('_', '').capitalize()} Analytics signed a "
              f"supply agreement with Helios Energy last quarter. " * 5)


async def _add(client, settings, mission: str, source_id: str, spec, *, roles=ADMIN, interval: int = 3600,
               signed: bool = True):
    """AddSourceWorkflow as the API starts it: the roles signed with the platform's key (signed=False:
    only claimed, as a plain Temporal client can)."""
    principal = principals.sign_principal(principals.load_key(settings), mission, "test", roles) if signed else None
    return await client.execute_workflow(
        AddSourceWorkflow.run,
        AddSourceInput(mission=mission, source=SourceDefinition(source_id=source_id, spec=spec,
                                                                interval_seconds=interval),
                       actor="test", actor_roles=roles, principal=principal),
        id=add_workflow_id(mission, source_id), task_queue=queues.INGESTION, search_attributes=for_mission(mission))


async def _sync(client, mission: str, source_id: str, **kw) -> tuple[SourceSyncResult, str]:
    handle = await client.start_workflow(
        SourceSyncWorkflow.run, SourceSyncInput(mission=mission, source_id=source_id, **kw),
        id=sync_workflow_id(mission, source_id), task_queue=queues.INGESTION, search_attributes=for_mission(mission))
    return await handle.result(), handle.first_execution_run_id


async def _status(client, mission: str, source_id: str, **kw):
    return await client.execute_workflow(
        SourceStatusWorkflow.run, SourceStatusInput(mission=mission, source_id=source_id, **kw),
        id=f"source-status-{mission}-{uuid.uuid4().hex[:8]}", task_queue=queues.INGESTION)


async def _remove(client, mission: str, source_id: str):
    return await client.execute_workflow(
        RemoveSourceWorkflow.run, RemoveSourceInput(mission=mission, source_id=source_id, actor="test"),
        id=remove_workflow_id(mission, source_id), task_queue=queues.INGESTION)


async def _histories(client, wf_id: str, first_run_id: str) -> list:
    """Histories of every run of a workflow execution, following continue-as-new."""
    out, run_id = [], first_run_id
    while run_id:
        history = await client.get_workflow_handle(wf_id, run_id=run_id).fetch_history()
        out.append(history)
        last = history.events[-1]
        run_id = (last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                  if last.HasField("workflow_execution_continued_as_new_event_attributes") else None)
    return out


async def _replay(histories: list) -> None:
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=pydantic_data_converter)
    for h in histories:
        await replayer.replay_workflow(h)


async def _schedule_exists(client, mission: str, source_id: str) -> bool:
    try:
        await client.get_schedule_handle(schedule_id_for(mission, source_id)).describe()
        return True
    except RPCError as exc:
        assert exc.status == RPCStatusCode.NOT_FOUND, exc
        return False


async def _where(stores, database_url: str, mission: str, doc_id: str, sha: str) -> set[str]:
    """The stores that still hold anything of the document."""
    found = set()
    conn = await asyncpg.connect(database_url)
    try:
        if await conn.fetchval("SELECT 1 FROM documents WHERE id = $1", uuid.UUID(doc_id)):
            found.add("pg")
        if await conn.fetchval("SELECT count(*) FROM chunks WHERE document_id = $1", uuid.UUID(doc_id)):
            found.add("pg_chunks")
    finally:
        await conn.close()
    if any(p["payload"].get("document_id") == doc_id for p in await stores.vectors.dump(mission)):
        found.add("vectors")
    if any(c["document_id"] == doc_id for c in await stores.fulltext.dump(mission)):
        found.add("fulltext")
    vertex = document_entity(doc_id, None).entity_id
    if any(r.get("kind") == "relation" and r.get("source_id") == vertex for r in await stores.graph.dump(mission)):
        found.add("graph")
    if await stores.objects.list(mission, f"documents/{sha}/"):
        found.add("objects")
    return found


def _files(status) -> dict:
    return {f.path: f for f in status.files}


async def _cli(settings, address: str, *args: str) -> tuple[int, str]:
    env = worker_env(settings, address)
    env["COLUMNS"] = "240"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "starters.cli", *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    return proc.returncode, out.decode()


async def _consistent(stores, settings, mission: str) -> dict:
    """Every store holds the same chunks, each once."""
    counts = await store_counts(stores, settings, mission)
    assert counts["pg_chunks"] == counts["pg_distinct_chunks"] == counts["pg_declared_chunks"]
    assert counts["vectors"] == counts["fulltext"] == counts["pg_chunks"], counts
    assert counts["objects"] == 2 * counts["pg_documents"], counts  # original + extracted text
    return counts


# ---------------------------------------------------------------- directory: the whole cycle
async def test_directory_source_sync_cycle_status_cli_and_removal(client, settings, session_dir):
    s = ingestion_settings(settings)
    mission = await new_mission(s, "src")
    address = client.service_client.config.target_host
    root = session_dir / f"dir-{mission}"
    write_small_docs(root, 3, words=120)  # note_000.txt .. note_002.txt
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "sub" / "deep" / "report.md").write_text(_text("report"))
    _corrupt_pdf(root / "corrupt.pdf")
    (root / ".hidden.txt").write_text(_text("hidden"))  # hidden: skipped
    (root / "link.txt").symlink_to(root / "note_000.txt")  # symlink: skipped

    async with ingestion_worker(client, s) as spec:
        stores = spec.extra["stores"]
        # note_002's bytes were ingested by hand before: the source shares that document, never deletes it
        manual = await client.execute_workflow(
            IngestDocumentsWorkflow.run,
            IngestInput(mission=mission, batch_id="manual", documents=[
                DocumentRef(name="by-hand.txt", content_b64=base64.b64encode(
                    (root / "note_002.txt").read_bytes()).decode())]),
            id=workflow_id_for(mission, "manual"), task_queue=queues.INGESTION)
        manual_doc = manual.documents[0].document_id

        # add through the CLI (the operator: platform-admin)
        code, out = await _cli(s, address, "sources", "add", mission, "notes", "--dir", str(root), "--every", "2h")
        assert code == 0 and "created" in out and schedule_id_for(mission, "notes") in out, out
        code, out = await _cli(s, address, "sources", "add", mission, "notes", "--dir", str(root), "--every", "2h")
        assert code == 0 and "unchanged" in out, out
        desc = await client.get_schedule_handle(schedule_id_for(mission, "notes")).describe()
        assert desc.schedule.spec.intervals[0].every.total_seconds() == 7200
        assert desc.schedule.action.workflow == "SourceSyncWorkflow"
        assert desc.schedule.action.id == sync_workflow_id(mission, "notes")
        assert desc.schedule.action.task_queue == queues.INGESTION
        assert '"source_id":"notes"' in desc.schedule.action.args[0].data.decode().replace(" ", "")

        # first pass: one file per page, two pages per run -> several runs (continue-as-new)
        first, run1 = await _sync(client, mission, "notes", scan_limit=2, page_size=1, pages_per_run=2)
        t = first.totals
        assert first.outcome == "synced"
        assert (t.listed, t.new, t.changed, t.deleted) == (5, 5, 0, 0), t
        assert (t.ingested, t.duplicates, t.failed) == (3, 1, 1), t
        assert t.pages == 5 and t.runs == 3, t
        histories = await _histories(client, sync_workflow_id(mission, "notes"), run1)
        assert len(histories) == t.runs

        status = await _status(client, mission, "notes")
        files = _files(status)
        assert set(files) == {"corrupt.pdf", "note_000.txt", "note_001.txt", "note_002.txt", "sub/deep/report.md"}
        assert files["corrupt.pdf"].status == "failed" and files["corrupt.pdf"].reason_type == "CorruptDocument"
        assert files["corrupt.pdf"].reason and "Traceback" not in files["corrupt.pdf"].reason
        assert status.files[0].path == "corrupt.pdf"  # failures first
        assert all(files[p].status == "indexed" and files[p].document_id and files[p].sha256
                   for p in files if p != "corrupt.pdf")
        assert files["note_002.txt"].document_id == manual_doc
        assert status.source.files == {"indexed": 4, "failed": 1}
        assert status.source.last_sync_status == "ok" and status.source.syncing is None
        before = await _consistent(stores, s, mission)
        assert before["pg_documents"] == 4

        # nothing changed: nothing read, nothing ingested, nothing deleted (CLI, with its summary)
        code, out = await _cli(s, address, "sources", "sync", mission, "notes")
        assert code == 0 and "Traceback" not in out, out
        again, run2 = await _sync(client, mission, "notes")
        assert (again.totals.listed, again.totals.unchanged) == (5, 5), again.totals
        assert again.totals.new == again.totals.changed == again.totals.ingested == again.totals.deleted == 0
        assert await store_counts(stores, s, mission) == before
        histories += await _histories(client, sync_workflow_id(mission, "notes"), run2)

        # modify one, delete one, add one, touch one (same bytes, new mtime)
        old0, old1 = files["note_000.txt"], files["note_001.txt"]
        (root / "note_000.txt").write_text(_text("note_000", 2))
        (root / "note_001.txt").unlink()
        (root / "note_new.txt").write_text(_text("note_new"))
        st = (root / "note_002.txt").stat()
        os.utime(root / "note_002.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        third, run3 = await _sync(client, mission, "notes")
        t = third.totals
        assert (t.listed, t.new, t.changed, t.touched, t.deleted) == (5, 1, 1, 1, 1), t
        assert (t.ingested, t.failed, t.documents_deleted) == (2, 0, 2), t
        histories += await _histories(client, sync_workflow_id(mission, "notes"), run3)

        files = _files(await _status(client, mission, "notes"))
        assert set(files) == {"corrupt.pdf", "note_000.txt", "note_002.txt", "note_new.txt", "sub/deep/report.md"}
        assert files["note_000.txt"].document_id != old0.document_id and files["note_000.txt"].status == "indexed"
        assert files["note_new.txt"].status == "indexed"
        # the old version and the deleted file are gone from every store; the new ones are everywhere
        assert await _where(stores, s.database_url, mission, old0.document_id, old0.sha256) == set()
        assert await _where(stores, s.database_url, mission, old1.document_id, old1.sha256) == set()
        everywhere = {"pg", "pg_chunks", "vectors", "fulltext", "graph", "objects"}
        for name in ("note_000.txt", "note_new.txt", "note_002.txt"):
            assert await _where(stores, s.database_url, mission, files[name].document_id,
                                files[name].sha256) == everywhere, name
        hits = await stores.fulltext.search(mission, "markernote000v2", 3)
        assert hits and hits[0].document_id == files["note_000.txt"].document_id
        after = await _consistent(stores, s, mission)
        assert after["pg_documents"] == 4
        async with pg_connect(s) as conn:
            audited = await conn.fetchval(
                "SELECT count(*) FROM audit_log WHERE mission = $1 AND action = 'source.document_deleted'", mission)
        assert audited == 2

        # status and list through the CLI: the failed file and its reason
        code, out = await _cli(s, address, "sources", "status", mission, "notes")
        assert code == 0 and "corrupt.pdf" in out and "CorruptDocument" in out and "indexed 4" in out, out
        code, out = await _cli(s, address, "sources", "status", mission, "notes", "--only", "failed", "--json")
        assert code == 0 and '"matching": 1' in out, out
        code, out = await _cli(s, address, "sources", "list", mission)
        assert code == 0 and "notes" in out and str(root) in out, out

        # removal through the CLI: schedule, manifest, row, and every document only the source held
        code, out = await _cli(s, address, "sources", "remove", mission, "notes", "--yes")
        # note_000 (v2), note_new, report.md; note_002 is the hand-ingested document, corrupt.pdf has none
        assert code == 0 and "removed: 5 files, 3 documents deleted" in out, out
        assert not await _schedule_exists(client, mission, "notes")
        gone = await store_counts(stores, s, mission)
        assert gone["pg_documents"] == 1  # the hand-ingested document stays
        assert gone["vectors"] == gone["fulltext"] == gone["pg_chunks"] and gone["objects"] == 2
        async with pg_connect(s) as conn:
            tid = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", mission)
            assert not await conn.fetchval("SELECT count(*) FROM sources WHERE tenant_id = $1", tid)
            assert not await conn.fetchval("SELECT count(*) FROM source_files WHERE tenant_id = $1", tid)
            assert await conn.fetchval("SELECT id FROM documents WHERE tenant_id = $1", tid) == uuid.UUID(manual_doc)
        code, out = await _cli(s, address, "sources", "status", mission, "notes")
        assert code == 1 and "has no source" in out and "Traceback" not in out, out

    histories.append(await client.get_workflow_handle(remove_workflow_id(mission, "notes")).fetch_history())
    histories.append(await client.get_workflow_handle(add_workflow_id(mission, "notes")).fetch_history())
    await _replay(histories)


# ---------------------------------------------------------------- crashes and retries
def _flaky_worker(client, settings, crash: set[str]):
    """The real ingestion worker, except that the named source activities crash once
    after doing their work (attempt 1): the retry must change nothing twice."""
    def crashing(spec) -> dict:
        src = spec.extra["sources"]

        @activity.defn(name="source_list_page")
        async def list_page(req: ListPageInput) -> ListPageResult:
            out = await src.list_page(req)
            if "list" in crash and activity.info().attempt == 1:
                raise RuntimeError("injected crash after listing a page")
            return out

        @activity.defn(name="source_apply_page")
        async def apply_page(req: ApplyPageInput) -> ApplyPageResult:
            out = await src.apply_page(req)
            if "apply" in crash and activity.info().attempt == 1:
                raise RuntimeError("injected crash after applying a page")
            return out

        @activity.defn(name="source_delete_missing")
        async def delete_missing(req: DeleteMissingInput) -> DeleteMissingResult:
            out = await src.delete_missing(req)
            if "delete" in crash and activity.info().attempt == 1:
                raise RuntimeError("injected crash after deleting")
            return out

        replaced = {"source_list_page": list_page, "source_apply_page": apply_page, "source_delete_missing": delete_missing}
        return replaced

    return queue_worker(client, settings, queues.INGESTION, activities=crashing)


async def test_crashes_and_a_worker_restart_mid_sync_leave_no_duplicates(client, settings, session_dir):
    s = ingestion_settings(settings)
    mission = await new_mission(s, "srccrash")
    root = session_dir / f"crash-{mission}"
    root.mkdir()
    for name in ("a", "b", "c"):
        (root / f"{name}.txt").write_text(_text(name))
    histories = []
    async with _flaky_worker(client, s, {"list", "apply", "delete"}) as spec:
        stores = spec.extra["stores"]
        await _add(client, s, mission, "docs", DirectorySpec(path=str(root)))
        first, run = await _sync(client, mission, "docs", page_size=2)
        histories += await _histories(client, sync_workflow_id(mission, "docs"), run)
        assert (first.totals.new, first.totals.ingested, first.totals.failed) == (3, 3, 0), first.totals
        counts = await _consistent(stores, s, mission)
        assert counts["pg_documents"] == 3
        files = _files(await _status(client, mission, "docs"))
        assert {f.status for f in files.values()} == {"indexed"}

        (root / "a.txt").write_text(_text("a", 2))
        (root / "b.txt").unlink()
        second, run = await _sync(client, mission, "docs", page_size=2)
        histories += await _histories(client, sync_workflow_id(mission, "docs"), run)
        assert (second.totals.changed, second.totals.deleted, second.totals.documents_deleted) == (1, 1, 2)
        counts = await _consistent(stores, s, mission)
        assert counts["pg_documents"] == 2
        for old in (files["a.txt"], files["b.txt"]):
            assert await _where(stores, s.database_url, mission, old.document_id, old.sha256) == set()
        async with pg_connect(s) as conn:
            audited = await conn.fetchval(
                "SELECT count(*) FROM audit_log WHERE mission = $1 AND action = 'source.document_deleted'", mission)
        assert audited == 2  # once per document, however often a retry ran

        # a worker killed mid-sync: a new one resumes the same workflow (replaying its history)
        for name in ("d", "e", "f", "g"):
            (root / f"{name}.txt").write_text(_text(name))
        handle = await client.start_workflow(
            SourceSyncWorkflow.run, SourceSyncInput(mission=mission, source_id="docs", page_size=1),
            id=sync_workflow_id(mission, "docs"), task_queue=queues.INGESTION)
        for _ in range(300):
            try:
                p: SourceSyncProgress = await handle.query(SourceSyncWorkflow.progress)
                if p.pages >= 1:
                    break
            except Exception:
                pass
            await asyncio.sleep(0.1)
    async with ingestion_worker(client, s) as spec:
        third = await handle.result()
        histories += await _histories(client, sync_workflow_id(mission, "docs"), handle.first_execution_run_id)
        assert (third.totals.new, third.totals.unchanged, third.totals.failed) == (4, 2, 0), third.totals
        counts = await _consistent(spec.extra["stores"], s, mission)
        assert counts["pg_documents"] == 6
        files = _files(await _status(client, mission, "docs"))
        assert len(files) == 6 and {f.status for f in files.values()} == {"indexed"}
        assert len({f.document_id for f in files.values()}) == 6
        await _remove(client, mission, "docs")
    await _replay(histories)


# ---------------------------------------------------------------- S3 on MinIO
async def test_s3_source_on_minio_detects_changes_by_etag(client, settings, monkeypatch):
    from minio import Minio

    endpoint = require_server(MINIO_ENV, "minio.sh")
    access, secret = os.environ["STRATMASTER_TEST_MINIO_ACCESS_KEY"], os.environ["STRATMASTER_TEST_MINIO_SECRET_KEY"]
    raw = Minio(endpoint, access_key=access, secret_key=secret, secure=False)
    bucket = f"src-{uuid.uuid4().hex[:10]}"
    raw.make_bucket(bucket)

    def put(key: str, data: bytes) -> None:
        import io
        raw.put_object(bucket, key, io.BytesIO(data), len(data))

    for name in ("alpha", "beta", "gamma"):
        put(f"reports/{name}.txt", _text(name).encode())
    put("reports/2026/q1.md", _text("q1").encode())
    rnd = random.Random(3)
    put("reports/broken.pdf", b"%PDF-1.7\n" + bytes(rnd.randrange(256) for _ in range(1500)))
    put("other/outside.txt", _text("outside").encode())  # not under the prefix

    s = ingestion_settings(settings)
    mission = await new_mission(s, "srcs3")
    spec3 = S3Spec(endpoint=endpoint, bucket=bucket, prefix="reports", credentials_profile="testminio", secure=False)
    async with ingestion_worker(client, s) as spec:
        stores = spec.extra["stores"]
        # no such profile on the worker: refused with a clear reason, nothing stored
        with pytest.raises(WorkflowFailureError) as err:
            await _add(client, s, mission, "bucket", spec3)
        unavailable = str(err.value.cause)
        assert err.value.cause.type == "SourceUnavailable" and "STRATMASTER_S3_PROFILE_<NAME>_" in unavailable
        monkeypatch.setenv("STRATMASTER_S3_PROFILE_TESTMINIO_ACCESS_KEY", access)
        monkeypatch.setenv("STRATMASTER_S3_PROFILE_TESTMINIO_SECRET_KEY", secret)
        # configured, but bound to another mission, another bucket, or pinned to another endpoint: the same
        # refusal as no profile at all (nothing about the configuration leaks); an unpinned profile may not
        # reach a loopback endpoint
        for env, value in (("MISSIONS", "someone_else"), ("BUCKETS", f"{bucket}/other"), ("ENDPOINT", "10.1.2.3:9000")):
            monkeypatch.setenv("STRATMASTER_S3_PROFILE_TESTMINIO_MISSIONS", mission if env != "MISSIONS" else value)
            monkeypatch.setenv(f"STRATMASTER_S3_PROFILE_TESTMINIO_{env}", value)
            with pytest.raises(WorkflowFailureError) as err:
                await _add(client, s, mission, "bucket", spec3)
            assert str(err.value.cause) == unavailable and "10.1.2.3" not in unavailable, env
            monkeypatch.delenv(f"STRATMASTER_S3_PROFILE_TESTMINIO_{env}")
        monkeypatch.setenv("STRATMASTER_S3_PROFILE_TESTMINIO_MISSIONS", mission)
        with pytest.raises(WorkflowFailureError) as err:
            await _add(client, s, mission, "bucket", spec3)
        assert err.value.cause.type == "SourceUnavailable" and "loopback" in str(err.value.cause), err.value.cause
        monkeypatch.setenv("STRATMASTER_S3_PROFILE_TESTMINIO_ENDPOINT", endpoint)  # the operator pins it: allowed
        monkeypatch.setenv("STRATMASTER_S3_PROFILE_TESTMINIO_BUCKETS", f"{bucket}/reports")
        added = await _add(client, s, mission, "bucket", spec3)
        assert added.status == "created" and added.location == f"http://{endpoint}/{bucket}/reports/"
        assert await _schedule_exists(client, mission, "bucket")

        histories = []
        first, run = await _sync(client, mission, "bucket", scan_limit=2, page_size=2, pages_per_run=2)
        histories += await _histories(client, sync_workflow_id(mission, "bucket"), run)
        t = first.totals
        assert (t.listed, t.new, t.ingested, t.failed) == (5, 5, 4, 1), t
        assert t.runs >= 2
        status = await _status(client, mission, "bucket")
        files = _files(status)
        assert set(files) == {"alpha.txt", "beta.txt", "gamma.txt", "2026/q1.md", "broken.pdf"}
        assert files["broken.pdf"].status == "failed" and files["broken.pdf"].reason_type == "CorruptDocument"
        assert all(f.etag for f in files.values())
        assert "secret" not in status.model_dump_json().lower()
        await _consistent(stores, s, mission)

        again, run = await _sync(client, mission, "bucket")
        histories += await _histories(client, sync_workflow_id(mission, "bucket"), run)
        assert (again.totals.unchanged, again.totals.ingested, again.totals.deleted) == (5, 0, 0), again.totals

        old_alpha, old_beta = files["alpha.txt"], files["beta.txt"]
        put("reports/alpha.txt", _text("alpha", 2).encode())  # new ETag
        raw.remove_object(bucket, "reports/beta.txt")
        put("reports/delta.txt", _text("delta").encode())
        third, run = await _sync(client, mission, "bucket")
        histories += await _histories(client, sync_workflow_id(mission, "bucket"), run)
        t = third.totals
        assert (t.new, t.changed, t.deleted, t.ingested, t.documents_deleted) == (1, 1, 1, 2, 2), t
        files = _files(await _status(client, mission, "bucket"))
        assert set(files) == {"alpha.txt", "gamma.txt", "2026/q1.md", "broken.pdf", "delta.txt"}
        assert files["alpha.txt"].etag != old_alpha.etag and files["alpha.txt"].document_id != old_alpha.document_id
        for old in (old_alpha, old_beta):
            assert await _where(stores, s.database_url, mission, old.document_id, old.sha256) == set()
        hits = await stores.fulltext.search(mission, "markeralphav2", 3)
        assert hits and hits[0].document_id == files["alpha.txt"].document_id
        counts = await _consistent(stores, s, mission)
        assert counts["pg_documents"] == 4

        removed = await _remove(client, mission, "bucket")
        assert removed.status == "removed" and removed.documents_deleted == 4 and removed.schedule_deleted
        assert (await store_counts(stores, s, mission))["pg_documents"] == 0
        assert not await _schedule_exists(client, mission, "bucket")
    # the bucket itself is never written to
    assert sorted(o.object_name for o in raw.list_objects(bucket, recursive=True)) == [
        "other/outside.txt", "reports/2026/q1.md", "reports/alpha.txt", "reports/broken.pdf", "reports/delta.txt",
        "reports/gamma.txt"]
    await _replay(histories)


# ---------------------------------------------------------------- isolation, roles, schedule, lease
async def test_isolation_roles_schedule_run_lease_and_empty_listing_guard(client, settings, session_dir):
    s = ingestion_settings(settings)
    a, b = await new_mission(s, "srca"), await new_mission(s, "srcb")
    root_a, root_b = session_dir / f"iso-{a}", session_dir / f"iso-{b}"
    write_small_docs(root_a, 2, words=60)
    root_b.mkdir()
    (root_b / "b.txt").write_text(_text("b_only"))
    async with ingestion_worker(client, s) as spec:
        stores = spec.extra["stores"]
        # a mission admin without platform-admin cannot register a directory
        with pytest.raises(WorkflowFailureError) as err:
            await _add(client, s, a, "shared", DirectorySpec(path=str(root_a)), roles=["mission:srca:admin"])
        assert err.value.cause.type == "Forbidden"
        assert not await _schedule_exists(client, a, "shared")
        # a plain Temporal client claiming platform-admin (no signature), or signing with a key of its own,
        # or reusing a principal signed for another mission: refused by the activity itself
        forged = principals.sign_principal(b"not-the-platform-key", a, "mallory", ADMIN)
        other = principals.sign_principal(principals.load_key(s), b, "test", ADMIN)
        for principal in (None, forged, other, "garbage.token"):
            with pytest.raises(WorkflowFailureError) as err:
                await client.execute_workflow(
                    AddSourceWorkflow.run,
                    AddSourceInput(mission=a, source=SourceDefinition(source_id="forged", spec=DirectorySpec(
                        path=str(root_a))), actor="mallory", actor_roles=ADMIN, principal=principal),
                    id=add_workflow_id(a, "forged"), task_queue=queues.INGESTION)
            assert err.value.cause.type == "Forbidden" and "signed" in str(err.value.cause), principal
        assert not await _schedule_exists(client, a, "forged")
        with pytest.raises(WorkflowFailureError) as err:
            await _add(client, s, a, "missing", DirectorySpec(path=str(session_dir / "no-such-dir")))
        assert err.value.cause.type == "SourceUnavailable"

        await _add(client, s, a, "shared", DirectorySpec(path=str(root_a)))
        synced, _ = await _sync(client, a, "shared")
        assert synced.totals.ingested == 2
        counts_a = await store_counts(stores, s, a)

        # mission B sees none of A's sources, cannot read their status, sync or remove them
        listed = await client.execute_workflow(ListSourcesWorkflow.run, ListSourcesInput(mission=b),
                                               id=f"source-list-{b}-{uuid.uuid4().hex[:6]}",
                                               task_queue=queues.INGESTION)
        assert listed.sources == []
        with pytest.raises(WorkflowFailureError) as err:
            await _status(client, b, "shared")
        assert err.value.cause.type == "UnknownSource"
        other, _ = await _sync(client, b, "shared")
        assert other.outcome == "gone" and other.totals.listed == 0
        assert (await _remove(client, b, "shared")).status == "not_found"
        assert await _schedule_exists(client, a, "shared")

        # B's own source of the same id is a different one
        await _add(client, s, b, "shared", DirectorySpec(path=str(root_b)))
        synced_b, _ = await _sync(client, b, "shared")
        assert synced_b.totals.ingested == 1
        status_a = await _status(client, a, "shared")
        assert set(_files(status_a)) == {"note_000.txt", "note_001.txt"}
        assert set(_files(await _status(client, b, "shared"))) == {"b.txt"}
        assert await store_counts(stores, s, a) == counts_a
        assert not await stores.fulltext.search(a, "markerbonlyv1", 3)

        # removing B's source leaves A's documents, manifest and schedule
        await _remove(client, b, "shared")
        assert await store_counts(stores, s, a) == counts_a
        assert await _schedule_exists(client, a, "shared") and not await _schedule_exists(client, b, "shared")

        # the schedule's own run: its action decodes and syncs (id = the business key + Temporal's timestamp)
        sid = schedule_id_for(a, "shared")
        await client.get_schedule_handle(sid).trigger()
        scheduled = None
        for _ in range(100):
            info = (await client.get_schedule_handle(sid).describe()).info
            if info.recent_actions:
                scheduled = info.recent_actions[-1].action.workflow_id
                break
            await asyncio.sleep(0.2)
        assert scheduled and scheduled.startswith(sync_workflow_id(a, "shared") + "-")
        run = await client.get_workflow_handle(scheduled, result_type=SourceSyncResult).result()
        assert run.outcome == "synced" and run.totals.unchanged == 2

        # one sync at a time: a lease held by a running workflow makes another sync a no-op ("busy");
        # a lease left by one that is no longer running is taken over
        holder = await client.start_workflow(SourceSyncWorkflow.run, SourceSyncInput(mission=a, source_id="shared"),
                                             id=f"holder-{uuid.uuid4().hex[:8]}", task_queue="nobody-polls-this")
        async with pg_connect(s) as conn:
            await conn.execute("UPDATE sources SET sync_owner = $1, sync_token = 'held' WHERE source_id = 'shared' "
                               "AND tenant_id = (SELECT id FROM tenants WHERE name = $2)", holder.id, a)
            busy, _ = await _sync(client, a, "shared")
            assert busy.outcome == "busy" and holder.id in busy.detail
            await holder.terminate("test")
            took, _ = await _sync(client, a, "shared")
            assert took.outcome == "synced" and took.totals.unchanged == 2

            # a pass that lists nothing while the manifest has files deletes nothing (an unmounted directory?)
            aside = session_dir / f"aside-{a}"
            aside.mkdir()
            for f in list(root_a.iterdir()):
                f.rename(aside / f.name)
            with pytest.raises(WorkflowFailureError) as err:
                await _sync(client, a, "shared")
            assert err.value.cause.type == "SourceEmpty"
            assert await store_counts(stores, s, a) == counts_a
            failed = (await _status(client, a, "shared")).source
            assert failed.last_sync_status == "failed" and "listed no files" in failed.last_sync_error
            assert failed.files == {"indexed": 2} and failed.syncing is None
            for f in list(aside.iterdir()):
                f.rename(root_a / f.name)
            back, _ = await _sync(client, a, "shared")
            assert back.outcome == "synced" and back.totals.unchanged == 2 and back.totals.deleted == 0

        await _remove(client, a, "shared")
        assert not await _schedule_exists(client, a, "shared")
        assert (await store_counts(stores, s, a))["pg_documents"] == 0


# ---------------------------------------------------------------- bounded payloads
async def test_many_files_page_through_bounded_payloads_and_replay(client, settings, session_dir):
    """400 files (sparse, each over the size limit so ingestion fails them fast): the
    pass pages through them (continue-as-new), no payload carries the listing, the
    manifest records every failure, and the next pass reads nothing."""
    s = ingestion_settings(settings)
    mission = await new_mission(s, "srcmany")
    root = session_dir / f"many-{mission}"
    for d in range(4):
        (root / f"d{d}").mkdir(parents=True)
        for i in range(100):
            with open(root / f"d{d}" / f"f{i:03d}.txt", "wb") as fh:
                fh.truncate(TEST_MAX_BYTES + 1)
    async with ingestion_worker(client, s):
        await _add(client, s, mission, "many", DirectorySpec(path=str(root)))
        first, run = await _sync(client, mission, "many", scan_limit=60, page_size=40, pages_per_run=4)
        t = first.totals
        assert (t.listed, t.new, t.failed, t.ingested) == (400, 400, 400, 0), t
        assert t.pages == 10 and t.runs == 3, t
        histories = await _histories(client, sync_workflow_id(mission, "many"), run)
        status = await _status(client, mission, "many", status="failed", limit=5)
        assert status.matching == 400 and status.source.files == {"failed": 400}
        assert all(f.reason_type == "Oversized" for f in status.files)

        again, run2 = await _sync(client, mission, "many", scan_limit=60, page_size=40, pages_per_run=4)
        assert (again.totals.unchanged, again.totals.new, again.totals.failed) == (400, 0, 0), again.totals
        histories += await _histories(client, sync_workflow_id(mission, "many"), run2)
        await _remove(client, mission, "many")
    largest = 0
    for h in histories:
        for e in h.events:
            for field in ("activity_task_completed_event_attributes", "activity_task_scheduled_event_attributes",
                          "workflow_execution_started_event_attributes"):
                if e.HasField(field):
                    attrs = getattr(e, field)
                    payloads = attrs.result if hasattr(attrs, "result") else attrs.input
                    largest = max(largest, sum(len(p.data) for p in payloads.payloads))
    # a page of 40 references is a few KB; the listing (400 files) never travels
    assert 0 < largest < 32_000, largest
    assert max(len(h.events) for h in histories) < 150
    await _replay(histories)


# ---------------------------------------------------------------- listing unit
def test_directory_walk_pages_resume_after_the_cursor(tmp_path):
    rnd = random.Random(5)
    expected = []
    for d in ("a", "b", "b/c", "b/c/d", "e e", "z"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    for d in ("", "a", "b", "b/c", "b/c/d", "e e", "z"):
        for i in range(rnd.randint(0, 7)):
            rel = f"{d}/f{i}.txt".lstrip("/")
            (tmp_path / rel).write_text(rel)
            expected.append(rel)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("x")
    (tmp_path / "b" / ".secret").write_text("x")
    (tmp_path / "b" / "link").symlink_to(tmp_path / "a")
    expected.sort(key=lambda p: tuple(p.split("/")))
    full = [e.path for e in walk_directory(str(tmp_path), None, 10_000)]
    assert full == expected
    for limit in (1, 2, 3, 7):
        got, cursor = [], None
        while True:
            page = walk_directory(str(tmp_path), cursor, limit)
            assert len(page) <= limit
            got += [e.path for e in page]
            if len(page) < limit:
                break
            cursor = page[-1].path
        assert got == expected, limit
    from temporalio.exceptions import ApplicationError
    with pytest.raises(ApplicationError) as err:
        walk_directory(str(tmp_path / "nope"), None, 5)
    assert err.value.type == "SourceUnavailable"


# ---------------------------------------------------------------- links and swaps
def test_a_directory_source_never_follows_a_link_swapped_in_after_the_listing(tmp_path):
    from temporalio.exceptions import ApplicationError

    from activities.ingest.source_walk import read_beneath, sha256_beneath

    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "doc.txt").write_text("inside")
    (root / "top.txt").write_text("top")
    secret = tmp_path / "secret"
    (secret / "etc").mkdir(parents=True)
    (secret / "doc.txt").write_text("outside the source")
    listed = {e.path: e for e in walk_directory(str(root), None, 100)}
    assert set(listed) == {"sub/doc.txt", "top.txt"} and all(e.file_id for e in listed.values())
    entry = listed["sub/doc.txt"]
    assert read_beneath(str(root), entry.path, entry.file_id, 1000) == b"inside"

    def refused(fn, *args) -> ApplicationError:
        with pytest.raises(ApplicationError) as err:
            fn(*args)
        return err.value

    # the folder swapped for a link to elsewhere (same relative path inside): neither read nor hashed
    (root / "sub").rename(tmp_path / "moved")
    (root / "sub").symlink_to(secret)
    for fn in (read_beneath, sha256_beneath):
        args = (str(root), "sub/doc.txt", None) + ((1000,) if fn is read_beneath else ())
        assert "symbolic link" in refused(fn, *args).message
    assert "sub/doc.txt" not in {e.path for e in walk_directory(str(root), None, 100)}  # not entered
    # a file swapped for a link, and for another file (a new inode) since the listing
    top = listed["top.txt"]
    (root / "top.txt").rename(tmp_path / "old-top.txt")  # kept: its inode is not reused by the new file below
    (root / "top.txt").symlink_to(secret / "doc.txt")
    assert "symbolic link" in refused(read_beneath, str(root), "top.txt", top.file_id, 1000).message
    (root / "top.txt").unlink()
    (root / "top.txt").write_text("another file")
    assert "not the file the listing saw" in refused(read_beneath, str(root), "top.txt", top.file_id, 1000).message
    assert refused(read_beneath, str(root), "../secret/doc.txt", None, 1000).type == "BadInput"
    assert refused(read_beneath, str(root), "top.txt", None, 3).type == "Oversized"
    # the root itself turned into a link: every listing refuses (re-resolved at each sync)
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    assert refused(walk_directory, str(tmp_path / "alias"), None, 5).type == "SourceUnavailable"


def test_s3_profiles_are_bound_and_endpoints_checked():
    from temporalio.exceptions import ApplicationError

    from activities.ingest.source_s3 import check_endpoint, profile_for

    def spec(endpoint="s3.example.com", bucket="data", prefix=""):
        return S3Spec(endpoint=endpoint, bucket=bucket, prefix=prefix, credentials_profile="team")

    env = {"STRATMASTER_S3_PROFILE_TEAM_ACCESS_KEY": "a", "STRATMASTER_S3_PROFILE_TEAM_SECRET_KEY": "s"}
    with pytest.raises(ApplicationError):
        profile_for(spec(), "alpha", env)  # bound to no mission: usable by none
    env["STRATMASTER_S3_PROFILE_TEAM_MISSIONS"] = "alpha, beta"
    env["STRATMASTER_S3_PROFILE_TEAM_BUCKETS"] = "data/reports,archive"
    assert profile_for(spec(prefix="reports/2026"), "alpha", env).missions == {"alpha", "beta"}
    assert profile_for(spec(bucket="archive", prefix="x"), "beta", env)
    for bad in ((spec(prefix="reports"), "gamma"), (spec(prefix="other"), "alpha"), (spec(prefix="reportsx"), "alpha"),
                (spec(bucket="datax", prefix="reports"), "alpha")):
        with pytest.raises(ApplicationError) as err:
            profile_for(*bad, env)
        assert err.value.type == "SourceUnavailable"
    creds = profile_for(spec(prefix="reports"), "alpha", env)
    for endpoint in ("127.0.0.1:9000", "169.254.169.254", "0.0.0.0:9000", "10.0.0.5:9000", "localhost:9000"):
        with pytest.raises(ApplicationError) as err:
            asyncio.run(check_endpoint(spec(endpoint=endpoint, prefix="reports"), creds, allow_private=False))
        assert err.value.type == "SourceUnavailable", endpoint
    asyncio.run(check_endpoint(spec(endpoint="127.0.0.1:9000"), creds, allow_private=True))


def test_s3_clients_follow_no_redirect_and_stay_few():
    import http.server
    import threading

    from activities.ingest import source_s3

    hits: list[str] = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(307)
            self.send_header("Location", "/internal-secret")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        import urllib3
        pool = source_s3._NoRedirects(retries=urllib3.Retry(total=1, redirect=False))
        r = pool.request("GET", f"http://127.0.0.1:{server.server_port}/bucket/object")
        assert r.status == 307 and hits == ["/bucket/object"]  # returned as is, never followed
    finally:
        server.shutdown()
    env = {"STRATMASTER_S3_PROFILE_TEAM_ACCESS_KEY": "a", "STRATMASTER_S3_PROFILE_TEAM_SECRET_KEY": "s",
           "STRATMASTER_S3_PROFILE_TEAM_MISSIONS": "*"}
    old = dict(source_s3._CLIENTS)
    try:
        os.environ.update(env)
        for i in range(source_s3.MAX_CLIENTS + 10):
            asyncio.run(source_s3.s3_client(S3Spec(endpoint=f"127.0.0.{i % 200 + 1}:{9000 + i}", bucket="data",
                                                 credentials_profile="team"), "alpha", allow_private=True))
        assert len(source_s3._CLIENTS) == source_s3.MAX_CLIENTS
    finally:
        for k in env:
            os.environ.pop(k, None)
        source_s3._CLIENTS.clear()
        source_s3._CLIENTS.update(old)


# ---------------------------------------------------------------- long paths
async def test_long_paths_whose_clipped_labels_collide_still_get_their_outcome(client, settings, session_dir):
    """Ingestion results name documents by their label clipped to 300 characters: files whose
    long paths clip alike get their outcome from PostgreSQL (failure row, document by hash)."""
    s = ingestion_settings(settings)
    mission = await new_mission(s, "srclong")
    root = session_dir / f"long-{mission}"
    deep = root / ("x" * 200)
    deep.mkdir(parents=True)
    stem = "y" * 120
    (deep / f"{stem}_a.txt").write_text(_text("long_a"))
    (deep / f"{stem}_b.txt").write_text(_text("long_b"))
    _corrupt_pdf(deep / f"{stem}_c.pdf")
    (root / ("z" * 250 + ".txt")).write_text(_text("long_z"))
    assert len(str(deep / f"{stem}_a.txt")) > 300
    async with ingestion_worker(client, s) as spec:
        await _add(client, s, mission, "long", DirectorySpec(path=str(root)))
        first, _ = await _sync(client, mission, "long")
        assert (first.totals.new, first.totals.ingested, first.totals.failed) == (4, 3, 1), first.totals
        files = _files(await _status(client, mission, "long"))
        assert {p.rsplit("_", 1)[-1]: f.status for p, f in files.items()} == {
            "a.txt": "indexed", "b.txt": "indexed", "c.pdf": "failed", "z" * 250 + ".txt": "indexed"}
        assert files[f"{'x' * 200}/{stem}_c.pdf"].reason_type == "CorruptDocument"
        again, _ = await _sync(client, mission, "long")
        assert (again.totals.unchanged, again.totals.ingested) == (4, 0), again.totals
        await _consistent(spec.extra["stores"], s, mission)
        await _remove(client, mission, "long")
