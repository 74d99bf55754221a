"""Contract suite for the store adapters, parametrised over implementations
(tests/stores_support.py: *_IMPLS). Fake deterministic vectors, no model."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pgvector import Vector
from temporalio.exceptions import ApplicationError

from activities.stores.base import ObjectNotFound
from activities.stores.factory import Stores, build_stores, health_probes
from activities.stores.fulltext_sqlite import SqliteFullTextIndex, fts_query
from activities.stores.fulltext_tantivy import TantivyFullTextIndex
from activities.stores.graph_sqlite import SqliteGraphStore
from activities.stores.objects_fs import FsObjectStore
from activities.stores.vectors_pgvector import PgVectorStore, search_sql, table
from activities.stores.vectors_qdrant import QdrantVectorStore, point_id
from stratmaster.contracts.knowledge import Entity, Relation
from stratmaster.errors import BAD_INPUT
from stratmaster.settings import Settings
from tests.stores_support import (  # noqa: F401  (fixtures)
    corpus_chunks, fake_vector, fulltext, graph, make_chunk, missions, near, new_mission, objects, vectors,
)

HOSTILE_MISSIONS = ["../beta", "beta/../alpha", "Alpha", "", "a", "1abc", "a" * 49, "alpha;drop",
                    "alpha\x00", "alpha beta", "alpha-beta", "tenant_x/..", "/etc", "alpha\n"]


def bad_input(exc_info) -> bool:
    return isinstance(exc_info.value, ApplicationError) and exc_info.value.type == BAD_INPUT \
        and exc_info.value.non_retryable


# --- object store --------------------------------------------------------------------------

async def test_objects_round_trip(objects, missions):
    a, _ = missions
    full = await objects.put(a, "documents/d1/report.pdf", b"%PDF-1")
    assert full == f"tenants/{a}/documents/d1/report.pdf"
    assert await objects.get(a, "documents/d1/report.pdf") == b"%PDF-1"
    assert await objects.get(a, full) == b"%PDF-1"  # the returned full key works too
    assert await objects.exists(a, "documents/d1/report.pdf")
    assert not await objects.exists(a, "documents/d1/missing.pdf")
    await objects.put(a, "documents/d1/report.pdf", b"%PDF-2")  # overwrite
    await objects.put(a, "artifacts/r.md", b"# report")
    await objects.put(a, "embeddings/e.npy", b"\x00\x01")
    assert await objects.get(a, "documents/d1/report.pdf") == b"%PDF-2"
    assert await objects.list(a) == ["artifacts/r.md", "documents/d1/report.pdf", "embeddings/e.npy"]
    assert await objects.list(a, "documents/") == ["documents/d1/report.pdf"]
    assert await objects.list(a, "art") == ["artifacts/r.md"]
    with pytest.raises(ObjectNotFound):
        await objects.get(a, "documents/nope")
    assert await objects.delete(a, "artifacts/r.md")
    assert not await objects.delete(a, "artifacts/r.md")
    assert await objects.delete_mission(a) == 2
    assert await objects.list(a) == []


async def test_objects_isolation_and_traversal(objects, missions):
    a, b = missions
    await objects.put(a, "documents/secret.txt", b"A only")
    assert await objects.list(b) == []
    assert not await objects.exists(b, "documents/secret.txt")
    with pytest.raises(ObjectNotFound):
        await objects.get(b, "documents/secret.txt")
    hostile = [f"../{a}/documents/secret.txt", f"documents/../../{a}/documents/secret.txt", "/etc/passwd",
               "documents/./secret.txt", "documents//secret.txt", "documents\\..\\secret.txt",
               f"tenants/{a}/documents/secret.txt",  # another mission's full key, asked through b
               "secret.txt", "documents", "system/backups/x", "documents/\x00x", "", "documents/.."]
    for key in hostile:
        for call in (lambda k: objects.get(b, k), lambda k: objects.exists(b, k),
                     lambda k: objects.put(b, k, b"x"), lambda k: objects.delete(b, k)):
            with pytest.raises(ApplicationError) as ei:
                await call(key)
            assert bad_input(ei), key
    for prefix in ("../", f"../{a}/", "/", "documents/../.."):
        with pytest.raises(ApplicationError):
            await objects.list(b, prefix)
    assert await objects.get(a, "documents/secret.txt") == b"A only"
    assert await objects.list(b) == []
    assert await objects.delete_mission(b) == 0
    assert await objects.list(a) == ["documents/secret.txt"]


async def test_objects_system_area(objects, missions):
    a, _ = missions
    bid = new_mission("bk")
    assert await objects.put_system(f"backups/{bid}/manifest.json", b"{}") == f"system/backups/{bid}/manifest.json"
    await objects.put_system(f"backups/{bid}/vectors.jsonl", b"")
    assert await objects.get_system(f"backups/{bid}/manifest.json") == b"{}"
    assert await objects.list_system(f"backups/{bid}/") == [f"backups/{bid}/manifest.json",
                                                            f"backups/{bid}/vectors.jsonl"]
    with pytest.raises(ObjectNotFound):
        await objects.get_system(f"backups/{bid}/nope")
    assert await objects.list(a) == []  # system objects never appear in a mission
    for key in ("../objects", "/etc/passwd", "backups/../../x", "backups//x", ""):
        with pytest.raises(ApplicationError):
            await objects.put_system(key, b"x")
        with pytest.raises(ApplicationError):
            await objects.get_system(key)
    assert await objects.delete_system(f"backups/{bid}/vectors.jsonl")
    assert await objects.list_system(f"backups/{bid}/") == [f"backups/{bid}/manifest.json"]


async def test_fs_objects_symlink_escape_and_atomic_layout(tmp_path, missions):
    a, b = missions
    store = FsObjectStore(tmp_path / "objects" / "stratmaster")
    await store.put(b, "documents/secret.txt", b"B only")
    # A symlink planted inside A's tree pointing at B's must not be followed.
    a_docs = tmp_path / "objects" / "stratmaster" / "tenants" / a / "documents"
    a_docs.mkdir(parents=True)
    (a_docs / "link").symlink_to(tmp_path / "objects" / "stratmaster" / "tenants" / b / "documents")
    with pytest.raises(ApplicationError):
        await store.get(a, "documents/link/secret.txt")
    with pytest.raises(ApplicationError):
        await store.put(a, "documents/link/secret.txt", b"overwrite")
    assert await store.get(b, "documents/secret.txt") == b"B only"
    # Layout is the bucket's, and temp files live outside it.
    assert (tmp_path / "objects" / "stratmaster" / "tenants" / b / "documents" / "secret.txt").read_bytes() == b"B only"
    assert not list((tmp_path / "objects" / ".tmp").glob("*"))


async def test_fs_objects_concurrent_writers_never_expose_partial_objects(tmp_path, missions):
    a, _ = missions
    store = FsObjectStore(tmp_path / "objects" / "stratmaster")
    blobs = [bytes([i]) * 200_000 for i in range(8)]
    seen: set[bytes] = set()

    async def reader():
        for _ in range(40):
            if await store.exists(a, "artifacts/big.bin"):
                data = await store.get(a, "artifacts/big.bin")
                assert data in blobs  # always one complete version
                seen.add(data[:1])
            await asyncio.sleep(0)
    await asyncio.gather(reader(), *(store.put(a, "artifacts/big.bin", b) for b in blobs), reader())
    assert await store.get(a, "artifacts/big.bin") in blobs
    assert await store.list(a) == ["artifacts/big.bin"]


# --- hostile mission ids, every store and entry point ------------------------------------

def _hostile_calls(kind: str, store) -> dict:
    chunk = make_chunk("d", 0, "text")
    return {
        "objects": lambda: {
            "put": lambda m: store.put(m, "documents/x", b"x"),
            "get": lambda m: store.get(m, "documents/x"),
            "exists": lambda m: store.exists(m, "documents/x"),
            "list": lambda m: store.list(m),
            "delete": lambda m: store.delete(m, "documents/x"),
            "delete_mission": lambda m: store.delete_mission(m),
        },
        "vectors": lambda: {
            "ensure_collection": lambda m: store.ensure_collection(m, 4),
            "upsert": lambda m: store.upsert(m, [chunk], [[0.1, 0.2, 0.3, 0.4]]),
            "search": lambda m: store.search(m, [0.1, 0.2, 0.3, 0.4], 3),
            "count": lambda m: store.count(m),
            "drop": lambda m: store.drop(m),
            "dump": lambda m: store.dump(m),
            "load": lambda m: store.load(m, []),
        },
        "fulltext": lambda: {
            "ensure_index": lambda m: store.ensure_index(m),
            "index": lambda m: store.index(m, [chunk]),
            "search": lambda m: store.search(m, "text", 3),
            "count": lambda m: store.count(m),
            "drop": lambda m: store.drop(m),
            "dump": lambda m: store.dump(m),
            "load": lambda m: store.load(m, []),
        },
        "graph": lambda: {
            "ensure_space": lambda m: store.ensure_space(m),
            "upsert": lambda m: store.upsert(m, [Entity(entity_id="e", name="E", type="CONCEPT")], []),
            "neighbours": lambda m: store.neighbours(m, ["E"]),
            "count": lambda m: store.count(m),
            "drop": lambda m: store.drop(m),
            "dump": lambda m: store.dump(m),
            "load": lambda m: store.load(m, []),
        },
    }[kind]()


async def _assert_hostile_rejected(kind: str, store, tmp_path) -> None:
    for mission in HOSTILE_MISSIONS + [None, 42]:
        for name, call in _hostile_calls(kind, store).items():
            with pytest.raises(ApplicationError) as ei:
                await call(mission)
            assert bad_input(ei), (kind, name, mission)
    # Nothing was created anywhere for any of them.
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_hostile_mission_ids_rejected_objects(objects, tmp_path):
    await _assert_hostile_rejected("objects", objects, tmp_path)


async def test_hostile_mission_ids_rejected_vectors(vectors, tmp_path):
    await _assert_hostile_rejected("vectors", vectors, tmp_path)


async def test_hostile_mission_ids_rejected_fulltext(fulltext, tmp_path):
    await _assert_hostile_rejected("fulltext", fulltext, tmp_path)


async def test_hostile_mission_ids_rejected_graph(graph, tmp_path):
    await _assert_hostile_rejected("graph", graph, tmp_path)


# --- vectors ---------------------------------------------------------------------------------

async def test_vectors_upsert_idempotent_and_relevant(vectors, missions):
    a, _ = missions
    chunks = corpus_chunks()
    vecs = [fake_vector(c.chunk_id) for c in chunks]
    await vectors.upsert(a, chunks, vecs)
    await vectors.upsert(a, chunks, vecs)  # same chunks again: no duplicates
    assert await vectors.count(a) == len(chunks)
    for i, c in enumerate(chunks):
        hits = await vectors.search(a, near(vecs[i], f"q{i}"), 3)
        assert hits[0].chunk_id == c.chunk_id and hits[0].source == "dense"
        assert hits[0].document_id == c.document_id and hits[0].text == c.text
        assert (hits[0].start, hits[0].end, hits[0].title) == (c.start, c.end, c.title)
        assert hits[0].score > 0.95 and hits[0].score >= hits[1].score
    # Re-upserting a chunk with new content replaces it (still one point).
    changed = chunks[0].model_copy(update={"text": "rewritten"})
    await vectors.upsert(a, [changed], [vecs[0]])
    assert await vectors.count(a) == len(chunks)
    assert (await vectors.search(a, vecs[0], 1))[0].text == "rewritten"


async def test_vectors_isolation_and_drop(vectors, missions):
    a, b = missions
    chunks = corpus_chunks()
    vecs = [fake_vector(c.chunk_id) for c in chunks]
    await vectors.upsert(a, chunks, vecs)
    assert await vectors.count(b) == 0
    assert await vectors.search(b, vecs[0], 5) == []
    assert await vectors.dump(b) == []
    await vectors.upsert(b, chunks[:1], [vecs[1]])  # same chunk id, different mission
    assert await vectors.count(a) == len(chunks) and await vectors.count(b) == 1
    assert (await vectors.search(a, vecs[0], 1))[0].score > 0.99  # A's point untouched by B's upsert
    await vectors.drop(b)
    assert await vectors.count(b) == 0 and await vectors.count(a) == len(chunks)
    await vectors.drop(a)
    await vectors.drop(a)  # idempotent
    assert await vectors.count(a) == 0 and await vectors.search(a, vecs[0], 3) == []


async def test_vectors_bad_input(vectors, missions):
    a, _ = missions
    c = corpus_chunks()[:2]
    for args in ((c, [fake_vector("x")]), (c, [fake_vector("x", 8), fake_vector("y", 16)])):
        with pytest.raises(ApplicationError) as ei:
            await vectors.upsert(a, *args)
        assert bad_input(ei)
    await vectors.ensure_collection(a, 16)
    await vectors.ensure_collection(a, 16)
    with pytest.raises(ApplicationError) as ei:
        await vectors.upsert(a, c[:1], [fake_vector("x", 8)])  # wrong dimension for the collection
    assert bad_input(ei)
    await vectors.upsert(a, [], [])
    assert await vectors.count(a) == 0


async def test_vectors_dump_load_round_trip(vectors, missions):
    a, b = missions
    chunks = corpus_chunks() + [make_chunk("doc-extra", i, f"extra chunk {i}") for i in range(300)]
    vecs = [fake_vector(c.chunk_id) for c in chunks]
    await vectors.upsert(a, chunks, vecs)
    rows = await vectors.dump(a)
    assert len(rows) == len(chunks)  # scroll paginates past one page
    assert {r["id"] for r in rows} == {c.chunk_id for c in chunks}
    await vectors.load(b, rows)
    await vectors.load(b, rows)  # idempotent
    assert await vectors.count(b) == len(chunks)
    again = {r["id"]: r for r in await vectors.dump(b)}
    for r in rows:
        assert again[r["id"]]["payload"] == {**r["payload"], "mission": b}
        assert max(abs(x - y) for x, y in zip(again[r["id"]]["vector"], r["vector"])) < 1e-5
    hit = (await vectors.search(b, vecs[2], 1))[0]
    assert hit.chunk_id == chunks[2].chunk_id and hit.text == chunks[2].text


async def test_delete_document(vectors, fulltext, missions):
    a, b = missions
    chunks = corpus_chunks() + [make_chunk("doc-cats", 1, "A second cat chunk about kittens")]
    vecs = [fake_vector(c.chunk_id) for c in chunks]
    for store in (vectors, fulltext):
        if not hasattr(store, "delete_document"):
            pytest.skip(f"{type(store).__name__} has no delete_document")
    for m in (a, b):
        await vectors.upsert(m, chunks, vecs)
        await fulltext.index(m, chunks)
    cats = chunks[0].document_id
    await vectors.delete_document(a, cats)
    assert await fulltext.delete_document(a, cats) == 2
    assert await vectors.count(a) == await fulltext.count(a) == len(chunks) - 2
    assert all(h.document_id != cats for h in await vectors.search(a, vecs[0], 10))
    assert await fulltext.search(a, "kittens", 5) == []
    assert await vectors.count(b) == await fulltext.count(b) == len(chunks)  # other mission untouched


def test_point_ids():
    c = make_chunk("d", 0, "x")
    assert point_id(c.chunk_id) == c.chunk_id
    assert point_id("not-a-uuid") == point_id("not-a-uuid") != point_id("not-a-uuid-2")


async def test_qdrant_collection_settings(tmp_path, missions):
    """HNSW m/ef_construct and int8 quantisation go into create_collection. Local mode
    accepts and discards them (it searches brute force), so what is sent is checked
    with a recording stand-in for the client (no Qdrant server binary here)."""
    a, _ = missions

    class RecordingClient:
        def __init__(self):
            self.created = {}

        def collection_exists(self, name):
            return name in self.created

        def create_collection(self, name, **kw):
            self.created[name] = kw

    store = QdrantVectorStore(data_dir=tmp_path, hnsw_m=32, hnsw_ef_construct=128, quantization=True)
    rec = RecordingClient()
    store._ensure(rec, f"tenant_{a}_chunks", 384)
    kw = rec.created[f"tenant_{a}_chunks"]
    assert (kw["vectors_config"].size, kw["vectors_config"].distance.name) == (384, "COSINE")
    assert (kw["hnsw_config"].m, kw["hnsw_config"].ef_construct) == (32, 128)
    assert kw["quantization_config"].scalar.type.name == "INT8"
    rec = RecordingClient()
    QdrantVectorStore(data_dir=tmp_path)._ensure(rec, "c", 8)
    assert rec.created["c"]["quantization_config"] is None and rec.created["c"]["hnsw_config"].m == 16

    # Local mode: one storage per mission, released after each call, removed by drop.
    await store.upsert(a, corpus_chunks()[:1], [fake_vector("x", 384)])
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "qdrant" / a))  # opens: the store does not hold the lock
    try:
        cfg = client.get_collection(f"tenant_{a}_chunks").config
        assert cfg.params.vectors.size == 384 and cfg.params.vectors.distance.name == "COSINE"
    finally:
        client.close()
    await store.drop(a)
    assert not (tmp_path / "qdrant" / a).exists()


async def test_qdrant_local_cached_clients_see_other_writers(tmp_path):
    """Two store instances = two processes' caches (each its own file descriptors)."""
    a = new_mission("cache")
    s1, s2 = QdrantVectorStore(data_dir=tmp_path), QdrantVectorStore(data_dir=tmp_path)
    chunks = corpus_chunks()
    vecs = [fake_vector(c.chunk_id) for c in chunks]
    await s1.upsert(a, chunks[:2], vecs[:2])
    assert await s1.count(a) == 2
    kept = s1._open[a].client
    await s1.search(a, vecs[0], 1)
    assert s1._open[a].client is kept  # a quiet mission: reads reuse the open client
    await s2.upsert(a, chunks[2:], vecs[2:])  # opens although s1 keeps a client open
    assert await s1.count(a) == 5  # s1 noticed the other writer and reloaded
    assert (await s1.search(a, vecs[4], 1))[0].chunk_id == chunks[4].chunk_id
    await s2.drop(a)
    assert await s1.count(a) == 0 and await s1.search(a, vecs[0], 1) == []
    await s1.upsert(a, chunks[:1], vecs[:1])
    assert await s2.count(a) == 1
    strict = QdrantVectorStore(data_dir=tmp_path, cache_clients=False)
    assert await strict.count(a) == 1 and not strict._open
    for s in (s1, s2):
        await s.close()
        assert not s._open
    # LRU bound on clients kept open
    small = QdrantVectorStore(data_dir=tmp_path, max_cached=2)
    for m in (new_mission("l1"), new_mission("l2"), new_mission("l3")):
        await small.upsert(m, chunks[:1], vecs[:1])
    assert len(small._open) == 2
    await small.close()


