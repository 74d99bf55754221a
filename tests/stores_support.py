"""Store implementations for the contract suite (tests/test_stores_contract.py).

Each *_IMPLS list names the adapters the contract runs against. Adding one is a
one-line change: Impl(name, make, env) where make(data_dir) builds the store and
env names the environment variable that must be set (server adapters; the param
is skipped when it is not). Server adapters read their settings from that env
through Settings(), so `make` can usually be `lambda d: Cls.from_settings(env_settings(d))`.

Missions are random per test, so a shared server never mixes tests' data.
"""
from __future__ import annotations

import hashlib
import math
import os
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import pytest_asyncio

from activities.stores.fulltext_sqlite import SqliteFullTextIndex
from activities.stores.fulltext_tantivy import TantivyFullTextIndex
from activities.stores.graph_sqlite import SqliteGraphStore
from activities.stores.objects_fs import FsObjectStore
from activities.stores.vectors_pgvector import PgVectorStore
from activities.stores.vectors_qdrant import QdrantVectorStore
from stratmaster.contracts.knowledge import Chunk
from stratmaster.settings import Settings
from tests.adapters_support import MINIO_ENV, OPENSEARCH_ENV, make_minio, make_opensearch


@dataclass(frozen=True)
class Impl:
    name: str
    make: Callable[..., Any]  # make(data_dir), or make(data_dir, dsn) when postgres
    env: str | None = None  # required environment variable (server adapters)
    postgres: bool = False  # make(data_dir, dsn): needs the session's PostgreSQL


def env_settings(data_dir: Path) -> Settings:
    """Settings from STRATMASTER_* env (server URLs) with a throwaway data dir."""
    return Settings(_env_file=None, data_dir=data_dir)


OBJECT_IMPLS = [
    Impl("fs", lambda d: FsObjectStore(d / "objects" / "stratmaster")),
    Impl("minio", make_minio, env=MINIO_ENV),
]
VECTOR_IMPLS = [
    Impl("pgvector", lambda d, dsn: PgVectorStore(dsn), postgres=True),
    Impl("qdrant-local", lambda d: QdrantVectorStore(data_dir=d)),
    Impl("qdrant-server", lambda d: QdrantVectorStore(url=os.environ["STRATMASTER_QDRANT_URL"]),
         env="STRATMASTER_QDRANT_URL"),
]
FULLTEXT_IMPLS = [
    Impl("tantivy", lambda d: TantivyFullTextIndex(d)),
    Impl("sqlite-fts5", lambda d: SqliteFullTextIndex(d)),
    Impl("opensearch", make_opensearch, env=OPENSEARCH_ENV),
]
GRAPH_IMPLS = [
    Impl("sqlite", lambda d: SqliteGraphStore(d)),
]


def params(impls: list[Impl]) -> list:
    return [pytest.param(i, id=i.name, marks=[pytest.mark.skipif(not os.environ.get(i.env), reason=f"{i.env} unset")]
                         if i.env else []) for i in impls]


async def _built(impl: Impl, data_dir: Path, dsn: str | None = None):
    store = impl.make(data_dir, dsn) if impl.postgres else impl.make(data_dir)
    try:
        yield store
    finally:
        close = getattr(store, "close", None)
        if close:
            await close()


@pytest_asyncio.fixture(params=params(OBJECT_IMPLS))
async def objects(request, tmp_path):
    async for s in _built(request.param, tmp_path):
        yield s


@pytest_asyncio.fixture(params=params(VECTOR_IMPLS))
async def vectors(request, tmp_path, postgres):
    async for s in _built(request.param, tmp_path, postgres.dsn):
        yield s


@pytest_asyncio.fixture(params=params(FULLTEXT_IMPLS))
async def fulltext(request, tmp_path):
    async for s in _built(request.param, tmp_path):
        yield s


@pytest_asyncio.fixture(params=params(GRAPH_IMPLS))
async def graph(request, tmp_path):
    async for s in _built(request.param, tmp_path):
        yield s


def new_mission(tag: str = "m") -> str:
    return f"{tag}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def missions() -> tuple[str, str]:
    """Two fresh mission ids (A, B)."""
    return new_mission("ma"), new_mission("mb")


# --- fake data: deterministic chunks and vectors (no embedding model) ------------

def make_chunk(document: str, ordinal: int, text: str, title: str | None = None) -> Chunk:
    doc_id = str(uuid.uuid5(uuid.NAMESPACE_URL, document))
    return Chunk(chunk_id=str(uuid.uuid5(uuid.UUID(doc_id), str(ordinal))), document_id=doc_id, ordinal=ordinal,
                 text=text, start=ordinal * 100, end=ordinal * 100 + len(text), token_count=len(text.split()),
                 title=title)


def fake_vector(seed: str, dim: int = 16) -> list[float]:
    """Deterministic unit vector from a seed string."""
    rng = random.Random(hashlib.sha256(seed.encode()).digest())
    v = [rng.gauss(0, 1) for _ in range(dim)]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def near(vec: list[float], seed: str, eps: float = 0.05) -> list[float]:
    """vec nudged slightly (deterministically): its nearest neighbour is vec."""
    noise = fake_vector(seed, len(vec))
    v = [a + eps * b for a, b in zip(vec, noise)]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


CORPUS = [
    ("doc-cats", "The cat sat on the warm mats while the kittens were sleeping", "Cats"),
    ("doc-dogs", "Dogs running fast across the park chase a red ball", "Dogs"),
    ("doc-physics", "Quantum entanglement links particles across large distances", "Physics"),
    ("doc-cafe", "The café served crème brûlée to the visiting delegation", "Dessert"),
    ("doc-markets", "Market share of electric vehicles grew in European markets", "Markets"),
]


def corpus_chunks() -> list[Chunk]:
    return [make_chunk(doc, 0, text, title) for doc, text, title in CORPUS]
