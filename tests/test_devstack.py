"""`stratmaster dev up/status/down` as a user runs them: real processes, own ports and data dir."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from stratmaster.local_postgres import port_in_use
from tests.support.ports import _HANDED_OUT, _ephemeral_floor, free_port


pytestmark = pytest.mark.servers  # starts servers of its own: not in the fast lane

def _cli(env, *args, timeout=240):
    return subprocess.run([sys.executable, "-m", "starters.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def stack_env(session_dir):
    # Not pytest's tmp_path: pytest keeps its root 0700, which the postgres
    # user (who runs the cluster) cannot traverse.
    data_dir = tempfile.mkdtemp(prefix="devstack-", dir=session_dir)
    env = dict(os.environ)
    env.update({
        "STRATMASTER_DATA_DIR": data_dir,
        "STRATMASTER_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "STRATMASTER_TEMPORAL_UI_PORT": str(free_port()),
        "STRATMASTER_POSTGRES_PORT": str(free_port()),
        "STRATMASTER_API_PORT": str(free_port()),
        "STRATMASTER_METRICS_PORT_BASE": str(_free_port_run(4)),
        "HF_HUB_OFFLINE": "1",
    })
    env.pop("STRATMASTER_DATABASE_URL", None)
    yield env
    _cli(env, "dev", "down", timeout=120)


def test_dev_up_status_down(stack_env):
    up = _cli(stack_env, "dev", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "Web UI" in up.stderr

    # every worker stays up (a crashing worker would have exited by now)
    time.sleep(8)
    status = _cli(stack_env, "dev", "status")
    lines = [line for line in status.stdout.splitlines() if "│" in line or "|" in line]
    for name in ("postgres", "temporal", "worker-research-tasks", "worker-ingestion-tasks",
                 "worker-mission-tasks", "worker-maintenance-tasks", "api"):
        row = next((line for line in lines if name in line), "")
        assert "up" in row, f"{name} not up:\n{status.stdout}\n" + _logs(stack_env)

    health = _cli(stack_env, "health", "database", timeout=120)
    assert health.returncode == 0, health.stdout + health.stderr
    assert "postgres" in health.stdout

    down = _cli(stack_env, "dev", "down", timeout=120)
    assert down.returncode == 0, down.stderr
    after = _cli(stack_env, "dev", "status")
    assert " up" not in after.stdout


def test_dev_up_port_taken_is_clear_error(stack_env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", int(stack_env["STRATMASTER_TEMPORAL_ADDRESS"].rsplit(":", 1)[1])))
        s.listen()
        up = _cli(stack_env, "dev", "up")
    assert up.returncode == 2
    assert "is taken" in up.stderr and "Traceback" not in up.stderr


def _free_port_run(n: int) -> int:
    """A base port with the n ports from it free (one metrics port per worker queue)."""
    for _ in range(50):
        base = free_port()
        if base + n <= _ephemeral_floor() and not any(port_in_use("127.0.0.1", base + i) for i in range(n)):
            _HANDED_OUT.update(range(base, base + n))
            return base
    raise RuntimeError("no run of free ports")


def _logs(env) -> str:
    logdir = os.path.join(env["STRATMASTER_DATA_DIR"], "logs")
    out = []
    for name in sorted(os.listdir(logdir)) if os.path.isdir(logdir) else []:
        with open(os.path.join(logdir, name), errors="replace") as f:
            out.append(f"--- {name}\n{f.read()[-1500:]}")
    return "\n".join(out)
