"""`stratmaster ingest <mission> <paths...>`: start IngestDocumentsWorkflow and
follow it with a progress bar fed by the workflow's `progress` query.

Paths are sent as absolute paths the ingestion worker reads (the local dev
stack shares this machine's filesystem); `--inline` sends the file contents
instead, for workers on other machines (small files only: Temporal payloads
are limited to ~2 MiB).
"""
from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from starters.failures import failure_message
from stratmaster.errors import ServiceUnavailable

SKIP_NAMES = {".DS_Store", "Thumbs.db"}


def collect(paths: list[Path]) -> list[Path]:
    """Files named on the command line, directories expanded recursively (sorted, hidden files skipped)."""
    out: list[Path] = []
    for p in paths:
        p = p.expanduser()
        if p.is_dir():
            out.extend(sorted(f.resolve() for f in p.rglob("*")
                              if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
                              and f.name not in SKIP_NAMES))
        elif p.is_file():
            out.append(p.resolve())
        else:
            raise ServiceUnavailable(f"no such file or directory: {p}")
    return list(dict.fromkeys(out))  # without repeats, in order


def register(app: typer.Typer) -> None:
    from starters.cli import console, friendly, run_async

    @app.command("ingest")
    @friendly
    def ingest(
        mission: str = typer.Argument(..., help="mission id (must be active)"),
        paths: list[Path] = typer.Argument(..., help="files or directories to ingest"),
        wait: bool = typer.Option(True, "--wait/--no-wait", help="follow progress and print the summary"),
        batch_id: str = typer.Option(None, "--batch-id", help="business key of the batch (default: hash of the paths)"),
        slice_size: int = typer.Option(10, "--slice-size", help="documents per child workflow"),
        inline: bool = typer.Option(False, "--inline", help="send file contents instead of paths"),
    ) -> None:
        """Ingest documents into a mission (IngestDocumentsWorkflow on ingestion-tasks)."""
        from pydantic import ValidationError

        from stratmaster.contracts.ingestion import DocumentRef, IngestInput, workflow_id_for

        files = collect(paths)
        if not files:
            console.print("[red]error:[/red] no files to ingest")
            raise typer.Exit(2)
        if inline:
            refs = [DocumentRef(name=f.name, content_b64=base64.b64encode(f.read_bytes()).decode()) for f in files]
        else:
            from stratmaster import principals
            from stratmaster.settings import get_settings

            # the CLI acts as the operator: each path goes with its signed grant (stratmaster/principals.py)
            key = principals.load_key(get_settings())
            refs = [DocumentRef(path=str(f), grant=principals.sign_path(key, mission, str(f))) for f in files]
        try:
            req = IngestInput(mission=mission, documents=refs, batch_id=batch_id, slice_size=slice_size)
        except ValidationError as exc:
            console.print(f"[red]error:[/red] {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
            raise typer.Exit(2)
        req.batch_id = req.resolved_batch_id()
        wf_id = workflow_id_for(mission, req.batch_id)
        code = run_async(_start_and_follow(req, wf_id, wait, console))
        if code:
            raise typer.Exit(code)


async def _start_and_follow(req, wf_id: str, wait: bool, console: Console) -> int:
    from temporalio.client import WorkflowFailureError
    from temporalio.common import WorkflowIDConflictPolicy

    from stratmaster import queues
    from stratmaster.search_attributes import for_mission
    from stratmaster.temporal_client import connect
    from workflows.ingestion import IngestDocumentsWorkflow

    client = await connect()
    handle = await client.start_workflow(
        IngestDocumentsWorkflow.run, req, id=wf_id, task_queue=queues.INGESTION,
        search_attributes=for_mission(req.mission),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,  # same batch already running: follow it
    )
    console.print(f"started [bold]{wf_id}[/bold] ({len(req.documents)} documents)")
    if not wait:
        return 0
    result_task = asyncio.create_task(handle.result())  # follows continue-as-new
    latest = client.get_workflow_handle(wf_id)  # queries go to the current run, not the first
    with Progress(TextColumn("[bold]ingesting[/bold]"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[chunks]} chunks, {task.fields[failed]} failed"),
                  TimeElapsedColumn(), TextColumn("{task.description}"), console=console, transient=True) as bar:
        task = bar.add_task("", total=len(req.documents), chunks=0, failed=0)
        while not result_task.done():
            try:
                p = await latest.query(IngestDocumentsWorkflow.progress)
                bar.update(task, total=p.total or len(req.documents), completed=p.done, chunks=p.chunks,
                           failed=p.failed, description=Path(p.current[0]).name if p.current else "")
            except Exception:  # not started yet / between runs (continue-as-new): try again
                pass
            await asyncio.wait({result_task}, timeout=0.5)
    try:
        result = result_task.result()
    except WorkflowFailureError as exc:
        console.print(f"[red]ingestion failed:[/red] {failure_message(exc)}")
        return 1
    print_summary(result, Console())
    return 1 if result.totals.failed and not (result.totals.ingested or result.totals.duplicates) else 0


def print_summary(result, out: Console) -> None:
    t = result.totals
    table = Table("ingested", "skipped (duplicates)", "failed", "chunks", title=f"batch {result.batch_id}")
    table.add_row(str(t.ingested), str(t.duplicates), str(t.failed), str(t.chunks))
    out.print(table)
    if result.failures:
        failed = Table("document", "reason", title="failed documents")
        failed.columns[0].overflow = failed.columns[1].overflow = "fold"
        for f in result.failures:
            # reasons already name the file; the first column keeps just its name
            shown = Path(f.source).name if f.source.startswith("/") else f.source
            failed.add_row(shown, f"{f.reason_type}: {f.reason}")
        out.print(failed)
