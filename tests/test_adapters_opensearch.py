"""OpenSearch full-text index against the real single-node OpenSearch from
scripts/services/opensearch.sh (the shared contract runs too:
tests/test_stores_contract.py, param "opensearch"). Skips locally without
STRATMASTER_TEST_OPENSEARCH_URL; fails under CI=true."""
from __future__ import annotations

import json

import pytest
from opensearchpy import AsyncOpenSearch

from activities.stores.factory import build_stores, health_probes
from activities.stores.fulltext_opensearch import TEMPLATE_NAME, TEMPLATE_PATH, OpenSearchIndex
from stratmaster.settings import Settings
from tests.adapters_support import OPENSEARCH_ENV, require_server
from tests.support.ports import free_port
from tests.stores_support import corpus_chunks, make_chunk, new_mission

pytestmark = pytest.mark.opensearch


@pytest.fixture
def url() -> str:
    return require_server(OPENSEARCH_ENV, "opensearch.sh")


@pytest.fixture
async def raw(url):
    client = AsyncOpenSearch(hosts=[url])
    yield client
    await client.close()


async def test_index_from_template_single_node_settings(url, raw):
    store = OpenSearchIndex(url)
    m = new_mission("tpl")
    try:
        await store.ensure_index(m)
        await store.ensure_index(m)  # idempotent
        tpl = (await raw.indices.get_index_template(name=TEMPLATE_NAME))["index_templates"][0]["index_template"]
        assert tpl["index_patterns"] == ["tenant_*_documents"]
        index = f"tenant_{m}_documents"
        settings = (await raw.indices.get_settings(index=index))[index]["settings"]["index"]
        assert (settings["number_of_shards"], settings["number_of_replicas"]) == ("1", "0")  # green on one node
        props = (await raw.indices.get_mapping(index=index))[index]["mappings"]["properties"]
        assert props["text"]["analyzer"] == "stratmaster_text" and props["chunk_id"]["type"] == "keyword"
        assert not any(p.get("type") == "sparse_vector" for p in props.values())
        assert "sparse_vector" not in TEMPLATE_PATH.read_text().replace("sparse_vector field", "")
        tokens = (await raw.indices.analyze(index=index, body={"analyzer": "stratmaster_text",
                                                               "text": "The Kittens ran to the Café"}))["tokens"]
        assert [t["token"] for t in tokens] == ["kitten", "ran", "cafe"]  # stop words, stemming, folding
        health = await raw.cluster.health(index=index, params={"wait_for_status": "green"})
        assert health["status"] == "green"
    finally:
        await store.drop(m)
        await store.close()


async def test_documents_keyed_by_chunk_id_with_mission_field(url, raw):
    store = OpenSearchIndex(url)
    a, b = new_mission("ka"), new_mission("kb")
    chunks = corpus_chunks()
    try:
        await store.index(a, chunks)
        await store.index(b, chunks[:1])  # same chunk id in another mission: its own index
        doc = await raw.get(index=f"tenant_{a}_documents", id=chunks[0].chunk_id)
        assert doc["_source"]["tenant_id"] == a and doc["_source"]["text"] == chunks[0].text
        other = await raw.get(index=f"tenant_{b}_documents", id=chunks[0].chunk_id)
        assert other["_source"]["tenant_id"] == b
        await store.index(a, chunks)  # overwrites by id
        assert await store.count(a) == len(chunks) and await store.count(b) == 1
        assert (await raw.count(index=f"tenant_{a}_documents"))["count"] == len(chunks)
        # A's index answers only A's queries even for B's identical chunk.
        await store.drop(b)
        assert [h.chunk_id for h in await store.search(a, "kittens", 3)] == [chunks[0].chunk_id]
        assert await store.search(b, "kittens", 3) == []
        assert not await raw.indices.exists(index=f"tenant_{b}_documents")
    finally:
        await store.drop(a)
        await store.drop(b)
        await store.close()


