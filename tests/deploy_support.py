"""Deployment-check helpers: locate the cached deploy tools (built by
scripts/services/deploytools.sh); skip locally when absent, fail under CI=true."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def missing_tools(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required under CI=true: scripts/test.sh sources scripts/services/deploytools.sh)")
    pytest.skip(reason)


def tool(env_var: str, pattern: str) -> str:
    """A deploy tool from the environment (deploytools.sh exports it) or the build cache."""
    path = os.environ.get(env_var)
    if path and Path(path).is_file():
        return path
    cached = sorted((Path.home() / ".cache/stratmaster/bin").glob(pattern))
    cached = [p for p in cached if os.access(p, os.X_OK) and not p.name.endswith((".log", ".part"))]
    if not cached:
        missing_tools(f"{env_var} unset and no cached {pattern}")
    return str(cached[-1])
