"""Shared fixtures: a real Temporal dev server and a real PostgreSQL cluster,
started once per test session (no downloads: both come from installed packages);
the one way a test runs a worker (queue_worker), the one PostgreSQL connection
(pg_connect / the `pg` fixture) and the embedded stores (`stores`), each closed after use."""
from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from stratmaster.local_postgres import LocalPostgres
from stratmaster.local_temporal import start_local_env
from stratmaster.settings import Settings


# The tests run workflows in Temporal's default sandbox, which re-imports their modules for
# each run and refuses clock, randomness and I/O calls made in them; the workers pass the
# project's workflow modules through for speed (workers/registry.py: WORKFLOW_RUNNER).
STRICT_RUNNER = SandboxedWorkflowRunner()

_HANDED_OUT: set[int] = set()


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free port below the kernel's ephemeral range: a port from bind(0) can be taken
    as the source port of any outgoing connection before the server meant for it binds
    it (a worker's metrics port was, once, in CI)."""
    floor = _ephemeral_floor()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(15000, max(floor, 15001))
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


# The fast lane (`bash scripts/test.sh --unit`: `pytest -m unit`, no servers): a test is `unit` when
# it asks for no server fixture and no marker of it names a server (`servers`: the test starts its
# own). Marked here, from what each test uses, never by hand.
SERVER_FIXTURES = frozenset({"postgres", "temporal_env", "time_skipping_env", "client", "settings", "pg", "stores"})
SERVER_MARKERS = frozenset({"opensearch", "minio", "keycloak", "llm", "servers"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVER_FIXTURES.isdisjoint(item.fixturenames) and \
                SERVER_MARKERS.isdisjoint(m.name for m in item.iter_markers()):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def session_dir():
    d = Path(tempfile.mkdtemp(prefix="stratmaster-test-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(session_dir):
    pg = LocalPostgres(data_dir=session_dir / "pg", port=free_port())
    pg.start()
    from stratmaster.migrations import apply_migrations
    import asyncio

    asyncio.run(apply_migrations(pg.dsn))
    yield pg
    pg.stop()


@pytest_asyncio.fixture(scope="session")
async def temporal_env():
    env = await start_local_env()
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def time_skipping_env():
    """Temporal's time-skipping test server (scripts/services/temporal_test_server.sh installs
    it): a workflow waiting on a timer or a retry backoff moves the clock instead of waiting."""
    from tests.adapters_support import require_server

    server = require_server("STRATMASTER_TEST_TIME_SKIPPING_SERVER", "temporal_test_server.sh")
    env = await WorkflowEnvironment.start_time_skipping(data_converter=pydantic_data_converter,
                                                        test_server_existing_path=server)
    yield env
    await env.shutdown()


@pytest.fixture
def client(temporal_env) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
def settings(session_dir, postgres) -> Settings:
    """Settings on embedded defaults in a throwaway data dir, pointing at the test PostgreSQL."""
    return Settings(
        _env_file=None,
        data_dir=session_dir / "data",
        database_url=postgres.dsn,
        postgres_port=postgres.port,
    )


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def pg_connect(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """One connection to the test PostgreSQL, closed on exit."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest_asyncio.fixture
async def pg(settings) -> AsyncIterator[asyncpg.Connection]:
    async with pg_connect(settings) as conn:
        yield conn


@pytest_asyncio.fixture(scope="module")
async def stores(settings):
    """The embedded stores of the test settings, closed after the module."""
    from activities.stores.factory import build_stores

    s = build_stores(settings)
    yield s
    await s.close()


def activity_name(fn: Callable[..., Any]) -> str:
    return activity._Definition.must_from_callable(fn).name


def workflow_name(cls: type) -> str:
    from temporalio.workflow import _Definition

    return _Definition.must_from_class(cls).name


@contextlib.asynccontextmanager
async def queue_worker(client: Client, settings: Settings, queue: str, *, task_queue: str | None = None,
                       activities: dict[str, Callable[..., Any]] | Callable[[Any], dict] | None = None,
                       workflows: list[type] | None = None, build_options: dict | None = None,
                       **worker_options: Any):
    """The real worker of `queue` in-process, built and run as `python -m workers` does
    (workers.registry.build + serving). Test seams, without switches in production code:
    `activities` replaces activities by name (failure injection; a dict, or a function of
    the spec returning one), `workflows` replaces workflows by name (stand-ins)."""
    from workers.registry import build, serving

    worker_options.setdefault("workflow_runner", STRICT_RUNNER)
    spec = await build(queue, settings, **(build_options or {}))
    if callable(activities):
        activities = activities(spec)
    if activities:
        by_name = {activity_name(a): a for a in spec.activities}
        by_name.update(activities)
        spec.activities = list(by_name.values())
    if workflows:
        names = {workflow_name(w) for w in workflows}
        spec.workflows = [w for w in spec.workflows if workflow_name(w) not in names] + list(workflows)
    async with serving(client, task_queue or queue, spec, **worker_options):
        yield spec

