"""Operations commands: backup, restore, schedules, maintenance, analytics.
Each starts (or schedules) a workflow on the maintenance queue and prints its result."""
from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from starters.failures import failure_message
from starters.cli import console, fail, friendly, run_async
from stratmaster import queues

out = Console()



async def _execute(workflow_run, arg, workflow_id: str, *, mission: str | None = None, timeout=timedelta(hours=6),
                   wait: bool = True):
    """Start (or attach to the running) workflow; failures print one line."""
    from temporalio.client import WorkflowFailureError
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

    from stratmaster.search_attributes import for_mission
    from stratmaster.temporal_client import connect

    client = await connect()
    handle = await client.start_workflow(
        workflow_run, arg, id=workflow_id, task_queue=queues.MAINTENANCE, execution_timeout=timeout,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        search_attributes=for_mission(mission) if mission else None)
    if not wait:
        console.print(f"started workflow {handle.id}")
        return None
    try:
        return await handle.result()
    except WorkflowFailureError as exc:
        fail(f"{handle.id}: {failure_message(exc)}")


def _print_json(model) -> None:
    out.print_json(model.model_dump_json())


def _backup_id_arg(value: str) -> str:
    """A backup id, or its manifest key (`system/backups/<id>/manifest.json`)."""
    m = re.search(r"backups/([^/]+)/(manifest\.json)?$", value)
    return m.group(1) if m else value


