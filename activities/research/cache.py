"""The research answer cache: repeated or near-identical questions for a mission
are answered from its cache, never after its documents or cartridge changed.

An entry is filed under the mission's *state*: its active cartridge version and
config revision, and the count, newest insert and chunk total of its indexed
documents, read in one query at lookup time. Any ingestion, deletion, restore or
activation changes that state, so an older entry can no longer be found (it
expires with its TTL). Within a state, the question matches when its normalised
words are the same, or when it is a near-identical paraphrase: embedding cosine at
least the cartridge's `cache.similarity` *and* the same numbers and the same rare
terms (so "market share in 2023" never answers "market share in 2024").

Two backends behind one interface, both mission-namespaced: PostgreSQL (the
embedded default, table research_cache) and Redis/Valkey (production, keys
`sm:rc:<mission>:...`), selected by settings.redis_url.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import numpy as np

from activities.research.answerability import question_weights, RARE_WEIGHT
from stratmaster.contracts.research import ResearchResult

MAX_ENTRIES_PER_STATE = 200  # near-identical candidates compared per lookup (and kept per mission state)
_WORDS = re.compile(r"[^\W_]+(?:[.'-][^\W_]+)*", re.UNICODE)
_NUMBERS = re.compile(r"\d+(?:[.,]\d+)*")


def normalise(query: str) -> str:
    """Case, punctuation and spacing do not change a question."""
    return " ".join(w.lower() for w in _WORDS.findall(query))


def anchors(query: str) -> tuple[frozenset[str], frozenset[str]]:
    """Numbers and rare terms: two questions that differ in one of them are
    different questions however close their embeddings are."""
    rare = frozenset(t for t, w in question_weights(query).items() if w >= RARE_WEIGHT - 1.0)
    return frozenset(_NUMBERS.findall(query)), rare


async def mission_state(pool: asyncpg.Pool, mission: str) -> str | None:
    """A digest of everything a research answer depends on in the database (the active
    cartridge version and revision, and the documents' revision that every insert, update or
    delete of one of its documents bumps: migration 110); None for an unknown mission."""
    row = await pool.fetchrow(
        "SELECT id, active_version, config_revision, documents_revision FROM tenants WHERE name = $1", mission)
    if row is None:
        return None
    parts = [str(row["id"]), str(row["active_version"]), str(row["config_revision"]), str(row["documents_revision"])]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _scoring() -> list:
    """How answers are scored: the sentence encoder, what a unit is, the confidence model. An answer
    scored another way (a deploy that refits the weights) is another answer, not a hit."""
    from activities.ingest.sentence_encoder import MODEL_ID
    from activities.research.confidence import BIAS, CALIBRATION, WEIGHTS
    from activities.research.sentence_vectors import UNITS

    return [MODEL_ID, UNITS, WEIGHTS, BIAS, CALIBRATION]


def entry_key(state: str, params: dict) -> str:
    """The mission state, the request parameters that shape an answer and how it is scored."""
    shaped = {"params": params, "scoring": _scoring()}
    digest = hashlib.sha256(json.dumps(shaped, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"{state}:{digest}"


@dataclass
class Entry:
    query: str
    vector: list[float]
    result: ResearchResult


class CacheBackend(Protocol):
    async def find(self, mission: str, key: str, norm: str) -> Entry | None: ...
    async def candidates(self, mission: str, key: str) -> list[Entry]: ...
    async def put(self, mission: str, key: str, norm: str, entry: Entry, ttl_s: int) -> None: ...
    async def clear(self, mission: str) -> int: ...
    async def close(self) -> None: ...


class PostgresCache:
    """Embedded default: one table, rows namespaced by tenant, expired rows ignored
    and pruned on write."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    @staticmethod
    def _entry(row: Any) -> Entry:
        return Entry(query=row["query"], vector=list(row["vector"]),
                     result=ResearchResult.model_validate_json(row["result"]))

    async def find(self, mission: str, key: str, norm: str) -> Entry | None:
        row = await self.pool.fetchrow(
            """SELECT c.query, c.vector, c.result FROM research_cache c JOIN tenants t ON t.id = c.tenant_id
               WHERE t.name = $1 AND c.entry_key = $2 AND c.norm = $3 AND c.expires_at > NOW()""",
            mission, key, norm)
        return self._entry(row) if row else None

    async def candidates(self, mission: str, key: str) -> list[Entry]:
        rows = await self.pool.fetch(
            """SELECT c.query, c.vector, c.result FROM research_cache c JOIN tenants t ON t.id = c.tenant_id
               WHERE t.name = $1 AND c.entry_key = $2 AND c.expires_at > NOW()
               ORDER BY c.created_at DESC LIMIT $3""", mission, key, MAX_ENTRIES_PER_STATE)
        return [self._entry(r) for r in rows]

    async def put(self, mission: str, key: str, norm: str, entry: Entry, ttl_s: int) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            tenant = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", mission)
            if tenant is None:
                return
            await conn.execute(
                """INSERT INTO research_cache (tenant_id, entry_key, norm, query, vector, result, expires_at)
                   VALUES ($1, $2, $3, $4, $5, $6, NOW() + make_interval(secs => $7))
                   ON CONFLICT (tenant_id, entry_key, norm) DO UPDATE SET query = EXCLUDED.query,
                       vector = EXCLUDED.vector, result = EXCLUDED.result, created_at = NOW(),
                       expires_at = EXCLUDED.expires_at""",
                tenant, key, norm, entry.query, entry.vector, entry.result.model_dump_json(), float(ttl_s))
            # bounded per mission: expired rows and rows of older states go first
            await conn.execute(
                """DELETE FROM research_cache WHERE tenant_id = $1 AND (expires_at <= NOW() OR ctid IN (
                       SELECT ctid FROM research_cache WHERE tenant_id = $1
                       ORDER BY (entry_key = $2) DESC, created_at DESC OFFSET $3))""",
                tenant, key, MAX_ENTRIES_PER_STATE)

    async def clear(self, mission: str) -> int:
        status = await self.pool.execute(
            "DELETE FROM research_cache USING tenants t WHERE t.id = research_cache.tenant_id AND t.name = $1", mission)
        return int(status.split()[-1])

    async def close(self) -> None:
        return None


