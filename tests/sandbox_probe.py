"""A workflow that reads the wall clock: what the sandbox must refuse (tests/test_foundation.py)."""
from __future__ import annotations

import datetime

from temporalio import workflow


@workflow.defn
class ClockReader:
    @workflow.run
    async def run(self) -> str:
        try:
            datetime.datetime.now()
        except Exception as exc:  # the sandbox's RestrictedWorkflowAccessError
            return type(exc).__name__
        return "allowed"
