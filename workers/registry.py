"""Which workflows and activities each task queue runs.

Each queue has a builder module `workers/<area>.py` exposing
`async def build(settings) -> QueueSpec`; imports stay lazy so a worker only
loads what its queue needs (the research worker does not import the parsers).
"""
from __future__ import annotations

import importlib
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from stratmaster import queues
from stratmaster.settings import Settings


# Workflows run in Temporal's sandbox with the project's workflow modules passed through: they
# are imported once per process instead of once per workflow run (7-8 ms of a 25 ms
# retrieve-only run on the dev server; they hold constants only at module level). The sandbox
# checks clock, randomness and I/O calls made through modules imported inside it, so the tests
# run every workflow under the strict default sandbox (tests/support/workers.py: STRICT_RUNNER, and
# the replay tests), where such a call in a workflow fails the test.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows"))


@dataclass
class QueueSpec:
    workflows: list[type]
    activities: list[Callable[..., Any]]
    close: Callable[[], Awaitable[None]] | None = None
    # activities running at once on this worker (all are async: CPU work goes to threads inside them)
    max_concurrent_activities: int = 8
    extra: dict[str, Any] = field(default_factory=dict)


BUILDERS: dict[str, str] = {
    queues.RESEARCH: "workers.research",
    queues.INGESTION: "workers.ingestion",
    queues.MISSIONS: "workers.missions",
    queues.MAINTENANCE: "workers.maintenance",
}


async def build(queue: str, settings: Settings, **options: Any) -> QueueSpec:
    """The queue's spec from its builder module (`options`: builder-specific, e.g. maintenance's stores)."""
    if queue not in BUILDERS:
        raise SystemExit(f"unknown task queue {queue!r}; known: {', '.join(BUILDERS)}")
    module = importlib.import_module(BUILDERS[queue])
    return await module.build(settings, **options)


@asynccontextmanager
async def serving(client: Client, task_queue: str, spec: QueueSpec, **worker_options: Any) -> AsyncIterator[QueueSpec]:
    """Run `spec` on `task_queue` until the block exits, then close its resources: how
    `python -m workers` runs a queue, and how the tests do (tests/support/workers.py: queue_worker)."""
    try:
        worker_options.setdefault("workflow_runner", WORKFLOW_RUNNER)
        async with Worker(client, task_queue=task_queue, workflows=spec.workflows, activities=spec.activities,
                          max_concurrent_activities=spec.max_concurrent_activities, **worker_options):
            yield spec
    finally:
        if spec.close:
            await spec.close()
