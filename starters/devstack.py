"""The local stack on embedded defaults: `stratmaster dev up|down|status`.

Starts the real Temporal dev server (persisted with --db-filename under the
data dir), a local PostgreSQL cluster with migrations applied, one worker
process per task queue and the starter API, all bound to 127.0.0.1. Process
ids live in <data_dir>/run/*.pid so `down` and `status` work from any shell.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from stratmaster import queues
from stratmaster.errors import ServiceUnavailable
from stratmaster.local_postgres import LocalPostgres, port_in_use
from stratmaster.local_temporal import dev_server_args
from stratmaster.settings import Settings
from workers.ports import metrics_port_for


@dataclass
class Proc:
    name: str
    args: list[str]
    port: int | None = None  # a port the process must open before it counts as up
    free_port: int | None = None  # a port it will bind later (worker metrics): must be free at start


class DevStack:
    def __init__(self, settings: Settings):
        self.s = settings
        self.root = settings.abs_data_dir
        self.run_dir = self.root / "run"
        self.log_dir = self.root / "logs"
        host, _, port = settings.temporal_address.rpartition(":")
        self.temporal_host, self.temporal_port = host or "127.0.0.1", int(port)

    # -- components -------------------------------------------------------
    def postgres(self) -> LocalPostgres:
        return LocalPostgres(data_dir=self.root / "pg", port=self.s.postgres_port, host=self.s.bind_host)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "STRATMASTER_DATA_DIR": str(self.root),
            "STRATMASTER_DATABASE_URL": self.postgres().dsn,
            "STRATMASTER_TEMPORAL_ADDRESS": self.s.temporal_address,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        })
        # The local stack's API (bound to loopback) runs without tokens. Dev auth is never a
        # default of the API itself, so it is switched on here, explicitly, unless the
        # environment or .env chose a mode (e.g. oidc against a local Keycloak).
        if "auth_mode" not in self.s.model_fields_set:
            env["STRATMASTER_AUTH_MODE"] = "dev"
        return env

    def processes(self) -> list[Proc]:
        procs = [Proc("temporal", dev_server_args(self.root / "temporal.db", self.temporal_host, self.temporal_port,
                                                  self.s.temporal_ui_port, self.s.temporal_namespace), self.temporal_port)]
        for q in queues.ALL:
            procs.append(Proc(f"worker-{q}", [sys.executable, "-m", "workers", "--queue", q],
                              free_port=metrics_port_for(q, self.s.metrics_port_base)))
        procs.append(Proc("api", [sys.executable, "-m", "uvicorn", "starters.api:app", "--host", self.s.bind_host,
                                  "--port", str(self.s.api_port), "--log-level", "warning"], self.s.api_port))
        return procs

    # -- pid bookkeeping --------------------------------------------------
    def _pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        f = self._pidfile(name)
        if not f.exists():
            return None
        try:
            pid = int(f.read_text())
            os.kill(pid, 0)
            return pid
        except (ValueError, ProcessLookupError, PermissionError):
            f.unlink(missing_ok=True)
            return None

    # -- commands ---------------------------------------------------------
    def up(self, echo=print) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        pg = self.postgres()
        pg.start()
        from stratmaster.migrations import apply_migrations

        applied = asyncio.run(apply_migrations(pg.dsn))
        echo(f"postgres   up on {pg.host}:{pg.port} (migrations applied: {len(applied)})")
        for proc in self.processes():
            if self.pid(proc.name):
                echo(f"{proc.name:<10} already running (pid {self.pid(proc.name)})")
                continue
            for port in (proc.port, proc.free_port):
                if port and port_in_use(self.s.bind_host, port):
                    raise ServiceUnavailable(f"port {self.s.bind_host}:{port} needed by {proc.name} is taken by another process")
            log = open(self.log_dir / f"{proc.name}.log", "ab")
            p = subprocess.Popen(proc.args, stdout=log, stderr=subprocess.STDOUT, env=self.env(),
                                 start_new_session=True, cwd=Path(__file__).resolve().parents[1])
            self._pidfile(proc.name).write_text(str(p.pid))
            if proc.port:
                self._wait_port(proc, p, proc.port)
            echo(f"{proc.name:<10} up (pid {p.pid})" + (f" on {self.s.bind_host}:{proc.port}" if proc.port else ""))
            if proc.name == "temporal":
                echo(f"           Web UI: http://{self.s.bind_host}:{self.s.temporal_ui_port}")

    def _wait_port(self, proc: Proc, p: subprocess.Popen, port: int, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while not port_in_use(self.s.bind_host, port):
            if p.poll() is not None:
                tail = (self.log_dir / f"{proc.name}.log").read_text(errors="replace")[-1500:]
                raise ServiceUnavailable(f"{proc.name} exited with code {p.returncode}:\n{tail}")
            if time.time() > deadline:
                raise ServiceUnavailable(f"{proc.name} did not open port {port} within {timeout:.0f}s")
            time.sleep(0.2)

    def down(self, echo=print) -> None:
        for proc in reversed(self.processes()):
            pid = self.pid(proc.name)
            if not pid:
                continue
            os.killpg(pid, signal.SIGTERM)
            deadline = time.time() + 30
            while self.pid(proc.name) and time.time() < deadline:
                time.sleep(0.2)
            if self.pid(proc.name):
                os.killpg(pid, signal.SIGKILL)
            self._pidfile(proc.name).unlink(missing_ok=True)
            echo(f"{proc.name:<10} stopped")
        self.postgres().stop()
        echo("postgres   stopped")

    def status(self) -> list[tuple[str, str, str]]:
        rows = []
        pg = self.postgres()
        up = pg.initialised() and pg.running()
        rows.append(("postgres", "up" if up else "down", f"{pg.host}:{pg.port}"))
        for proc in self.processes():
            pid = self.pid(proc.name)
            where = f"{self.s.bind_host}:{proc.port}" if proc.port else ""
            rows.append((proc.name, f"up (pid {pid})" if pid else "down", where))
        return rows
