"""The one entry point to LLMs: `complete(settings, messages, mission, ...)` through LiteLLM.

Only activities call it. Token usage / cost recording and Langfuse tracing hook in
here (one place), keyed by mission and workflow id.
"""
from __future__ import annotations

from typing import Any

from stratmaster.errors import ServiceUnavailable
from stratmaster.settings import Settings


class LLMNotConfigured(RuntimeError):
    pass


class LLMFailed(RuntimeError):
    """The model answered with an error (bad request, context window exceeded, ...)."""


def configured(settings: Settings) -> bool:
    return bool(settings.llm_model)


def json_schema_enabled(settings: Settings, model: str | None = None) -> bool:
    """Send `response_format` (grammar-constrained JSON) to this model? Explicit
    STRATMASTER_LLM_JSON_SCHEMA wins; by default only for `openai/` models on a custom
    api_base (llama.cpp / llama-cpp-python servers accept {"type": "json_object",
    "schema": ...}); hosted providers differ in what they accept, so they get none."""
    if settings.llm_json_schema is not None:
        return settings.llm_json_schema
    model = model or settings.llm_model
    return bool(model and model.startswith("openai/") and settings.llm_api_base)


def response_format(settings: Settings, schema: dict[str, Any] | None, model: str | None = None) -> dict[str, Any] | None:
    """llama-cpp-python's server only knows type "json_object" (with an optional
    "schema", compiled to a GBNF grammar); "json_schema" would be a 422 there."""
    if schema is None or not json_schema_enabled(settings, model):
        return None
    return {"type": "json_object", "schema": schema}


async def complete(
    settings: Settings,
    messages: list[dict[str, str]],
    mission: str,
    *,
    temperature: float = 0.0,
    max_tokens: int = 800,
    timeout: float = 120.0,
    workflow_id: str | None = None,
    purpose: str = "",
    schema: dict[str, Any] | None = None,
    model: str | None = None,
    pool: Any = None,
    **extra: Any,
) -> str:
    """Chat completion text for `messages` with `model` (the mission's routing for the
    task) or else settings.llm_model (LiteLLM model names).

    `schema` (a JSON schema) constrains the answer where the server supports it
    (see json_schema_enabled); callers must still validate the text. `pool`: the worker's
    PostgreSQL pool, for the usage row (without one, a connection is opened for it)."""
    if not settings.llm_model:
        raise LLMNotConfigured("no LLM configured (STRATMASTER_LLM_MODEL is unset)")
    import os

    # LiteLLM fetches its price table from GitHub on import unless told not to: nothing downloads at run time.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True  # no "Provider List" banners for models without a price entry
    model = model or settings.llm_model
    kwargs: dict[str, Any] = dict(
        model=model, messages=messages, temperature=temperature, max_tokens=max_tokens,
        timeout=timeout, num_retries=0,
    )
    if settings.llm_api_base:
        kwargs["api_base"] = settings.llm_api_base
    if settings.llm_api_key:
        kwargs["api_key"] = settings.llm_api_key.get_secret_value()
    elif settings.llm_api_base:
        kwargs["api_key"] = "local"  # OpenAI-compatible local servers ignore it, LiteLLM wants one
    fmt = response_format(settings, schema, model)
    if fmt is not None:
        kwargs["response_format"] = fmt  # LiteLLM passes it through to openai-compatible servers
    kwargs.update(extra)
    try:
        response = await litellm.acompletion(**kwargs)
    except (litellm.exceptions.APIConnectionError, litellm.exceptions.Timeout,
            litellm.exceptions.ServiceUnavailableError, litellm.exceptions.InternalServerError) as exc:
        # (a server that dropped the connection surfaces as InternalServerError: the caller's
        # fallback, not a failed research, is the answer to an unreachable model)
        raise ServiceUnavailable(f"LLM {model} unreachable at {settings.llm_api_base}: {exc}") from exc
    except (litellm.exceptions.BadRequestError, litellm.exceptions.APIError) as exc:
        raise LLMFailed(f"LLM {model} failed: {exc}") from exc
    # token usage + cost per mission (Postgres), Langfuse generation when keys are set
    from activities.llm.usage import record_completion

    await record_completion(settings, mission=mission, model=model, messages=messages,
                            response=response, workflow_id=workflow_id, purpose=purpose, pool=pool)
    return response.choices[0].message.content or ""
