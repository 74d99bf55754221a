"""Embedded store figures: Qdrant local mode's per-operation open cost against
collection size (the price of sharing a mission between worker processes), and
the embedded BM25 engines' index/search throughput (Tantivy, the default, and SQLite FTS5).
Fake 384-d vectors; no model. Writes bench/results/stores_embedded.md.

    python bench/stores_embedded.py [--sizes 1000,5000,20000]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from activities.stores.fulltext_sqlite import SqliteFullTextIndex  # noqa: E402
from activities.stores.fulltext_tantivy import TantivyFullTextIndex  # noqa: E402
from activities.stores.vectors_qdrant import QdrantVectorStore  # noqa: E402
from tests.stores_support import fake_vector, make_chunk  # noqa: E402
from bench.results import recorded  # noqa: E402

WORDS = ("market share growth electric vehicle battery supply chain policy europe asia regulation "
         "pricing demand forecast competitor strategy risk").split()


def text_for(i: int) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(40))


async def bench_qdrant(root: Path, n: int) -> None:
    store = QdrantVectorStore(data_dir=root)
    mission = f"bench_{n}"
    chunks = [make_chunk(f"doc{i // 50}", i % 50, text_for(i)) for i in range(n)]
    vecs = [fake_vector(c.chunk_id, 384) for c in chunks]
    t0 = time.perf_counter()
    for i in range(0, n, 500):
        await store.upsert(mission, chunks[i:i + 500], vecs[i:i + 500])
    upsert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    reps = 10
    for i in range(reps):
        await store.search(mission, vecs[i], 10)
    search_ms = (time.perf_counter() - t0) / reps * 1000
    strict = QdrantVectorStore(data_dir=root, cache_clients=False)  # open+load+close every call
    t0 = time.perf_counter()
    for i in range(3):
        await strict.search(mission, vecs[i], 10)
    reopen_ms = (time.perf_counter() - t0) / 3 * 1000
    await store.close()
    print(f"qdrant-local n={n:>6}: upsert {n / upsert_s:8.0f} points/s | search, client kept "
          f"{search_ms:7.1f} ms | search, reopened per call {reopen_ms:7.1f} ms "
          f"(x{reopen_ms / search_ms:.0f})")


async def bench_fts(root: Path, n: int, engine) -> None:
    idx = engine(root)
    mission = f"bench_{n}"
    chunks = [make_chunk(f"doc{i // 50}", i % 50, text_for(i)) for i in range(n)]
    t0 = time.perf_counter()
    for i in range(0, n, 500):
        await idx.index(mission, chunks[i:i + 500])
    index_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    reps = 20
    for i in range(reps):
        await idx.search(mission, "electric vehicle market share in europe", 10)
    search_ms = (time.perf_counter() - t0) / reps * 1000
    t0 = time.perf_counter()
    await idx.index(mission, chunks[:500])  # unchanged re-index (FTS5 rewrites no postings; Tantivy replaces them)
    reindex_s = time.perf_counter() - t0
    print(f"{idx.backend:<12} n={n:>6}: index {n / index_s:8.0f} chunks/s | search {search_ms:6.1f} ms | "
          f"re-index 500 unchanged {reindex_s * 1000:6.1f} ms")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,5000,20000")
    sizes = [int(s) for s in ap.parse_args().sizes.split(",")]
    with tempfile.TemporaryDirectory() as d:
        for n in sizes:
            await bench_qdrant(Path(d), n)
        for engine in (TantivyFullTextIndex, SqliteFullTextIndex):
            for n in sizes:
                await bench_fts(Path(d), n, engine)


if __name__ == "__main__":
    with recorded(__file__, "Embedded stores"):
        asyncio.run(main())
