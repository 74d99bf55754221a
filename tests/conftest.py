"""Shared fixtures: a real Temporal dev server and a real PostgreSQL cluster,
started once per test session (no downloads: both come from installed packages)."""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from stratmaster.local_postgres import LocalPostgres
from stratmaster.local_temporal import temporal_binary
from stratmaster.search_attributes import MISSION_SA
from stratmaster.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    from activities.stores.postgres import apply_migrations
    import asyncio

    asyncio.run(apply_migrations(pg.dsn))
    yield pg
    pg.stop()


@pytest_asyncio.fixture(scope="session")
async def temporal_env():
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        data_converter=pydantic_data_converter,
        ip="127.0.0.1",
        search_attributes=[MISSION_SA],
        dev_server_log_level="error",
    )
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