class RedisCache:
    """Production: Redis/Valkey. `sm:rc:<mission>:<key>:<norm digest>` holds an
    entry, `sm:rc:<mission>:<key>` the newest norms of that state (a sorted set),
    both with the entry's TTL; every key of a mission starts `sm:rc:<mission>:`."""

    def __init__(self, url: str):
        import redis.asyncio as aioredis

        self.redis = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)

    @staticmethod
    def _names(mission: str, key: str, norm: str = "") -> tuple[str, str]:
        base = f"sm:rc:{mission}:{key}"
        return base, f"{base}:{hashlib.sha256(norm.encode()).hexdigest()[:24]}"

    @staticmethod
    def _entry(raw: bytes | str) -> Entry:
        data = json.loads(raw)
        return Entry(query=data["query"], vector=data["vector"],
                     result=ResearchResult.model_validate(data["result"]))

    async def find(self, mission: str, key: str, norm: str) -> Entry | None:
        raw = await self.redis.get(self._names(mission, key, norm)[1])
        return self._entry(raw) if raw else None

    async def candidates(self, mission: str, key: str) -> list[Entry]:
        index, _ = self._names(mission, key)
        names = await self.redis.zrevrange(index, 0, MAX_ENTRIES_PER_STATE - 1)
        if not names:
            return []
        # redis-py types zrevrange's result as possibly (name, score) pairs even without withscores
        raws = await self.redis.mget(names)  # type: ignore[arg-type]
        return [self._entry(r) for r in raws if r]

    async def put(self, mission: str, key: str, norm: str, entry: Entry, ttl_s: int) -> None:
        index, name = self._names(mission, key, norm)
        value = json.dumps({"query": entry.query, "vector": entry.vector,
                            "result": entry.result.model_dump(mode="json")})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(name, value, ex=ttl_s)
            pipe.zadd(index, {name: time.time()})
            pipe.zremrangebyrank(index, 0, -MAX_ENTRIES_PER_STATE - 1)
            pipe.expire(index, ttl_s)
            await pipe.execute()

    async def clear(self, mission: str) -> int:
        removed = 0
        async for name in self.redis.scan_iter(match=f"sm:rc:{mission}:*", count=500):
            removed += await self.redis.delete(name)
        return removed

    async def close(self) -> None:
        await self.redis.aclose()


def cosine(a: list[float], b: list[float]) -> float:
    va, vb = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    denom = float(np.linalg.norm(va) * np.linalg.norm(vb))
    return float(va @ vb / denom) if denom else 0.0


def near_identical(query: str, vector: list[float], entries: list[Entry], threshold: float) -> tuple[Entry, float] | None:
    """The closest cached question that is a paraphrase of `query`, if any."""
    if threshold >= 1.0 or not entries:
        return None
    mine = anchors(query)
    best: tuple[Entry, float] | None = None
    for e in entries:
        sim = cosine(vector, e.vector)
        if sim >= threshold and (best is None or sim > best[1]) and anchors(e.query) == mine:
            best = (e, sim)
    return best
