"""The one way a test runs a worker (queue_worker: the real worker of a queue, in-process),
the workflow sandbox the tests run workflows in, and the names Temporal registers activities
and workflows under."""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from stratmaster.settings import Settings

# The tests run workflows in Temporal's default sandbox, which re-imports their modules for
# each run and refuses clock, randomness and I/O calls made in them; the workers pass the
# project's workflow modules through for speed (workers/registry.py: WORKFLOW_RUNNER).
STRICT_RUNNER = SandboxedWorkflowRunner()


def activity_name(fn: Callable[..., Any]) -> str:
    return activity._Definition.must_from_callable(fn).name


def workflow_name(cls: type) -> str:
    from temporalio.workflow import _Definition

    return _Definition.must_from_class(cls).name


@contextlib.asynccontextmanager
async def queue_worker(client: Client, settings: Settings, queue: str, *, task_queue: str | None = None,
                       activities: dict[str, Callable[..., Any]] | Callable[[Any], dict] | None = None,
                       workflows: list[type] | None = None, build_options: dict | None = None,
                       **worker_options: Any):
    """The real worker of `queue` in-process, built and run as `python -m workers` does
    (workers.registry.build + serving). Test seams, without switches in production code:
    `activities` replaces activities by name (failure injection; a dict, or a function of
    the spec returning one), `workflows` replaces workflows by name (stand-ins)."""
    from workers.registry import build, serving

    worker_options.setdefault("workflow_runner", STRICT_RUNNER)
    spec = await build(queue, settings, **(build_options or {}))
    if callable(activities):
        activities = activities(spec)
    if activities:
        by_name = {activity_name(a): a for a in spec.activities}
        by_name.update(activities)
        spec.activities = list(by_name.values())
    if workflows:
        names = {workflow_name(w) for w in workflows}
        spec.workflows = [w for w in spec.workflows if workflow_name(w) not in names] + list(workflows)
    async with serving(client, task_queue or queue, spec, **worker_options):
        yield spec
