"""Per-mission store parameters from the cartridge's `storage` section reach the
stores: activating a mission (real Temporal, PostgreSQL, mission worker) creates
its pgvector table with an HNSW index built with the cartridge's m / ef_construct
(quantization: a half-precision index), checked in PostgreSQL's own catalogue,
and passes storage.fulltext shards/replicas to a full-text adapter that takes them
(OpenSearch, checked against the real server when STRATMASTER_TEST_OPENSEARCH_URL is set).

Qdrant LOCAL mode (opt-in embedded alternative) searches exactly and drops HNSW,
quantization and sharding parameters, so the Qdrant adapter records the parameters
it asked for in the collection's metadata; its test checks that record and the
arguments actually given to create_collection."""
from __future__ import annotations

import pytest
from qdrant_client import QdrantClient
from temporalio.exceptions import ApplicationError

from activities.stores.base import collection_name
from activities.stores.vectors_pgvector import PgVectorStore
from activities.stores.vectors_qdrant import QdrantVectorStore
from tests.adapters_support import OPENSEARCH_ENV, require_server
from tests.support.postgres import pg_connect
from tests.stores_support import fake_vector, make_chunk
from tests.missions_support import activate, cartridge_text, mission_worker, new_mission, replay, start_activation

TUNED = {"hnsw_m": 32, "hnsw_ef_construct": 128, "quantization": "int8", "shards": 2, "replicas": 1}


@pytest.fixture
def create_calls(monkeypatch) -> list[dict]:
    """Every QdrantClient.create_collection call's keyword arguments (the real call still runs)."""
    calls: list[dict] = []
    original = QdrantClient.create_collection

    def recording(self, collection_name, *args, **kwargs):
        calls.append({"name": collection_name, **kwargs})
        return original(self, collection_name, *args, **kwargs)

    monkeypatch.setattr(QdrantClient, "create_collection", recording)
    return calls


async def _collection_info(store: QdrantVectorStore, mission: str):
    name = collection_name(mission)
    return await store._call(mission, lambda c: c.get_collection(name), create=False)


async def _index_def(settings, mission: str) -> str:
    """The mission's HNSW index as PostgreSQL reports it (pg_indexes.indexdef)."""
    async with pg_connect(settings) as conn:
        return await conn.fetchval("SELECT indexdef FROM pg_indexes WHERE schemaname = 'vectors' AND indexname = $1",
                                   f"m_{mission}_hnsw") or ""


async def test_activation_applies_cartridge_vector_and_index_config(client, settings):
    mission = new_mission("vcfg")
    fulltext_calls: list[dict] = []

    def record_fulltext(spec):
        # The embedded full-text index has no shards; give this worker's instance an
        # OpenSearch-shaped ensure_index (a recording wrapper around the real one) to
        # see what the activation passes. No activity is replaced.
        fulltext = spec.extra["stores"].fulltext
        real = fulltext.ensure_index

        async def ensure_index(mission: str, *, shards: int | None = None, replicas: int | None = None) -> None:
            fulltext_calls.append({"mission": mission, "shards": shards, "replicas": replicas})
            await real(mission)

        fulltext.ensure_index = ensure_index
        return {}

    text = cartridge_text(mission, storage={"vectors": TUNED, "fulltext": {"shards": 3, "replicas": 2}})
    async with mission_worker(client, settings, overrides=record_fulltext) as spec:
        handle = await start_activation(client, text)
        res = await handle.result()
        assert res.status == "activated"
        config = await spec.extra["stores"].vectors.collection_config(mission)

    assert config == {"dim": 384, "hnsw_m": 32, "hnsw_ef_construct": 128, "quantization": True,
                      "shards": 2, "replicas": 1}
    index = await _index_def(settings, mission)  # the index PostgreSQL built: int8 asked, halfvec given
    assert "USING hnsw" in index and "halfvec_cosine_ops" in index, index
    assert "m='32'" in index and "ef_construction='128'" in index, index
    assert fulltext_calls == [{"mission": mission, "shards": 3, "replicas": 2}]
    await replay(client, [handle])


async def test_activation_without_tuning_uses_settings(client, settings):
    """The demo cartridge's storage defaults (m=16, ef=64, no quantization) are passed
    explicitly; the collection records them."""
    mission = new_mission("vdef")
    async with mission_worker(client, settings) as spec:
        assert (await activate(client, cartridge_text(mission))).status == "activated"
        config = await spec.extra["stores"].vectors.collection_config(mission)
    assert config == {"dim": 384, "hnsw_m": 16, "hnsw_ef_construct": 64, "quantization": False,
                      "shards": 1, "replicas": 1}
    index = await _index_def(settings, mission)
    assert "vector_cosine_ops" in index and "m='16'" in index and "ef_construction='64'" in index, index