_WORKER = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, sys.argv[4])
    from activities.stores.vectors_qdrant import QdrantVectorStore
    from tests.stores_support import make_chunk, fake_vector

    async def main(data_dir, mission, tag):
        store = QdrantVectorStore(data_dir=data_dir)
        for batch in range(6):
            chunks = [make_chunk(f"{tag}-{batch}", i, f"{tag} chunk {batch} {i}") for i in range(10)]
            vecs = [fake_vector(c.chunk_id) for c in chunks]
            # two coroutines of this process race each other as well as the other process
            await asyncio.gather(store.upsert(mission, chunks[:5], vecs[:5]), store.upsert(mission, chunks[5:], vecs[5:]),
                                 store.search(mission, vecs[0], 3))
            hits = await store.search(mission, vecs[3], 1)
            assert hits[0].chunk_id == chunks[3].chunk_id, hits
            assert await store.count(mission) >= (batch + 1) * 10
        print("ok", tag)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
""")


def test_two_processes_share_local_qdrant_mission(tmp_path):
    mission = new_mission("shared")
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path), mission, tag, root],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for tag in ("ingest", "research")]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert out.startswith("ok")

    async def check():
        return await QdrantVectorStore(data_dir=tmp_path).count(mission)
    assert asyncio.run(check()) == 120


# --- full text -------------------------------------------------------------------------------

async def test_fulltext_idempotent_and_relevant(fulltext, missions):
    a, _ = missions
    chunks = corpus_chunks()
    await fulltext.ensure_index(a)
    await fulltext.index(a, chunks)
    await fulltext.index(a, chunks)
    assert await fulltext.count(a) == len(chunks)
    hits = await fulltext.search(a, "cat on the mats", 5)
    assert hits[0].chunk_id == chunks[0].chunk_id and hits[0].source == "bm25" and hits[0].score > 0
    assert all(h.score > 0 for h in hits) and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert (hits[0].document_id, hits[0].start, hits[0].end, hits[0].title) == (
        chunks[0].document_id, chunks[0].start, chunks[0].end, chunks[0].title)
    assert (await fulltext.search(a, "run dog", 5))[0].chunk_id == chunks[1].chunk_id  # stemming
    assert (await fulltext.search(a, "creme brulee cafe", 5))[0].chunk_id == chunks[3].chunk_id  # diacritics
    assert (await fulltext.search(a, "physics", 5))[0].chunk_id == chunks[2].chunk_id  # title is indexed
    assert await fulltext.search(a, "zeppelin", 5) == []
    assert await fulltext.search(a, "", 5) == [] and await fulltext.search(a, "   ", 5) == []
    # Re-indexing a chunk with new text replaces its postings.
    await fulltext.index(a, [chunks[2].model_copy(update={"text": "Zeppelins float over the harbour"})])
    assert await fulltext.count(a) == len(chunks)
    assert [h.chunk_id for h in await fulltext.search(a, "zeppelin", 5)] == [chunks[2].chunk_id]
    assert await fulltext.search(a, "entanglement", 5) == []


async def test_fulltext_equal_scores_are_ordered_by_chunk_id(fulltext, missions):
    """Ties are cut by chunk_id (which a restore keeps), whatever order the chunks went in."""
    a, _ = missions
    same = [make_chunk(f"twin{i}", 0, "identical words about gliders") for i in range(12)]
    for batch in (same[::2], same[1::2]):
        await fulltext.index(a, batch)
    hits = await fulltext.search(a, "gliders", 5)
    assert [h.chunk_id for h in hits] == sorted(c.chunk_id for c in same)[:5]


@pytest.mark.parametrize("hostile,plain", [
    ('"; DROP TABLE chunks; --', "drop table chunks"),
    ("NEAR(", "near"),
    ("cat NEAR(dog", "cat near dog"),
    ("a OR", "a or"),
    ("*", ""),
    ("cat*", "cat"),
    ("NOT cat", "not cat"),
    ("cat AND NOT dogs", "cat and not dogs"),
    ("title:cats", "title cats"),
    ("^cat", "cat"),
    ('"unterminated', "unterminated"),
    ("(cat OR", "cat or"),
    ("cat -dogs +market", "cat dogs market"),
    ("{text title}: cat", "text title cat"),
])
async def test_fulltext_query_injection_is_plain_text(fulltext, missions, hostile, plain):
    a, _ = missions
    await fulltext.index(a, corpus_chunks())
    got = await fulltext.search(a, hostile, 10)
    want = await fulltext.search(a, plain, 10)
    assert [(h.chunk_id, round(h.score, 9)) for h in got] == [(h.chunk_id, round(h.score, 9)) for h in want]
    assert await fulltext.count(a) == len(corpus_chunks())
    if "cat" in plain.split():  # "NOT cat" still finds cats: NOT is a word, not an operator
        assert corpus_chunks()[0].chunk_id in [h.chunk_id for h in got]


def test_fts_query_shape():
    assert fts_query("*") is None
    assert fts_query('Cat "x" NEAR(') == '"cat" OR "x" OR "near"'
    assert fts_query(" ".join(f"w{i}" for i in range(500))).count(" OR ") == 63  # bounded


async def test_fulltext_isolation_drop_and_round_trip(fulltext, missions):
    a, b = missions
    chunks = corpus_chunks()
    await fulltext.index(a, chunks)
    assert await fulltext.search(b, "cat", 5) == [] and await fulltext.count(b) == 0
    assert await fulltext.dump(b) == []
    rows = await fulltext.dump(a)
    assert sorted(r["chunk_id"] for r in rows) == sorted(c.chunk_id for c in chunks)
    await fulltext.load(b, rows)
    await fulltext.load(b, rows)
    assert await fulltext.count(b) == len(chunks)
    assert await fulltext.dump(b) == rows
    assert [h.chunk_id for h in await fulltext.search(b, "kittens", 5)] == [chunks[0].chunk_id]
    await fulltext.drop(a)
    await fulltext.drop(a)
    assert await fulltext.count(a) == 0 and await fulltext.search(a, "cat", 5) == []
    assert await fulltext.count(b) == len(chunks)
    with pytest.raises(ApplicationError):
        await fulltext.load(b, [{"chunk_id": "x"}])


@pytest.mark.parametrize("engine", ["fulltext_tantivy:TantivyFullTextIndex", "fulltext_sqlite:SqliteFullTextIndex"])
def test_fulltext_two_processes_write_one_mission(tmp_path, engine):
    """Concurrent writers in two processes both succeed (SQLite: WAL + busy timeout; Tantivy:
    each commit waits for the other process's writer lock)."""
    mission = new_mission("fts")
    module, cls = engine.split(":")
    root = str(Path(__file__).resolve().parent.parent)
    code = textwrap.dedent("""
        import asyncio, sys
        from activities.stores.MODULE import CLS as Index
        from tests.stores_support import make_chunk
        async def main():
            idx = Index(sys.argv[1])
            for b in range(20):
                await idx.index(sys.argv[2], [make_chunk(f"{sys.argv[3]}-{b}", i, f"word{i} {sys.argv[3]}") for i in range(5)])
                await idx.search(sys.argv[2], "word1", 3)
        asyncio.run(main())
    """).replace("MODULE", module).replace("CLS", cls)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), mission, tag], cwd=root,
                              env={**os.environ, "PYTHONPATH": root}, stderr=subprocess.PIPE, text=True)
             for tag in ("p1", "p2")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
    index = TantivyFullTextIndex(tmp_path) if cls == "TantivyFullTextIndex" else SqliteFullTextIndex(tmp_path)
    assert asyncio.run(index.count(mission)) == 200


