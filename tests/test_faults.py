"""Faults with real processes: the Temporal dev server SIGKILLed and restarted
in the middle of an ingestion and of a research run, PostgreSQL restarted in the
middle of an ingestion, a research worker SIGKILLed mid-run. Every run completes
afterwards; nothing is duplicated, nothing lost.

This module runs its own Temporal dev server (a SQLite file, so a restart keeps
the histories), its own PostgreSQL and its workers as separate processes
(`python -m workers --queue ...`), so killing them touches nothing else."""
from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from activities.ingest.chunking import chunk_text
from activities.ingest.embedding import get_embedder
from activities.ingest.parsing import parse_document
from activities.stores.factory import build_stores
from stratmaster.principals import path_ref
from stratmaster.migrations import apply_migrations
from stratmaster import queues
from stratmaster.contracts.ingestion import IngestInput, IngestResult, workflow_id_for
from stratmaster.contracts.research import ResearchInput, ResearchResult
from stratmaster.contracts.research import workflow_id_for as research_workflow_id
from stratmaster.local_postgres import LocalPostgres
from stratmaster.local_temporal import dev_server_args
from stratmaster.search_attributes import for_mission
from stratmaster.settings import Settings
from tests.support.ports import free_port
from tests.support.postgres import pg_connect
from tests.ingestion_support import new_mission, store_counts, worker_env, write_small_docs
from workflows.ingestion import IngestDocumentsWorkflow
from workflows.research import ResearchWorkflow

pytestmark = [pytest.mark.timeout(600), pytest.mark.servers]  # starts servers of its own: not in the fast lane


class DevServer:
    """The real Temporal dev server on a fixed port and database file."""

    def __init__(self, directory: Path):
        self.db = directory / "temporal.sqlite"
        self.port, self.ui_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = directory / "temporal.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(dev_server_args(self.db, "127.0.0.1", self.port, self.ui_port),
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()[-2000:]
                time.sleep(0.2)
        raise AssertionError("the dev server did not open its port")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Workers:
    """Worker processes, as `stratmaster dev up` runs them."""

    def __init__(self, settings: Settings, address: str, log: Path):
        self.settings, self.address, self.log = settings, address, log
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, queue: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers", "--queue", queue, "--metrics-port", str(free_port())],
            env=worker_env(self.settings, self.address), stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        self.procs[queue] = proc
        return proc

    def kill(self, queue: str) -> None:
        self.procs[queue].send_signal(signal.SIGKILL)
        self.procs[queue].wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()


@pytest.fixture(scope="module")
def stack(session_dir):
    directory = session_dir / "faults"
    directory.mkdir()
    pg = LocalPostgres(data_dir=directory / "pg", port=free_port())
    pg.start()
    asyncio.run(apply_migrations(pg.dsn))
    server = DevServer(directory)
    server.start()
    settings = Settings(_env_file=None, data_dir=directory / "data", database_url=pg.dsn, postgres_port=pg.port)
    workers = Workers(settings, server.address, directory / "workers.log")
    workers.start(queues.INGESTION)
    workers.start(queues.RESEARCH)
    try:
        yield settings, pg, server, workers
    finally:
        workers.stop()
        server.stop()
        pg.stop()


