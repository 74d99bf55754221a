"""A real local PostgreSQL cluster from Debian's packages, started without manual steps.

Used by `stratmaster dev up` and by the test fixtures. As root, initdb/pg_ctl
run through `runuser -u postgres` (pg_ctl refuses root).
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from stratmaster.errors import ServiceUnavailable


def pg_bindir() -> Path:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise ServiceUnavailable("PostgreSQL server binaries not found: install Debian's `postgresql` package (scripts/bootstrap.sh does)")


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


@dataclass
class LocalPostgres:
    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    user: str = "stratmaster"
    database: str = "stratmaster"
    # extra server settings (`-c name=value`, e.g. ssl=on) and a pg_hba.conf to use instead of
    # initdb's: what a test of TLS-only connections needs; the dev stack uses neither
    server_settings: dict[str, str] = field(default_factory=dict)
    hba: str | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        if self._as_root:
            args = ["runuser", "-u", "postgres", "--", *args]
        return subprocess.run(args, capture_output=True, text=True, **kw)

    def _prepare_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            shutil.chown(self.data_dir, "postgres", "postgres")
            # postgres must be able to traverse to its data dir
            for parent in self.data_dir.resolve().parents:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        if self.initialised():
            return
        self._prepare_dir()
        bindir = pg_bindir()
        res = self._run([str(bindir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                         "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
        if res.returncode != 0:
            raise ServiceUnavailable(f"initdb failed: {res.stderr.strip()}")

    def running(self) -> bool:
        res = self._run([str(pg_bindir() / "pg_ctl"), "-D", str(self.data_dir), "status"])
        return res.returncode == 0

    def start(self, timeout: float = 30) -> None:
        self.init()
        if self.running():
            return
        if port_in_use(self.host, self.port):
            raise ServiceUnavailable(
                f"port {self.host}:{self.port} is taken by another process; set STRATMASTER_POSTGRES_PORT to a free port"
            )
        sockdir = self.data_dir / "sock"
        sockdir.mkdir(exist_ok=True)
        if self._as_root:
            shutil.chown(sockdir, "postgres", "postgres")
        opts = f"-p {self.port} -c listen_addresses={self.host} -k {sockdir} -c fsync=off -c max_connections=200"
        opts += "".join(f" -c {name}={value}" for name, value in self.server_settings.items())
        if self.hba is not None:
            hba = self.data_dir / "pg_hba.conf"
            hba.write_text(self.hba)
            if self._as_root:
                shutil.chown(hba, "postgres", "postgres")
        res = self._run([str(pg_bindir() / "pg_ctl"), "-D", str(self.data_dir), "-l",
                         str(self.data_dir / "server.log"), "-o", opts, "-w", "-t", str(int(timeout)), "start"])
        if res.returncode != 0:
            log = (self.data_dir / "server.log")
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ServiceUnavailable(f"PostgreSQL did not start: {res.stderr.strip()} {tail}")
        self.create_database()

    def create_database(self) -> None:
        deadline = time.time() + 15
        while True:
            res = subprocess.run(
                ["psql", "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", "postgres", "-tAc",
                 f"SELECT 1 FROM pg_database WHERE datname='{self.database}'"],
                capture_output=True, text=True,
            )
            if res.returncode == 0:
                break
            if time.time() > deadline:
                raise ServiceUnavailable(f"PostgreSQL not accepting connections: {res.stderr.strip()}")
            time.sleep(0.3)
        if res.stdout.strip() != "1":
            subprocess.run(["createdb", "-h", self.host, "-p", str(self.port), "-U", self.user, self.database],
                           check=True, capture_output=True)

    def stop(self) -> None:
        if self.initialised() and self.running():
            self._run([str(pg_bindir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])
