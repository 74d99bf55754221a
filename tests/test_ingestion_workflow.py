"""IngestDocumentsWorkflow against the real Temporal dev server, real PostgreSQL
and the embedded stores: mixed good and bad documents, idempotent re-ingestion,
fan-out with continue-as-new, plain-JSON start from the `temporal` CLI, replay."""
from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import uuid

import asyncpg
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from stratmaster.principals import load_key, path_ref, sign_path
from stratmaster import queues
from stratmaster.contracts.ingestion import DocumentRef, IngestInput, IngestProgress, IngestResult, workflow_id_for
from stratmaster.local_temporal import temporal_binary
from stratmaster.search_attributes import for_mission
from tests.ingestion_support import (
    SAMPLES, CountingEmbedder, ingestion_settings, ingestion_worker, new_mission, store_counts, write_bad_documents,
    write_small_docs,
)
from workflows.ingestion import IngestDocumentsWorkflow, IngestSliceWorkflow
from tests.support.postgres import pg_connect

pytestmark = pytest.mark.timeout(300)


async def _histories(client, wf_id: str, first_run_id: str) -> list:
    """Histories of every run of a workflow, following continue-as-new."""
    out, run_id = [], first_run_id
    while run_id:
        history = await client.get_workflow_handle(wf_id, run_id=run_id).fetch_history()
        out.append(history)
        last = history.events[-1]
        run_id = (last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                  if last.HasField("workflow_execution_continued_as_new_event_attributes") else None)
    return out


async def test_batch_with_bad_documents_lands_the_good_ones_and_reingest_changes_nothing(client, settings, session_dir):
    s = ingestion_settings(settings)
    mission = await new_mission(s)
    bad = write_bad_documents(session_dir / f"bad-{mission}")
    good = sorted(str(p.resolve()) for p in SAMPLES.iterdir())
    assert len(good) >= 7
    req = IngestInput(mission=mission, documents=[path_ref(settings, mission, p) for p in good + sorted(bad)], slice_size=5)
    wf_id = workflow_id_for(mission, req.resolved_batch_id())

    async with ingestion_worker(client, s) as spec:
        handle = await client.start_workflow(IngestDocumentsWorkflow.run, req, id=wf_id, task_queue=queues.INGESTION,
                                             search_attributes=for_mission(mission))
        seen: list[IngestProgress] = []
        result_task = asyncio.create_task(handle.result())
        while not result_task.done():
            try:
                seen.append(await handle.query(IngestDocumentsWorkflow.progress))
            except Exception:
                pass
            await asyncio.sleep(0.2)
        result: IngestResult = result_task.result()
        final = await handle.query(IngestDocumentsWorkflow.progress)

        # every good document landed, every bad one failed alone with a readable reason
        assert result.totals.total == len(good) + len(bad)
        assert result.totals.ingested == len(good) and result.totals.failed == len(bad)
        assert result.totals.duplicates == 0
        by_source = {f.source: f for f in result.failures}
        assert set(by_source) == set(bad)
        for source, reason_type in bad.items():
            assert by_source[source].reason_type == reason_type, by_source[source]
            assert by_source[source].reason and "Traceback" not in by_source[source].reason
        assert "over the limit" in by_source[next(p for p in bad if p.endswith("oversized.txt"))].reason

        # live progress moved through intermediate states; final progress matches the result
        assert any(0 < p.done < p.total for p in seen), [(p.done, p.total) for p in seen]
        assert final.finished and final.done == final.total == result.totals.total
        assert final.chunks == result.totals.chunks

        async with pg_connect(s) as conn:
            tid = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", mission)
            rows = await conn.fetch("SELECT source, reason_type, reason FROM ingestion_failures WHERE tenant_id = $1",
                                    tid)
            chunk_rows = await conn.fetch(
                """SELECT d.sha256, d.extracted_key, c.text, c.char_start, c.char_end, c.token_count
                   FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.tenant_id = $1""", tid)
        assert {r["source"]: r["reason_type"] for r in rows} == bad

        stores = spec.extra["stores"]
        counts = await store_counts(stores, s, mission)
        n = result.totals.chunks
        assert n > len(good)
        assert counts["pg_documents"] == len(good)
        assert counts["pg_chunks"] == counts["pg_distinct_chunks"] == counts["pg_declared_chunks"] == n
        assert counts["vectors"] == n and counts["fulltext"] == n
        assert counts["objects"] == 2 * len(good)  # original + extracted text per document
        assert counts["entities"] > 10 and counts["relations"] > 10

        # chunk offsets point exactly into the stored extracted text
        extracted: dict[str, str] = {}
        for r in chunk_rows:
            if r["extracted_key"] not in extracted:
                extracted[r["extracted_key"]] = (await stores.objects.get(mission, r["extracted_key"])).decode()
            assert extracted[r["extracted_key"]][r["char_start"]:r["char_end"]] == r["text"]
            assert 0 < r["token_count"] <= s.chunk_tokens

        # retrieval sees the documents: BM25, dense and graph
        hits = await stores.fulltext.search(mission, "sodium-ion pilot line Gothenburg", 3)
        assert hits and "NordCell" in hits[0].text
        neighbours = await stores.graph.neighbours(mission, ["Helios Power AG"], 50)
        assert any(e.name == "Voltaris Energy Storage" or e.name == "NordCell Technologies" for e in neighbours)

        # the same documents again (a new batch): all duplicates, nothing changes anywhere
        again = await client.execute_workflow(
            IngestDocumentsWorkflow.run, IngestInput(mission=mission, documents=[path_ref(settings, mission, p) for p in good],
                                                     batch_id="again"),
            id=workflow_id_for(mission, "again"), task_queue=queues.INGESTION)
        assert again.totals.duplicates == len(good) and again.totals.ingested == 0
        assert await store_counts(stores, s, mission) == counts

    # replay: the parent and a slice child are deterministic
    replayer = Replayer(workflows=[IngestDocumentsWorkflow, IngestSliceWorkflow], data_converter=pydantic_data_converter)
    for h in await _histories(client, wf_id, handle.first_execution_run_id or handle.result_run_id):
        await replayer.replay_workflow(h)
    await replayer.replay_workflow(await client.get_workflow_handle(f"{wf_id}-slice-0").fetch_history())


