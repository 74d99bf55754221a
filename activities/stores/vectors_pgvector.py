"""pgvector vector store: the embedded default, in the PostgreSQL the local stack already runs.

One table per mission (`vectors.m_<mission>`: the chunk's payload columns and a
`vector(dim)` column) with its own HNSW index (cosine; the cartridge's
`storage.vectors` m / ef_construct; `quantization: true` indexes a half-precision
copy, `halfvec`, at half the index memory), and one row per mission in
`vectors.collections` recording the dimension and the parameters it was created with.

Why here rather than an in-process engine: the ingestion and research workers are
separate processes that both use a mission's vectors. PostgreSQL already serves
them concurrently with MVCC: a write commits and the next search sees it, without a
reader reloading anything and without a lock of ours (creation of a mission's table
is serialised by a PostgreSQL advisory lock). Missions share one connection pool per
process, not a process or an in-memory copy each. Production points
STRATMASTER_QDRANT_URL at a Qdrant server instead (activities/stores/vectors_qdrant.py).

Dumps use the Qdrant adapter's row format ({"id", "vector", "payload"}), so a backup
restores into either backend.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import asyncpg
from pgvector import Vector
from pgvector.asyncpg import register_vector

from activities.stores.base import vector_index_config
from activities.stores.vectors_qdrant import point_id
from stratmaster.contracts.common import check_mission
from stratmaster.contracts.knowledge import Chunk, SearchHit
from stratmaster.errors import ServiceUnavailable, bad_input

T = TypeVar("T")
SCHEMA = "vectors"
_BATCH = 512
# candidates an HNSW search keeps: at least twice the rows asked for (an HNSW scan returns at
# most ef_search rows; at pgvector's default 40 the Cranfield bench's dense recall@100 fell
# well below exact search's)
_EF_SEARCH = 200
SESSION_SETTINGS = {"hnsw.ef_search": str(_EF_SEARCH), "enable_seqscan": "off"}
_MAX_M = 100  # pgvector's bounds for the HNSW graph degree
_COLUMNS = "chunk_id, document_id, ordinal, text, start_offset, end_offset, title"


def table(mission: str) -> str:
    """The mission's table, schema-qualified and quoted (mission already validated)."""
    return f'{SCHEMA}."m_{mission}"'


def search_sql(mission: str, have: dict) -> str:
    """A mission's nearest-neighbour query ($1 the vector, $2 the limit), ordered by the HNSW
    index's own expression so the planner can use it; the score is the exact cosine."""
    order = (f"embedding::halfvec({have['dim']}) <=> $1::vector::halfvec({have['dim']})"
             if have.get("quantization") else "embedding <=> $1")
    return f"SELECT {_COLUMNS}, 1 - (embedding <=> $1) AS score FROM {table(mission)} ORDER BY {order} LIMIT $2"


