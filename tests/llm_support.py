"""Fixtures for the LLM tests: the real local llama.cpp server started by
scripts/services/llm.sh (skipped locally when it is not running, a failure under CI=true)."""
from __future__ import annotations

import os

import pytest

from stratmaster.settings import Settings


def require_env(var: str, what: str) -> str:
    value = os.environ.get(var)
    if not value:
        msg = f"{var} is unset: {what}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " (required under CI=true)")
        pytest.skip(msg)
    return value


@pytest.fixture(scope="session")
def llm_settings(settings) -> Settings:
    api_base = require_env("STRATMASTER_TEST_LLM_API_BASE", "source scripts/services/llm.sh to start the local LLM")
    model = os.environ.get("STRATMASTER_TEST_LLM_MODEL", "openai/smollm2")
    return settings.model_copy(update={"llm_model": model, "llm_api_base": api_base})
