"""Exactly-once in effect: a real worker process is SIGKILLed in the middle of a
batch and restarted; every chunk ends up indexed exactly once in Qdrant, the
full-text index and PostgreSQL."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import pytest
from temporalio.api.enums.v1 import EventType

from activities.ingest.chunking import chunk_text
from activities.ingest.embedding import get_embedder
from activities.ingest.parsing import parse_document
from activities.stores.factory import build_stores
from stratmaster.principals import path_ref
from stratmaster import queues
from stratmaster.contracts.ingestion import IngestInput, workflow_id_for
from stratmaster.search_attributes import for_mission
from tests.support.ports import free_port
from tests.ingestion_support import new_mission, store_counts, worker_env, write_small_docs
from workflows.ingestion import IngestDocumentsWorkflow

pytestmark = [pytest.mark.timeout(420), pytest.mark.servers]


def _start_worker(settings, address: str, log_path):
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "workers", "--queue", queues.INGESTION, "--metrics-port", str(free_port())],
        env=worker_env(settings, address), stdout=log, stderr=subprocess.STDOUT)


async def test_sigkill_mid_batch_then_restart_indexes_every_chunk_exactly_once(client, settings, session_dir):
    mission = await new_mission(settings, "crash")
    paths = write_small_docs(session_dir / f"crash-{mission}", 20, words=900)
    embedder = get_embedder(settings)
    expected = sum(len(chunk_text(parse_document(p.name, p.read_bytes()).text, embedder.token_offsets,
                                  settings.chunk_tokens, settings.chunk_overlap_tokens)) for p in paths)

    req = IngestInput(mission=mission, documents=[path_ref(settings, mission, str(p)) for p in paths],
                      slice_size=10, max_concurrent_slices=2, doc_concurrency=2, group_docs=2, heartbeat_timeout_s=3)
    # two slices of five groups of two documents, two groups at a time in each: whenever three
    # documents are done, groups are in flight (with slices of one group each, both slices could
    # finish together and the kill land between activities: seen once in CI)
    wf_id = workflow_id_for(mission, req.resolved_batch_id())
    address = client.service_client.config.target_host
    log_path = session_dir / f"worker-{mission}.log"

    worker = _start_worker(settings, address, log_path)
    restarted = None
    try:
        handle = await client.start_workflow(IngestDocumentsWorkflow.run, req, id=wf_id, task_queue=queues.INGESTION,
                                             search_attributes=for_mission(mission))
        # wait until some documents are done, then kill the worker without warning
        deadline = time.monotonic() + 180
        done = 0
        while time.monotonic() < deadline:
            try:
                p = await handle.query(IngestDocumentsWorkflow.progress)
                done = p.done
            except Exception:
                pass  # worker still loading the model
            if done >= 3:
                break
            assert worker.poll() is None, log_path.read_text()[-3000:]
            await asyncio.sleep(0.1)
        assert 3 <= done < len(paths), f"progress before the kill: {done}"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)

        restarted = _start_worker(settings, address, log_path)
        result = await asyncio.wait_for(handle.result(), timeout=240)
    finally:
        for proc in (worker, restarted):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()

    assert result.totals.failed == 0, result.failures
    assert result.totals.ingested == len(paths)
    assert result.totals.chunks == expected

    # the kill interrupted at least one document mid-flight, and it was retried
    retried = 0
    for i in range(2):
        history = await client.get_workflow_handle(f"{wf_id}-slice-{i}").fetch_history()
        retried += sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
                       and e.activity_task_started_event_attributes.attempt > 1)
    assert retried >= 1

    stores = build_stores(settings)
    try:
        counts = await store_counts(stores, settings, mission)
    finally:
        await stores.close()
    assert counts["pg_documents"] == len(paths)
    assert counts["pg_chunks"] == counts["pg_distinct_chunks"] == counts["pg_declared_chunks"] == expected
    assert counts["vectors"] == expected
    assert counts["fulltext"] == expected
    assert counts["objects"] == 2 * len(paths)
