"""Webhook workflows (task queue `maintenance-tasks`) and the `emit` helper the
business workflows call at their end.

emit(type, mission, data) -- from any workflow: starts EmitEventWorkflow as an
    abandoned child on maintenance-tasks with id `webhook-emit-<event id>`, where the
    event id derives from (type, emitting workflow id, its first run id). It only waits
    for the child to start (no worker needed), never fails its caller, and is guarded
    by workflow.patched() so histories from before webhooks replay unchanged. An emit
    that runs again (replay, reset) finds that id taken: nothing is delivered twice.
EmitEventWorkflow -- looks up the matching endpoints (an activity: workflows cannot
    touch storage) and starts one DeliverWebhookWorkflow per endpoint
    (`webhook-deliver-<event id>-<endpoint id>`, REJECT_DUPLICATE, abandoned).
DeliverWebhookWorkflow -- the delivery activity with exponential backoff, bounded in
    attempts and total time; a refused target is not retried. Its result says whether
    the event was delivered; a delivery that never succeeds is not a workflow failure.
Add/List/Remove webhooks and ListWebhookDeliveries -- one activity each.
"""
from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.ops.webhooks import TARGET_REFUSED, WebhookActivities
    from stratmaster import queues
    from stratmaster.contracts.webhooks import (
        AddWebhookInput, AddWebhookResult, DeliverInput, DeliveriesInput, DeliveryLog, DeliveryResult, EmitPlan,
        EmitResult, EventType, ListWebhooksInput, RemoveWebhookInput, RemoveWebhookResult, WebhookEvent, WebhookList,
        delivery_workflow_id, emit_workflow_id,
    )
    from stratmaster.errors import NON_RETRYABLE, WORKFLOW_INPUT_ERRORS
    from stratmaster.search_attributes import for_mission
    from stratmaster.webhooks import bounded_data, event_id
from workflows.calls import call_activity
from workflows.options import ActivityOptions, retry

EMIT_PATCH = "webhooks-emit"
QUICK_RETRY = retry(10, longest=timedelta(seconds=30))
QUICK = ActivityOptions(start_to_close_timeout=timedelta(seconds=30), retry_policy=QUICK_RETRY)


async def emit(event_type: EventType, mission: str | None, data: dict) -> str | None:
    """Start the event's delivery from a workflow (see the module doc). Returns the event id."""
    if not workflow.patched(EMIT_PATCH):
        return None
    info = workflow.info()
    eid = event_id(event_type, info.workflow_id, info.first_execution_run_id)
    stamp = workflow.now()
    event = WebhookEvent(id=eid, type=event_type, mission=mission, timestamp=stamp,
                         data=bounded_data(event_type, stamp.isoformat(), data))
    try:
        await workflow.start_child_workflow(
            EmitEventWorkflow.run, event, id=emit_workflow_id(eid), task_queue=queues.MAINTENANCE,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON, id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            execution_timeout=timedelta(days=7), search_attributes=for_mission(mission) if mission else None)
    except WorkflowAlreadyStartedError:
        pass  # emitted before: delivered (or being delivered) once
    except Exception as exc:  # noqa: BLE001 - a webhook must never fail the business workflow
        workflow.logger.warning("webhook event %s not emitted: %s", event_type, exc)
    return eid


# ---------------------------------------------------------------- event summaries
# What each event carries: a summary of the run, never the whole result (emit bounds
# it to MAX_PAYLOAD_BYTES anyway). Pure functions of the workflow's own result.

def _clip(text, n: int):
    return text if not isinstance(text, str) or len(text) <= n else text[: n - 1] + "…"


async def emit_research_finished(result) -> None:
    answer = result.answer
    await emit("research.finished", result.mission, {
        "mission": result.mission, "workflow_id": result.workflow_id, "session_id": result.session_id,
        "query": _clip(result.query, 500), "outcome": result.outcome,
        "answer": _clip(answer.text, 1000) if answer else None,
        "confidence": round(answer.confidence, 3) if answer else None,
        "findings": len(result.claims), "contested_findings": sum(1 for c in result.claims if c.contradicting),
        "top_findings": [{"text": _clip(c.text, 300), "confidence": round(c.confidence, 3)} for c in result.claims[:3]],
        "cached": result.cached, "report_md_key": result.report_md_key, "report_json_key": result.report_json_key,
    })


