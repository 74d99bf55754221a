"""`stratmaster research start|status|cancel`: start ResearchWorkflow, follow its
progress through the `progress` query, print claims with citations, confidence
and contradictions. Starters only start, query and cancel workflows."""
from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Optional

import typer
from rich.console import Console

from starters.failures import failure_message
from stratmaster import queues
from stratmaster.errors import ServiceUnavailable

research = typer.Typer(help="Research a question over a mission's documents.", no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)


def _friendly(fn):
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from temporalio.client import WorkflowFailureError
        from temporalio.service import RPCError

        try:
            return fn(*args, **kwargs)
        except ServiceUnavailable as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2)
        except WorkflowFailureError as exc:
            err.print(f"[red]research failed:[/red] {failure_message(exc)}")
            raise typer.Exit(1)
        except RPCError as exc:
            err.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(1)
    return wrapper


def _cite(x) -> str:
    return (f"\"{x.quote}\" — {x.title or x.url or x.document_id} "
            f"[dim]({x.document_id[:8]} chunk {x.chunk_id[:8]} @{x.start}-{x.end})[/dim]")


def print_result(result, out: Console) -> None:
    out.print(f"[bold]Research:[/bold] {result.query}  (mission {result.mission}, session {result.session_id})")
    out.print(f"planner {result.planner}; synthesiser {result.synthesiser}; engines {', '.join(result.engines) or '-'}; "
              f"{len(result.hits)} hits; {len(result.claims)} findings, {len(result.below_bar)} below the bar"
              + (f"; {result.dropped_claims} unsupported claims dropped" if result.dropped_claims else ""),
              highlight=False)
    for n in result.notes:
        out.print(f"[yellow]note:[/yellow] {n}", highlight=False)
    for q in result.subquestions:
        sub = next((a for a in result.subanswers if a.question == q), None)
        out.print(f"  - {q}" + (f"  [dim]→ {sub.text or 'not answered by the documents'}[/dim]" if sub else ""),
                  highlight=False)
    if result.discarded_subquestions:
        out.print(f"  [dim]discarded (not about the question): {'; '.join(result.discarded_subquestions)}[/dim]",
                  highlight=False)
    if result.outcome == "insufficient_evidence":
        out.print("\n[bold yellow]Insufficient evidence: the documents do not say.[/bold yellow] "
                  "No finding clears this mission's quality bar.", highlight=False)
        if result.closest_evidence:
            out.print("Closest evidence (not an answer):")
            for x in result.closest_evidence:
                out.print(f"   [dim]~[/dim] {_cite(x)}", highlight=False)
    elif result.answer is not None and result.answer.text:
        contested = "  [red](contested)[/red]" if result.outcome == "contested" else ""
        out.print(f"\n[bold]Answer[/bold] (confidence [cyan]{result.answer.confidence:.2f}[/cyan]){contested}: "
                  f"{result.answer.text}", highlight=False)
        for s in result.answer.sentences:
            for x in s.citations:
                out.print(f"   [green]↳[/green] {_cite(x)}", highlight=False)
    for c in result.claims:
        flag = f"  [red]flagged: {c.flag_reason}[/red]" if c.flagged else ""
        out.print(f"\n[bold]{c.ordinal + 1}. {c.text}[/bold]\n   confidence [cyan]{c.confidence:.2f}[/cyan]{flag}",
                  highlight=False)
        for x in c.supporting:
            out.print(f"   [green]+[/green] {_cite(x)}", highlight=False)
        for x in c.contradicting:
            out.print(f"   [red]![/red] contradicted by {_cite(x)}", highlight=False)
    if result.below_bar:
        out.print(f"\n[dim]{len(result.below_bar)} claim(s) below this mission's quality bar "
                  f"(e.g. \"{result.below_bar[0].text[:80]}\": {result.below_bar[0].below_bar_reason}); see the report.[/dim]",
                  highlight=False)
    if result.report_md_key:
        out.print(f"\nreport: {result.report_md_key}", highlight=False)


async def _follow(handle, out: Console, poll: float = 0.5):
    """Print progress changes from the `progress` query until the result is in."""
    from workflows.research import ResearchWorkflow

    task = asyncio.ensure_future(handle.result())
    seen: tuple = ()
    while not task.done():
        try:
            p = await handle.query(ResearchWorkflow.progress)
        except Exception:
            p = None
        if p is not None:
            state = (p.status, len(p.subquestions), len(p.retrieved), len(p.claims))
            if state != seen:
                seen = state
                out.print(f"[dim]{p.status}: {len(p.subquestions)} sub-questions, "
                          f"{sum(p.retrieved.values())} hits from {len(p.retrieved)} searches, {len(p.claims)} claims[/dim]")
        await asyncio.wait({task}, timeout=poll)
    return task.result()