async def test_pgvector_falls_back_to_settings_and_keeps_existing(settings):
    store = PgVectorStore(settings.database_url, hnsw_m=20, hnsw_ef_construct=90, quantization=True)
    try:
        a, b, c = new_mission("pa"), new_mission("pb"), new_mission("pc")
        await store.ensure_collection(a, 8)  # nothing given: the store's settings
        assert await store.collection_config(a) == {"dim": 8, "hnsw_m": 20, "hnsw_ef_construct": 90,
                                                    "quantization": True}
        assert "halfvec" in await _index_def(settings, a)
        chunks = [make_chunk(f"doc{i}", 0, f"chunk {i}") for i in range(50)]
        vecs = [fake_vector(c.chunk_id, 8) for c in chunks]
        await store.upsert(a, chunks, vecs)
        for i in (0, 17, 49):  # searched through the half-precision index, scored exactly
            hit = (await store.search(a, vecs[i], 3))[0]
            assert hit.chunk_id == chunks[i].chunk_id and hit.score > 0.999
        await store.ensure_collection(b, 8, hnsw_m=48, quantization=False)  # partial override
        await store.ensure_collection(b, 8, hnsw_m=64)  # an existing table keeps what it was created with
        assert (await store.collection_config(b))["hnsw_m"] == 48
        assert "m='48'" in await _index_def(settings, b)
        await store.ensure_collection(c, 8, hnsw_m=0)  # as in Qdrant: no graph, exact search
        assert await _index_def(settings, c) == ""
        for bad in ({"hnsw_m": -1}, {"hnsw_ef_construct": "big"}, {"quantization": "int8"}, {"shards": 0},
                    {"replicas": True}):
            with pytest.raises(ApplicationError) as ei:
                await store.ensure_collection(new_mission("bad"), 8, **bad)
            assert ei.value.non_retryable, bad
        for m in (a, b, c):
            await store.drop(m)
    finally:
        await store.close()


async def test_qdrant_falls_back_to_settings_and_keeps_existing(tmp_path, create_calls):
    store = QdrantVectorStore(data_dir=tmp_path, hnsw_m=20, hnsw_ef_construct=90, quantization=True)
    try:
        a, b = new_mission("fa"), new_mission("fb")
        await store.ensure_collection(a, 8)  # nothing given: the store's settings
        assert (await _collection_info(store, a)).config.metadata["stratmaster"] == {
            "hnsw_m": 20, "hnsw_ef_construct": 90, "quantization": True}
        call = next(c for c in create_calls if c["name"] == collection_name(a))
        assert call["hnsw_config"].m == 20 and call["quantization_config"] is not None
        assert call["shard_number"] is None and call["replication_factor"] is None

        await store.ensure_collection(b, 8, hnsw_m=48, quantization=False)  # partial override
        assert (await _collection_info(store, b)).config.metadata["stratmaster"] == {
            "hnsw_m": 48, "hnsw_ef_construct": 90, "quantization": False}

        # an existing collection keeps what it was created with
        await store.ensure_collection(b, 8, hnsw_m=64)
        assert (await _collection_info(store, b)).config.metadata["stratmaster"]["hnsw_m"] == 48
        assert len([c for c in create_calls if c["name"] == collection_name(b)]) == 1

        for bad in ({"hnsw_m": -1}, {"hnsw_ef_construct": "big"}, {"quantization": "int8"}, {"shards": 0},
                    {"replicas": True}):
            with pytest.raises(ApplicationError) as ei:
                await store.ensure_collection(new_mission("bad"), 8, **bad)
            assert ei.value.non_retryable, bad
    finally:
        await store.close()


@pytest.mark.opensearch
async def test_opensearch_index_takes_shards_and_replicas():
    from activities.stores.fulltext_opensearch import OpenSearchIndex

    store = OpenSearchIndex(require_server(OPENSEARCH_ENV, "opensearch.sh"))
    m, d = new_mission("os"), new_mission("osd")
    try:
        await store.ensure_index(m, shards=2, replicas=0)
        await store.ensure_index(d)
        got = await store._client.indices.get_settings(index=f"tenant_{m}_documents,tenant_{d}_documents")
        idx = {k: v["settings"]["index"] for k, v in got.items()}
        assert (idx[f"tenant_{m}_documents"]["number_of_shards"], idx[f"tenant_{m}_documents"]["number_of_replicas"]) \
            == ("2", "0")
        assert idx[f"tenant_{d}_documents"]["number_of_shards"] == "1"  # the template's
        assert "analysis" in idx[f"tenant_{m}_documents"]  # the template still applies
        with pytest.raises(ApplicationError):
            await store.ensure_index(new_mission("osb"), shards=0)
    finally:
        await store.drop(m)
        await store.drop(d)
        await store.close()
