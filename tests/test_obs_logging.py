"""Structured JSON logs: activity and workflow lines carry the workflow id, the
mission and the trace id of the span they were logged in."""
from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

from stratmaster.logging import JsonFormatter, bind_context
from stratmaster.search_attributes import for_mission
from stratmaster.telemetry import interceptors


class Job(BaseModel):
    mission: str
    text: str


@activity.defn(name="obs_log_activity")
async def log_activity(job: Job) -> str:
    activity.logger.info("activity working", extra={"chars": len(job.text)})
    return job.text.upper()


@workflow.defn(name="ObsLogWorkflow", sandboxed=False)
class LogWorkflow:
    @workflow.run
    async def run(self, job: Job) -> str:
        workflow.logger.info("workflow started")
        return await workflow.execute_activity(log_activity, job, start_to_close_timeout=timedelta(seconds=10),
                                               retry_policy=RetryPolicy(maximum_attempts=1))


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record):
        self.lines.append(json.loads(self.format(record)))


async def test_activity_and_workflow_logs_carry_workflow_mission_and_trace(client, task_queue):
    provider = TracerProvider()
    cfg = client.config()
    cfg["interceptors"] = interceptors(provider)
    traced = Client(**cfg)
    cap = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(cap)
    root.setLevel(logging.INFO)
    wf_id = f"obs-log-{uuid.uuid4().hex[:8]}"
    try:
        async with Worker(traced, task_queue=task_queue, workflows=[LogWorkflow], activities=[log_activity]):
            with provider.get_tracer("test").start_as_current_span("caller") as caller:
                out = await traced.execute_workflow(LogWorkflow.run, Job(mission="logdemo", text="abc"), id=wf_id,
                                                    task_queue=task_queue, search_attributes=for_mission("logdemo"))
                trace_id = format(caller.get_span_context().trace_id, "032x")
    finally:
        root.removeHandler(cap)
        root.setLevel(old_level)
    assert out == "ABC"
    act = next(line for line in cap.lines if line["msg"].startswith("activity working"))
    assert act["workflow_id"] == wf_id and act["activity_type"] == "obs_log_activity"
    assert act["mission"] == "logdemo" and act["chars"] == 3
    assert act["trace_id"] == trace_id
    wf = next(line for line in cap.lines if line["msg"].startswith("workflow started"))
    assert wf["workflow_id"] == wf_id and wf["workflow_type"] == "ObsLogWorkflow"
    assert wf["mission"] == "logdemo"  # from the Mission search attribute


def test_formatter_fields_and_bound_context():
    fmt = JsonFormatter()
    rec = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello %s", ("there",), None)
    rec.queue = "research-tasks"
    with bind_context(mission="m1", request_id=None):
        out = json.loads(fmt.format(rec))
    assert out["msg"] == "hello there" and out["level"] == "warning" and out["queue"] == "research-tasks"
    assert out["mission"] == "m1" and "request_id" not in out and "trace_id" not in out
    assert "mission" not in json.loads(fmt.format(rec))  # unbound after the block
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("s") as span:
        out = json.loads(fmt.format(rec))
    assert out["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert trace.get_current_span().get_span_context().is_valid is False
