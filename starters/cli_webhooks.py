"""`stratmaster webhooks add|list|remove|deliveries|test`: a mission's webhook
endpoints. Each command runs a workflow on the maintenance queue (starters never
touch storage); `add` prints the endpoint's signing secret, this once."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from starters.failures import failure_message
from starters.cli import console, fail, friendly, run_async
from stratmaster import queues

out = Console(soft_wrap=True)
webhooks = typer.Typer(help="Webhooks: signed HTTP callbacks when a mission's ingestion, research, backup or "
                            "activation finishes.", no_args_is_help=True)



async def _run(workflow_run, arg, prefix: str, mission: str):
    from temporalio.client import WorkflowFailureError

    from stratmaster.search_attributes import for_mission
    from stratmaster.temporal_client import connect

    client = await connect()
    try:
        return await client.execute_workflow(
            workflow_run, arg, id=f"{prefix}-{mission}-{uuid.uuid4().hex[:12]}", task_queue=queues.MAINTENANCE,
            search_attributes=for_mission(mission), execution_timeout=timedelta(minutes=5))
    except WorkflowFailureError as exc:
        fail(failure_message(exc))


def _input(model, **fields):
    from pydantic import ValidationError

    try:
        return model(**fields)
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()), 2)


@webhooks.command("add")
@friendly
def add(url: str = typer.Argument(..., help="https://... receiver"),
        mission: str = typer.Option(..., "--mission", "-m"),
        events: list[str] = typer.Option(["*"], "--event", "-e",
                                         help="event type to send (repeatable or comma-separated; default: all)"),
        description: str = typer.Option("", "--description", "-d"),
        as_json: bool = typer.Option(False, "--json")) -> None:
    """Register an endpoint; prints its id and its signing secret (shown once)."""
    from stratmaster.contracts.webhooks import AddWebhookInput
    from stratmaster.webhooks import open_secret, reply_keypair
    from workflows.webhooks import AddWebhookWorkflow

    private, public = reply_keypair()  # the secret comes back sealed to this one-off key
    req = _input(AddWebhookInput, mission=mission, url=url, description=description, actor="cli", reply_key=public,
                 events=[e for item in events for e in item.split(",")])
    result = run_async(_run(AddWebhookWorkflow.run, req, "webhook-add", mission))
    secret = open_secret(result.sealed_secret, private) if result.sealed_secret else result.secret
    ep = result.endpoint
    if as_json:
        print(json.dumps({**ep.model_dump(mode="json"), "secret": secret}, indent=2))
        return
    out.print(f"endpoint {ep.endpoint_id} for mission {ep.mission}: {ep.url} ({', '.join(ep.events)})", highlight=False)
    out.print(f"secret: {secret}", highlight=False)
    console.print("[yellow]Store the secret now: it is not shown again. Verify each request's webhook-signature "
                  "with it (Standard Webhooks).[/yellow]")


@webhooks.command("list")
@friendly
def list_(mission: str = typer.Option(..., "--mission", "-m"), as_json: bool = typer.Option(False, "--json")) -> None:
    """A mission's endpoints (never their secrets)."""
    from stratmaster.contracts.webhooks import ListWebhooksInput
    from workflows.webhooks import ListWebhooksWorkflow

    result = run_async(_run(ListWebhooksWorkflow.run, _input(ListWebhooksInput, mission=mission), "webhook-list", mission))
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    table = Table("endpoint", "url", "events", "enabled", "created", "description")
    for e in result.endpoints:
        table.add_row(e.endpoint_id, e.url, ", ".join(e.events), "yes" if e.enabled else "no",
                      e.created_at.isoformat(timespec="seconds") if e.created_at else "", e.description)
    out.print(table)


@webhooks.command("remove")
@friendly
def remove(endpoint_id: str = typer.Argument(...), mission: str = typer.Option(..., "--mission", "-m")) -> None:
    """Remove an endpoint (its delivery log stays)."""
    from stratmaster.contracts.webhooks import RemoveWebhookInput
    from workflows.webhooks import RemoveWebhookWorkflow

    req = _input(RemoveWebhookInput, mission=mission, endpoint_id=endpoint_id, actor="cli")
    result = run_async(_run(RemoveWebhookWorkflow.run, req, "webhook-remove", mission))
    out.print(f"removed {result.endpoint_id}" if result.removed else f"{result.endpoint_id}: already removed",
              highlight=False)


@webhooks.command("deliveries")
@friendly
def deliveries(mission: str = typer.Option(..., "--mission", "-m"),
               endpoint_id: Optional[str] = typer.Option(None, "--endpoint"),
               event_id: Optional[str] = typer.Option(None, "--event-id"),
               limit: int = typer.Option(50, "--limit"),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """The mission's delivery log, newest first: one row per attempt."""
    from stratmaster.contracts.webhooks import DeliveriesInput
    from workflows.webhooks import ListWebhookDeliveriesWorkflow

    req = _input(DeliveriesInput, mission=mission, endpoint_id=endpoint_id, event_id=event_id, limit=limit)
    result = run_async(_run(ListWebhookDeliveriesWorkflow.run, req, "webhook-deliveries", mission))
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    table = Table("at", "event", "type", "endpoint", "attempt", "status", "code", "ms", "error")
    for d in result.deliveries:
        table.add_row(d.at.isoformat(timespec="seconds"), d.event_id, d.event_type, d.endpoint_id[:8], str(d.attempt),
                      d.status, str(d.status_code or ""), f"{d.duration_ms:.0f}" if d.duration_ms is not None else "",
                      d.error or "")
    out.print(table)


@webhooks.command("test")
@friendly
def test(endpoint_id: str = typer.Argument(...), mission: str = typer.Option(..., "--mission", "-m")) -> None:
    """Send one signed `webhook.test` event to the endpoint now (one attempt) and print the outcome."""
    from stratmaster.contracts.webhooks import DeliverInput, WebhookEvent, WebhookRetry, delivery_workflow_id
    from stratmaster.webhooks import event_id as make_event_id
    from workflows.webhooks import DeliverWebhookWorkflow

    eid = make_event_id("webhook.test", f"cli-{uuid.uuid4().hex}")
    event = WebhookEvent(id=eid, type="webhook.test", mission=mission, timestamp=datetime.now(timezone.utc),
                         data={"mission": mission, "message": "test event from `stratmaster webhooks test`"})
    req = _input(DeliverInput, mission=mission, endpoint_id=endpoint_id, event=event, retry=WebhookRetry(max_attempts=1))

    async def go():
        from stratmaster.search_attributes import for_mission
        from stratmaster.temporal_client import connect

        client = await connect()
        return await client.execute_workflow(DeliverWebhookWorkflow.run, req, id=delivery_workflow_id(eid, endpoint_id),
                                             task_queue=queues.MAINTENANCE, search_attributes=for_mission(mission),
                                             execution_timeout=timedelta(minutes=5))

    r = run_async(go())
    line = f"{r.status}: event {r.event_id} to {r.endpoint_id}" + (f", HTTP {r.status_code}" if r.status_code else "")
    out.print(line + (f" ({r.error})" if r.error else ""), highlight=False)
    if not r.delivered:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(webhooks, name="webhooks")
