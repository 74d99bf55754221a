"""`stratmaster missions ...`: validate cartridges locally; everything else starts
a workflow on mission-tasks and prints its result."""
from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Column, Table

from starters.failures import failure_message
from starters.cli import cli_actor, console, fail, friendly, mission_arg, run_async

missions = typer.Typer(help="Mission cartridges: validate, activate, roll back, export, import, deactivate.",
                       no_args_is_help=True)
out = Console()





def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}", 2)


def _print_problems(file: Path, problems) -> None:
    table = Table("line", "field", "problem", title=f"{file}: {len(problems)} problem(s)")
    for p in problems:
        table.add_row(str(p.line or ""), p.path, p.reason)
    console.print(table)


def _execute(workflow_run, arg, workflow_id: str, mission: str | None = None, timeout: int = 300):
    """Start a workflow on mission-tasks, wait, and turn its failure into one line."""
    from temporalio.client import WorkflowFailureError

    from stratmaster import queues
    from stratmaster.search_attributes import for_mission
    from stratmaster.temporal_client import connect

    async def go():
        client = await connect()
        return await client.execute_workflow(
            workflow_run, arg, id=workflow_id, task_queue=queues.MISSIONS,
            execution_timeout=timedelta(seconds=timeout),
            search_attributes=for_mission(mission) if mission else None,
        )

    try:
        return run_async(go())
    except WorkflowFailureError as exc:
        fail(failure_message(exc))


def _activate(file: Path, source: str):
    from stratmaster.contracts.cartridge_validation import validate_cartridge
    from stratmaster.contracts.missions import ActivateMissionInput
    from stratmaster.workflow_ids import activate_workflow_id
    from workflows.missions import ActivateMissionWorkflow

    text = _read(file)
    result = validate_cartridge(text)  # fail fast, and the workflow id needs mission + version
    c = result.cartridge
    if not result.ok or c is None:  # (ok: the cartridge is set)
        _print_problems(file, result.problems)
        raise typer.Exit(1)
    res = _execute(ActivateMissionWorkflow.run,
                   ActivateMissionInput(cartridge_text=text, actor=cli_actor(), source=f"{source}:{file.name}"),
                   activate_workflow_id(c.mission, c.version), c.mission)
    out.print(f"mission [bold]{res.mission}[/bold] version {res.version}: {res.status}"
              + (f" (was {res.previous_version})" if res.previous_version and res.status != "unchanged" else ""))


@missions.command("validate")
@friendly
def validate(file: Path = typer.Argument(..., help="cartridge (.yaml/.yml/.json)")) -> None:
    """Check a cartridge and list every problem (no server needed)."""
    from stratmaster.contracts.cartridge_validation import validate_cartridge

    result = validate_cartridge(_read(file))
    c, sha256 = result.cartridge, result.sha256
    if not result.ok or c is None or sha256 is None:  # (ok: both are set)
        _print_problems(file, result.problems)
        raise typer.Exit(1)
    out.print(f"{file}: valid cartridge for mission [bold]{c.mission}[/bold] version {c.version} (sha256 {sha256[:12]})")


@missions.command("activate")
@friendly
def activate(file: Path = typer.Argument(..., help="cartridge (.yaml/.yml/.json)")) -> None:
    """Validate and activate a cartridge (creates the mission's namespace in every store)."""
    _activate(file, "file")


@missions.command("import")
@friendly
def import_(file: Path = typer.Argument(..., help="an exported cartridge")) -> None:
    """Import an exported cartridge (= activate it)."""
    _activate(file, "import")


@missions.command("list")
@friendly
def list_() -> None:
    """Missions with their status and active version."""
    from stratmaster.contracts.missions import ListMissionsInput
    from stratmaster.workflow_ids import list_missions_workflow_id
    from workflows.missions import ListMissionsWorkflow

    res = _execute(ListMissionsWorkflow.run, ListMissionsInput(), list_missions_workflow_id(uuid.uuid4().hex[:12]))
    table = Table("name", "status", "active", "previous", "versions", "purge after")
    # the id column never shrinks: ids are what the other commands take
    table.columns.insert(0, Column("mission", no_wrap=True,
                                   min_width=max([len(m.mission) for m in res.missions] + [7])))
    for m in res.missions:
        table.add_row(m.mission, m.name or "", m.status, m.active_version or "", m.previous_version or "",
                      str(m.versions), m.purge_after.isoformat(timespec="seconds") if m.purge_after else "")
    out.print(table)


