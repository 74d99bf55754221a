"""Task-queue fairness per mission on the real Temporal dev server (started with fairness on, as
the dev stack's is): workflows started with a Mission search attribute carry the mission as their
fairness key (the client interceptor), their activities inherit it, and one mission's queued work
does not make another mission's wait behind all of it."""
from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from stratmaster.search_attributes import for_mission

ran: list[str] = []


@activity.defn(name="fairness_probe_work")
async def work(name: str) -> str:
    ran.append(name)
    await asyncio.sleep(0.2)
    return name


@workflow.defn(name="FairnessProbeWorkflow")
class Probe:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(work, name, start_to_close_timeout=timedelta(seconds=30))


async def test_one_missions_backlog_does_not_hold_up_another_mission(client):
    queue = f"fairness-{uuid.uuid4().hex[:8]}"
    ran.clear()
    handles = [await client.start_workflow(Probe.run, f"a{i}", id=f"fair-a{i}-{uuid.uuid4().hex[:6]}", task_queue=queue,
                                           search_attributes=for_mission("fair_flood"))
               for i in range(12)]
    handles.append(await client.start_workflow(Probe.run, "b", id=f"fair-b-{uuid.uuid4().hex[:6]}", task_queue=queue,
                                               search_attributes=for_mission("fair_quiet")))
    desc = await handles[-1].describe()
    assert desc.raw_description.workflow_execution_info.priority.fairness_key == "fair_quiet"
    # one activity at a time: first come, first served would run the quiet mission's last (13th)
    async with Worker(client, task_queue=queue, workflows=[Probe], activities=[work], max_concurrent_activities=1,
                      workflow_runner=UnsandboxedWorkflowRunner()):
        await asyncio.gather(*(h.result() for h in handles))
    assert len(ran) == 13 and ran.index("b") <= 6, ran
