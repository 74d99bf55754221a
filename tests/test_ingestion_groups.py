"""Small documents grouped into one `ingest_documents` activity: one batched
embedding call, per-document failures and writes, finished documents skipped on
retry (heartbeat details), big ones handed back to `ingest_document`; the slice
workflow with groups is deterministic on replay."""
from __future__ import annotations

import dataclasses

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Replayer

from stratmaster.principals import path_ref
from stratmaster import queues
from stratmaster.contracts.ingestion import IngestGroupInput, IngestInput, workflow_id_for
from stratmaster.search_attributes import for_mission
from tests.ingestion_support import (
    CountingEmbedder, ingestion_settings, ingestion_worker, new_mission, store_counts, write_bad_documents,
    write_small_docs,
)
from workflows.ingestion import GROUPS_PATCH, IngestDocumentsWorkflow, IngestSliceWorkflow

pytestmark = pytest.mark.timeout(300)


async def test_stage_heartbeats_are_throttled_and_the_last_progress_is_sent():
    """Stages in quick succession make one heartbeat, not one each; the activity's last
    progress is heartbeated when it ends (what a retry after a failure resumes from)."""
    from activities.ingest.activities import _Beat

    beats: list[dict] = []

    async def work() -> None:
        beat = _Beat({"stage": "start"})
        async with beat.running():
            for i in range(50):
                beat.stage("document-done", finished=list(range(i + 1)))

    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details[0])
    await env.run(work)
    assert len(beats) == 2 and beats[0]["finished"] == [0] and beats[-1]["finished"] == list(range(50))


async def test_group_activity_embeds_once_fails_alone_and_resumes_after_finished_documents(settings, session_dir):
    import workers.ingestion

    s = ingestion_settings(settings)
    mission = await new_mission(s, "grp")
    small = write_small_docs(session_dir / f"grp-{mission}", 3, words=260)
    big = write_small_docs(session_dir / f"grp-big-{mission}", 1, words=1500)[0]
    bad = next(p for p in write_bad_documents(session_dir / f"grp-bad-{mission}") if p.endswith("empty.txt"))
    assert max(p.stat().st_size for p in small) < 4096 < big.stat().st_size
    copy = small[0].with_name("copy_of_note_000.txt")
    copy.write_bytes(small[0].read_bytes())
    refs = [path_ref(settings, mission, str(small[0])), path_ref(settings, mission, bad), path_ref(settings, mission, str(big)),
            path_ref(settings, mission, str(small[1])), path_ref(settings, mission, str(small[2])), path_ref(settings, mission, str(copy))]
    req = IngestGroupInput(mission=mission, batch_id="grp", refs=refs, max_doc_bytes=4096)

    spec = await workers.ingestion.build(s, warm_up=False)
    acts = spec.extra["ingestion"]
    counting = acts.resources._embedder = CountingEmbedder(acts.embedder)
    calls = counting.calls
    try:
        beats: list[dict] = []
        env = ActivityEnvironment()
        env.on_heartbeat = lambda *details: beats.append(details[0])
        first = (await env.run(acts.ingest_documents, req)).results
        assert [r.status if r else None for r in first] == ["ingested", "failed", None, "ingested", "ingested",
                                                        "duplicate"]  # same bytes as document 0
        assert first[1].reason_type == "EmptyDocument" and "empty document" in first[1].reason
        chunks = sum(r.chunks for r in first if r and r.status == "ingested")
        assert len(calls) == 1 and len(calls[0]) == chunks  # one batched call for the whole group
        assert set(beats[-1]["finished"]) == {"0", "1", "3", "4", "5"}
        counts = await store_counts(spec.extra["stores"], s, mission)
        assert counts["pg_documents"] == 3 and counts["failures"] == 1
        assert counts["pg_chunks"] == counts["vectors"] == counts["fulltext"] == chunks

        # attempt 2 after a crash that had finished documents 0, 1 and 3 (heartbeat details)
        # (document 5, the copy of 0, is then reported "ingested": it is this batch's, on a retry)
        # but not yet written document 4 to PostgreSQL: only document 4 is embedded again
        finished = {k: v for k, v in beats[-1]["finished"].items() if k not in ("4", "5")}
        conn = await asyncpg.connect(s.database_url)
        await conn.execute("DELETE FROM documents WHERE id = $1", first[4].document_id)
        await conn.close()
        calls.clear()
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=[{"finished": finished}])
        second = (await env.run(acts.ingest_documents, req)).results
        assert [r.model_dump() if r else None for r in second[:5]] == [r.model_dump() if r else None
                                                                      for r in first[:5]]
        assert second[5].status == "ingested" and second[5].document_id == first[0].document_id
        assert len(calls) == 1 and len(calls[0]) == first[4].chunks
        assert await store_counts(spec.extra["stores"], s, mission) == counts  # every chunk exactly once
    finally:
        await spec.close()


