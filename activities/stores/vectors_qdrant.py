"""Qdrant vector store: server mode when STRATMASTER_QDRANT_URL is set, otherwise
Qdrant LOCAL mode with one storage directory per mission (<data_dir>/qdrant/<mission>/).

Local mode and several processes: a local QdrantClient takes an exclusive,
non-blocking lock on its storage directory for as long as it is open and keeps
the points in memory. The ingestion and research workers are separate processes
that both need the same mission, so a plain long-lived client in one would make
every call in the other fail ("already accessed by another instance").

So every operation runs under a per-mission cross-process lock (fcntl.flock on
<data_dir>/qdrant/.locks/<mission>.lock, waited on with a deadline; an asyncio
lock per mission in front keeps one process's coroutines from tying up threads
waiting on it). Conceptually each operation opens the client, works, closes it.
Because opening reloads every point of the mission (seconds for a large mission:
bench/results/stores_embedded.md), the opened client is kept between operations with
Qdrant's own directory lock released, and is only reused while the mission's
generation stamp (<mission>.gen next to the lock, rewritten by every write and
by drop) is the one it saw: another process's write makes the next operation
reload. Reads in a quiet mission therefore cost a query, not a reload. Pass
cache_clients=False for strict open/close per operation. For large missions or
heavy concurrent load, point STRATMASTER_QDRANT_URL at a Qdrant server.

qdrant-client is synchronous, so all blocking calls run in asyncio.to_thread.
"""
from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import logging
import shutil
import threading
import time
import uuid
import warnings
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from qdrant_client import QdrantClient, models

from activities.stores.base import collection_name, vector_index_config
from stratmaster.contracts.common import check_mission
from stratmaster.contracts.knowledge import Chunk, SearchHit
from stratmaster.errors import ServiceUnavailable, bad_input

T = TypeVar("T")
log = logging.getLogger(__name__)
# Local mode warns on every open past 20k points; per-operation opens would repeat
# it endlessly, so it is logged once per mission here instead.
warnings.filterwarnings("ignore", message="Local mode is not recommended", category=UserWarning)
LOCAL_LARGE_POINTS = 20_000
_POINT_NS = uuid.UUID("6f1c7d3e-2a55-4f0b-9d8e-5b7c1e0a9f41")
_BATCH = 256


@dataclass
class _Open:
    client: QdrantClient
    generation: str


def _engine(client: QdrantClient) -> Any:
    """The local-mode engine inside a QdrantClient: qdrant-client internals, outside its typed API."""
    return client._client


def _dense(vector: object) -> list[float]:
    """A point's vector as this store writes it: one unnamed dense vector."""
    if not isinstance(vector, list):
        raise TypeError(f"expected a dense vector, got {type(vector).__name__}")
    return vector


def point_id(chunk_id: str) -> str:
    """chunk_id when it is a UUID (the normal case), else a stable uuid5 of it."""
    try:
        return str(uuid.UUID(chunk_id))
    except (ValueError, AttributeError, TypeError):
        return str(uuid.uuid5(_POINT_NS, str(chunk_id)))