@research.command("start")
@_friendly
def start(
    query: str = typer.Argument(..., help="the research question"),
    mission: str = typer.Option(..., "--mission", "-m", help="mission id"),
    top_k: int = typer.Option(8, help="hits kept per sub-question"),
    max_subquestions: int = typer.Option(4, help="at most this many sub-questions"),
    fusion: str = typer.Option("minmax", help="minmax | rrf"),
    graph: bool = typer.Option(None, "--graph/--no-graph",
                               help="graph query expansion (default: as the mission's cartridge says)"),
    web: bool = typer.Option(None, "--web/--no-web",
                             help="also search the web through SearxNG (default: as the cartridge says; "
                                  "a mission with engines.web off never does)"),
    request_id: str = typer.Option(None, help="idempotency key (default: a timestamp)"),
    no_wait: bool = typer.Option(False, "--no-wait", help="print the workflow id and return"),
) -> None:
    """Start a research workflow; by default follow it and print the claims."""
    from pydantic import ValidationError

    from stratmaster.contracts.research import ResearchInput, workflow_id_for
    from stratmaster.search_attributes import for_mission
    from stratmaster.settings import get_settings
    from stratmaster.temporal_client import connect
    from workflows.research import ResearchWorkflow

    try:
        req = ResearchInput.model_validate({  # fusion: any string, checked here
            "mission": mission, "query": query, "top_k": top_k, "max_subquestions": max_subquestions,
            "fusion": fusion, "use_graph": graph, "use_web": web})
    except ValidationError as exc:
        err.print("[red]bad input:[/red] " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
        raise typer.Exit(2)
    wid = workflow_id_for(req.mission, req.query, request_id or f"{time.time_ns()}-{uuid.uuid4().hex[:6]}")
    out = Console(soft_wrap=True)

    async def go():
        client = await connect(get_settings())
        handle = await client.start_workflow(
            ResearchWorkflow.run, req, id=wid, task_queue=queues.RESEARCH,
            search_attributes=for_mission(req.mission), execution_timeout=timedelta(hours=1))
        out.print(f"started {wid}", highlight=False)
        if no_wait:
            return None
        return await _follow(handle, err)

    result = asyncio.run(go())
    if result is not None:
        print_result(result, out)


@research.command("status")
@_friendly
def status(workflow_id: str = typer.Argument(..., help="research workflow id")) -> None:
    """Show a research's status, progress so far, and its claims once completed."""
    from temporalio.client import WorkflowExecutionStatus

    from stratmaster.contracts.research import ResearchResult
    from stratmaster.settings import get_settings
    from stratmaster.temporal_client import connect
    from workflows.research import ResearchWorkflow

    out = Console(soft_wrap=True)

    async def go():
        client = await connect(get_settings())
        handle = client.get_workflow_handle(workflow_id, result_type=ResearchResult)
        desc = await handle.describe()
        if desc.status == WorkflowExecutionStatus.COMPLETED:
            return desc.status, None, await handle.result()
        try:
            progress = await handle.query(ResearchWorkflow.progress)
        except Exception:
            progress = None
        return desc.status, progress, None

    wf_status, progress, result = asyncio.run(go())
    out.print(f"{workflow_id}: {wf_status.name.lower()}", highlight=False)
    if result is not None:
        print_result(result, out)
    elif progress is not None:
        out.print(f"step {progress.status}; sub-questions: {progress.subquestions}; hits: {len(progress.hits)}; "
                  f"claims: {len(progress.claims)}" + (f"; error: {progress.error}" if progress.error else ""),
                  highlight=False)


@research.command("cancel")
@_friendly
def cancel(workflow_id: str = typer.Argument(..., help="research workflow id")) -> None:
    """Request cancellation; the workflow records the session as cancelled."""
    from stratmaster.settings import get_settings
    from stratmaster.temporal_client import connect

    async def go():
        client = await connect(get_settings())
        await client.get_workflow_handle(workflow_id).cancel()

    asyncio.run(go())
    Console(soft_wrap=True).print(f"cancellation requested for {workflow_id}", highlight=False)


@research.command("report")
@_friendly
def report(
    workflow_id: str = typer.Argument(..., help="research workflow id"),
    fmt: str = typer.Option("pdf", "--format", "-f", help="md | html | pdf | docx"),
    output: str = typer.Option(None, "--output", "-o", help="file to write (default: md/html to stdout, "
                                                             "pdf/docx to ./<workflow id>.<format>)"),
    mission: Optional[str] = typer.Option(None, "--mission", "-m",
                                          help="the research's mission (default: from the workflow id)"),
) -> None:
    """Render a completed research's shareable report (every format is stored under the
    mission's artifacts) and download one format."""
    import base64
    import re
    import sys
    from pathlib import Path

    from pydantic import ValidationError

    from stratmaster.contracts.reports import RenderReportInput
    from stratmaster.search_attributes import for_mission
    from stratmaster.settings import get_settings
    from stratmaster.temporal_client import connect
    from stratmaster.workflow_ids import report_workflow_id
    from workflows.reports import RenderReportWorkflow

    m = re.match(r"^research-([a-z][a-z0-9_]{1,47})-", workflow_id)
    mission = mission or (m.group(1) if m else None)
    if not mission:
        err.print("[red]bad input:[/red] give --mission (the workflow id does not name it)")
        raise typer.Exit(2)
    try:
        req = RenderReportInput.model_validate({"mission": mission, "workflow_id": workflow_id, "fetch": fmt})
    except ValidationError as exc:
        err.print("[red]bad input:[/red] " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
        raise typer.Exit(2)

    async def go():
        client = await connect(get_settings())
        return await client.execute_workflow(
            RenderReportWorkflow.run, req, id=report_workflow_id(mission, workflow_id, uuid.uuid4().hex[:8]),
            task_queue=queues.RESEARCH, search_attributes=for_mission(mission), execution_timeout=timedelta(minutes=10))

    result = asyncio.run(go())
    key = next(a.key for a in result.artifacts if a.format == fmt)
    if result.content_b64 is None:
        err.print(f"[red]error:[/red] {result.content_omitted} ({key})", highlight=False)
        raise typer.Exit(1)
    data = base64.b64decode(result.content_b64)
    if output is None and fmt in ("md", "html"):
        sys.stdout.write(data.decode())
        sys.stdout.flush()
    else:
        path = Path(output or f"{workflow_id}.{fmt}")
        path.write_bytes(data)
        err.print(f"wrote {path} ({len(data)} bytes)", highlight=False)
    err.print(f"stored: {', '.join(a.key for a in result.artifacts)}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(research, name="research")