async def test_unknown_mission_fails_the_batch_clearly(client, settings):
    req = IngestInput(mission=f"nosuch_{uuid.uuid4().hex[:8]}", documents=[DocumentRef(name="a.txt", content_b64="aGk=")])
    async with ingestion_worker(client, ingestion_settings(settings)):
        with pytest.raises(WorkflowFailureError) as info:
            await client.execute_workflow(IngestDocumentsWorkflow.run, req, id=f"ingest-{req.mission}-x",
                                          task_queue=queues.INGESTION)
    assert "unknown mission" in str(info.value.cause)
    assert info.value.cause.type == "UnknownMission"


async def test_fan_out_continue_as_new_and_replay(client, settings, session_dir):
    s = ingestion_settings(settings)
    mission = await new_mission(s)
    paths = write_small_docs(session_dir / f"fan-{mission}", 7, words=120)
    # 4 slices of 2, two at a time, a fresh run every 2 slices -> 2 runs
    req = IngestInput(mission=mission, documents=[path_ref(settings, mission, str(p)) for p in paths],
                      slice_size=2, max_concurrent_slices=2, slices_per_run=2, doc_concurrency=1)
    wf_id = workflow_id_for(mission, req.resolved_batch_id())
    async with ingestion_worker(client, s) as spec:
        handle = await client.start_workflow(IngestDocumentsWorkflow.run, req, id=wf_id, task_queue=queues.INGESTION,
                                             search_attributes=for_mission(mission))
        result = await handle.result()
        counts = await store_counts(spec.extra["stores"], s, mission)
        # the last run's progress covers the whole batch, not just its own slices
        final = await client.get_workflow_handle(wf_id).query(IngestDocumentsWorkflow.progress)
        assert (final.total, final.done, final.ingested, final.finished) == (7, 7, 7, True)
    assert result.totals.ingested == 7 and result.totals.total == 7 and result.totals.failed == 0
    assert len(result.documents) == 7
    assert counts["pg_chunks"] == counts["vectors"] == counts["fulltext"] == result.totals.chunks
    histories = await _histories(client, wf_id, handle.first_execution_run_id)
    assert len(histories) == 2  # continued as new once
    for i in range(4):
        child = await client.get_workflow_handle(f"{wf_id}-slice-{i}").describe()
        assert child.status.name == "COMPLETED"
        assert child.typed_search_attributes.get(for_mission(mission).search_attributes[0].key) == mission
    replayer = Replayer(workflows=[IngestDocumentsWorkflow, IngestSliceWorkflow], data_converter=pydantic_data_converter)
    for h in histories:
        await replayer.replay_workflow(h)


