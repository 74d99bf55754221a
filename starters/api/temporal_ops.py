"""Starting, describing and reading Temporal workflows for the routes: the API only
starts, signals, queries, cancels and looks up workflows (by type name: it imports
no workflow code); their activities do every store read and write."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from starters.failures import failure_message
from starters.api.errors import ApiError, validation_error
from starters.auth import READ, Principal
from stratmaster.search_attributes import MISSION_SA, for_mission

# Workflow types are started by name: the API does not import workflow code.
RESEARCH_WORKFLOW = "ResearchWorkflow"
INGEST_WORKFLOW = "IngestDocumentsWorkflow"
ACTIVATE_WORKFLOW = "ActivateMissionWorkflow"
ROLLBACK_WORKFLOW = "RollbackMissionWorkflow"
DEACTIVATE_WORKFLOW = "DeactivateMissionWorkflow"
EXPORT_WORKFLOW = "ExportMissionWorkflow"
HEALTH_WORKFLOW = "HealthCheckWorkflow"
AUDIT_WORKFLOW = "RecordAuditWorkflow"
LIST_MISSIONS_WORKFLOW = "ListMissionsWorkflow"
SHOW_MISSION_WORKFLOW = "ShowMissionWorkflow"
BACKUP_WORKFLOW = "BackupWorkflow"
LIST_BACKUPS_WORKFLOW = "ListBackupsWorkflow"
VERIFY_BACKUP_WORKFLOW = "VerifyBackupWorkflow"
RESTORE_WORKFLOW = "RestoreWorkflow"
MAINTENANCE_WORKFLOW = "MaintenanceWorkflow"
ANALYTICS_WORKFLOW = "AnalyticsExportWorkflow"
LLM_USAGE_WORKFLOW = "LlmUsageWorkflow"
ADD_SOURCE_WORKFLOW = "AddSourceWorkflow"
LIST_SOURCES_WORKFLOW = "ListSourcesWorkflow"
SOURCE_STATUS_WORKFLOW = "SourceStatusWorkflow"
SOURCE_SYNC_WORKFLOW = "SourceSyncWorkflow"
REMOVE_SOURCE_WORKFLOW = "RemoveSourceWorkflow"
ADD_WEBHOOK_WORKFLOW = "AddWebhookWorkflow"
LIST_WEBHOOKS_WORKFLOW = "ListWebhooksWorkflow"
REMOVE_WEBHOOK_WORKFLOW = "RemoveWebhookWorkflow"
WEBHOOK_DELIVERIES_WORKFLOW = "ListWebhookDeliveriesWorkflow"
DELIVER_WEBHOOK_WORKFLOW = "DeliverWebhookWorkflow"
RENDER_REPORT_WORKFLOW = "RenderReportWorkflow"
LIST_DOCUMENTS_WORKFLOW = "ListDocumentsWorkflow"
DOCUMENT_EXCERPT_WORKFLOW = "DocumentExcerptWorkflow"
LIST_RESEARCH_WORKFLOW = "ListResearchWorkflow"
# operations on the platform's data: their progress and results (object keys, checks, restore
# reports) are the operator's, even when the workflow carries the mission it touched
OPERATOR_WORKFLOWS = frozenset({BACKUP_WORKFLOW, LIST_BACKUPS_WORKFLOW, VERIFY_BACKUP_WORKFLOW, RESTORE_WORKFLOW,
                                MAINTENANCE_WORKFLOW, ANALYTICS_WORKFLOW})
# the query each long-running workflow type answers with its progress
PROGRESS_QUERIES = {RESEARCH_WORKFLOW: "progress", INGEST_WORKFLOW: "progress", ACTIVATE_WORKFLOW: "stage",
                    BACKUP_WORKFLOW: "stage", SOURCE_SYNC_WORKFLOW: "progress"}

LOOKUP_TIMEOUT = timedelta(seconds=5)
QUERY_RPC_TIMEOUT = timedelta(seconds=3)
OPERATION_TIMEOUT = timedelta(hours=6)  # backups, restores, verification, maintenance (as the CLI)
ANALYTICS_TIMEOUT = timedelta(hours=1)


def running_of_mission(workflow_type: str, mission: str) -> str:
    """The visibility query for `mission`'s running workflows of a type (a mission id is
    [a-z0-9_], checked by every route: nothing to quote)."""
    return f"WorkflowType = '{workflow_type}' AND ExecutionStatus = 'Running' AND {MISSION_SA.name} = '{mission}'"


class WorkflowStarted(BaseModel):
    workflow_id: str
    run_id: str | None
    mission: str | None
    created: bool = Field(description="false: an existing workflow was returned (idempotency key, same batch)")
    status_url: str


def idempotent_suffix(scope: str, key: str) -> str:
    """The run key an Idempotency-Key stands for, within `scope` (a mission, or the
    operation for system-wide ones): "k" + 24 hex."""
    if not key or len(key) > 255:
        raise validation_error(("header", "Idempotency-Key"), "must be 1-255 characters")
    return "k" + hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()[:24]


def run_key(scope: str, idempotency_key: str | None, random_hex: str) -> str:
    """The Idempotency-Key's run key, else `random_hex` (a fresh run)."""
    return idempotent_suffix(scope, idempotency_key) if idempotency_key else random_hex


