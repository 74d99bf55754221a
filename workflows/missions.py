"""Mission lifecycle workflows (task queue mission-tasks).

ActivateMissionWorkflow   id mission-activate-<mission>-<version>
    validate -> plan -> provision postgres, vectors, fulltext, graph, objects -> record active.
    A saga: each step's undo is registered before the step runs (a step that
    failed half-way is undone too) and on any failure, cancellation included
    (BaseException), the undos run in reverse. Undo never drops the data of a
    mission that existed before the run; it restores the previous active version.
RollbackMissionWorkflow   id mission-rollback-<mission>: the same saga on a stored version.
DeactivateMissionWorkflow id mission-deactivate-<mission>: keeps data until purge_after.
PurgeExpiredMissionsWorkflow: drops missions whose retention has passed (maintenance schedules it).
ListMissionsWorkflow / ShowMissionWorkflow / ExportMissionWorkflow: read-only.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.missions import CONCURRENT_CHANGE, MissionActivities
    from stratmaster.contracts.common import validate_mission_id
    from stratmaster.contracts.missions import (
        ActivateMissionInput, ActivationPlan, ActivationResult, ActivationStatus, DeactivateMissionInput,
        DeactivateStep, DeactivationResult, ExportResult, ListMissionsInput, MissionDetail, MissionList, MissionRef,
        PlanActivationInput, PlanRollbackInput, ProvisionStep, PurgeExpiredInput, PurgeResult, RollbackMissionInput,
        StepInput, StepResult, UndoInput, ValidateInput,
    )
    from stratmaster.errors import BAD_INPUT, WORKFLOW_INPUT_ERRORS
    from stratmaster.contracts.missions import MissionConfig
from workflows.calls import call_activity, cause_text
from workflows.options import ActivityOptions, retry
from workflows.webhooks import emit_mission_changed

RETRY = retry(5, longest=timedelta(seconds=20), also=[CONCURRENT_CHANGE])
# Undo must finish: retry for as long as the schedule-to-close timeout allows.
UNDO_RETRY = retry(longest=timedelta(seconds=30))
SHORT = ActivityOptions(start_to_close_timeout=timedelta(seconds=30), retry_policy=RETRY)
STEP = timedelta(minutes=2)

STEPS: tuple[tuple[ProvisionStep, Callable[[MissionActivities, StepInput], Awaitable[StepResult]]], ...] = (
    ("postgres", MissionActivities.provision_postgres),
    ("vectors", MissionActivities.provision_vectors),
    ("fulltext", MissionActivities.provision_fulltext),
    ("graph", MissionActivities.provision_graph),
    ("objects", MissionActivities.provision_objects),
    ("record", MissionActivities.record_active),
)


def activate_workflow_id(mission: str, version: str) -> str:
    from stratmaster.workflow_ids import activate_workflow_id as build  # the one id builder (CLI, API)

    return build(mission, version)


def checked_mission(mission: str) -> str:
    try:
        return validate_mission_id(mission if isinstance(mission, str) else "")
    except ValueError as exc:
        raise ApplicationError(f"invalid mission id {mission!r}: {exc}", type=BAD_INPUT, non_retryable=True) from None


async def _provision(plan: ActivationPlan, actor: str) -> list[str]:
    """Run the provisioning steps as a saga; returns the steps done."""
    info = workflow.info()
    step_input = StepInput(plan=plan, actor=actor, workflow_id=info.workflow_id)
    to_undo: list[ProvisionStep] = []
    done: list[str] = []
    current = ""
    try:
        for name, fn in STEPS:
            current = name
            to_undo.append(name)  # before the step: it may fail after a partial effect
            await workflow.execute_activity_method(
                fn, step_input, start_to_close_timeout=STEP, retry_policy=RETRY,
                # on cancellation wait for the step to stop, so its undo runs after it
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            done.append(name)
        return done
    except BaseException as exc:
        workflow.logger.warning("activation failed, undoing",
                                extra={"mission": plan.mission, "step": current, "error": cause_text(exc)})
        not_undone: list[str] = []
        for name in reversed(to_undo):
            try:
                await workflow.execute_activity_method(
                    MissionActivities.undo, UndoInput(step=step_input, name=name),
                    start_to_close_timeout=STEP, schedule_to_close_timeout=timedelta(minutes=30),
                    retry_policy=UNDO_RETRY,
                )
            except ActivityError as undo_exc:  # keep undoing the other steps; report this one
                workflow.logger.error("undo failed", extra={"mission": plan.mission, "step": name,
                                                            "error": cause_text(undo_exc)})
                not_undone.append(name)
        if not_undone:
            raise ApplicationError(
                f"{plan.action} of mission {plan.mission} version {plan.version} failed at step {current} "
                f"({cause_text(exc)}) and could not undo: {', '.join(not_undone)}; see the worker log",
                type="UndoFailed", non_retryable=True) from exc
        if is_cancelled_exception(exc):
            raise asyncio.CancelledError(f"{plan.action} of {plan.mission} {plan.version} cancelled; all steps undone") \
                from exc
        if isinstance(exc, ApplicationError) or not isinstance(exc, ActivityError):
            raise
        raise ApplicationError(
            f"{plan.action} of mission {plan.mission} version {plan.version} failed at step {current}: {cause_text(exc)}; "
            f"undone: {', '.join(reversed(to_undo))}",
            type=getattr(getattr(exc, "cause", None), "type", None) or "ActivationFailed", non_retryable=True,
        ) from exc


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class ActivateMissionWorkflow:
    """Validate a cartridge and activate it (new mission, new version, or re-activation)."""

    def __init__(self) -> None:
        self._stage = "pending"

    @workflow.query
    def stage(self) -> str:
        return self._stage

    @workflow.run
    async def run(self, req: ActivateMissionInput) -> ActivationResult:
        if req.cartridge_text is None and req.cartridge is None:
            raise ApplicationError("give cartridge_text or cartridge", type=BAD_INPUT, non_retryable=True)
        self._stage = "validating"
        validated = await call_activity(MissionActivities.validate,
                                ValidateInput(cartridge_text=req.cartridge_text, cartridge=req.cartridge), SHORT)
        self._stage = "planning"
        plan = await call_activity(MissionActivities.plan_activation, PlanActivationInput(validated=validated), SHORT)
        if plan.unchanged:
            self._stage = "unchanged"
            return ActivationResult(mission=plan.mission, version=plan.version, status="unchanged",
                                    previous_version=plan.previous_previous, sha256=plan.sha256)
        self._stage = "provisioning"
        steps = await _provision(plan, req.actor)
        self._stage = "done"
        status: ActivationStatus = "reactivated" if plan.previous_status == "deactivated" else "activated"
        result = ActivationResult(mission=plan.mission, version=plan.version, status=status,
                                  previous_version=plan.previous_version, steps=steps, sha256=plan.sha256)
        await emit_mission_changed(result)  # webhooks (patched: older histories skip it)
        return result


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class RollbackMissionWorkflow:
    """Make the previous (or a given) stored version active again."""

    @workflow.run
    async def run(self, req: RollbackMissionInput) -> ActivationResult:
        mission = checked_mission(req.mission)
        plan = await call_activity(MissionActivities.plan_rollback, PlanRollbackInput(mission=mission, to_version=req.to_version), SHORT)
        steps = await _provision(plan, req.actor)
        result = ActivationResult(mission=mission, version=plan.version, status="rolled_back",
                                  previous_version=plan.previous_version, steps=steps, sha256=plan.sha256)
        await emit_mission_changed(result)  # webhooks (patched: older histories skip it)
        return result


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class DeactivateMissionWorkflow:
    """Stop serving a mission; its data stays until purge_after (retention)."""

    @workflow.run
    async def run(self, req: DeactivateMissionInput) -> DeactivationResult:
        mission = checked_mission(req.mission)
        return await call_activity(
            MissionActivities.deactivate,
            DeactivateStep(mission=mission, actor=req.actor, now=workflow.now(), retention_days=req.retention_days,
                           workflow_id=workflow.info().workflow_id), SHORT)


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class PurgeExpiredMissionsWorkflow:
    """Drop the namespaces of deactivated missions whose retention has passed."""

    @workflow.run
    async def run(self, req: PurgeExpiredInput) -> PurgeResult:
        now = req.now or workflow.now()
        return await call_activity(
            MissionActivities.purge_expired_missions, PurgeExpiredInput(now=now, actor=req.actor, missions=req.missions),
            ActivityOptions(start_to_close_timeout=timedelta(minutes=30), heartbeat_timeout=timedelta(minutes=2),
                            retry_policy=RETRY))


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class ListMissionsWorkflow:
    @workflow.run
    async def run(self, req: ListMissionsInput) -> MissionList:
        return await call_activity(MissionActivities.list_missions, req, SHORT)


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class ShowMissionWorkflow:
    @workflow.run
    async def run(self, req: MissionRef) -> MissionDetail:
        ref = MissionRef(mission=checked_mission(req.mission), version=req.version)
        return await call_activity(MissionActivities.show_mission, ref, SHORT)


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class ExportMissionWorkflow:
    """The active (or a given) cartridge version, as a model and as YAML."""

    @workflow.run
    async def run(self, req: MissionRef) -> ExportResult:
        ref = MissionRef(mission=checked_mission(req.mission), version=req.version)
        return await call_activity(MissionActivities.export_mission, ref, SHORT)


@workflow.defn(failure_exception_types=WORKFLOW_INPUT_ERRORS)
class MissionConfigWorkflow:
    """The config a worker currently sees for a mission (hot-reload check)."""

    @workflow.run
    async def run(self, req: MissionRef) -> MissionConfig:
        ref = MissionRef(mission=checked_mission(req.mission))
        return await call_activity(MissionActivities.effective_config, ref, SHORT)


WORKFLOWS = [ActivateMissionWorkflow, RollbackMissionWorkflow, DeactivateMissionWorkflow, PurgeExpiredMissionsWorkflow,
             ListMissionsWorkflow, ShowMissionWorkflow, ExportMissionWorkflow, MissionConfigWorkflow]
