"""The `stratmaster` CLI. Area commands live in starters/cli_<area>.py and are
mounted here; every command turns ServiceUnavailable into a one-line error."""
from __future__ import annotations

import asyncio
import functools
import getpass
import os
import sys
from datetime import timedelta
from typing import Any, Callable, Coroutine, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from stratmaster.errors import ServiceUnavailable
from stratmaster.settings import get_settings

app = typer.Typer(help="StratMaster: workflow-first research and knowledge platform.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
dev = typer.Typer(help="The local stack on embedded defaults.", no_args_is_help=True)
app.add_typer(dev, name="dev")
console = Console(stderr=True)


def friendly(fn: Callable) -> Callable:
    """Print service/input errors as one clear line and exit non-zero."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ServiceUnavailable as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2)
    return wrapper


def fail(message: str, code: int = 1) -> NoReturn:
    """One red line on stderr and exit `code` (2: the command line itself was wrong)."""
    console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def cli_actor() -> str:
    """Who the CLI acts as, for audit rows: cli:<login user>."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def mission_arg(mission: str) -> str:
    """A mission id from the command line, or exit 2 with what a mission id is."""
    from stratmaster.contracts.common import validate_mission_id

    try:
        return validate_mission_id(mission)
    except ValueError as exc:
        fail(f"invalid mission id {mission!r}: {exc}", 2)


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


@dev.command("up")
@friendly
def dev_up() -> None:
    """Start PostgreSQL, the Temporal dev server, one worker per task queue and the API."""
    from starters.devstack import DevStack

    DevStack(get_settings()).up(echo=lambda m: console.print(m))


@dev.command("down")
@friendly
def dev_down() -> None:
    """Stop everything `dev up` started."""
    from starters.devstack import DevStack

    DevStack(get_settings()).down(echo=lambda m: console.print(m))


@dev.command("status")
@friendly
def dev_status() -> None:
    """Show which parts of the local stack are up."""
    from starters.devstack import DevStack

    table = Table("component", "state", "address")
    for row in DevStack(get_settings()).status():
        table.add_row(*row)
    Console().print(table)


@app.command("health")
@friendly
def health(services: list[str] = typer.Argument(None, help="services to check (default: all)")) -> None:
    """Run HealthCheckWorkflow on the maintenance queue and print the report."""
    import uuid

    from stratmaster import queues
    from stratmaster.contracts.health import HealthCheckInput
    from stratmaster.temporal_client import connect
    from workflows.health import HealthCheckWorkflow

    async def go():
        client = await connect()
        return await client.execute_workflow(
            HealthCheckWorkflow.run, HealthCheckInput(services=services or []),
            id=f"health-cli-{uuid.uuid4().hex[:12]}", task_queue=queues.MAINTENANCE,
            execution_timeout=timedelta(seconds=90),
        )

    report = run_async(go())
    table = Table("service", "backend", "ok", "latency ms", "detail")
    for s in report.services:
        table.add_row(s.name, s.backend, "[green]yes[/green]" if s.ok else "[red]NO[/red]", f"{s.latency_ms:.1f}", s.detail[:80])
    Console().print(table)
    if not report.ok:
        raise typer.Exit(1)


def _mount() -> None:
    # Area command groups; each module defines `register(app)`.
    import importlib

    for name in ("cli_ingest", "cli_research", "cli_missions", "cli_ops", "cli_webhooks", "cli_sources"):
        try:
            module = importlib.import_module(f"starters.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"starters.{name}":
                continue
            raise
        module.register(app)


_mount()


def main() -> None:
    # The Temporal core's native threads can abort interpreter finalisation
    # (seen once: "PyGILState_Release ... must be current"), turning a finished
    # command into exit 134. The CLI holds nothing that needs finalising, so
    # flush and leave without it.
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # reader gone (e.g. `| head`) or stream closed
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