async def test_slices_group_small_documents_big_ones_go_alone_and_replay(client, settings, session_dir):
    s = ingestion_settings(settings)
    mission = await new_mission(s, "grpwf")
    small = write_small_docs(session_dir / f"grpwf-{mission}", 5, words=260)
    big = write_small_docs(session_dir / f"grpwf-big-{mission}", 1, words=1500)[0]
    bad = write_bad_documents(session_dir / f"grpwf-bad-{mission}")
    bad_paths = sorted(p for p in bad if p.endswith(("empty.txt", "corrupt.pdf")))
    paths = [str(small[0]), bad_paths[0], str(small[1]), str(big), str(small[2]), bad_paths[1], str(small[3]),
             str(small[4])]
    # 2 slices of 4, groups of 3 -> ingest_documents calls of 3 + 1 per slice; the big one alone
    req = IngestInput(mission=mission, documents=[path_ref(settings, mission, p) for p in paths], slice_size=4,
                      group_docs=3, group_doc_bytes=4096, progress_every_s=0)
    wf_id = workflow_id_for(mission, req.resolved_batch_id())
    async with ingestion_worker(client, s) as spec:
        handle = await client.start_workflow(IngestDocumentsWorkflow.run, req, id=wf_id, task_queue=queues.INGESTION,
                                             search_attributes=for_mission(mission))
        result = await handle.result()
        final = await handle.query(IngestDocumentsWorkflow.progress)
        counts = await store_counts(spec.extra["stores"], s, mission)
    assert (result.totals.ingested, result.totals.failed, result.totals.duplicates) == (6, 2, 0)
    assert {f.source: f.reason_type for f in result.failures} == {p: bad[p] for p in bad_paths}
    assert (final.done, final.ingested, final.failed, final.chunks) == (8, 6, 2, result.totals.chunks)
    assert counts["pg_documents"] == 6 and counts["failures"] == 2
    assert counts["pg_chunks"] == counts["vectors"] == counts["fulltext"] == result.totals.chunks
    assert counts["pg_distinct_chunks"] == counts["pg_declared_chunks"] == result.totals.chunks

    replayer = Replayer(workflows=[IngestDocumentsWorkflow, IngestSliceWorkflow], data_converter=pydantic_data_converter)
    activity_types: list[str] = []
    for i in range(2):
        history = await client.get_workflow_handle(f"{wf_id}-slice-{i}").fetch_history()
        activity_types += [e.activity_task_scheduled_event_attributes.activity_type.name for e in history.events
                           if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
        assert any(e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED for e in history.events), GROUPS_PATCH
        await replayer.replay_workflow(history)
    await replayer.replay_workflow(await handle.fetch_history())
    assert activity_types.count("ingest_documents") == 4
    assert activity_types.count("ingest_document") == 1  # the big one
    assert "ingest_record_failure" not in activity_types  # failures recorded inside the group activity