async def test_plain_json_start_from_temporal_cli_with_inline_and_object_key(client, settings):
    s = ingestion_settings(settings)
    mission = await new_mission(s)
    note = "# Pumped hydro\n\nPumped hydro storage provides most of the world's storage capacity today.\n"
    async with ingestion_worker(client, s) as spec:
        stores = spec.extra["stores"]
        await stores.objects.put(mission, "documents/uploads/flow.md",
                                 b"# Flow batteries\n\nVanadium flow batteries suit long-duration storage.\n")
        payload = {"mission": mission, "batch_id": "cli-1", "documents": [
            {"name": "hydro.md", "content_b64": base64.b64encode(note.encode()).decode()},
            {"object_key": "documents/uploads/flow.md"},
            {"object_key": "documents/uploads/missing.md"},
            # a worker's file by path: a plain client has no grant, forges one, or reuses another path's
            {"path": "/etc/hostname"},
            {"path": "/etc/passwd", "grant": sign_path(b"mallory's own key", mission, "/etc/passwd")},
            {"path": "/etc/hosts", "grant": sign_path(load_key(s), mission, str(SAMPLES / "industry_news.html"))},
        ]}
        wf_id = f"ingest-{mission}-cli-1"
        address = client.service_client.config.target_host
        proc = await asyncio.create_subprocess_exec(
            str(temporal_binary()), "workflow", "start", "--address", address, "--task-queue", queues.INGESTION,
            "--type", "IngestDocumentsWorkflow", "--workflow-id", wf_id, "--input", json.dumps(payload),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode()
        result = await client.get_workflow_handle(wf_id, result_type=IngestResult).result()
    assert result.totals.ingested == 2 and result.totals.failed == 4
    failures = {f.source: f for f in result.failures}
    assert "not found" in failures["object:documents/uploads/missing.md"].reason
    for path in ("/etc/hostname", "/etc/passwd", "/etc/hosts"):
        assert failures[path].reason_type == "Forbidden" and "signed grant" in failures[path].reason, failures[path]
    assert {d.source for d in result.documents} == {"inline:hydro.md", "object:documents/uploads/flow.md"}


async def test_retry_resumes_vectors_from_heartbeat_details(settings, session_dir, monkeypatch):
    """A retried attempt skips the chunks its crashed predecessor already put in
    Qdrant (heartbeat details), and still writes every store exactly once."""
    import dataclasses
    import hashlib

    from temporalio.testing import ActivityEnvironment

    import workers.ingestion
    from stratmaster.contracts.ingestion import IngestDocumentInput

    monkeypatch.setattr("activities.ingest.activities.BEAT_MIN_S", 0.0)  # every stage's heartbeat
    s = ingestion_settings(settings)
    mission = await new_mission(s)
    path = write_small_docs(session_dir / f"resume-{mission}", 1, words=1500)[0]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = await workers.ingestion.build(s, warm_up=False)
    acts = spec.extra["ingestion"]
    counting = acts.resources._embedder = CountingEmbedder(acts.embedder)
    beats: list[dict] = []
    req = IngestDocumentInput(mission=mission, batch_id="resume", ref=path_ref(settings, mission, str(path)))
    try:
        env = ActivityEnvironment()
        env.on_heartbeat = lambda *details: beats.append(details[0])
        first = await env.run(acts.ingest_document, req)
        assert first.status == "ingested" and first.chunks > 4
        assert {"read", "parse", "embed", "fulltext", "graph", "database"} <= {b["stage"] for b in beats}
        counts = await store_counts(spec.extra["stores"], s, mission)

        # pretend attempt 1 crashed after 3 chunks reached Qdrant and before PostgreSQL
        conn = await asyncpg.connect(s.database_url)
        await conn.execute("DELETE FROM documents WHERE id = $1", first.document_id)
        await conn.close()
        counting.calls.clear()
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=[{"sha256": sha, "vectors_done": 3}])
        second = await env.run(acts.ingest_document, req)
        assert second.status == "ingested" and second.chunks == first.chunks
        assert sum(map(len, counting.calls)) == first.chunks - 3  # only the chunks not yet in Qdrant
        assert await store_counts(spec.extra["stores"], s, mission) == counts

        # attempt 2 of the same batch after a commit reports "ingested", a new batch "duplicate"
        assert (await env.run(acts.ingest_document, req)).status == "ingested"
        other = req.model_copy(update={"batch_id": "other"})
        assert (await ActivityEnvironment().run(acts.ingest_document, other)).status == "duplicate"
    finally:
        await spec.close()