async def emit_ingestion_finished(result) -> None:
    t = result.totals
    failed = bool(t.failed) and not (t.ingested or t.duplicates)  # nothing of the batch landed
    await emit("ingestion.failed" if failed else "ingestion.finished", result.mission, {
        "mission": result.mission, "batch_id": result.batch_id, "workflow_id": workflow.info().workflow_id,
        "totals": t.model_dump(mode="json"),
        "failures": [{"source": _clip(f.source, 200), "reason_type": f.reason_type, "reason": _clip(f.reason, 300)}
                     for f in result.failures[:5]],
    })


async def emit_backup_finished(req, result) -> None:
    mission = req.mission if req.scope == "mission" else None
    data = {"backup_id": result.backup_id, "scope": req.scope, "workflow_id": workflow.info().workflow_id}
    if mission:  # a system backup's event goes to every subscribed mission: it names none of them
        data.update(mission=mission, manifest_key=result.manifest_key, artefacts=result.artefacts,
                    total_bytes=result.total_bytes)
    await emit("backup.finished", mission, data)


async def emit_mission_changed(result) -> None:
    event: EventType = "mission.rolled_back" if result.status == "rolled_back" else "mission.activated"
    await emit(event, result.mission, {
        "mission": result.mission, "version": result.version, "previous_version": result.previous_version,
        "status": result.status, "sha256": result.sha256, "workflow_id": workflow.info().workflow_id,
    })


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class EmitEventWorkflow:
    @workflow.run
    async def run(self, event: WebhookEvent) -> EmitResult:
        plan: EmitPlan = await workflow.execute_activity_method(WebhookActivities.plan_event, event, **QUICK)
        started = []
        for mission, endpoint in plan.targets:
            wid = delivery_workflow_id(event.id, endpoint)
            try:
                await workflow.start_child_workflow(
                    DeliverWebhookWorkflow.run, DeliverInput(mission=mission, endpoint_id=endpoint, event=event,
                                                             retry=plan.retry),
                    id=wid, task_queue=queues.MAINTENANCE, parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE, search_attributes=for_mission(mission),
                    execution_timeout=timedelta(hours=plan.retry.max_hours + 1))
            except WorkflowAlreadyStartedError:
                pass
            started.append(wid)
        return EmitResult(event_id=event.id, deliveries=started)


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class DeliverWebhookWorkflow:
    @workflow.run
    async def run(self, req: DeliverInput) -> DeliveryResult:
        r = req.retry
        base = dict(mission=req.mission, endpoint_id=req.endpoint_id, event_id=req.event.id, event_type=req.event.type)
        try:
            out = await workflow.execute_activity_method(
                WebhookActivities.deliver, req,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=timedelta(hours=r.max_hours),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=r.initial_s), backoff_coefficient=r.backoff,
                    maximum_interval=timedelta(seconds=r.max_interval_s), maximum_attempts=r.max_attempts,
                    non_retryable_error_types=[TARGET_REFUSED, *NON_RETRYABLE]))
        except ActivityError as exc:
            cause = exc.cause
            details = cause.details[0] if isinstance(cause, ApplicationError) and cause.details else {}
            details = details if isinstance(details, dict) else {}
            refused = isinstance(cause, ApplicationError) and cause.type == TARGET_REFUSED
            return DeliveryResult(**base, delivered=False, status="refused" if refused else "failed",
                                  attempts=int(details.get("attempt") or 0), status_code=details.get("status_code"),
                                  error=str(getattr(cause, "message", None) or cause or exc))
        return DeliveryResult(**base, delivered=out.status == "delivered", status=out.status, attempts=out.attempt,
                              status_code=out.status_code, error=out.error)


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class AddWebhookWorkflow:
    @workflow.run
    async def run(self, req: AddWebhookInput) -> AddWebhookResult:
        return await call_activity(WebhookActivities.add_webhook, req, QUICK)


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class ListWebhooksWorkflow:
    @workflow.run
    async def run(self, req: ListWebhooksInput) -> WebhookList:
        return await call_activity(WebhookActivities.list_webhooks, req, QUICK)


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class RemoveWebhookWorkflow:
    @workflow.run
    async def run(self, req: RemoveWebhookInput) -> RemoveWebhookResult:
        return await call_activity(WebhookActivities.remove_webhook, req, QUICK)


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class ListWebhookDeliveriesWorkflow:
    @workflow.run
    async def run(self, req: DeliveriesInput) -> DeliveryLog:
        return await call_activity(WebhookActivities.list_deliveries, req, QUICK)


WORKFLOWS = [EmitEventWorkflow, DeliverWebhookWorkflow, AddWebhookWorkflow, ListWebhooksWorkflow,
             RemoveWebhookWorkflow, ListWebhookDeliveriesWorkflow]
