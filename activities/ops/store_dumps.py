"""Dump/load of one mission's vector, full-text and graph data through the
stores' export/import hooks (`dump(mission)` / `load(mission, data)`).

A hook may return bytes (an opaque snapshot, stored as is) or records
(dicts or pydantic models; stored as JSON lines). Load gets back the same
form. The stores own the record shape; this module only moves it.
"""
from __future__ import annotations

import inspect
import json
from typing import Any

from pydantic import BaseModel

from stratmaster.errors import bad_input


def _jsonable(record: Any) -> Any:
    if isinstance(record, BaseModel):
        return record.model_dump(mode="json")
    return record


async def dump(store: Any, mission: str, heartbeat=lambda *_: None) -> tuple[bytes, str, int]:
    """(payload, format 'jsonl'|'raw', records)."""
    hook = getattr(store, "dump", None)
    if hook is None:
        raise bad_input(f"{type(store).__name__} has no dump(mission) hook: cannot back it up")
    result = hook(mission)
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, (bytes, bytearray)):
        return bytes(result), "raw", 0
    lines: list[str] = []
    if hasattr(result, "__aiter__"):
        async for rec in result:
            lines.append(json.dumps(_jsonable(rec), sort_keys=True, separators=(",", ":")))
            if len(lines) % 500 == 0:
                heartbeat(len(lines))
    else:
        for rec in result:
            lines.append(json.dumps(_jsonable(rec), sort_keys=True, separators=(",", ":")))
            if len(lines) % 500 == 0:
                heartbeat(len(lines))
    return ("\n".join(lines) + ("\n" if lines else "")).encode(), "jsonl", len(lines)


async def load(store: Any, mission: str, payload: bytes, fmt: str) -> int:
    hook = getattr(store, "load", None)
    if hook is None:
        raise bad_input(f"{type(store).__name__} has no load(mission, data) hook: cannot restore it")
    if fmt == "raw":
        data: Any = payload
        n = 0
    else:
        data = [json.loads(line) for line in payload.decode().splitlines() if line.strip()]
        n = len(data)
    result = hook(mission, data)
    if inspect.isawaitable(result):
        await result
    return n