async def test_tantivy_takes_over_a_missions_fts5_index_and_sees_other_processes_drops(tmp_path, missions):
    """A mission indexed by the previous embedded engine (SQLite FTS5) is copied into Tantivy
    the first time it is opened: upgrading loses no chunk. A reader that cached a mission's
    index sees it dropped and rebuilt by another process."""
    a, _ = missions
    chunks = corpus_chunks()
    await SqliteFullTextIndex(tmp_path).index(a, chunks)
    reader = TantivyFullTextIndex(tmp_path)
    assert await reader.count(a) == len(chunks)
    assert [h.chunk_id for h in await reader.search(a, "kittens", 5)] == [chunks[0].chunk_id]
    assert not (tmp_path / "fulltext" / f"{a}.db").exists()  # renamed: not copied twice
    other = TantivyFullTextIndex(tmp_path)  # another process's instance
    await other.drop(a)
    assert await reader.count(a) == 0 and await reader.search(a, "kittens", 5) == []
    await other.index(a, [chunks[2]])
    assert [h.chunk_id for h in await reader.search(a, "physics", 5)] == [chunks[2].chunk_id]
    assert await reader.count(a) == 1


async def test_tantivy_takeover_that_fails_leaves_nothing_half_made(tmp_path, missions, monkeypatch):
    """Copying a legacy FTS5 index that fails with any error (here a row the dump refuses)
    removes its temporary directory and keeps the legacy index to copy on the next open."""
    a, _ = missions
    chunks = corpus_chunks()
    await SqliteFullTextIndex(tmp_path).index(a, chunks)

    async def refused(self, mission):
        raise ValueError("a row the dump refuses")

    with monkeypatch.context() as m:
        m.setattr(SqliteFullTextIndex, "dump", refused)
        with pytest.raises(ValueError, match="refuses"):
            await TantivyFullTextIndex(tmp_path).count(a)
    assert [p.name for p in (tmp_path / "fulltext-tantivy").iterdir()] == []
    assert (tmp_path / "fulltext" / f"{a}.db").exists()
    assert await TantivyFullTextIndex(tmp_path).count(a) == len(chunks)  # copied on the next open


