"""LLM token usage and cost per mission (llm_usage table), and Langfuse
generations when Langfuse keys are configured.

`activities.llm.client.complete` calls `record_completion` after every LiteLLM call, so
every LLM call made by any activity is accounted to its mission and workflow.
Recording is best-effort: accounting trouble is logged, never fails research.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from datetime import datetime
from typing import Any

import asyncpg
from temporalio import activity

from activities.resources import ActivityResources
from activities.stores.tenants import require_mission
from stratmaster.contracts.llm_usage import LlmCall, LlmUsageQuery, LlmUsageSummary, ModelUsage
from stratmaster.errors import UNKNOWN_MISSION, bad_input
from stratmaster.settings import Settings

log = logging.getLogger("stratmaster.llm_usage")

_INSERT = """
INSERT INTO llm_usage (tenant_id, mission, workflow_id, model, purpose, prompt_tokens, completion_tokens, cost_usd, call_key)
VALUES ((SELECT id FROM tenants WHERE name = $1), $1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (call_key) DO NOTHING
"""


def usage_from_response(response: Any) -> tuple[int, int, float]:
    """(prompt_tokens, completion_tokens, cost_usd) of a LiteLLM response; cost is
    LiteLLM's price table, 0 for models it has no price for (local models)."""
    usage = getattr(response, "usage", None)
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    cost = 0.0
    try:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-table download
        import litellm

        cost = float(litellm.completion_cost(completion_response=response) or 0.0)
    except Exception:  # unknown model: no price
        cost = 0.0
    return prompt, completion, max(cost, 0.0)


def call_key(response: Any, workflow_id: str | None) -> str:
    """Stable per LLM call: activity attempt + the server's completion id."""
    parts = [workflow_id or ""]
    if activity.in_activity():
        info = activity.info()
        parts += [info.workflow_run_id or "", info.activity_id, str(info.attempt)]
    parts.append(str(getattr(response, "id", None) or uuid.uuid4()))
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def current_workflow_id(explicit: str | None = None) -> str | None:
    if explicit:
        return explicit
    return activity.info().workflow_id if activity.in_activity() else None


async def record_usage(target: asyncpg.Pool | asyncpg.Connection | str, call: LlmCall) -> bool:
    """Insert one usage row; False when this call_key was already recorded."""
    args = (call.mission, call.workflow_id, call.model, call.purpose, call.prompt_tokens,
            call.completion_tokens, call.cost_usd, call.call_key)
    if isinstance(target, str):
        conn = await asyncpg.connect(target, timeout=10)
        try:
            status = await conn.execute(_INSERT, *args)
        finally:
            await conn.close()
    else:
        status = await target.execute(_INSERT, *args)
    return status.endswith(" 1")


async def mission_usage(pool: asyncpg.Pool | asyncpg.Connection, mission: str,
                        since: datetime | None = None, *, active_only: bool = True) -> LlmUsageSummary:
    """Totals for one mission (by tenant id: rows of other missions never count).
    active_only=False also answers for a deactivated mission (its usage is history)."""
    if active_only:
        tenant_id = await require_mission(pool, mission)
    else:
        tenant_id = await pool.fetchval("SELECT id FROM tenants WHERE name = $1", mission)
        if tenant_id is None:
            raise bad_input(f"unknown mission {mission!r}", UNKNOWN_MISSION)
    rows = await pool.fetch(
        """SELECT model, COUNT(*) AS calls, SUM(prompt_tokens) AS p, SUM(completion_tokens) AS c, SUM(cost_usd) AS cost
           FROM llm_usage WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR at >= $2)
           GROUP BY model ORDER BY model""",
        tenant_id, since,
    )
    by_model = [ModelUsage(model=r["model"], calls=r["calls"], prompt_tokens=r["p"], completion_tokens=r["c"],
                           cost_usd=float(r["cost"])) for r in rows]
    return LlmUsageSummary(
        mission=mission, calls=sum(m.calls for m in by_model),
        prompt_tokens=sum(m.prompt_tokens for m in by_model),
        completion_tokens=sum(m.completion_tokens for m in by_model),
        cost_usd=sum(m.cost_usd for m in by_model), by_model=by_model,
    )


# --- Langfuse -----------------------------------------------------------------

_langfuse_lock = threading.Lock()
_langfuse_clients: dict[tuple, Any] = {}


def langfuse_client(settings: Settings, span_exporter: Any = None):
    """A Langfuse client when both keys are set, else None. It gets its own
    tracer provider so our OTel spans are not shipped to Langfuse (and vice versa)."""
    if not (settings.langfuse_public_key and settings.langfuse_secret_key):
        return None
    key = (settings.langfuse_public_key, settings.langfuse_host, id(span_exporter))
    with _langfuse_lock:
        if key not in _langfuse_clients:
            from langfuse import Langfuse
            from opentelemetry.sdk.trace import TracerProvider

            kwargs: dict[str, Any] = dict(
                public_key=settings.langfuse_public_key,
                secret_key=settings.langfuse_secret_key.get_secret_value(),
                tracer_provider=TracerProvider(),
            )
            if settings.langfuse_host:
                kwargs["host"] = settings.langfuse_host
            if span_exporter is not None:
                kwargs["span_exporter"] = span_exporter
            _langfuse_clients[key] = Langfuse(**kwargs)
        return _langfuse_clients[key]


def trace_generation(client: Any, call: LlmCall, messages: list[dict[str, str]], output: str) -> None:
    gen = client.start_observation(
        name=call.purpose or "llm.complete", as_type="generation", model=call.model, input=messages, output=output,
        usage_details={"input": call.prompt_tokens, "output": call.completion_tokens},
        cost_details={"total": call.cost_usd},
        metadata={"mission": call.mission, "workflow_id": call.workflow_id or "", "call_key": call.call_key},
    )
    gen.end()


# --- the hook activities/llm/client.py calls ---------------------------------------------

async def record_completion(settings: Settings, *, mission: str, model: str, messages: list[dict[str, str]],
                            response: Any, workflow_id: str | None = None, purpose: str = "",
                            pool: asyncpg.Pool | None = None) -> LlmCall | None:
    """Account one LiteLLM completion to its mission (Postgres) and, when keys are
    set, to Langfuse. Never raises: a failed write is logged."""
    try:
        prompt, completion, cost = usage_from_response(response)
        wf = current_workflow_id(workflow_id)
        call = LlmCall(mission=mission, model=model, prompt_tokens=prompt, completion_tokens=completion,
                       cost_usd=cost, workflow_id=wf, purpose=purpose, call_key=call_key(response, wf))
    except Exception as exc:
        log.warning("llm usage not recorded: %s", exc, extra={"mission": mission})
        return None
    try:
        await record_usage(pool or settings.database_url, call)
    except Exception as exc:
        log.warning("llm usage not recorded: %s: %s", type(exc).__name__, exc, extra={"mission": mission})
    try:
        client = langfuse_client(settings)
        if client is not None:
            text = response.choices[0].message.content or ""
            trace_generation(client, call, messages, text)
    except Exception as exc:
        log.warning("langfuse trace failed: %s: %s", type(exc).__name__, exc, extra={"mission": mission})
    return call


class LlmUsageActivities(ActivityResources):
    """Read side: usage totals per mission (for the API / CLI via a workflow)."""

    @activity.defn(name="llm_usage_summary")
    async def usage_summary(self, req: LlmUsageQuery) -> LlmUsageSummary:
        """LlmUsageWorkflow's read (workflows/llm_usage.py): any mission that exists,
        deactivated ones included."""
        return await mission_usage(await self.pool(), req.mission, req.since, active_only=False)
