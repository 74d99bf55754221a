"""LLM calls through LiteLLM to the real local llama.cpp server, accounted per
mission in PostgreSQL (idempotent per call), traced to Langfuse when keys are set;
the LiteLLM router config drives the same server."""
from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
import yaml
from pydantic import SecretStr
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.llm.usage import langfuse_client, mission_usage, record_usage, trace_generation
from activities.stores.tenants import ensure_tenant
from stratmaster.contracts.llm_usage import LlmCall
from tests.llm_support import llm_settings  # noqa: F401  (fixture)

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "user", "content": "Reply with one word: hello"}]


@pytest.fixture
async def pool(postgres):
    p = await asyncpg.create_pool(postgres.dsn, min_size=1, max_size=2)
    yield p
    await p.close()


def _mission(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# A tiny workflow+activity pair so usage is recorded from inside a real activity
# (workflow id and attempt come from activity.info()).
_ACTIVITY_SETTINGS = {}


@activity.defn(name="test_llm_complete")
async def llm_complete_activity(mission: str) -> str:
    from activities.llm.client import complete

    return await complete(_ACTIVITY_SETTINGS["s"], MESSAGES, mission, max_tokens=4, purpose="test")


@workflow.defn(sandboxed=False)
class LlmCallWorkflow:
    @workflow.run
    async def run(self, mission: str) -> str:
        return await workflow.execute_activity(
            llm_complete_activity, mission, start_to_close_timeout=timedelta(seconds=120),
            retry_policy=RetryPolicy(maximum_attempts=1))


async def test_completion_through_local_llm_is_accounted_per_mission(llm_settings, client, pool, task_queue):
    a, b = _mission("llm_a"), _mission("llm_b")
    await ensure_tenant(pool, a)
    await ensure_tenant(pool, b)
    _ACTIVITY_SETTINGS["s"] = llm_settings
    wf_id = f"llm-usage-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, workflows=[LlmCallWorkflow], activities=[llm_complete_activity],
                      activity_executor=ThreadPoolExecutor(2)):
        text = await client.execute_workflow(LlmCallWorkflow.run, a, id=wf_id, task_queue=task_queue)
    assert isinstance(text, str) and text.strip()

    usage = await mission_usage(pool, a)
    assert usage.calls == 1 and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.by_model[0].model == llm_settings.llm_model
    assert usage.cost_usd == 0.0  # local model: no price
    row = await pool.fetchrow("SELECT workflow_id, purpose, mission FROM llm_usage WHERE mission = $1", a)
    assert (row["workflow_id"], row["purpose"], row["mission"]) == (wf_id, "test", a)
    # mission isolation: b spent nothing
    assert (await mission_usage(pool, b)).calls == 0


async def test_record_usage_is_idempotent_per_call_key(pool, postgres):
    m = _mission("llm_idem")
    await ensure_tenant(pool, m)
    call = LlmCall(mission=m, model="openai/x", prompt_tokens=10, completion_tokens=5, cost_usd=0.25,
                   workflow_id="wf", call_key=uuid.uuid4().hex)
    assert await record_usage(pool, call) is True
    assert await record_usage(postgres.dsn, call) is False  # same key, via a plain DSN
    other = call.model_copy(update={"call_key": uuid.uuid4().hex, "model": "openai/y", "prompt_tokens": 1})
    assert await record_usage(pool, other) is True
    usage = await mission_usage(pool, m)
    assert (usage.calls, usage.prompt_tokens, usage.completion_tokens) == (2, 11, 10)
    assert usage.cost_usd == pytest.approx(0.5)
    assert [x.model for x in usage.by_model] == ["openai/x", "openai/y"]


async def test_usage_of_unknown_mission_is_bad_input(pool):
    with pytest.raises(ApplicationError) as err:
        await mission_usage(pool, "no_such_mission_xyz")
    assert err.value.non_retryable


def test_langfuse_generation_only_with_keys(settings):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    assert langfuse_client(settings) is None  # no keys: no Langfuse at all
    exporter = InMemorySpanExporter()
    keyed = settings.model_copy(update={"langfuse_public_key": "pk-test", "langfuse_secret_key": SecretStr("sk-test"),
                                        "langfuse_host": "http://127.0.0.1:9"})
    client = langfuse_client(keyed, span_exporter=exporter)
    call = LlmCall(mission="demo", model="openai/smollm2", prompt_tokens=7, completion_tokens=3,
                   workflow_id="wf-1", purpose="synthesis", call_key="k1")
    trace_generation(client, call, MESSAGES, "hello")
    client.flush()
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["synthesis"]
    attrs = dict(spans[0].attributes)
    assert attrs["langfuse.observation.type"] == "generation"
    assert attrs["langfuse.observation.model.name"] == "openai/smollm2"
    assert '"input": 7' in attrs["langfuse.observation.usage_details"]
    assert "demo" in str(attrs)


def test_router_config_routes_to_local_server(llm_settings):
    """infra/litellm/config.yaml as a LiteLLM Router: the primary deployment answers
    from the local llama.cpp server; LiteLLM itself never retries."""
    from litellm import Router

    cfg = yaml.safe_load((ROOT / "infra/litellm/config.yaml").read_text())
    assert cfg["router_settings"]["num_retries"] == 0 and cfg["litellm_settings"]["num_retries"] == 0
    assert all(m["litellm_params"].get("num_retries") == 0 for m in cfg["model_list"])
    assert cfg["model_list"][0]["model_name"] == "stratmaster-default"
    assert cfg["router_settings"]["fallbacks"][0]["stratmaster-default"]
    os.environ["LLAMA_CPP_API_BASE"] = llm_settings.llm_api_base
    rs = cfg["router_settings"]
    router = Router(model_list=cfg["model_list"], num_retries=rs["num_retries"], fallbacks=rs["fallbacks"],
                    routing_strategy=rs["routing_strategy"], timeout=rs["timeout"])
    resp = router.completion(model="stratmaster-default", messages=MESSAGES, max_tokens=4)
    assert resp.choices[0].message.content is not None
    assert resp.usage.completion_tokens > 0