# --- graph -----------------------------------------------------------------------------------

def _graph_data():
    ents = [Entity(entity_id="org:acme", name="Acme Corp", type="ORGANIZATION"),
            Entity(entity_id="per:ada", name="Ada Lovelace", type="PERSON"),
            Entity(entity_id="con:ev", name="Électric Vehicles", type="CONCEPT"),
            Entity(entity_id="con:x", name="x'); DROP TABLE entities; --", type="CONCEPT"),
            Entity(entity_id="org:lone", name="Lonely Inc", type="ORGANIZATION")]
    rels = [Relation(source_id="per:ada", target_id="org:acme", type="RELATES_TO", weight=1.0, context="works at"),
            Relation(source_id="org:acme", target_id="con:ev", type="MENTIONS", weight=3.0),
            Relation(source_id="con:x", target_id="org:acme", type="MENTIONS", weight=0.5)]
    return ents, rels


async def test_graph_upsert_idempotent_and_neighbours(graph, missions):
    a, _ = missions
    ents, rels = _graph_data()
    await graph.ensure_space(a)
    await graph.upsert(a, ents, rels)
    await graph.upsert(a, ents, rels)
    assert await graph.count(a) == (5, 3)
    got = await graph.neighbours(a, ["ACME corp"])  # case-insensitive, both directions, by weight
    assert [e.entity_id for e in got] == ["con:ev", "per:ada", "con:x"]
    assert got[2].name == "x'); DROP TABLE entities; --"  # stored literally
    assert [e.entity_id for e in await graph.neighbours(a, ["électric vehicles"])] == ["org:acme"]
    assert [e.entity_id for e in await graph.neighbours(a, ["Acme Corp"], limit=1)] == ["con:ev"]
    # The seeds themselves are excluded even when linked to each other.
    assert {e.entity_id for e in await graph.neighbours(a, ["Acme Corp", "Ada Lovelace"])} == {"con:ev", "con:x"}
    assert await graph.neighbours(a, ["Lonely Inc"]) == []
    assert await graph.neighbours(a, ["x'); DROP TABLE entities; --"]) == [ents[0]]
    assert await graph.neighbours(a, ["nobody", "' OR 1=1 --"]) == []
    assert await graph.neighbours(a, []) == []
    # Upserts update in place.
    await graph.upsert(a, [Entity(entity_id="per:ada", name="Ada King", type="PERSON")],
                       [Relation(source_id="per:ada", target_id="org:acme", type="RELATES_TO", weight=10.0)])
    assert await graph.count(a) == (5, 3)
    assert (await graph.neighbours(a, ["acme corp"]))[0] == Entity(entity_id="per:ada", name="Ada King", type="PERSON")


