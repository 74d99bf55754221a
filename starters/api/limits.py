"""Fair use of the API, per principal and per mission: requests that start work (research,
ingestion) draw from token buckets, and event streams are capped. A flood from one caller or one
mission gets 429 with Retry-After; other missions' requests never queue behind it.

In-process on the local stack (one API). With `STRATMASTER_REDIS_URL` (production: several API
replicas) the buckets and stream slots live in Redis, checked and spent by one script each, so a
caller spread over N replicas gets the rate once; a stream slot is a lease renewed while the
stream runs, so a replica that dies frees its slots within a minute. Redis unreachable: requests
are admitted (and logged), as the answer cache falls back to a miss. The worker side's fairness
(task-queue fairness keys, stratmaster/fairness.py) holds whatever the API lets through."""
from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Iterator

import anyio

from starters.api.errors import ApiError

log = logging.getLogger("stratmaster.api")


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
    def from_settings(cls, s) -> "Limits | RedisLimits":
        kwargs = dict(per_principal_per_minute=s.api_starts_per_minute, per_mission_per_minute=s.api_mission_starts_per_minute,
                      burst=s.api_starts_burst, streams_per_principal=s.api_streams_per_principal,
                      streams_per_mission=s.api_streams_per_mission)
        return RedisLimits(s.redis_url, **kwargs) if s.redis_url else cls(**kwargs)

    async def admit(self, actor: str, mission: str) -> None:
        self.charge(actor, mission)

    async def close(self) -> None:
        pass

    def charge(self, actor: str, mission: str) -> None:
        """One request that starts work, for `actor` in `mission`: 429 when either bucket is empty
        (nothing is spent then, so a refused request costs the caller nothing but the wait)."""
        with self._lock:
            own, shared = self.principals.wait_for(actor), self.missions.wait_for(mission)
            refuse_start(own, shared, mission)
            self.principals.spend(actor)
            self.missions.spend(mission)

    @contextlib.contextmanager
    def stream(self, actor: str, mission: str) -> Iterator[None]:
        """Hold one event-stream slot of `actor` and of `mission` while the stream runs."""
        keys = (f"p:{actor}", f"m:{mission}")
        with self._lock:
            if self._streams.get(keys[0], 0) >= self.streams_per_principal:
                raise streams_full(self.streams_per_principal, None)
            if self._streams.get(keys[1], 0) >= self.streams_per_mission:
                raise streams_full(self.streams_per_mission, mission)
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

    async def open_stream(self, actor: str, mission: str, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`events` holding one stream slot of `actor` and of `mission` until it ends or is dropped;
        429 now (before any byte is sent) when either has its streams open already."""
        slot = self.stream(actor, mission)
        slot.__enter__()
        return held(slot, events)

    async def open_streams(self, actor: str) -> int:
        return self._streams.get(f"p:{actor}", 0)


# Both buckets refilled, checked and (only when both have a token) spent in one step, on Redis's clock.
# KEYS: principal bucket, mission bucket; ARGV: rate/s and capacity of each. Returns each wait (s).
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tokens, waits = {}, {}
for i = 1, 2 do
  local rate, cap = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local v = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local have = tonumber(v[1]) or cap
  local ts = tonumber(v[2]) or now
  have = math.min(cap, have + math.max(0, now - ts) * rate)
  tokens[i] = have
  if have >= 1 then waits[i] = 0 elseif rate > 0 then waits[i] = (1 - have) / rate else waits[i] = 1e9 end
end
if waits[1] > 0 or waits[2] > 0 then return {tostring(waits[1]), tostring(waits[2])} end
for i = 1, 2 do
  local rate, cap = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens[i] - 1), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(cap / math.max(rate, 0.001) * 1000) + 1000)
end
return {'0', '0'}
"""
# A stream slot: a member of each key's sorted set, scored by its lease's end; expired leases dropped.
# KEYS: principal slots, mission slots; ARGV: slot id, lease s, principal cap, mission cap.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 1, 2 do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 2 end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2]) * 2000))
end
return 0
"""
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2]) * 2000))
end
return 0
"""


class RedisLimits:
    """The same fair use as Limits, shared by every API replica through Redis."""

    PREFIX = "sm:rl:{fair}:"  # one hash tag: a script's two keys are in one slot on Redis Cluster
    LEASE_S = 60.0  # a stream renews its slot at least every LEASE_S / 3 (it sends a heartbeat every 15 s)

    def __init__(self, url: str, *, per_principal_per_minute: float, per_mission_per_minute: float, burst: float,
                 streams_per_principal: int, streams_per_mission: int):
        import redis.asyncio as aioredis

        self.redis = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.buckets = (per_principal_per_minute / 60.0, burst, per_mission_per_minute / 60.0, burst * 2)
        self.streams_per_principal = streams_per_principal
        self.streams_per_mission = streams_per_mission
        self._admit = self.redis.register_script(_ADMIT)
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._renew = self.redis.register_script(_RENEW)

    def _keys(self, kind: str, actor: str, mission: str) -> list[str]:
        return [f"{self.PREFIX}{kind}:p:{actor}", f"{self.PREFIX}{kind}:m:{mission}"]

    async def admit(self, actor: str, mission: str) -> None:
        try:
            own, shared = (float(x) for x in await self._admit(keys=self._keys("b", actor, mission), args=self.buckets))
        except Exception as exc:  # noqa: BLE001 - fail open: fair use must not take the API down with Redis
            log.warning("rate limits unavailable (Redis): admitted", extra={"error": f"{type(exc).__name__}: {exc}"})
            return
        refuse_start(own, shared, mission)

    async def open_stream(self, actor: str, mission: str, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        keys, slot = self._keys("s", actor, mission), uuid.uuid4().hex
        try:
            full = int(await self._acquire(keys=keys, args=[slot, self.LEASE_S, self.streams_per_principal,
                                                            self.streams_per_mission]))
        except Exception as exc:  # noqa: BLE001 - fail open, as admit
            log.warning("stream caps unavailable (Redis): opened", extra={"error": f"{type(exc).__name__}: {exc}"})
            return events
        if full == 1:
            raise streams_full(self.streams_per_principal, None)
        if full == 2:
            raise streams_full(self.streams_per_mission, mission)
        return self._leased(keys, slot, events)

    async def _leased(self, keys: list[str], slot: str, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        renewed = time.monotonic()
        try:
            async for chunk in events:
                if time.monotonic() - renewed > self.LEASE_S / 3:
                    with contextlib.suppress(Exception):
                        await self._renew(keys=keys, args=[slot, self.LEASE_S])
                    renewed = time.monotonic()
                yield chunk
        finally:
            # shielded: a client that disconnects cancels the response task, and the slot must be
            # freed all the same (else it holds until its lease ends)
            with anyio.CancelScope(shield=True), anyio.move_on_after(2), contextlib.suppress(Exception):
                await self.redis.zrem(keys[0], slot)
                await self.redis.zrem(keys[1], slot)

    async def open_streams(self, actor: str) -> int:
        """Streams `actor` holds (leases not yet ended; read only)."""
        (now, _), key = await self.redis.time(), self._keys("s", actor, "")[0]
        return int(await self.redis.zcount(key, f"({now}", "+inf"))

    async def close(self) -> None:
        await self.redis.aclose()


def refuse_start(own_wait: float, mission_wait: float, mission: str) -> None:
    """429 when the caller's (or else the mission's) bucket has no token for `*_wait` seconds."""
    if own_wait > 0 or mission_wait > 0:
        who = "your" if own_wait > 0 else f"mission {mission!r}'s"
        raise too_many(f"{who} rate of requests that start work is used up", max(own_wait, mission_wait))


def streams_full(cap: int, mission: str | None) -> ApiError:
    """The caller's (mission None) or the mission's event streams are all open."""
    who = "you have" if mission is None else f"mission {mission!r} has"
    return too_many(f"{who} {cap} event streams open already", 5)


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
