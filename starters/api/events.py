"""Server-Sent Events of a running workflow: its progress query polled every
EVENTS_POLL_SECONDS, only changes emitted, a `result` event at the end (the final
result, or the failure), comment heartbeats while nothing changes (proxies keep the
connection), and the polling stops as soon as the client disconnects.

Each progress query is work for Temporal and for a worker, so a mission's open streams share a
budget of queries a second (`api_mission_stream_queries_per_s`, per API replica): with many
streams open, each polls less often. The result never waits for a poll: it comes from a long
poll on the workflow's close.

Wire format (text/event-stream): `event: <name>`, `id: <n>` (1, 2, ... per stream),
`data: <one line of JSON>`. Every stream starts with a `status` event and ends with
`status` (the closed status) then `result`, or with an `error` event (Temporal unavailable, or
the caller's token expired)."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, AsyncIterator, Awaitable, Callable

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from starlette.responses import StreamingResponse
from temporalio.client import WorkflowHandle

from starters.api.temporal_ops import QUERY_RPC_TIMEOUT, outcome_when_closed, status_name

log = logging.getLogger("stratmaster.api")

EVENTS_POLL_SECONDS = 0.5
EVENTS_HEARTBEAT_SECONDS = 15.0
HEARTBEAT = b": keep-alive\n\n"

# (state kept between polls, the progress query's answer) -> events to emit
Differ = Callable[[dict, Any], list[tuple[str, Any]]]
# (handle, closed description, its outcome as fetched by the wait: {"result"} or {"error"}, None when
# the wait failed) -> the `result` event's data
Outcome = Callable[[WorkflowHandle, Any, dict | None], Awaitable[dict]]


class EventStream(StreamingResponse):
    media_type = "text/event-stream"

    def __init__(self, content, status_code: int = 200, headers=None, media_type=None, background=None):
        super().__init__(content, status_code=status_code, headers=headers, media_type=media_type,
                         background=background)
        self.headers["Cache-Control"] = "no-cache"
        self.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream


def event_stream_responses(description: str, events: tuple[str, ...]) -> dict:
    """`responses=` entry declaring the 200 as text/event-stream; the schema describes
    one event (OpenAPI before 3.2: `schema` of an event stream is per event)."""
    return {200: {"description": description, "content": {"text/event-stream": {"schema": {
        "type": "object", "required": ["event", "id", "data"],
        "description": "one Server-Sent Event (`event:`, `id:`, `data:` lines); `: keep-alive` comment lines "
                       "come between events while nothing changes",
        "properties": {"event": {"type": "string", "enum": [*events, "error"]},
                       "id": {"type": "string", "pattern": "^[0-9]+$", "description": "1, 2, ... per stream"},
                       "data": {"type": "string", "contentMediaType": "application/json",
                                "description": "one line of JSON"}}}}}}}


def sse_frame(event: str, data: Any, event_id: int) -> bytes:
    payload = json.dumps(jsonable_encoder(data), separators=(",", ":"), ensure_ascii=False)  # one line
    return f"event: {event}\nid: {event_id}\ndata: {payload}\n\n".encode()


async def _closed(handle: WorkflowHandle, outcome: Outcome, root: bool, known: Any = None) -> tuple[str, dict]:
    """Wait for the close with one history long poll (it follows continue-as-new) and build the
    result from that same answer; `known`: the description, when the workflow was closed already."""
    fetched = await outcome_when_closed(handle, root=root)
    desc = known if known is not None else await handle.describe()
    return status_name(desc.status), await outcome(handle, desc, fetched)


def poll_interval(state, mission: str) -> float:
    """Seconds between progress queries of one stream of `mission`, its streams sharing the budget."""
    poll = getattr(state, "events_poll_seconds", EVENTS_POLL_SECONDS)
    budget = getattr(getattr(state, "settings", None), "api_mission_stream_queries_per_s", 0) or 0
    open_here = getattr(state, "streams_by_mission", {}).get(mission, 1)
    return max(poll, open_here / budget) if budget > 0 else poll


async def workflow_events(request: Request, handle: WorkflowHandle, *, opening: dict, query: str,
                          differ: Differ, outcome: Outcome, mission: str, root: bool = True,
                          closed_desc: Any = None, until: float | None = None) -> AsyncIterator[bytes]:
    """`until`: the caller's token expiry (epoch seconds); the stream ends with an `error` event
    `token_expired` there, so an expired grant does not keep reading (reconnect with a
    fresh token: the stream starts over with the current state, and the roles are checked again)."""
    state = request.app.state
    heartbeat = getattr(state, "events_heartbeat_seconds", EVENTS_HEARTBEAT_SECONDS)
    seq = 0
    if not hasattr(state, "streams_by_mission"):
        state.streams_by_mission = {}
    streams = state.streams_by_mission

    def frame(event: str, data: Any) -> bytes:
        nonlocal seq
        seq += 1
        return sse_frame(event, data, seq)

    yield frame("status", opening)
    last_sent = time.monotonic()
    closed = asyncio.ensure_future(_closed(handle, outcome, root, closed_desc))
    seen: dict = {}
    streams[mission] = streams.get(mission, 0) + 1
    # a workflow closed already has nothing to poll: a query of it would make a worker replay its
    # whole history, only to be told what the result says anyway
    polling = closed_desc is None and opening.get("status") == "running"
    try:
        while polling and not closed.done():
            if await request.is_disconnected():
                return
            if until is not None and time.time() >= until:
                yield frame("error", {"error": "token_expired",
                                      "detail": "the access token expired; reconnect with a new one"})
                return
            try:
                progress, error = await handle.query(query, rpc_timeout=QUERY_RPC_TIMEOUT), None
            except Exception as exc:  # no worker polling the queue: say so once, keep waiting
                progress, error = None, f"{query} query failed: {type(exc).__name__}"
            if closed.done():
                break  # the result says it all
            frames = differ(seen, progress) if progress is not None else []
            if error != seen.get("_error"):
                seen["_error"] = error
                if error:
                    frames.append(("status", {"status": "running", "progress_error": error}))
            for event, data in frames:
                yield frame(event, data)
                last_sent = time.monotonic()
            if time.monotonic() - last_sent >= heartbeat:
                yield HEARTBEAT
                last_sent = time.monotonic()
            await asyncio.wait({closed}, timeout=poll_interval(state, mission))
        if until is not None and time.time() >= until:  # it closed during the last wait: still not after expiry
            yield frame("error", {"error": "token_expired",
                                  "detail": "the access token expired; reconnect with a new one"})
            return
        try:
            status, body = await closed
        except Exception as exc:  # Temporal went away mid-stream: end with an error event
            log.error("event stream ended without a result", extra={"error": f"{type(exc).__name__}: {exc}"})
            yield frame("error", {"error": "unavailable", "detail": "Temporal is unavailable; try again later"})
            return
        yield frame("status", {"status": status})
        yield frame("result", body)
    finally:
        closed.cancel()
        left = streams.get(mission, 1) - 1
        if left > 0:
            streams[mission] = left
        else:
            streams.pop(mission, None)


def changed(seen: dict, key: str, value: Any) -> bool:
    """True (and remembered) when `value` differs from the last one seen under `key`."""
    if key in seen and seen[key] == value:
        return False
    seen[key] = value
    return True
