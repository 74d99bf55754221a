"""`stratmaster sources add|list|sync|status|remove`: a mission's synced sources.

Every command starts a workflow of workflows/sources.py on ingestion-tasks and
prints its result; the workers check the mission (unknown or inactive missions
fail with one line) and only ever read or change that mission's sources.
The CLI acts as the operator: it passes the platform-admin role, which a
directory source requires (the REST API passes the caller's own roles).
"""
from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from starters.failures import failure_message
from starters.cli import cli_actor, console, fail, friendly, mission_arg, run_async

sources = typer.Typer(help="Sources synced into a mission: directories on the ingestion workers (platform admin) "
                           "and S3-compatible bucket prefixes, each on its own schedule.", no_args_is_help=True)
out = Console()

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}





def _source_arg(source_id: str) -> str:
    from stratmaster.contracts.ingestion import SOURCE_ID_PATTERN

    if not re.fullmatch(SOURCE_ID_PATTERN, source_id):
        fail(f"invalid source id {source_id!r}: 2-32 chars of lowercase letters, digits, '_' and '-', "
              "starting with a letter", 2)
    return source_id


def parse_interval(value: str) -> int:
    """'3600', '90s', '15m', '1h', '1d' -> seconds."""
    m = _DURATION.fullmatch(value or "")
    if not m:
        raise ValueError(f"not a duration: {value!r} (e.g. 900, 15m, 1h, 1d)")
    return int(m.group(1)) * _UNITS[m.group(2)]