@missions.command("show")
@friendly
def show(mission: str, version: Optional[str] = typer.Option(None, help="a stored version (default: active)")) -> None:
    """A mission's status, versions, recent history and cartridge."""
    from stratmaster.contracts.missions import MissionRef
    from stratmaster.workflow_ids import show_workflow_id
    from workflows.missions import ShowMissionWorkflow

    mission = mission_arg(mission)
    d = _execute(ShowMissionWorkflow.run, MissionRef(mission=mission, version=version),
                 show_workflow_id(mission, uuid.uuid4().hex[:8]), mission)
    s = d.summary
    out.print(f"[bold]{s.mission}[/bold] ({s.name}) status={s.status} active={s.active_version} "
              f"previous={s.previous_version} versions={', '.join(d.versions)}"
              + (f" purge_after={s.purge_after.isoformat(timespec='seconds')}" if s.purge_after else ""))
    table = Table("at", "action", "version", "replaced", "actor", title="history (latest first)")
    for h in d.history:
        table.add_row(h.at.isoformat(timespec="seconds"), h.action, h.version or "", h.replaced_version or "", h.actor)
    out.print(table)
    if d.cartridge:
        out.print_json(d.cartridge.model_dump_json())


@missions.command("rollback")
@friendly
def rollback(mission: str, to: Optional[str] = typer.Option(None, "--to", help="version (default: the previous one)")) -> None:
    """Make the previous (or a given) version active again."""
    from stratmaster.contracts.missions import RollbackMissionInput
    from stratmaster.workflow_ids import rollback_workflow_id
    from workflows.missions import RollbackMissionWorkflow

    mission = mission_arg(mission)
    res = _execute(RollbackMissionWorkflow.run, RollbackMissionInput(mission=mission, to_version=to, actor=cli_actor()),
                   rollback_workflow_id(mission), mission)
    out.print(f"mission [bold]{res.mission}[/bold] rolled back {res.previous_version} -> {res.version}")


@missions.command("export")
@friendly
def export(mission: str, output: Optional[Path] = typer.Option(None, "-o", "--output", help="file (default: stdout)"),
           version: Optional[str] = typer.Option(None, help="a stored version (default: active)")) -> None:
    """Write the mission's cartridge as YAML (re-import with `missions import`)."""
    from stratmaster.contracts.missions import MissionRef
    from stratmaster.workflow_ids import export_workflow_id
    from workflows.missions import ExportMissionWorkflow

    mission = mission_arg(mission)
    res = _execute(ExportMissionWorkflow.run, MissionRef(mission=mission, version=version),
                   export_workflow_id(mission, uuid.uuid4().hex[:8]), mission)
    if output is None:
        typer.echo(res.yaml, nl=False)
        return
    if output.suffix == ".json":
        output.write_text(json.dumps(res.cartridge.model_dump(mode="json"), indent=2) + "\n")
    else:
        output.write_text(res.yaml)
    console.print(f"exported {res.mission} {res.version} to {output} (sha256 {res.sha256[:12]})")


@missions.command("deactivate")
@friendly
def deactivate(mission: str, retention_days: Optional[int] = typer.Option(
        None, help="keep the data this many days (default: the cartridge's retention.deactivated_days)")) -> None:
    """Stop serving a mission; its data is purged once the retention period has passed."""
    from stratmaster.contracts.missions import DeactivateMissionInput
    from stratmaster.workflow_ids import deactivate_workflow_id
    from workflows.missions import DeactivateMissionWorkflow

    mission = mission_arg(mission)
    res = _execute(DeactivateMissionWorkflow.run,
                   DeactivateMissionInput(mission=mission, actor=cli_actor(), retention_days=retention_days),
                   deactivate_workflow_id(mission), mission)
    when = res.purge_after.isoformat(timespec="seconds") if res.purge_after else "never"
    out.print(f"mission [bold]{res.mission}[/bold]: {res.status}; data kept until {when}")


def register(app: typer.Typer) -> None:
    app.add_typer(missions, name="missions")
