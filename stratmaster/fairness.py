"""Task-queue fairness per mission. Every workflow started for a mission (it carries the `Mission`
search attribute) gets the mission id as its fairness key, and its activities and child workflows
inherit it: Temporal's matching service then hands a queue's tasks out in turn across missions
instead of first come, first served, so a mission that queued a thousand tasks does not make
another mission's one task wait behind them. The server must have fairness on
(`matching.enableFairness`: the dev server's arguments in stratmaster/local_temporal.py; Helm and
compose set it on the Temporal server); without it the key is carried and ignored."""
from __future__ import annotations

import dataclasses
from typing import Any

from temporalio import client
from temporalio.common import Priority, TypedSearchAttributes

from stratmaster.search_attributes import MISSION_SA

# one partition per task queue on the single-node dev server: fairness orders the tasks of one
# partition, and with the default four a mission's tasks are spread over four separate orders
SERVER_ARGS: tuple[str, ...] = (
    "--dynamic-config-value", "matching.enableFairness=true",
    "--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
)


def for_mission(mission: str) -> Priority:
    return Priority(fairness_key=mission)


def _mission(attributes: Any) -> str | None:
    if isinstance(attributes, TypedSearchAttributes):
        value = attributes.get(MISSION_SA)
        return value if isinstance(value, str) else None
    if isinstance(attributes, dict):  # the legacy form: {"Mission": ["demo"]}
        value = attributes.get(MISSION_SA.name)
        return value[0] if isinstance(value, list) and value and isinstance(value[0], str) else None
    return None


class FairnessInterceptor(client.Interceptor):
    """A client interceptor: starts without a fairness key take their Mission search attribute's."""

    def intercept_client(self, next: client.OutboundInterceptor) -> client.OutboundInterceptor:
        return _Outbound(next)


class _Outbound(client.OutboundInterceptor):
    async def start_workflow(self, input: client.StartWorkflowInput) -> Any:
        if input.priority.fairness_key is None:
            mission = _mission(input.search_attributes)
            if mission:
                input.priority = dataclasses.replace(input.priority, fairness_key=mission)
        return await super().start_workflow(input)
