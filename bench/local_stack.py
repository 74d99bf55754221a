"""The local stack a bench runs against, as the dev stack runs it: a bench PostgreSQL, a Temporal
dev server, missions with the research test corpus ingested, the STRATMASTER_* environment for
the stack's processes, worker processes per queue, and the API in a uvicorn process of its own,
ready once `/healthz` answers."""
from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Stack:
    client: Any  # temporalio.client.Client
    settings: Any  # stratmaster.settings.Settings
    tmp: Path
    env: dict[str, str]  # os.environ with the stack's data dir, database and Temporal address


@contextlib.asynccontextmanager
async def local_stack(prefix: str, missions: list[str]) -> AsyncIterator[Stack]:
    from stratmaster.local_postgres import LocalPostgres
    from stratmaster.local_temporal import start_local_env
    from stratmaster.migrations import apply_migrations
    from stratmaster.settings import Settings
    from tests.research_support import ingest_corpus
    from tests.support.ports import free_port

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    pg = LocalPostgres(data_dir=tmp / "pg", port=free_port())
    pg.start()
    temporal = await start_local_env()
    try:
        await apply_migrations(pg.dsn)
        settings = Settings(_env_file=None, data_dir=tmp / "data", database_url=pg.dsn, postgres_port=pg.port)
        for m in missions:  # (with in-process workers of its own)
            await ingest_corpus(temporal.client, settings, m)
        env = dict(os.environ, STRATMASTER_DATA_DIR=str(tmp / "data"), STRATMASTER_DATABASE_URL=pg.dsn,
                   STRATMASTER_TEMPORAL_ADDRESS=temporal.client.service_client.config.target_host)
        yield Stack(temporal.client, settings, tmp, env)
    finally:
        await temporal.shutdown()
        pg.stop()


@contextlib.asynccontextmanager
async def api_process(command: Callable[[int], list[str]], env: dict[str, str]) -> AsyncIterator[str]:
    """The API started by `command(port)` on a free loopback port: its URL once it answers."""
    from tests.support.ports import free_port

    port = free_port()
    proc = subprocess.Popen(command(port), env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            for _ in range(300):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.asynccontextmanager
async def worker_processes(client, env: dict[str, str], names: list[str]) -> AsyncIterator[None]:
    """`python -m workers --queue <q>` for each queue, ready once each polls its queue."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    procs = [subprocess.Popen([sys.executable, "-m", "workers", "--queue", q], env=env, cwd=ROOT) for q in names]
    try:
        for q in names:
            for _ in range(600):
                r = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
                    namespace=client.namespace, task_queue=TaskQueue(name=q),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))
                if r.pollers:
                    break
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"a worker process exited while starting (queue {q})")
                await asyncio.sleep(0.2)
            else:
                raise RuntimeError(f"no worker polls {q}")
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