async def _start(workflow_run, arg, workflow_id: str, mission: str, timeout: timedelta | None = None):
    """Start a workflow on ingestion-tasks, or attach to the one running under the same id."""
    from temporalio.common import WorkflowIDConflictPolicy

    from stratmaster import queues
    from stratmaster.search_attributes import for_mission
    from stratmaster.temporal_client import connect

    client = await connect()
    handle = await client.start_workflow(
        workflow_run, arg, id=workflow_id, task_queue=queues.INGESTION, execution_timeout=timeout,
        search_attributes=for_mission(mission), id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
    return client, handle


def _execute(workflow_run, arg, workflow_id: str, mission: str, timeout: int = 300):
    from temporalio.client import WorkflowFailureError

    async def go():
        _client, handle = await _start(workflow_run, arg, workflow_id, mission, timedelta(seconds=timeout))
        return await handle.result()

    try:
        return run_async(go())
    except WorkflowFailureError as exc:
        fail(failure_message(exc))


@sources.command("add")
@friendly
def add(
    mission: str = typer.Argument(..., help="mission id (must be active)"),
    source_id: str = typer.Argument(..., help="the source's id in the mission, e.g. reports"),
    directory: Optional[Path] = typer.Option(None, "--dir", help="a directory on the ingestion workers (absolute)"),
    endpoint: Optional[str] = typer.Option(None, "--s3-endpoint", help="S3 endpoint host[:port]"),
    bucket: Optional[str] = typer.Option(None, "--bucket"),
    prefix: str = typer.Option("", "--prefix", help="key prefix (a '/' is added when missing)"),
    profile: Optional[str] = typer.Option(
        None, "--credentials-profile",
        help="S3 credentials profile: the workers read STRATMASTER_S3_PROFILE_<NAME>_ACCESS_KEY/_SECRET_KEY"),
    insecure: bool = typer.Option(False, "--insecure", help="plain http to the S3 endpoint"),
    region: Optional[str] = typer.Option(None, "--region"),
    every: str = typer.Option("1h", "--every", help="schedule interval: 900, 15m, 1h, 1d (at least 60 s)"),
    sync: bool = typer.Option(False, "--sync", help="run the first sync now and follow it"),
) -> None:
    """Register a source and its schedule (AddSourceWorkflow).

    Directory sources need the platform-admin role: the CLI runs as the operator."""
    from pydantic import ValidationError

    from stratmaster.contracts.sources import (
        PLATFORM_ADMIN, AddSourceInput, DirectorySpec, S3Spec, SourceDefinition, add_workflow_id,
    )
    from workflows.sources import AddSourceWorkflow

    mission, source_id = mission_arg(mission), _source_arg(source_id)
    if (directory is None) == (endpoint is None):
        fail("give exactly one of --dir <path> or --s3-endpoint <host:port> (with --bucket and "
              "--credentials-profile)", 2)
    try:
        interval = parse_interval(every)
        spec: DirectorySpec | S3Spec
        if directory is not None:
            spec = DirectorySpec(path=str(directory.expanduser().resolve()))  # the real path: sources follow no link
        else:
            if endpoint is None or not bucket or not profile:  # (endpoint: given, checked above)
                fail("an S3 source needs --bucket and --credentials-profile", 2)
            spec = S3Spec(endpoint=endpoint, bucket=bucket, prefix=prefix, credentials_profile=profile,
                          secure=not insecure, region=region)
        definition = SourceDefinition(source_id=source_id, spec=spec, interval_seconds=interval)
    except (ValidationError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            err = exc.errors()[0]
            fail(f"{'.'.join(str(x) for x in err['loc']) or 'source'}: {err['msg']}", 2)
        fail(str(exc), 2)
    from stratmaster import principals
    from stratmaster.settings import get_settings

    # the CLI acts as the operator: it signs that principal with the platform's key (stratmaster/principals.py)
    signed = principals.sign_principal(principals.load_key(get_settings()), mission, cli_actor(), [PLATFORM_ADMIN])
    req = AddSourceInput(mission=mission, source=definition, actor=cli_actor(), actor_roles=[PLATFORM_ADMIN],
                         principal=signed)
    res = _execute(AddSourceWorkflow.run, req, add_workflow_id(mission, source_id), mission)
    out.print(f"source [bold]{res.source_id}[/bold] of mission {res.mission}: {res.status} ({res.location}); "
              f"synced every {res.interval_seconds} s by schedule {res.schedule_id}", highlight=False)
    if sync:
        code = run_async(_sync(mission, source_id, wait=True))
        if code:
            raise typer.Exit(code)


@sources.command("list")
@friendly
def list_(mission: str = typer.Argument(..., help="mission id"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """The mission's sources with their last sync and manifest counts."""
    import uuid

    from stratmaster.contracts.sources import ListSourcesInput
    from workflows.sources import ListSourcesWorkflow

    mission = mission_arg(mission)
    res = _execute(ListSourcesWorkflow.run, ListSourcesInput(mission=mission),
                   f"source-list-{mission}-{uuid.uuid4().hex[:8]}", mission, timeout=60)
    if as_json:
        print(res.model_dump_json(indent=2))
        return
    table = Table("source", "kind", "location", "every", "indexed", "pending", "failed", "last sync", "state",
                  title=f"sources of {mission}")
    for s in res.sources:
        last = (f"{s.last_sync_status} {s.last_sync_at.isoformat(timespec='seconds')}" if s.last_sync_at else "never")
        state = "syncing" if s.syncing else s.status
        table.add_row(s.source_id, s.kind, s.location, f"{s.interval_seconds}s", str(s.files.get("indexed", 0)),
                      str(s.files.get("pending", 0)), str(s.files.get("failed", 0)), last, state)
    out.print(table)


async def _sync(mission: str, source_id: str, wait: bool, page_size: int = 100) -> int:
    from temporalio.client import WorkflowFailureError

    from stratmaster.contracts.sources import SourceSyncInput, sync_workflow_id
    from workflows.sources import SourceSyncWorkflow

    wf_id = sync_workflow_id(mission, source_id)
    client, handle = await _start(SourceSyncWorkflow.run,
                                  SourceSyncInput(mission=mission, source_id=source_id, page_size=page_size),
                                  wf_id, mission)
    console.print(f"sync [bold]{wf_id}[/bold] started")
    if not wait:
        return 0
    result_task = asyncio.create_task(handle.result())  # follows continue-as-new
    latest = client.get_workflow_handle(wf_id)
    with Progress(SpinnerColumn(), TextColumn("[bold]syncing[/bold] {task.description}"),
                  TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("", counts="")
        while not result_task.done():
            try:
                p = await latest.query(SourceSyncWorkflow.progress)
                bar.update(task, description=p.phase + (f" ({p.ingesting} files)" if p.ingesting else ""),
                           counts=f"listed {p.listed}, new {p.new}, changed {p.changed}, ingested {p.ingested}, "
                                  f"failed {p.failed}, deleted {p.deleted}")
            except Exception:  # not started yet / between runs
                pass
            await asyncio.wait({result_task}, timeout=0.5)
    try:
        result = result_task.result()
    except WorkflowFailureError as exc:
        console.print(f"[red]sync failed:[/red] {failure_message(exc)}")
        return 1
    print_sync_result(result, out)
    return 0


def print_sync_result(result, to: Console) -> None:
    if result.outcome != "synced":
        to.print(f"sync of {result.source_id}: {result.outcome}" + (f" ({result.detail})" if result.detail else ""),
                 highlight=False)
        return
    t = result.totals
    table = Table("listed", "unchanged", "new", "changed", "ingested", "duplicates", "failed", "deleted",
                  "documents deleted", title=f"sync of {result.source_id} (pass {result.generation})")
    table.add_row(*(str(v) for v in (t.listed, t.unchanged + t.touched, t.new, t.changed, t.ingested, t.duplicates,
                                     t.failed, t.deleted, t.documents_deleted)))
    to.print(table)


@sources.command("sync")
@friendly
def sync_(mission: str = typer.Argument(..., help="mission id"),
          source_id: str = typer.Argument(..., help="source id"),
          wait: bool = typer.Option(True, "--wait/--no-wait", help="follow progress and print the summary"),
          page_size: int = typer.Option(100, "--page-size", help="changed files per ingestion batch (1-200)")) -> None:
    """Sync a source now (SourceSyncWorkflow; attaches to a sync of it already running)."""
    mission, source_id = mission_arg(mission), _source_arg(source_id)
    if not 1 <= page_size <= 200:
        fail("--page-size must be 1-200", 2)
    code = run_async(_sync(mission, source_id, wait, page_size))
    if code:
        raise typer.Exit(code)


@sources.command("status")
@friendly
def status(mission: str = typer.Argument(..., help="mission id"),
           source_id: str = typer.Argument(..., help="source id"),
           only: Optional[str] = typer.Option(None, "--only", help="files in this state: indexed|pending|failed"),
           limit: int = typer.Option(50, "--limit", help="files shown (0-1000)"),
           offset: int = typer.Option(0, "--offset"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """A source's last sync and its manifest: every file's state, and why a file failed."""
    import uuid

    from stratmaster.contracts.sources import SourceStatusInput
    from workflows.sources import SourceStatusWorkflow

    mission, source_id = mission_arg(mission), _source_arg(source_id)
    if only not in (None, "indexed", "pending", "failed"):
        fail("--only is one of indexed, pending, failed", 2)
    if not 0 <= limit <= 1000 or offset < 0:
        fail("--limit is 0-1000 and --offset at least 0", 2)
    req = SourceStatusInput.model_validate(  # `only` checked above
        {"mission": mission, "source_id": source_id, "status": only, "offset": offset, "limit": limit})
    res = _execute(SourceStatusWorkflow.run, req,
                   f"source-status-{mission}-{source_id}-{uuid.uuid4().hex[:8]}", mission, timeout=60)
    if as_json:
        print(res.model_dump_json(indent=2))
        return
    s = res.source
    counts = ", ".join(f"{k} {v}" for k, v in sorted(s.files.items())) or "no files yet"
    out.print(f"[bold]{s.source_id}[/bold] ({s.kind}) {s.location}  every {s.interval_seconds}s  "
              f"schedule {s.schedule_id}  state {'syncing ' + s.syncing if s.syncing else s.status}", highlight=False)
    if s.last_sync_at:
        out.print(f"last sync: {s.last_sync_status} at {s.last_sync_at.isoformat(timespec='seconds')} "
                  f"({s.last_sync_workflow})" + (f": {s.last_sync_error}" if s.last_sync_error else ""),
                  highlight=False)
    else:
        out.print("last sync: never")
    out.print(f"files: {counts}", highlight=False)
    if s.last_sync_totals:
        print_sync_result_totals(s.last_sync_totals)
    if not res.files:
        return
    table = Table("file", "state", "bytes", "document", "reason",
                  title=f"files {res.offset + 1}-{res.offset + len(res.files)} of {res.matching}")
    table.columns[0].overflow = table.columns[4].overflow = "fold"
    for f in res.files:
        reason = f"{f.reason_type}: {f.reason}" if f.reason_type else ""
        colour = {"failed": "red", "pending": "yellow"}.get(f.status, "green")
        table.add_row(f.path, f"[{colour}]{f.status}[/{colour}]", str(f.size_bytes or 0),
                      (f.document_id or "")[:8], reason)
    out.print(table)


def print_sync_result_totals(t) -> None:
    out.print(f"last pass: listed {t.listed}, unchanged {t.unchanged + t.touched}, new {t.new}, changed {t.changed}, "
              f"ingested {t.ingested}, duplicates {t.duplicates}, failed {t.failed}, deleted {t.deleted} "
              f"({t.documents_deleted} documents)", highlight=False)


@sources.command("remove")
@friendly
def remove(mission: str = typer.Argument(..., help="mission id"),
           source_id: str = typer.Argument(..., help="source id"),
           yes: bool = typer.Option(False, "--yes", "-y", help="do not ask")) -> None:
    """Remove a source: its schedule, every document only it holds (from every store), its manifest."""
    from stratmaster.contracts.sources import RemoveSourceInput, remove_workflow_id
    from workflows.sources import RemoveSourceWorkflow

    mission, source_id = mission_arg(mission), _source_arg(source_id)
    if not yes and not typer.confirm(f"remove source {source_id} of {mission} and delete its documents?"):
        raise typer.Exit(1)
    res = _execute(RemoveSourceWorkflow.run, RemoveSourceInput(mission=mission, source_id=source_id, actor=cli_actor()),
                   remove_workflow_id(mission, source_id), mission, timeout=6 * 3600)
    if res.status == "not_found":
        fail(f"mission {mission} has no source {source_id}")
    out.print(f"source [bold]{source_id}[/bold] of {mission} removed: {res.files_removed} files, "
              f"{res.documents_deleted} documents deleted; schedule deleted: {'yes' if res.schedule_deleted else 'no'}",
              highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(sources, name="sources")