class QdrantVectorStore:
    def __init__(self, *, data_dir: Path | None = None, url: str | None = None, api_key: str | None = None,
                 hnsw_m: int = 16, hnsw_ef_construct: int = 64, quantization: bool = False,
                 lock_timeout_s: float = 120.0, cache_clients: bool = True, max_cached: int = 8):
        if not url and data_dir is None:
            raise ValueError("QdrantVectorStore needs a url (server mode) or a data_dir (local mode)")
        self.url = url
        self.api_key = api_key
        self.root = Path(data_dir).resolve() / "qdrant" if data_dir is not None else None
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construct = hnsw_ef_construct
        self.quantization = quantization
        self.lock_timeout_s = lock_timeout_s
        self.backend = "qdrant-server" if url else "qdrant-local"
        self._server: QdrantClient | None = None
        self._warned: set[str] = set()
        self.cache_clients = cache_clients
        self.max_cached = max_cached
        self._open: OrderedDict[str, _Open] = OrderedDict()  # mission -> client kept open (LRU)
        self._open_guard = threading.Lock()
        # asyncio locks are bound to one event loop; keep one set per loop.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = \
            weakref.WeakKeyDictionary()

    @classmethod
    def from_settings(cls, settings) -> "QdrantVectorStore":
        return cls(
            data_dir=settings.abs_data_dir,
            url=settings.qdrant_url,
            api_key=settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None,
            hnsw_m=settings.hnsw_m,
            hnsw_ef_construct=settings.hnsw_ef_construct,
            quantization=settings.quantization,
        )

    # --- client access -------------------------------------------------------
    def _local_root(self) -> Path:
        if self.root is None:
            raise RuntimeError("a Qdrant server (url) has no local storage")
        return self.root

    def _mission_dir(self, mission: str) -> Path:
        return self._local_root() / mission  # mission already validated

    @contextmanager
    def _file_lock(self, mission: str, blocking: bool = True) -> Iterator[None]:
        lock_dir = self._local_root() / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        # A fresh open file description per acquisition: flock then excludes other
        # threads of this process as well as other processes.
        fd = os.open(lock_dir / f"{mission}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + self.lock_timeout_s
            delay = 0.005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if not blocking:
                        raise BlockingIOError(f"mission {mission!r} is locked") from None
                    if time.monotonic() > deadline:
                        raise ServiceUnavailable(
                            f"Qdrant local storage of mission {mission!r} stayed locked for "
                            f"{self.lock_timeout_s:.0f}s") from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.2)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # Generation stamps and the cache are touched only while holding the mission's file lock.
    def _gen_path(self, mission: str) -> Path:
        return self._local_root() / ".locks" / f"{mission}.gen"

    def _read_gen(self, mission: str) -> str:
        try:
            return self._gen_path(mission).read_text()
        except FileNotFoundError:
            return ""

    def _bump_gen(self, mission: str) -> str:
        gen = uuid.uuid4().hex
        self._gen_path(mission).write_text(gen)
        return gen

    def _open_client(self, path: Path) -> tuple[QdrantClient, bool]:
        """(client, cacheable). Cacheable once Qdrant's own directory lock is
        released: our file lock already serialises every access to the storage."""
        client = QdrantClient(path=str(path), force_disable_check_same_thread=True)
        if not self.cache_clients:
            return client, False
        try:
            import portalocker

            portalocker.unlock(_engine(client)._flock_file)  # qdrant-client internals: else no caching
            return client, True
        except Exception:
            return client, False

    def _take_cached(self, mission: str) -> _Open | None:
        with self._open_guard:
            return self._open.pop(mission, None)

    def _keep(self, mission: str, entry: _Open) -> None:
        with self._open_guard:
            self._open[mission] = entry
            self._open.move_to_end(mission)
            victims = [m for m in self._open if m != mission][: max(0, len(self._open) - self.max_cached)]
        for victim in victims:
            self._evict(victim, blocking=False)

    def _evict(self, mission: str, blocking: bool) -> None:
        """Close a cached client, under its mission's lock (never under a running op)."""
        try:
            with self._file_lock(mission, blocking=blocking):
                entry = self._take_cached(mission)
                if entry is not None:
                    entry.client.close()
        except BlockingIOError:
            pass  # in use right now; evicted on a later pass

    def _local_call(self, mission: str, fn: Callable[[QdrantClient], T], create: bool, writes: bool) -> T | None:
        with self._file_lock(mission):
            path = self._mission_dir(mission)
            gen = self._read_gen(mission)
            entry = self._take_cached(mission)
            if entry is not None and (entry.generation != gen or not path.is_dir()):
                entry.client.close()  # another process wrote (or dropped): reload
                entry = None
            if entry is None and not create and not path.is_dir():
                return None  # nothing stored for this mission: don't create an empty storage
            if entry is not None:
                client, cacheable = entry.client, True
            else:
                client, cacheable = self._open_client(path)
            ok = False
            try:
                result = fn(client)
                ok = True
                return result
            finally:
                if writes:
                    gen = self._bump_gen(mission)
                self._warn_if_large(mission, client)
                if ok and cacheable:
                    self._keep(mission, _Open(client, gen))
                else:
                    client.close()  # failed mid-operation: don't trust its in-memory state

    def _warn_if_large(self, mission: str, client: QdrantClient) -> None:
        if mission in self._warned:
            return
        try:
            n = sum(len(c.ids) for c in _engine(client).collections.values())  # local client internals
        except Exception:
            return
        if n > LOCAL_LARGE_POINTS:
            self._warned.add(mission)
            log.warning("mission %s has %d points in Qdrant local mode: every operation reloads them; "
                        "set STRATMASTER_QDRANT_URL to use a Qdrant server", mission, n)

    def _server_client(self) -> QdrantClient:
        if self._server is None:
            self._server = QdrantClient(url=self.url, api_key=self.api_key, timeout=30)
        return self._server

    def _lock(self, mission: str) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        per_loop = self._locks.setdefault(loop, {})
        return per_loop.setdefault(mission, asyncio.Lock())

    async def _call(self, mission: str, fn: Callable[[QdrantClient], T], create: bool = True,
                    writes: bool | None = None) -> T | None:
        """Run fn(client) in a thread; local mode: under the mission's locks.
        `writes` (default: create) marks operations that change the storage."""
        if self.url:
            return await asyncio.to_thread(fn, self._server_client())
        async with self._lock(mission):
            return await asyncio.to_thread(self._local_call, mission, fn, create,
                                           create if writes is None else writes)

    # --- collection ------------------------------------------------------------
    def _config(self, hnsw_m: int | None = None, hnsw_ef_construct: int | None = None,
                quantization: bool | None = None, shards: int | None = None,
                replicas: int | None = None) -> dict:
        """Per-mission collection parameters, each falling back to the store's settings
        (shards/replicas: the server's default when not given)."""
        return vector_index_config((self.hnsw_m, self.hnsw_ef_construct, self.quantization),
                                   hnsw_m, hnsw_ef_construct, quantization, shards, replicas)

    def _ensure(self, client: QdrantClient, name: str, dim: int, cfg: dict | None = None) -> None:
        if client.collection_exists(name):
            have = client.get_collection(name).config.params.vectors
            size = getattr(have, "size", None)
            if size is not None and size != dim:
                raise bad_input(f"collection {name} has dimension {size}, got vectors of dimension {dim}")
            return  # an existing collection keeps the parameters it was created with
        cfg = cfg or self._config()
        quant = None
        if cfg["quantization"]:
            quant = models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
                type=models.ScalarType.INT8, quantile=0.99, always_ram=True))
        metadata = None
        if not self.url:
            # Local mode searches exactly and drops HNSW/quantization/sharding (get_collection
            # reports its defaults), so the requested parameters are kept in the collection's
            # metadata: what a server would have applied stays inspectable.
            metadata = {"stratmaster": {k: v for k, v in cfg.items() if v is not None}}
        client.create_collection(
            name,
            vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
            hnsw_config=models.HnswConfigDiff(m=cfg["hnsw_m"], ef_construct=cfg["hnsw_ef_construct"]),
            quantization_config=quant,
            shard_number=cfg["shards"],  # server mode only; None = server default
            replication_factor=cfg["replicas"],
            metadata=metadata,
        )

    async def ensure_collection(self, mission: str, dim: int, *, hnsw_m: int | None = None,
                                hnsw_ef_construct: int | None = None, quantization: bool | None = None,
                                shards: int | None = None, replicas: int | None = None) -> None:
        """Create the mission's collection if missing. The optional parameters (a
        mission cartridge's storage.vectors) override the settings for a new
        collection; an existing one is left as it is."""
        mission = check_mission(mission)
        if not isinstance(dim, int) or dim <= 0:
            raise bad_input(f"bad vector dimension {dim!r}")
        cfg = self._config(hnsw_m, hnsw_ef_construct, quantization, shards, replicas)
        name = collection_name(mission)
        await self._call(mission, lambda c: self._ensure(c, name, dim, cfg))

    @staticmethod
    def _fast_local_writes(client: QdrantClient, name: str) -> None:
        """Local mode commits every point separately (one fsync each with SQLite's
        defaults). WAL + synchronous=NORMAL keeps each commit atomic and durable
        across process crashes, without an fsync per point. Best effort: it uses
        qdrant-client internals and is skipped if they change."""
        try:
            conn = _engine(client).collections[name].storage.storage
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        except Exception:
            pass

    def _upsert_points(self, client: QdrantClient, name: str, points: list[models.PointStruct]) -> None:
        if not points:
            return
        self._ensure(client, name, len(_dense(points[0].vector)))
        if not self.url:
            self._fast_local_writes(client, name)
        for i in range(0, len(points), _BATCH):
            client.upsert(name, points=points[i:i + _BATCH], wait=True)

    async def upsert(self, mission: str, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        mission = check_mission(mission)
        if len(chunks) != len(vectors):
            raise bad_input(f"{len(chunks)} chunks but {len(vectors)} vectors")
        if not chunks:
            return
        dims = {len(v) for v in vectors}
        if len(dims) != 1 or 0 in dims:
            raise bad_input(f"vectors must share one non-zero dimension, got {sorted(dims)}")
        points = [
            models.PointStruct(
                id=point_id(ch.chunk_id),
                vector=[float(x) for x in vec],
                payload={"mission": mission, "chunk_id": ch.chunk_id, "document_id": ch.document_id,
                         "ordinal": ch.ordinal, "text": ch.text, "start": ch.start, "end": ch.end,
                         "title": ch.title},
            )
            for ch, vec in zip(chunks, vectors)
        ]
        name = collection_name(mission)
        await self._call(mission, lambda c: self._upsert_points(c, name, points))

    async def search(self, mission: str, vector: Sequence[float], limit: int) -> list[SearchHit]:
        mission = check_mission(mission)
        if limit <= 0:
            return []
        name = collection_name(mission)
        query = [float(x) for x in vector]

        def run(client: QdrantClient) -> list:
            if not client.collection_exists(name):
                return []
            return client.query_points(name, query=query, limit=limit, with_payload=True).points

        points = await self._call(mission, run, create=False) or []
        hits = []
        for p in points:
            pl = p.payload or {}
            if pl.get("mission", mission) != mission:  # belt and braces: never leak across missions
                continue
            hits.append(SearchHit(chunk_id=pl.get("chunk_id", str(p.id)), document_id=pl.get("document_id", ""),
                                  text=pl.get("text", ""), start=pl.get("start", 0), end=pl.get("end", 0),
                                  title=pl.get("title"), score=float(p.score), source="dense",
                                  scores={"dense": float(p.score)}))
        return hits

    async def count(self, mission: str) -> int:
        mission = check_mission(mission)
        name = collection_name(mission)

        def run(client: QdrantClient) -> int:
            if not client.collection_exists(name):
                return 0
            return client.count(name, exact=True).count

        return await self._call(mission, run, create=False) or 0

    async def drop(self, mission: str) -> None:
        mission = check_mission(mission)
        name = collection_name(mission)
        if self.url:
            def run(client: QdrantClient) -> None:
                if client.collection_exists(name):
                    client.delete_collection(name)
            await asyncio.to_thread(run, self._server_client())
            return

        def rm() -> None:
            with self._file_lock(mission):
                entry = self._take_cached(mission)
                if entry is not None:
                    entry.client.close()
                shutil.rmtree(self._mission_dir(mission), ignore_errors=True)
                self._bump_gen(mission)
        async with self._lock(mission):
            await asyncio.to_thread(rm)

    async def delete_document(self, mission: str, document_id: str) -> None:
        """Remove every point of one document (re-ingestion of a changed document)."""
        mission = check_mission(mission)
        name = collection_name(mission)
        selector = models.FilterSelector(filter=models.Filter(must=[
            models.FieldCondition(key="document_id", match=models.MatchValue(value=document_id))]))

        def run(client: QdrantClient) -> None:
            if client.collection_exists(name):
                client.delete(name, points_selector=selector, wait=True)
        await self._call(mission, run, create=False, writes=True)

    # --- backup hooks ------------------------------------------------------------
    async def dump(self, mission: str) -> list[dict]:
        """Every point with its vector and payload: [{"id", "vector", "payload"}]."""
        mission = check_mission(mission)
        name = collection_name(mission)

        def run(client: QdrantClient) -> list[dict]:
            if not client.collection_exists(name):
                return []
            rows: list[dict] = []
            offset = None
            while True:
                points, offset = client.scroll(name, limit=_BATCH, offset=offset,
                                               with_payload=True, with_vectors=True)
                rows.extend({"id": str(p.id), "vector": [float(x) for x in _dense(p.vector)],
                             "payload": p.payload or {}} for p in points)
                if offset is None:
                    return sorted(rows, key=lambda r: r["id"])

        return await self._call(mission, run, create=False) or []

    async def load(self, mission: str, rows: Sequence[dict]) -> None:
        """Upsert dumped points (idempotent); payload's mission is rewritten to the target."""
        mission = check_mission(mission)
        try:
            points = [models.PointStruct(id=point_id(str(r["id"])), vector=[float(x) for x in r["vector"]],
                                         payload={**(r.get("payload") or {}), "mission": mission})
                      for r in rows]
        except (KeyError, TypeError, ValueError) as exc:
            raise bad_input(f"bad vector dump row: {exc}") from None
        if len({len(_dense(p.vector)) for p in points}) > 1:
            raise bad_input("vector dump rows have mixed dimensions")
        name = collection_name(mission)
        await self._call(mission, lambda c: self._upsert_points(c, name, points))

    # --- health / lifecycle -----------------------------------------------------
    async def probe(self) -> str:
        if self.url:
            cols = await asyncio.to_thread(lambda: self._server_client().get_collections().collections)
            return f"{self.url}: {len(cols)} collections"

        def check() -> str:
            root = self._local_root()
            root.mkdir(parents=True, exist_ok=True)
            if not os.access(root, os.W_OK):
                raise PermissionError(f"{root} is not writable")
            mem = QdrantClient(location=":memory:")  # the local engine itself works
            try:
                mem.create_collection("probe", vectors_config=models.VectorParams(size=2, distance=models.Distance.COSINE))
                mem.upsert("probe", points=[models.PointStruct(id=1, vector=[1.0, 0.0])])
                mem.query_points("probe", query=[1.0, 0.0], limit=1)
            finally:
                mem.close()
            n = sum(1 for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
            return f"local mode at {root}: {n} mission storages"
        return await asyncio.to_thread(check)

    async def close(self) -> None:
        for mission in list(self._open):
            await asyncio.to_thread(self._evict, mission, True)
        if self._server is not None:
            client, self._server = self._server, None
            await asyncio.to_thread(client.close)
