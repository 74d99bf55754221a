"""Structured JSON logs carrying workflow id, mission and trace id when known."""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from typing import Any, Iterator

from opentelemetry import trace
from temporalio import client as temporal_client
from temporalio import worker as temporal_worker

from stratmaster.errors import redact

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

# Fields bound for the current task / thread (e.g. the mission an activity works
# for); every log line emitted meanwhile carries them.
_bound: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("stratmaster_log_context", default={})


@contextlib.contextmanager
def bind_context(**fields: Any) -> Iterator[None]:
    token = _bound.set({**_bound.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


def mission_of(arg: Any) -> str | None:
    """The mission of a workflow/activity input (pydantic model or plain dict)."""
    value = arg.get("mission") if isinstance(arg, dict) else getattr(arg, "mission", None)
    return value if isinstance(value, str) else None


def _workflow_mission() -> str | None:
    """Inside a workflow: its Mission search attribute (set by the starter)."""
    try:
        from temporalio import workflow

        from stratmaster.search_attributes import MISSION_SA

        if workflow.in_workflow():
            return workflow.info().typed_search_attributes.get(MISSION_SA)
    except Exception:
        return None
    return None


class MissionLogInterceptor(temporal_client.Interceptor, temporal_worker.Interceptor):
    """Binds the activity input's mission to the log context (and tags the
    current span), so activity logs say which mission they are about."""

    def intercept_activity(self, next: temporal_worker.ActivityInboundInterceptor) -> temporal_worker.ActivityInboundInterceptor:
        return _MissionActivityInbound(next)


class _MissionActivityInbound(temporal_worker.ActivityInboundInterceptor):
    async def execute_activity(self, input: temporal_worker.ExecuteActivityInput) -> Any:
        mission = mission_of(input.args[0]) if input.args else None
        if mission:
            trace.get_current_span().set_attribute("stratmaster.mission", mission)
        with bind_context(mission=mission):
            return await super().execute_activity(input)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        # Temporal's workflow/activity loggers attach these dicts.
        for key in ("temporal_workflow", "temporal_activity"):
            info = getattr(record, key, None)
            if isinstance(info, dict):
                out["workflow_id"] = info.get("workflow_id")
                out["run_id"] = info.get("run_id")
                if key == "temporal_activity":
                    out["activity_type"] = info.get("activity_type")
                else:
                    out["workflow_type"] = info.get("workflow_type")
        for key, value in _bound.get().items():
            out.setdefault(key, value)
        if "mission" not in out and "temporal_workflow" in vars(record):
            mission = _workflow_mission()
            if mission:
                out["mission"] = mission
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            out["trace_id"] = format(ctx.trace_id, "032x")
        for key, value in vars(record).items():
            if key not in _STD and key not in out and not key.startswith("temporal_") and not key.startswith("_"):
                try:
                    json.dumps(value)
                    out[key] = value
                except TypeError:
                    out[key] = repr(value)
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "urllib3", "LiteLLM", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
