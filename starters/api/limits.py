"""Fair use of the API, per principal and per mission: requests that start work (research,
ingestion) draw from token buckets, and event streams are capped. A flood from one caller or one
mission gets 429 with Retry-After; other missions' requests never queue behind it.

In-process: each API replica enforces its own buckets (the local stack runs one). Several replicas
share nothing yet, so a caller spread over N replicas gets N times the rate; the worker side's
fairness (task-queue fairness keys, stratmaster/priorities.py) holds whatever the API lets through."""
from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Iterator

from starters.api.errors import ApiError


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One bucket per key: `capacity` requests at once, refilled at `per_minute` a minute."""

    MAX_KEYS = 100_000  # idle full buckets are dropped past this (a bucket at capacity holds no state)

    def __init__(self, per_minute: float, capacity: float, clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.capacity = capacity
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _refilled(self, key: str, now: float) -> _Bucket:
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.MAX_KEYS:
                self._buckets = {k: v for k, v in self._buckets.items()
                                 if v.tokens + (now - v.updated) * self.rate < self.capacity}
            b = self._buckets[key] = _Bucket(self.capacity, now)
        else:
            b.tokens = min(self.capacity, b.tokens + (now - b.updated) * self.rate)
            b.updated = now
        return b

    def wait_for(self, key: str) -> float:
        """Seconds until `key` may spend a token (0: now)."""
        b = self._refilled(key, self.clock())
        return 0.0 if b.tokens >= 1 else (1 - b.tokens) / self.rate if self.rate > 0 else math.inf

    def spend(self, key: str) -> None:
        self._refilled(key, self.clock()).tokens -= 1


class Limits:
    def __init__(self, *, per_principal_per_minute: float, per_mission_per_minute: float, burst: float,
                 streams_per_principal: int, streams_per_mission: int, clock: Callable[[], float] = time.monotonic):
        self.principals = TokenBuckets(per_principal_per_minute, burst, clock)
        self.missions = TokenBuckets(per_mission_per_minute, burst * 2, clock)
        self.streams_per_principal = streams_per_principal
        self.streams_per_mission = streams_per_mission
        self._streams: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, s) -> "Limits":
        return cls(per_principal_per_minute=s.api_starts_per_minute, per_mission_per_minute=s.api_mission_starts_per_minute,
                   burst=s.api_starts_burst, streams_per_principal=s.api_streams_per_principal,
                   streams_per_mission=s.api_streams_per_mission)

    def charge(self, actor: str, mission: str) -> None:
        """One request that starts work, for `actor` in `mission`: 429 when either bucket is empty
        (nothing is spent then, so a refused request costs the caller nothing but the wait)."""
        with self._lock:
            own, shared = self.principals.wait_for(actor), self.missions.wait_for(mission)
            if own > 0 or shared > 0:
                who = "your" if own > 0 else f"mission {mission!r}'s"
                raise too_many(f"{who} rate of requests that start work is used up", max(own, shared))
            self.principals.spend(actor)
            self.missions.spend(mission)

    @contextlib.contextmanager
    def stream(self, actor: str, mission: str) -> Iterator[None]:
        """Hold one event-stream slot of `actor` and of `mission` while the stream runs."""
        keys = (f"p:{actor}", f"m:{mission}")
        with self._lock:
            if self._streams.get(keys[0], 0) >= self.streams_per_principal:
                raise too_many(f"you have {self.streams_per_principal} event streams open already", 5)
            if self._streams.get(keys[1], 0) >= self.streams_per_mission:
                raise too_many(f"mission {mission!r} has {self.streams_per_mission} event streams open already", 5)
            for k in keys:
                self._streams[k] = self._streams.get(k, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                for k in keys:
                    left = self._streams.get(k, 1) - 1
                    if left > 0:
                        self._streams[k] = left
                    else:
                        self._streams.pop(k, None)

    def open_stream(self, actor: str, mission: str, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`events` holding one stream slot of `actor` and of `mission` until it ends or is dropped;
        429 now (before any byte is sent) when either has its streams open already."""
        slot = self.stream(actor, mission)
        slot.__enter__()
        return held(slot, events)

    def open_streams(self, actor: str) -> int:
        return self._streams.get(f"p:{actor}", 0)


def too_many(message: str, retry_after: float) -> ApiError:
    seconds = max(1, math.ceil(retry_after))
    return ApiError(429, "rate_limited", f"{message}; retry in {seconds} s", headers={"Retry-After": str(seconds)})


async def held(slot: contextlib.AbstractContextManager, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The stream's bytes, with `slot` (already entered) released when it ends or is dropped."""
    try:
        async for chunk in stream:
            yield chunk
    finally:
        slot.__exit__(None, None, None)
