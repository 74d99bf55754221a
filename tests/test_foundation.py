"""Foundation: a worker process per queue against the real dev server, SIGTERM
shutdown, the health workflow against real PostgreSQL, clear errors."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from activities.resources import Resources
from stratmaster import queues
from stratmaster.contracts.health import HealthCheckInput, HealthReport
from stratmaster.errors import ServiceUnavailable
from stratmaster.local_postgres import LocalPostgres
from stratmaster.settings import Settings
from stratmaster.temporal_client import connect
from tests.support.ports import free_port
from workflows.health import HealthCheckWorkflow


def _worker_env(settings: Settings, address: str, metrics_port: int) -> dict:
    env = dict(os.environ)
    env.update({
        "STRATMASTER_TEMPORAL_ADDRESS": address,
        "STRATMASTER_DATABASE_URL": settings.database_url,
        "STRATMASTER_DATA_DIR": str(settings.data_dir),
        "STRATMASTER_METRICS_PORT_BASE": str(metrics_port),
    })
    return env


def thread_niceness(pid: int) -> set[int]:
    """The nice value of each of the process's threads (/proc/<pid>/task/<tid>/stat, field 19)."""
    out = set()
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        out.add(int(stat.read_text().rsplit(")", 1)[1].split()[16]))
    return out


def thread_policies(pid: int) -> set[int]:
    """The scheduling policy of each of the process's threads."""
    out = set()
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            out.add(os.sched_getscheduler(int(t.name)))
        except ProcessLookupError:  # a thread that ended meanwhile
            pass
    return out


async def test_worker_process_runs_queue_and_stops_on_sigterm(temporal_env, settings):
    address = temporal_env.client.service_client.config.target_host
    metrics_port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers", "--queue", queues.MAINTENANCE, "--metrics-port", str(metrics_port)],
        env=_worker_env(settings, address, metrics_port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        report = await temporal_env.client.execute_workflow(
            HealthCheckWorkflow.run, HealthCheckInput(services=["database"]),
            id=f"health-{uuid.uuid4()}", task_queue=queues.MAINTENANCE,
        )
        assert isinstance(report, HealthReport)
        db = {s.name: s for s in report.services}["database"]
        assert db.ok and "PostgreSQL" in db.detail

        # Prometheus metrics from the Temporal runtime on the worker's port
        import httpx

        body = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert "temporal_" in body

        # a background queue's worker runs every thread (Temporal runtime, executors) at the
        # configured niceness, so research on the same machine keeps the CPU
        assert thread_niceness(proc.pid) == {settings.background_worker_nice} == {10}
        # ...and every one under SCHED_IDLE (background_worker_sched_idle, on by default)
        assert thread_policies(proc.pid) == {os.SCHED_IDLE}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "worker stopped" in out


async def test_health_reports_unreachable_database(temporal_env, settings, task_queue):
    from temporalio.worker import Worker

    from activities.ops.health import HealthActivities

    broken = settings.model_copy(update={"database_url": f"postgresql://x@127.0.0.1:{free_port()}/none"})
    async with Worker(temporal_env.client, task_queue=task_queue, workflows=[HealthCheckWorkflow],
                      activities=[HealthActivities(Resources(broken)).check_services]):
        report = await temporal_env.client.execute_workflow(
            HealthCheckWorkflow.run, HealthCheckInput(services=["database"]), id=f"h-{uuid.uuid4()}", task_queue=task_queue)
    assert not report.ok and not report.services[0].ok


async def test_workflows_run_sandboxed_and_the_tests_check_every_call(temporal_env):
    """The workers pass only the project's `workflows` modules through the sandbox (imported once
    per process, for speed): any other workflow code still has its clock reads refused. The
    tests' runner re-imports every workflow module, so a clock read in one fails its tests."""
    from temporalio.worker import Worker

    from tests.support.workers import STRICT_RUNNER
    from tests.sandbox_probe import ClockReader
    from workers.registry import WORKFLOW_RUNNER

    for runner in (STRICT_RUNNER, WORKFLOW_RUNNER):
        queue = f"sandbox-{uuid.uuid4().hex[:8]}"
        async with Worker(temporal_env.client, task_queue=queue, workflows=[ClockReader], workflow_runner=runner):
            refused = await temporal_env.client.execute_workflow(ClockReader.run, id=f"clock-{uuid.uuid4()}",
                                                                 task_queue=queue)
        assert refused == "RestrictedWorkflowAccessError"


async def test_client_factory_gives_clear_error_when_temporal_down():
    s = Settings(_env_file=None, temporal_address=f"127.0.0.1:{free_port()}")
    with pytest.raises(ServiceUnavailable, match="Temporal is not reachable"):
        await connect(s)


def test_postgres_port_taken_is_a_clear_error(session_dir, postgres):
    other = LocalPostgres(data_dir=session_dir / "pg-other", port=postgres.port)
    with pytest.raises(ServiceUnavailable, match="is taken"):
        other.start()


def test_cli_prints_error_not_traceback(monkeypatch):
    from starters.cli import app
    from stratmaster.settings import get_settings

    monkeypatch.setenv("STRATMASTER_TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["health"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "Temporal is not reachable" in result.output
    assert "Traceback" not in result.output


def test_worker_metrics_port_taken_is_clear_error(settings):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        res = subprocess.run(
            [sys.executable, "-m", "workers", "--queue", queues.MAINTENANCE, "--metrics-port", str(taken)],
            env=_worker_env(settings, f"127.0.0.1:{free_port()}", taken), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert f"cannot serve worker metrics on 127.0.0.1:{taken}" in res.stderr
    assert "Traceback" not in res.stderr