async def test_graph_isolation_drop_and_round_trip(graph, missions):
    a, b = missions
    ents, rels = _graph_data()
    await graph.upsert(a, ents, rels)
    assert await graph.count(b) == (0, 0) and await graph.neighbours(b, ["Acme Corp"]) == []
    assert await graph.dump(b) == []
    rows = await graph.dump(a)
    assert sum(r["kind"] == "entity" for r in rows) == 5 and sum(r["kind"] == "relation" for r in rows) == 3
    await graph.load(b, rows)
    await graph.load(b, rows)
    assert await graph.count(b) == (5, 3)
    assert await graph.dump(b) == rows
    await graph.drop(a)
    await graph.drop(a)
    assert await graph.count(a) == (0, 0) and await graph.count(b) == (5, 3)
    with pytest.raises(ApplicationError):
        await graph.load(b, [{"kind": "wat"}])


# --- factory ---------------------------------------------------------------------------------

async def test_factory_embedded_defaults_health_and_drop_mission(tmp_path, missions, postgres):
    a, b = missions
    settings = Settings(_env_file=None, data_dir=tmp_path, qdrant_url=None, opensearch_url=None,
                        nebula_hosts=None, minio_endpoint=None, database_url=postgres.dsn)
    assert isinstance(build_stores(settings.model_copy(update={"embedded_vectors": "qdrant-local"})).vectors,
                      QdrantVectorStore)
    assert isinstance(build_stores(settings.model_copy(update={"embedded_fulltext": "sqlite-fts5"})).fulltext,
                      SqliteFullTextIndex)
    stores = build_stores(settings)
    assert isinstance(stores, Stores)
    assert isinstance(stores.objects, FsObjectStore) and isinstance(stores.vectors, PgVectorStore)
    assert isinstance(stores.fulltext, TantivyFullTextIndex) and isinstance(stores.graph, SqliteGraphStore)
    probes = health_probes(settings)
    assert set(probes) >= {"objects", "vectors", "fulltext", "graph"}
    for name, (backend, probe) in probes.items():
        assert backend in ("filesystem", "pgvector", "tantivy", "sqlite-graph"), name
        assert await probe()
    chunks = corpus_chunks()
    ents, rels = _graph_data()
    for m in (a, b):
        await stores.objects.put(m, "documents/x.txt", b"x")
        await stores.vectors.upsert(m, chunks, [fake_vector(c.chunk_id) for c in chunks])
        await stores.fulltext.index(m, chunks)
        await stores.graph.upsert(m, ents, rels)
    await stores.drop_mission(a)
    assert (await stores.objects.list(a), await stores.vectors.count(a), await stores.fulltext.count(a),
            await stores.graph.count(a)) == ([], 0, 0, (0, 0))
    assert (await stores.objects.list(b), await stores.vectors.count(b), await stores.fulltext.count(b),
            await stores.graph.count(b)) == (["documents/x.txt"], len(chunks), len(chunks), (5, 3))
    await stores.close()