def register(app: typer.Typer) -> None:
    backup = typer.Typer(help="Backups of a mission or the whole system (object store: system/backups/).",
                         no_args_is_help=True)
    schedules = typer.Typer(help="Temporal Schedules for backups and maintenance.", no_args_is_help=True)
    maintenance = typer.Typer(help="Maintenance runs (vacuum, optimise, retention, health, capacity).",
                              no_args_is_help=True)
    analytics = typer.Typer(help="Analytics exports (DuckDB -> Parquet).", no_args_is_help=True)
    app.add_typer(backup, name="backup")
    app.add_typer(schedules, name="schedules")
    app.add_typer(maintenance, name="maintenance")
    app.add_typer(analytics, name="analytics")

    @backup.command("create")
    @friendly
    def backup_create(mission: Optional[str] = typer.Option(None, "--mission", "-m", help="back up one mission"),
                      system: bool = typer.Option(False, "--system", help="back up everything (pg_dump + all missions)"),
                      backup_id: Optional[str] = typer.Option(None, "--id", help="backup id (default: derived)"),
                      wait: bool = typer.Option(True, "--wait/--no-wait")) -> None:
        """Run BackupWorkflow; prints the manifest summary."""
        from pydantic import ValidationError

        from stratmaster.contracts.maintenance import BackupInput
        from stratmaster.workflow_ids import backup_workflow_id, new_backup_id
        from workflows.backup import BackupWorkflow

        if bool(mission) == system:
            fail("give exactly one of --mission <id> or --system", 2)
        try:
            req = BackupInput(scope="system" if system else "mission", mission=mission,
                              backup_id=backup_id or new_backup_id(mission, uuid.uuid4().hex[:10]))
        except ValidationError as exc:
            fail(exc.errors()[0]["msg"], 2)
        result = run_async(_execute(BackupWorkflow.run, req, backup_workflow_id(req), mission=mission, wait=wait))
        if result:
            _print_json(result)

    @backup.command("list")
    @friendly
    def backup_list(mission: Optional[str] = typer.Option(None, "--mission", "-m"),
                    as_json: bool = typer.Option(False, "--json")) -> None:
        """Backups with a manifest, newest first."""
        from stratmaster.contracts.maintenance import ListBackupsInput
        from stratmaster.workflow_ids import list_backups_workflow_id
        from workflows.backup import ListBackupsWorkflow

        result = run_async(_execute(ListBackupsWorkflow.run, ListBackupsInput(mission=mission),
                                    list_backups_workflow_id(uuid.uuid4().hex[:8]), timeout=timedelta(minutes=5)))
        if as_json:
            print(result.model_dump_json(indent=2))
            return
        table = Table("backup id", "scope", "missions", "created", "artefacts", "bytes")
        for b in result.backups:
            table.add_row(b.backup_id, b.scope, ", ".join(b.missions), b.created_at.isoformat(timespec="seconds"),
                          str(b.artefacts), str(b.total_bytes))
        out.print(table)

    @backup.command("verify")
    @friendly
    def backup_verify(backup: Optional[str] = typer.Argument(None, help="backup id or manifest key (default: newest)"),
                      mission: Optional[str] = typer.Option(None, "--mission", "-m",
                                                            help="newest backup of this mission")) -> None:
        """Checksums + a restore drill into a scratch mission namespace."""
        from stratmaster.contracts.maintenance import VerifyBackupInput
        from stratmaster.workflow_ids import verify_backup_workflow_id
        from workflows.restore import VerifyBackupWorkflow

        bid = _backup_id_arg(backup) if backup else None
        result = run_async(_execute(VerifyBackupWorkflow.run, VerifyBackupInput(backup_id=bid, mission=mission),
                                    verify_backup_workflow_id(bid, uuid.uuid4().hex[:6]), mission=mission))
        _print_json(result)
        if not result.ok:
            raise typer.Exit(1)

    @app.command("restore")
    @friendly
    def restore(backup: str = typer.Argument(..., help="backup id or its manifest key"),
                replace: bool = typer.Option(False, "--replace", help="wipe a non-empty target mission first"),
                mission: Optional[str] = typer.Option(None, "--mission", "-m", help="only this mission of the backup"),
                full_database: bool = typer.Option(False, "--full-database",
                                                   help="system backup: pg_restore the whole database")) -> None:
        """Run RestoreWorkflow: validates the whole backup, refuses a non-empty target unless --replace."""
        from stratmaster.contracts.maintenance import RestoreInput
        from stratmaster.workflow_ids import restore_workflow_id
        from workflows.restore import RestoreWorkflow

        bid = _backup_id_arg(backup)
        req = RestoreInput(backup_id=bid, replace=replace, mission=mission, full_database=full_database)
        result = run_async(_execute(RestoreWorkflow.run, req, restore_workflow_id(bid, uuid.uuid4().hex[:6]),
                                    mission=mission))
        _print_json(result)

    @schedules.command("install")
    @friendly
    def schedules_install() -> None:
        """Create the schedules, or update them in place (idempotent)."""
        from stratmaster import schedules as sched
        from stratmaster.temporal_client import connect

        async def go():
            return await sched.install(await connect())
        for sid, what in run_async(go()).items():
            out.print(f"{sid}: {what}")

    @schedules.command("list")
    @friendly
    def schedules_list(as_json: bool = typer.Option(False, "--json")) -> None:
        from stratmaster import schedules as sched
        from stratmaster.temporal_client import connect

        async def go():
            return await sched.list_installed(await connect())
        rows = run_async(go())
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        table = Table("schedule", "workflow", "state", "overlap", "next run", "runs", "note")
        for r in rows:
            table.add_row(r["id"], r["workflow"], "paused" if r["paused"] else "active", r["overlap"], r["next"],
                          str(r["runs"]), r["note"])
        out.print(table)

    def _one(action: str):
        @schedules.command(action)
        @friendly
        def cmd(name: str = typer.Argument(..., help="schedule name, e.g. backup-nightly")) -> None:
            from stratmaster import schedules as sched
            from stratmaster.temporal_client import connect

            try:
                sched.by_name(name)
            except KeyError as exc:
                fail(exc.args[0], 2)

            async def go():
                await getattr(sched, action)(await connect(), name)
            try:
                run_async(go())
            except Exception as exc:  # RPCError: a missing (or deleted) schedule -> one line
                if sched.not_installed(exc):
                    fail(f"schedule {name} is not installed (stratmaster schedules install)")
                raise
            out.print(f"{sched.schedule_id(sched.by_name(name))}: {action} done")
        cmd.__doc__ = f"{action.capitalize()} one schedule."

    for action in ("pause", "unpause", "trigger", "delete"):
        _one(action)

    @maintenance.command("run")
    @friendly
    def maintenance_run(kind: str = typer.Argument("all", help="vacuum|optimise|retention|health|capacity|all")) -> None:
        from stratmaster.contracts.maintenance import MaintenanceInput
        from stratmaster.workflow_ids import maintenance_workflow_id
        from workflows.maintenance import MaintenanceWorkflow

        if kind not in ("vacuum", "optimise", "retention", "health", "capacity", "all"):
            fail(f"unknown maintenance kind {kind!r}", 2)
        result = run_async(_execute(MaintenanceWorkflow.run, MaintenanceInput.model_validate({"kind": kind}),
                                    maintenance_workflow_id(kind, uuid.uuid4().hex[:8])))
        _print_json(result)

    @analytics.command("export")
    @friendly
    def analytics_export(missions: list[str] = typer.Option([], "--mission", "-m", help="default: all")) -> None:
        """Research metrics per mission -> Parquet (DuckDB reading PostgreSQL)."""
        from stratmaster.contracts.maintenance import AnalyticsExportInput
        from stratmaster.workflow_ids import analytics_workflow_id, new_export_id
        from workflows.maintenance import AnalyticsExportWorkflow

        export_id = new_export_id(uuid.uuid4().hex[:10])
        result = run_async(_execute(AnalyticsExportWorkflow.run,
                                    AnalyticsExportInput(export_id=export_id, missions=missions),
                                    analytics_workflow_id(export_id), timeout=timedelta(hours=1)))
        _print_json(result)