async def test_refresh_control(url, raw):
    """refresh=False writes become searchable only at a refresh; the default
    ("wait_for") makes every write visible to the next search."""
    lazy, eager = OpenSearchIndex(url, refresh=False), OpenSearchIndex(url)
    m = new_mission("rf")
    try:
        await lazy.ensure_index(m)
        await raw.indices.put_settings(index=f"tenant_{m}_documents", body={"index": {"refresh_interval": "-1"}})
        await lazy.index(m, corpus_chunks()[:2])
        assert await lazy.count(m) == 0 and await lazy.search(m, "kittens", 3) == []
        await lazy.refresh(m)
        assert await lazy.count(m) == 2
        # ("wait_for" waits for the next scheduled refresh: give the index one again)
        await raw.indices.put_settings(index=f"tenant_{m}_documents", body={"index": {"refresh_interval": "1s"}})
        await eager.index(m, corpus_chunks()[2:])
        assert await eager.count(m) == len(corpus_chunks())
        assert len(await eager.search(m, "quantum", 3)) == 1
    finally:
        await eager.drop(m)
        await lazy.close()
        await eager.close()


async def test_bulk_batches_and_dump_past_one_scroll_page(url):
    store = OpenSearchIndex(url)
    a, b = new_mission("bk"), new_mission("bl")
    chunks = [make_chunk(f"doc-{i // 10}", i % 10, f"chunk {i} about topic{i % 7}") for i in range(1234)]
    try:
        await store.index(a, chunks)  # 3 bulk requests of <= 500
        assert await store.count(a) == len(chunks)
        rows = await store.dump(a)
        assert len(rows) == len(chunks) and [r["chunk_id"] for r in rows] == sorted(c.chunk_id for c in chunks)
        await store.load(b, rows)
        assert await store.dump(b) == rows
        hits = await store.search(b, "topic3", 500)
        assert len(hits) == sum(1 for i in range(1234) if i % 7 == 3)
    finally:
        await store.drop(a)
        await store.drop(b)
        await store.close()


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
async def test_rejected_documents_raise(url, raw):
    """Bulk item errors are not swallowed (the mapping is strict)."""
    store = OpenSearchIndex(url)
    m = new_mission("rj")
    try:
        await store.ensure_index(m)
        resp = await raw.index(index=f"tenant_{m}_documents", body={"unknown_field": 1}, params={"refresh": "true"},
                               ignore=400)
        assert resp.get("error", {}).get("type") == "strict_dynamic_mapping_exception"
        bad = corpus_chunks()[0].model_copy(update={"start": "not-a-number"})
        with pytest.raises(RuntimeError, match="rejected 1 of 1"):
            await store.index(m, [bad])
    finally:
        await store.drop(m)
        await store.close()


async def test_factory_uses_opensearch_when_url_set(url, tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, opensearch_url=url)
    stores = build_stores(settings)
    try:
        assert isinstance(stores.fulltext, OpenSearchIndex)
        backend, probe = health_probes(settings)["fulltext"]
        assert backend == "opensearch"
        detail = await probe()
        assert detail.startswith(("green", "yellow")) and "OpenSearch 2." in detail
    finally:
        await stores.close()


async def test_unreachable_server_fails_probe(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, opensearch_url=f"http://127.0.0.1:{free_port()}")
    backend, probe = health_probes(settings)["fulltext"]
    assert backend == "opensearch"
    with pytest.raises(Exception):
        await probe()


def test_template_file_is_valid_for_any_distribution():
    """Only core field types; analysis from analysis-common (in every distribution)."""
    body = json.loads(TEMPLATE_PATH.read_text())
    types = {p["type"] for p in body["template"]["mappings"]["properties"].values()}
    assert types <= {"keyword", "integer", "text", "object", "date"}
    assert body["template"]["settings"]["number_of_replicas"] == 0
