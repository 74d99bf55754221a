"""`stratmaster ingest` as a real subprocess against the dev server, with the
ingestion worker in-process: summary table, duplicates on re-run, clear errors."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import pytest

from tests.ingestion_support import SAMPLES, ingestion_settings, ingestion_worker, new_mission, worker_env

pytestmark = pytest.mark.timeout(300)


async def _cli(settings, address: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "starters.cli", *args, env=worker_env(settings, address),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    return proc.returncode, out.decode()


async def test_cli_ingest_prints_summary_and_failures(client, settings, session_dir):
    s = ingestion_settings(settings)
    mission = await new_mission(s)
    address = client.service_client.config.target_host
    bad = session_dir / f"cli-bad-{mission}"
    bad.mkdir()
    (bad / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really a pdf")
    n_good = len(list(SAMPLES.iterdir()))
    async with ingestion_worker(client, s):
        code, out = await _cli(s, address, "ingest", mission, str(SAMPLES), str(bad / "broken.pdf"))
        assert code == 0, out
        assert "Traceback" not in out
        assert f"ingest-{mission}-" in out
        # summary row: ingested, duplicates, failed
        assert f"│ {n_good} " in out and "broken.pdf" in out and "CorruptDocument" in out, out

        # same files again: a new run of the same batch; all good ones are duplicates now
        code, out = await _cli(s, address, "ingest", mission, str(SAMPLES), "--batch-id", "second")
        assert code == 0, out
        assert "skipped (duplicates)" in out and f"│ {n_good} " in out and "failed documents" not in out, out

        # --no-wait returns at once with the workflow id
        code, out = await _cli(s, address, "ingest", mission, str(SAMPLES / "battery_costs.csv"), "--no-wait")
        assert code == 0 and f"ingest-{mission}-" in out, out

        # unknown mission: one readable line, exit 1
        code, out = await _cli(s, address, "ingest", f"nosuch_{uuid.uuid4().hex[:6]}", str(SAMPLES))
        assert code == 1 and "unknown mission" in out and "Traceback" not in out, out

    # a missing path is refused before anything starts
    code, out = await _cli(s, address, "ingest", mission, str(session_dir / "does-not-exist.md"))
    assert code == 2 and "no such file" in out and "Traceback" not in out, out