@dataclass
class Started:
    workflow_id: str
    run_id: str | None
    created: bool


async def start_workflow(client: Client, workflow: str, arg: Any, *, workflow_id: str, task_queue: str,
                         mission: str | None, idempotent: bool, attach_running: bool = False,
                         execution_timeout: timedelta | None = None) -> Started:
    """idempotent: an existing workflow with this id (running or closed) is returned,
    never duplicated. attach_running: a running one is returned, a closed one re-run."""
    try:
        handle = await client.start_workflow(
            workflow, arg, id=workflow_id, task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE if idempotent else WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=for_mission(mission) if mission else None,
            execution_timeout=execution_timeout,
        )
        return Started(workflow_id, handle.first_execution_run_id, True)
    except WorkflowAlreadyStartedError:
        # REJECT_DUPLICATE: any earlier run with this id; ALLOW_DUPLICATE: a running one.
        if not (idempotent or attach_running):
            raise ApiError(409, "conflict", f"workflow {workflow_id} already exists") from None
        desc = await client.get_workflow_handle(workflow_id).describe()
        return Started(workflow_id, desc.run_id, False)


def started_body(s: Started, mission: str | None, status_url: str | None = None) -> dict:
    return {"workflow_id": s.workflow_id, "run_id": s.run_id, "mission": mission, "created": s.created,
            "status_url": status_url or f"/workflows/{s.workflow_id}"}


def status_name(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower() if status else "unknown"


async def closed_outcome(handle: WorkflowHandle, status: WorkflowExecutionStatus, *, root: bool = True) -> dict:
    """{"result": ...} of a completed workflow, {"error": message} of one that failed,
    was cancelled, terminated or timed out (root: the innermost ApplicationError's
    message, see failure_message)."""
    if status == WorkflowExecutionStatus.COMPLETED:
        return {"result": await handle.result()}
    try:
        await handle.result()
    except WorkflowFailureError as exc:
        return {"error": failure_message(exc, root=root)}
    return {}


async def outcome_when_closed(handle: WorkflowHandle, *, root: bool = True) -> dict | None:
    """Wait for the workflow to close (one history long poll) and give closed_outcome's body
    from that same answer; None when the wait itself failed (an RPC error, not the workflow)."""
    try:
        return {"result": await handle.result()}
    except WorkflowFailureError as exc:
        return {"error": failure_message(exc, root=root)}
    except Exception:  # noqa: BLE001 - the caller describes the workflow instead
        return None


async def describe_for(request: Request, client: Client, principal: Principal, workflow_id: str,
                       permission: str, expected_type: str | None = None):
    """Describe a workflow the caller may `permission`: its Mission search attribute
    decides; system workflows (no mission) are for platform admins only.

    A workflow the caller may not even read answers exactly like one that does not
    exist (404, same body), so ids (predictable for ingestion batches) reveal nothing
    about other missions. A caller who may read it but not `permission` it gets 403."""
    invisible = ApiError(404, "unknown_workflow", f"no workflow {workflow_id!r}")
    if not principal.is_platform_admin and not any(r.startswith("mission:") for r in principal.roles):
        raise invisible  # no role reads any workflow: do not even look it up
    handle = client.get_workflow_handle(workflow_id)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise invisible from None
        raise
    mission = desc.typed_search_attributes.get(MISSION_SA)
    request.state.audit_mission = mission
    if desc.workflow_type in OPERATOR_WORKFLOWS and not principal.is_platform_admin:
        raise invisible
    if mission is None:
        if not principal.is_platform_admin:
            raise invisible
    elif not principal.can(mission, READ):
        raise invisible
    elif not principal.can(mission, permission):
        raise ApiError(403, "forbidden", f"{principal.actor!r} may not {permission} mission {mission!r}")
    if expected_type and desc.workflow_type != expected_type:
        raise ApiError(404, "unknown_workflow", f"workflow {workflow_id!r} is a {desc.workflow_type}, not a {expected_type}")
    return handle, desc, mission
