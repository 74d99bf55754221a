"""Structured JSON logs carrying workflow id, mission and trace id when known."""
from __future__ import annotations

import json
import logging
import sys
import time

from opentelemetry import trace

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
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
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "urllib3", "LiteLLM", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
