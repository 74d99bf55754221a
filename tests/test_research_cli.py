"""`stratmaster research start|status|cancel` against the real dev server and an
in-process research worker."""
from __future__ import annotations

import asyncio
import re
import uuid

import pytest
import pytest_asyncio
from typer.testing import CliRunner

from starters.cli import app
from stratmaster.settings import get_settings
from tests.research_support import SlowRetrieve, ingest_corpus, research_worker

MISSION = f"rc_{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(scope="module")
async def corpus(temporal_env, settings):
    return await ingest_corpus(temporal_env.client, settings, MISSION)


@pytest.fixture
def cli_env(temporal_env, monkeypatch):
    monkeypatch.setenv("STRATMASTER_TEMPORAL_ADDRESS", temporal_env.client.service_client.config.target_host)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def invoke(*args: str):
    # The CLI runs its own event loop: call it from a thread while the worker runs in ours.
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def test_start_follows_progress_and_prints_claims(temporal_env, settings, corpus, cli_env):
    async with research_worker(temporal_env.client, settings):
        res = await invoke("research", "start", "How much capacity does the XR-7 battery keep after 1000 charge cycles?",
                           "--mission", MISSION, "--max-subquestions", "2")
    assert res.exit_code == 0, res.output
    out = res.output
    wid = re.search(r"started (research-\S+)", out).group(1)
    assert wid.startswith(f"research-{MISSION}-")
    print(out)
    assert "sub-questions" in out and "confidence" in out
    assert re.search(r"\+ \".*90 percent", out)  # a supporting quote
    assert "contradicted by" in out and "flagged" in out
    assert f"tenants/{MISSION}/artifacts/research/" in out

    res = await invoke("research", "status", wid)  # completed: the result is read from history, no worker needed
    assert res.exit_code == 0 and "completed" in res.output and "confidence" in res.output


async def test_no_wait_status_and_cancel(temporal_env, settings, corpus, cli_env):
    async with research_worker(temporal_env.client, settings, acts_cls=SlowRetrieve):
        res = await invoke("research", "start", "battery cycles", "-m", MISSION, "--no-wait")
        assert res.exit_code == 0, res.output
        wid = re.search(r"started (research-\S+)", res.output).group(1)
        assert "confidence" not in res.output
        for _ in range(100):
            res = await invoke("research", "status", wid)
            if "step retrieving" in res.output:
                break
            await asyncio.sleep(0.2)
        assert "running" in res.output and "step retrieving" in res.output, res.output
        res = await invoke("research", "cancel", wid)
        assert res.exit_code == 0 and "cancellation requested" in res.output
        handle = temporal_env.client.get_workflow_handle(wid)
        with pytest.raises(Exception):
            await asyncio.wait_for(handle.result(), 60)
        res = await invoke("research", "status", wid)
    assert "canceled" in res.output and "step cancelled" in res.output


async def test_clear_errors(temporal_env, settings, cli_env):
    async with research_worker(temporal_env.client, settings):
        res = await invoke("research", "start", "anything", "-m", "no_such_mission")
    assert res.exit_code == 1 and "unknown mission 'no_such_mission'" in res.output
    assert "Traceback" not in res.output
    res = await invoke("research", "start", "anything", "-m", "demo", "--fusion", "borda")
    assert res.exit_code == 2 and "bad input" in res.output and "fusion" in res.output
    res = await invoke("research", "status", "research-nope-0000")
    assert res.exit_code == 1 and "not found" in res.output.lower()
