"""Shared fixtures: a real Temporal dev server and a real PostgreSQL cluster,
started once per test session (no downloads: both come from installed packages);
the PostgreSQL connection (the `pg` fixture) and the embedded stores (`stores`), each
closed after use; which tests are the fast lane's. The helpers tests import (free_port,
pg_connect, queue_worker, ...) are in tests/support/."""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from stratmaster.local_postgres import LocalPostgres
from stratmaster.local_temporal import start_local_env
from stratmaster.settings import Settings
from tests.support.ports import free_port
from tests.support.postgres import pg_connect


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