async def _client(address: str) -> Client:
    deadline = time.monotonic() + 60
    while True:
        try:
            return await Client.connect(address, data_converter=pydantic_data_converter)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _result(handle: WorkflowHandle, timeout: float = 300):
    """The run's result, riding out the server's outage."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await handle.result()
        except RPCError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _wait_for(probe, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await probe():
                return
        except RPCError:
            pass  # no worker has answered the query yet
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _expected_chunks(settings: Settings, paths: list[Path]) -> int:
    embedder = get_embedder(settings)
    return sum(len(chunk_text(parse_document(p.name, p.read_bytes()).text, embedder.token_offsets,
                              settings.chunk_tokens, settings.chunk_overlap_tokens)) for p in paths)


async def _ingest_with_fault(stack, session_dir, fault) -> tuple[str, IngestResult, dict, int, int]:
    settings, pg, server, workers = stack
    mission = await new_mission(settings, "fault")
    paths = write_small_docs(session_dir / f"faults-{mission}", 16, words=900)
    req = IngestInput(mission=mission, documents=[path_ref(settings, mission, str(p)) for p in paths],
                      slice_size=4, max_concurrent_slices=2, doc_concurrency=2, heartbeat_timeout_s=5)
    client = await _client(server.address)
    handle = await client.start_workflow(IngestDocumentsWorkflow.run, req, task_queue=queues.INGESTION,
                                         id=workflow_id_for(mission, req.resolved_batch_id()),
                                         search_attributes=for_mission(mission))

    async def some_done() -> bool:
        p = await handle.query(IngestDocumentsWorkflow.progress)
        return p.done >= 2

    await _wait_for(some_done, "the first documents")
    before = (await handle.query(IngestDocumentsWorkflow.progress)).done
    await fault()
    result = await _result(handle)
    stores = build_stores(settings)
    try:
        counts = await store_counts(stores, settings, mission)
    finally:
        await stores.close()
    return mission, result, counts, len(paths), _expected_chunks(settings, paths) if before < len(paths) else -1


def _assert_exactly_once(result: IngestResult, counts: dict, documents: int, expected: int) -> None:
    assert expected > 0, "the fault came after the batch had finished: nothing was tested"
    assert result.totals.failed == 0, result.failures
    assert (result.totals.ingested, result.totals.chunks) == (documents, expected)
    assert counts["pg_documents"] == documents
    assert counts["pg_chunks"] == counts["pg_distinct_chunks"] == counts["pg_declared_chunks"] == expected
    assert counts["vectors"] == counts["fulltext"] == expected
    assert counts["objects"] == 2 * documents


async def test_temporal_server_killed_mid_ingestion(stack, session_dir):
    _, _, server, _ = stack

    async def fault():
        server.kill()
        await asyncio.sleep(2)
        server.start()

    _, result, counts, documents, expected = await _ingest_with_fault(stack, session_dir, fault)
    _assert_exactly_once(result, counts, documents, expected)


async def test_postgres_restarted_mid_ingestion(stack, session_dir):
    _, pg, _, _ = stack

    async def fault():
        await asyncio.to_thread(pg.stop)
        await asyncio.sleep(2)
        await asyncio.to_thread(pg.start)

    _, result, counts, documents, expected = await _ingest_with_fault(stack, session_dir, fault)
    _assert_exactly_once(result, counts, documents, expected)


@pytest.fixture(scope="module")
async def corpus(stack, session_dir):
    """A mission with documents, for the research runs."""
    settings, _, server, _ = stack
    mission = await new_mission(settings, "faultr")
    paths = write_small_docs(session_dir / f"faults-{mission}", 8, words=400)
    req = IngestInput(mission=mission, documents=[path_ref(settings, mission, str(p)) for p in paths])
    client = await _client(server.address)
    result = await client.execute_workflow(IngestDocumentsWorkflow.run, req, task_queue=queues.INGESTION,
                                           id=workflow_id_for(mission, req.resolved_batch_id()))
    assert result.totals.ingested == len(paths)
    return mission


async def _research_with_fault(stack, mission: str, fault) -> tuple[ResearchResult, list]:
    settings, _, server, _ = stack
    client = await _client(server.address)
    req = ResearchInput(mission=mission, query="How does lithium iron phosphate degradation affect warranty and "
                                               "cycle efficiency for grid operators?", max_subquestions=6, top_k=20,
                        cache="off")  # a real run each time (the answer cache would answer the repeat at once)
    # a run can finish between two status polls (it takes a few hundred ms): then it is not
    # the run to break, and another one starts
    for _ in range(5):
        wf_id = research_workflow_id(mission, req.query, f"fault-{time.monotonic_ns()}")
        handle = await client.start_workflow(ResearchWorkflow.run, req, id=wf_id, task_queue=queues.RESEARCH,
                                             search_attributes=for_mission(mission))
        seen: list[str] = []

        async def under_way(handle=handle, seen=seen) -> bool:
            seen.append(await handle.query(ResearchWorkflow.status))
            return seen[-1] in ("planning", "retrieving", "synthesising", "completed")

        await _wait_for(under_way, "the research run to be under way")
        if seen[-1] != "completed":
            break
    else:
        raise AssertionError("five research runs finished before one was seen under way")
    await fault()
    result = await _result(handle)
    async with pg_connect(settings) as conn:
        sessions = await conn.fetch(
            """SELECT s.status, (SELECT count(*) FROM claims c WHERE c.session_id = s.id) AS claims
               FROM research_sessions s WHERE s.workflow_id = $1""", wf_id)
    return result, sessions


def _assert_completed_once(result: ResearchResult, sessions: list) -> None:
    assert result.status == "completed" and result.outcome is not None
    assert len(sessions) == 1 and sessions[0]["status"] == "completed"
    assert sessions[0]["claims"] == len(result.claims)  # persisted once, whatever was retried


async def test_temporal_server_killed_mid_research(stack, corpus):
    _, _, server, _ = stack

    async def fault():
        server.kill()
        await asyncio.sleep(2)
        server.start()

    _assert_completed_once(*await _research_with_fault(stack, corpus, fault))


async def test_research_worker_sigkilled_mid_run(stack, corpus):
    _, _, _, workers = stack

    async def fault():
        workers.kill(queues.RESEARCH)
        workers.start(queues.RESEARCH)

    _assert_completed_once(*await _research_with_fault(stack, corpus, fault))
