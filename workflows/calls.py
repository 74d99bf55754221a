"""One way for a workflow to call an activity and surface its error.

`call_activity` runs an activity with the given options; an ApplicationError it raised (bad input,
an unknown mission, InvalidCartridge ...) fails the workflow as itself: same type, message and
details, non-retryable, instead of wrapped in ActivityError, so a starter reads the reason the
activity gave. `root_cause` unwraps activity and child-workflow errors to what was raised first.
"""
from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

from workflows.options import ActivityOptions


def root_cause(err: BaseException) -> BaseException:
    while isinstance(err, (ActivityError, ChildWorkflowError)) and err.cause is not None:
        err = err.cause
    return err


def cause_text(err: BaseException) -> str:
    cause = root_cause(err)
    return str(cause) or type(cause).__name__


async def call_activity(fn: Any, arg: Any, opts: ActivityOptions) -> Any:
    try:
        return await workflow.execute_activity_method(fn, arg, **opts)
    except ActivityError as exc:
        cause = root_cause(exc)
        if isinstance(cause, ApplicationError):
            raise ApplicationError(cause.message, *cause.details, type=cause.type, non_retryable=True) from None
        raise
