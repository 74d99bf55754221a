"""What a failed workflow says: one helper for the CLI and the API."""
from __future__ import annotations

from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError


def root_application_error(exc: BaseException) -> ApplicationError | None:
    """The first ApplicationError down the `.cause` chain (an activity's "manifest.json not
    found" under "Activity task failed"), or None."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = getattr(cause, "cause", None)
    return cause


def failure_message(exc: WorkflowFailureError, *, root: bool = True) -> str:
    """The failure's message: that of the innermost ApplicationError (root), else of its immediate cause."""
    cause = exc.cause
    if root:
        cause = root_application_error(exc) or cause
    return getattr(cause, "message", None) or str(cause or exc)


def failure_type(exc: WorkflowFailureError) -> str | None:
    """The ApplicationError type at the root of a workflow failure (BadInput, UnknownMission, ...)."""
    app = root_application_error(exc)
    return app.type if app is not None else None