def test_factory_unreachable_server_fails_its_probe_only(tmp_path, postgres):
    settings = Settings(_env_file=None, data_dir=tmp_path, nebula_hosts="127.0.0.1:1", qdrant_url=None,
                        database_url=postgres.dsn)
    probes = health_probes(settings)
    with pytest.raises(Exception):  # no adapter yet, or nothing listening on port 1
        asyncio.run(probes["graph"][1]())
    assert probes["vectors"][0] == "pgvector" and "pgvector 0.8" in asyncio.run(probes["vectors"][1]())


async def test_pgvector_returns_more_rows_than_the_hnsw_default(postgres, missions):
    """An HNSW scan returns at most hnsw.ef_search rows (pgvector's default 40): the store keeps
    it above the rows asked for on every pooled connection, also after the pool resets one."""
    a, _ = missions
    store = PgVectorStore(postgres.dsn, pool_max_size=1)
    try:
        chunks = [make_chunk(f"doc{i}", 0, f"chunk {i}") for i in range(2000)]
        await store.upsert(a, chunks, [fake_vector(c.chunk_id) for c in chunks])
        for _ in range(3):  # the one connection, released and reset between searches
            assert len(await store.search(a, fake_vector("q"), 100)) == 100
            assert len(await store.search(a, fake_vector("q"), 150)) == 150
        await store.drop(a)
    finally:
        await store.close()


async def test_pgvector_search_takes_the_hnsw_index_on_a_mid_sized_mission(postgres, missions):
    """pgvector costs an HNSW scan by ef_search: at the store's 200 the planner chose a sequential
    scan and a sort (every row's distance computed) for missions under ~15k chunks, 20-55 ms at
    5k where the index answers in 2-5 ms. The store's sessions take the index at any size."""
    a, _ = missions
    store = PgVectorStore(postgres.dsn, pool_max_size=1)
    try:
        chunks = [make_chunk(f"doc{i}", 0, f"chunk {i}") for i in range(3000)]
        await store.upsert(a, chunks, [fake_vector(c.chunk_id) for c in chunks])
        async with (await store._pool_now()).acquire() as conn:
            await conn.execute(f"ANALYZE {table(a)}")  # the statistics autovacuum would gather
            have = await store._collection(conn, a)
            assert have is not None
            plan = "\n".join(r[0] for r in await conn.fetch(
                "EXPLAIN " + search_sql(a, have), Vector(fake_vector("q")), 50))
        assert "_hnsw" in plan and "Seq Scan" not in plan, plan
        assert len(await store.search(a, fake_vector("chunk 7"), 50)) == 50
        await store.drop(a)
    finally:
        await store.close()