class PgVectorStore:
    backend = "pgvector"

    def __init__(self, dsn: str, *, hnsw_m: int = 16, hnsw_ef_construct: int = 64, quantization: bool = False,
                 pool_max_size: int = 4):
        self.dsn = dsn
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construct = hnsw_ef_construct
        self.quantization = quantization
        self.pool_max_size = pool_max_size
        self._pool: asyncpg.Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Lock | None = None
        self._known: dict[str, dict] = {}  # mission -> collections row (dimension, parameters)

    @classmethod
    def from_settings(cls, settings) -> "PgVectorStore":
        return cls(settings.database_url, hnsw_m=settings.hnsw_m, hnsw_ef_construct=settings.hnsw_ef_construct,
                   quantization=settings.quantization)

    # --- connections ------------------------------------------------------------------
    async def _setup(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('stratmaster.vectors'))")
                try:
                    await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                except (asyncpg.UndefinedFileError, asyncpg.FeatureNotSupportedError) as exc:
                    raise ServiceUnavailable(
                        f"PostgreSQL has no pgvector extension ({exc}): run scripts/install_pgvector.sh, "
                        "or set STRATMASTER_QDRANT_URL to use a Qdrant server") from exc
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.collections (mission text PRIMARY KEY, dim int NOT NULL, "
                    "config jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())")
        finally:
            await conn.close()

    @staticmethod
    async def _init_connection(conn: asyncpg.Connection) -> None:
        await register_vector(conn)

    async def _pool_now(self) -> asyncpg.Pool:
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._loop is loop:
            return self._pool
        if self._opening is None or self._loop is not loop:
            if self._pool is not None:  # opened on another event loop (tests): not usable here
                self._pool.terminate()
                self._pool = None
            self._loop, self._opening = loop, asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                try:
                    await self._setup()
                    # Connection defaults (the pool's RESET ALL on release keeps them; a SET in `init`
                    # would be reset after the first use): ef_search, and no sequential scans. pgvector
                    # costs an HNSW scan by ef_search, and at ef_search 200 the planner chose a seq scan
                    # and sort for missions under ~15k chunks, computing every row's distance: several
                    # times slower than the index (bench/results/research_scale.md). This pool
                    # only reaches the missions' vector tables, whose other reads go by an index too.
                    self._pool = await asyncpg.create_pool(
                        self.dsn, min_size=1, max_size=self.pool_max_size, init=self._init_connection, timeout=10,
                        server_settings=SESSION_SETTINGS)
                except (OSError, asyncpg.CannotConnectNowError, asyncio.TimeoutError) as exc:
                    raise ServiceUnavailable(f"vector store: PostgreSQL unreachable: {exc}") from exc
        assert self._pool is not None
        return self._pool

    # --- collections ------------------------------------------------------------------
    def _config(self, hnsw_m: int | None = None, hnsw_ef_construct: int | None = None,
                quantization: bool | None = None, shards: int | None = None, replicas: int | None = None) -> dict:
        """Per-mission parameters, each falling back to the store's settings (shards and
        replicas are recorded only: one PostgreSQL has neither)."""
        cfg = vector_index_config((self.hnsw_m, self.hnsw_ef_construct, self.quantization),
                                  hnsw_m, hnsw_ef_construct, quantization, shards, replicas)
        return {k: v for k, v in cfg.items() if v is not None}

    async def _collection(self, conn: asyncpg.Connection, mission: str) -> dict | None:
        known = self._known.get(mission)
        if known is not None:
            return known
        row = await conn.fetchrow(f"SELECT dim, config FROM {SCHEMA}.collections WHERE mission = $1", mission)
        if row is None:
            return None
        info = {"dim": row["dim"], **json.loads(row["config"])}
        self._known[mission] = info
        return info

    async def _ensure(self, conn: asyncpg.Connection, mission: str, dim: int, cfg: dict) -> dict:
        have = await self._collection(conn, mission)
        if have is None:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"stratmaster.vectors.{mission}")
                self._known.pop(mission, None)
                have = await self._collection(conn, mission)
                if have is None:
                    await self._create(conn, mission, dim, cfg)
                    have = {"dim": dim, **cfg}
                    self._known[mission] = have
        if have["dim"] != dim:
            raise bad_input(f"mission {mission}'s vectors have dimension {have['dim']}, got vectors of dimension {dim}")
        return have

    @staticmethod
    async def _create(conn: asyncpg.Connection, mission: str, dim: int, cfg: dict) -> None:
        t = table(mission)
        await conn.execute(
            f"CREATE TABLE {t} (id uuid PRIMARY KEY, chunk_id text NOT NULL, document_id text NOT NULL, "
            f"ordinal int NOT NULL DEFAULT 0, text text NOT NULL, start_offset int NOT NULL DEFAULT 0, "
            f"end_offset int NOT NULL DEFAULT 0, title text, embedding vector({dim}) NOT NULL)")
        await conn.execute(f'CREATE INDEX "m_{mission}_doc" ON {t} (document_id)')
        m = min(cfg["hnsw_m"], _MAX_M)
        if m >= 2:  # m 0 (as in Qdrant): no graph, exact search
            ef = max(cfg["hnsw_ef_construct"], 2 * m)  # pgvector: ef_construction >= 2 m
            column = f"(embedding::halfvec({dim})) halfvec_cosine_ops" if cfg["quantization"] else \
                "embedding vector_cosine_ops"
            await conn.execute(f'CREATE INDEX "m_{mission}_hnsw" ON {t} USING hnsw ({column}) '
                               f"WITH (m = {m}, ef_construction = {ef})")
        await conn.execute(f"INSERT INTO {SCHEMA}.collections (mission, dim, config) VALUES ($1, $2, $3)",
                           mission, dim, json.dumps(cfg))

    async def ensure_collection(self, mission: str, dim: int, *, hnsw_m: int | None = None,
                                hnsw_ef_construct: int | None = None, quantization: bool | None = None,
                                shards: int | None = None, replicas: int | None = None) -> None:
        """Create the mission's table and index if missing (the optional parameters, a
        cartridge's storage.vectors, override the settings); an existing one is kept."""
        mission = check_mission(mission)
        if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
            raise bad_input(f"bad vector dimension {dim!r}")
        cfg = self._config(hnsw_m, hnsw_ef_construct, quantization, shards, replicas)
        async with (await self._pool_now()).acquire() as conn:
            await self._ensure(conn, mission, dim, cfg)

    async def collection_config(self, mission: str) -> dict | None:
        """{"dim", "hnsw_m", "hnsw_ef_construct", "quantization", ...} the mission's table was created with."""
        mission = check_mission(mission)
        self._known.pop(mission, None)
        async with (await self._pool_now()).acquire() as conn:
            return await self._collection(conn, mission)

    # --- points -------------------------------------------------------------------------
    async def _write(self, mission: str, rows: list[tuple]) -> None:
        """rows: (id, chunk_id, document_id, ordinal, text, start, end, title, vector)."""
        if not rows:
            return
        dims = {len(r[-1]) for r in rows}
        if len(dims) != 1 or 0 in dims:
            raise bad_input(f"vectors must share one non-zero dimension, got {sorted(dims)}")
        sql = (f"INSERT INTO {table(mission)} (id, {_COLUMNS}, embedding) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
               "ON CONFLICT (id) DO UPDATE SET chunk_id = EXCLUDED.chunk_id, document_id = EXCLUDED.document_id, "
               "ordinal = EXCLUDED.ordinal, text = EXCLUDED.text, start_offset = EXCLUDED.start_offset, "
               "end_offset = EXCLUDED.end_offset, title = EXCLUDED.title, embedding = EXCLUDED.embedding")
        dim = dims.pop()
        async with (await self._pool_now()).acquire() as conn:
            for attempt in (1, 2):
                await self._ensure(conn, mission, dim, self._config())
                try:
                    async with conn.transaction():
                        for i in range(0, len(rows), _BATCH):
                            await conn.executemany(sql, rows[i:i + _BATCH])
                    return
                except asyncpg.UndefinedTableError:  # dropped by another process since we looked
                    self._known.pop(mission, None)
                    if attempt == 2:
                        raise

    async def upsert(self, mission: str, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        mission = check_mission(mission)
        if len(chunks) != len(vectors):
            raise bad_input(f"{len(chunks)} chunks but {len(vectors)} vectors")
        await self._write(mission, [
            (point_id(ch.chunk_id), ch.chunk_id, ch.document_id, ch.ordinal, ch.text, ch.start, ch.end, ch.title,
             [float(x) for x in vec])
            for ch, vec in zip(chunks, vectors)])

    async def _on_table(self, mission: str, fn: Callable[[asyncpg.Connection, dict], Awaitable[T]], empty: T) -> T:
        """fn(conn, collection) when the mission has vectors, else `empty` (also when another
        process dropped the table since this one looked)."""
        async with (await self._pool_now()).acquire() as conn:
            have = await self._collection(conn, mission)
            if have is None:
                return empty
            try:
                return await fn(conn, have)
            except asyncpg.UndefinedTableError:
                self._known.pop(mission, None)
                return empty

    async def search(self, mission: str, vector: Sequence[float], limit: int) -> list[SearchHit]:
        mission = check_mission(mission)
        if limit <= 0:
            return []
        query = Vector([float(x) for x in vector])

        async def run(conn: asyncpg.Connection, have: dict) -> list:
            if len(vector) != have["dim"]:
                raise bad_input(f"query vector has dimension {len(vector)}, mission {mission}'s {have['dim']}")
            sql = search_sql(mission, have)
            if 2 * limit <= _EF_SEARCH:
                return await conn.fetch(sql, query, limit)
            async with conn.transaction():
                await conn.execute(f"SET LOCAL hnsw.ef_search = {min(2 * int(limit), 1000)}")
                return await conn.fetch(sql, query, limit)

        rows: list = await self._on_table(mission, run, [])
        return [SearchHit(chunk_id=r["chunk_id"], document_id=r["document_id"], text=r["text"],
                          start=r["start_offset"], end=r["end_offset"], title=r["title"], score=float(r["score"]),
                          source="dense", scores={"dense": float(r["score"])}) for r in rows]

    async def count(self, mission: str) -> int:
        mission = check_mission(mission)

        async def run(conn: asyncpg.Connection, _: dict) -> int:
            return int(await conn.fetchval(f"SELECT count(*) FROM {table(mission)}"))
        return await self._on_table(mission, run, 0)

    async def drop(self, mission: str) -> None:
        mission = check_mission(mission)
        async with (await self._pool_now()).acquire() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"stratmaster.vectors.{mission}")
                await conn.execute(f"DROP TABLE IF EXISTS {table(mission)}")
                await conn.execute(f"DELETE FROM {SCHEMA}.collections WHERE mission = $1", mission)
        self._known.pop(mission, None)

    async def delete_document(self, mission: str, document_id: str) -> None:
        """Remove every vector of one document (re-ingestion of a changed document)."""
        mission = check_mission(mission)

        async def run(conn: asyncpg.Connection, _: dict) -> None:
            await conn.execute(f"DELETE FROM {table(mission)} WHERE document_id = $1", document_id)
        await self._on_table(mission, run, None)

    async def optimize(self, mission: str) -> str:
        """Maintenance: refresh the planner's statistics and reclaim dead rows of the mission's table."""
        mission = check_mission(mission)

        async def run(conn: asyncpg.Connection, _: dict) -> str:
            await conn.execute(f"VACUUM (ANALYZE) {table(mission)}")
            return "vacuum analyze"
        return await self._on_table(mission, run, "no vectors")

    # --- backup hooks -------------------------------------------------------------------
    async def dump(self, mission: str) -> list[dict]:
        """Every vector with its payload: [{"id", "vector", "payload"}] (the Qdrant adapter's format)."""
        mission = check_mission(mission)

        async def run(conn: asyncpg.Connection, _: dict) -> list:
            return await conn.fetch(f"SELECT id, {_COLUMNS}, embedding FROM {table(mission)} ORDER BY id")
        rows: list = await self._on_table(mission, run, [])
        return [{"id": str(r["id"]), "vector": [float(x) for x in r["embedding"].to_list()],
                 "payload": {"mission": mission, "chunk_id": r["chunk_id"], "document_id": r["document_id"],
                             "ordinal": r["ordinal"], "text": r["text"], "start": r["start_offset"],
                             "end": r["end_offset"], "title": r["title"]}} for r in rows]

    async def load(self, mission: str, rows: Sequence[dict]) -> None:
        """Write dumped vectors (idempotent) into the mission, whatever mission they came from."""
        mission = check_mission(mission)
        out: list[tuple[Any, ...]] = []
        try:
            for r in rows:
                p = r.get("payload") or {}
                out.append((point_id(str(r["id"])), str(p.get("chunk_id", r["id"])), str(p.get("document_id", "")),
                            int(p.get("ordinal", 0)), str(p.get("text", "")), int(p.get("start", 0)),
                            int(p.get("end", 0)), p.get("title"), [float(x) for x in r["vector"]]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise bad_input(f"bad vector dump row: {exc}") from None
        if len({len(r[-1]) for r in out}) > 1:
            raise bad_input("vector dump rows have mixed dimensions")
        await self._write(mission, out)

    # --- health / lifecycle -------------------------------------------------------------
    async def probe(self) -> str:
        async with (await self._pool_now()).acquire() as conn:
            version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            n = await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.collections")
        return f"pgvector {version}: {n} mission tables"

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            if self._loop is asyncio.get_running_loop():
                await pool.close()
            else:
                pool.terminate()