async def test_cartridge_entity_types_reach_the_graph(settings):
    """Custom entity types of the mission's active cartridge are extracted at ingestion."""
    import hashlib

    from temporalio.testing import ActivityEnvironment

    import workers.ingestion
    from stratmaster.contracts.ingestion import IngestDocumentInput
    from stratmaster.contracts.cartridge import EntityType, default_cartridge

    s = ingestion_settings(settings)
    mission = await new_mission(s)
    cartridge = default_cartridge(mission).model_copy(update={"entities": [
        EntityType(name="TECHNOLOGY", keywords=["sodium-ion", "flow battery"]),
        EntityType(name="REGULATION", patterns=[r"\b[A-Z]{2,5} Directive \d{4}/\d+\b"])]})
    raw = cartridge.model_dump_json()
    async with pg_connect(s) as conn:
        tid = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", mission)
        await conn.execute(
            """INSERT INTO mission_versions (tenant_id, version, cartridge, sha256, created_by, activated_at)
               VALUES ($1, '1.0.0', $2::jsonb, $3, 'test', NOW())""", tid, raw, hashlib.sha256(raw.encode()).hexdigest())
        await conn.execute("UPDATE tenants SET active_version = '1.0.0', config_revision = config_revision + 1 "
                           "WHERE id = $1", tid)
    text = "NordCell pilots sodium-ion cells. The EU Directive 2023/1791 sets efficiency rules for a flow battery."
    spec = await workers.ingestion.build(s, warm_up=False)
    try:
        req = IngestDocumentInput(mission=mission, batch_id="c1", ref=DocumentRef(
            name="regs.txt", content_b64=base64.b64encode(text.encode()).decode()))
        assert (await ActivityEnvironment().run(spec.extra["ingestion"].ingest_document, req)).status == "ingested"
        rows = await spec.extra["stores"].graph.dump(mission)
    finally:
        await spec.close()
    typed = {(r.get("type"), r.get("name")) for r in rows if r.get("kind") == "entity"}
    assert ("TECHNOLOGY", "sodium-ion") in typed and ("TECHNOLOGY", "flow battery") in typed
    assert ("REGULATION", "EU Directive 2023/1791") in typed
