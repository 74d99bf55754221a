"""The one heartbeat helper (as samples-python's custom_decorator/activity_utils.py).

`keep_alive` heartbeats in the background while a long step runs (a COPY, a store dump,
an LLM call, CPU work in a thread), so an activity's heartbeat timeout only fires for a dead
worker; `heartbeat` records progress from a loop. Both are no-ops outside an activity and in
local activities (which cannot heartbeat), so the domain code they wrap stays callable from
tests, benchmarks and local activities.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from temporalio import activity

T = TypeVar("T")

HEARTBEAT_EVERY_S = 10.0


def _beats() -> bool:
    return activity.in_activity() and not activity.info().is_local


def heartbeat(*details: Any) -> None:
    """Heartbeat with `details` when running as a (non-local) activity."""
    if _beats():
        activity.heartbeat(*details)


@asynccontextmanager
async def keep_alive(details: Any = None, every: float | None = None):
    """Heartbeat every `every` seconds (default: a third of the activity's heartbeat timeout,
    at most HEARTBEAT_EVERY_S) until the block exits. `details` may be a callable returning the
    current details (progress that changes while the block runs)."""
    if not _beats():
        yield
        return
    if every is None:
        timeout = activity.info().heartbeat_timeout
        every = min(HEARTBEAT_EVERY_S, timeout.total_seconds() / 3) if timeout else HEARTBEAT_EVERY_S

    async def beat() -> None:
        while True:  # the first beat after `every`: a fast call costs nothing
            await asyncio.sleep(every)
            current = details() if callable(details) else details
            activity.heartbeat(*(() if current is None else (current,)))

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def heartbeating(awaitable: Awaitable[T], details: Any = None) -> T:
    """Await `awaitable` (a slow LLM call, a retriever) while heartbeating."""
    async with keep_alive(details):
        return await awaitable


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run CPU-bound work (embedding, clustering) in a thread, heartbeating from the event loop."""
    async with keep_alive():
        return await asyncio.to_thread(fn, *args)
