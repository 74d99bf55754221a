"""BM25 full-text index on OpenSearch (used when STRATMASTER_OPENSEARCH_URL is set).

One index per mission, `tenant_<mission>_documents`, created from the index
template in infra/opensearch/documents-template.json (put once per process).
Documents are keyed by chunk_id, so re-indexing a chunk overwrites it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import NotFoundError, RequestError
from opensearchpy.helpers import async_scan

from activities.stores.base import dump_chunks, index_name, query_terms
from stratmaster.contracts.common import check_mission
from stratmaster.contracts.knowledge import Chunk, SearchHit
from stratmaster.errors import bad_input
from stratmaster.settings import Settings

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "infra" / "opensearch" / "documents-template.json"
TEMPLATE_NAME = "stratmaster-documents"
_BULK_BATCH = 500
_CHUNK_FIELDS = ("chunk_id", "document_id", "ordinal", "text", "start", "end", "token_count", "title", "metadata")


def _index(mission: str) -> str:
    return index_name(check_mission(mission))


class OpenSearchIndex:
    """FullTextIndex on OpenSearch.

    refresh: what writes wait for before returning. "wait_for" (default) makes a
    write visible to the next search, like the embedded index; False leaves it
    to the index refresh interval (bulk loads call refresh() once at the end).
    """

    backend = "opensearch"

    def __init__(self, url: str, user: str | None = None, password: str | None = None, *,
                 refresh: bool | str = "wait_for", timeout: float = 30.0,
                 client: AsyncOpenSearch | None = None):
        self._client = client or AsyncOpenSearch(
            hosts=[url], http_auth=(user, password) if user else None, timeout=timeout,
            http_compress=True,
        )
        self._refresh = refresh
        self._template_ready = False
        self._ready: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> "OpenSearchIndex":
        if not settings.opensearch_url:
            raise ValueError("OpenSearchIndex needs settings.opensearch_url")
        password = settings.opensearch_password.get_secret_value() if settings.opensearch_password else None
        return cls(settings.opensearch_url, settings.opensearch_user, password)

    async def _ensure_template(self) -> None:
        if not self._template_ready:
            body = json.loads(TEMPLATE_PATH.read_text())
            await self._client.indices.put_index_template(name=TEMPLATE_NAME, body=body)
            self._template_ready = True

    async def ensure_index(self, mission: str, *, shards: int | None = None, replicas: int | None = None) -> None:
        """Create the mission's index from the template if missing. shards/replicas
        (a cartridge's storage.fulltext) override the template's for a new index;
        an existing index keeps its own (shard count is fixed at creation)."""
        name = _index(mission)
        if name in self._ready:
            return
        index_settings: dict[str, int] = {}
        for key, value, low in (("number_of_shards", shards, 1), ("number_of_replicas", replicas, 0)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise bad_input(f"bad {key} {value!r}: an integer >= {low}")
            index_settings[key] = value
        await self._ensure_template()
        try:
            await self._client.indices.create(
                index=name, body={"settings": {"index": index_settings}} if index_settings else None)
        except RequestError as exc:  # created concurrently or earlier: fine
            if exc.error != "resource_already_exists_exception":
                raise
        self._ready.add(name)

    async def index(self, mission: str, chunks: Sequence[Chunk], *, refresh: bool | str | None = None) -> None:
        name = _index(mission)
        await self.ensure_index(mission)
        refresh = self._refresh if refresh is None else refresh
        for i in range(0, len(chunks), _BULK_BATCH):
            batch = chunks[i:i + _BULK_BATCH]
            lines: list[dict[str, Any]] = []
            for c in batch:
                lines.append({"index": {"_index": name, "_id": c.chunk_id}})
                lines.append({**c.model_dump(include=set(_CHUNK_FIELDS)), "tenant_id": mission})
            last = i + _BULK_BATCH >= len(chunks)
            resp = await self._client.bulk(body=lines, params={"refresh": _refresh_param(refresh if last else False)})
            if resp.get("errors"):
                failed = [it["index"] for it in resp["items"] if it["index"].get("error")]
                raise RuntimeError(f"OpenSearch rejected {len(failed)} of {len(batch)} chunks: {failed[0]['error']}")

    async def search(self, mission: str, query: str, limit: int) -> list[SearchHit]:
        name = _index(mission)
        terms = query_terms(query)
        if not terms or limit <= 0:
            return []
        body = {  # multi_match, not query_string: user text is never query syntax; OR of the terms.
            # Title weighted half of text, like the embedded index's bm25(chunks_fts, 1.0, 0.5).
            "query": {"multi_match": {"query": " ".join(terms), "fields": ["text", "title^0.5"],
                                      "type": "most_fields", "operator": "or"}},
            "sort": [{"_score": "desc"}, {"chunk_id": "asc"}],
            "size": int(limit),
        }
        try:
            resp = await self._client.search(index=name, body=body)
        except NotFoundError:  # mission has no index yet
            return []
        hits = []
        for h in resp["hits"]["hits"]:
            src = h["_source"]
            url = (src.get("metadata") or {}).get("url")
            hits.append(SearchHit(
                chunk_id=src["chunk_id"], document_id=src["document_id"], text=src["text"],
                start=src["start"], end=src["end"], score=float(h["_score"]), source="bm25",
                title=src.get("title"), url=url if isinstance(url, str) else None,
                scores={"bm25": float(h["_score"])},
            ))
        return hits

    async def count(self, mission: str) -> int:
        try:
            resp = await self._client.count(index=_index(mission))
        except NotFoundError:
            return 0
        return int(resp["count"])

    async def delete_document(self, mission: str, document_id: str) -> int:
        """Remove a document's chunks (re-ingestion of a changed document).
        Scan + bulk delete rather than _delete_by_query, which lives in the
        optional reindex module."""
        name = _index(mission)
        if not await self._client.indices.exists(index=name):
            return 0
        await self.refresh(mission)
        query = {"query": {"term": {"document_id": document_id}}, "_source": False}
        ids = [hit["_id"] async for hit in async_scan(self._client, index=name, query=query)]
        if not ids:
            return 0
        lines = [{"delete": {"_index": name, "_id": i}} for i in ids]
        resp = await self._client.bulk(body=lines, params={"refresh": _refresh_param(self._refresh)})
        return sum(1 for it in resp["items"] if it["delete"].get("result") == "deleted")

    async def refresh(self, mission: str) -> None:
        try:
            await self._client.indices.refresh(index=_index(mission))
        except NotFoundError:
            pass

    async def drop(self, mission: str) -> None:
        name = _index(mission)
        try:
            await self._client.indices.delete(index=name)
        except NotFoundError:
            pass
        self._ready.discard(name)

    async def dump(self, mission: str) -> list[dict]:
        """Every chunk of the mission as Chunk fields (JSON-able dicts), ordered by chunk_id."""
        name = _index(mission)
        try:
            if not await self._client.indices.exists(index=name):
                return []
        except NotFoundError:
            return []
        await self.refresh(mission)
        rows = [Chunk.model_validate({k: v for k, v in hit["_source"].items() if k in _CHUNK_FIELDS}).model_dump(mode="json")
                async for hit in async_scan(self._client, index=name, query={"query": {"match_all": {}}})]
        rows.sort(key=lambda r: r["chunk_id"])
        return rows

    async def load(self, mission: str, rows: Sequence[dict]) -> None:
        """Restore a dump (idempotent: same chunk ids overwrite), refreshing once."""
        await self.index(mission, dump_chunks(rows), refresh=False)
        await self.refresh(mission)

    async def probe(self) -> str:
        h = await self._client.cluster.health()
        info = await self._client.info()
        return f"{h['status']} (OpenSearch {info['version']['number']})"

    async def close(self) -> None:
        await self._client.close()




def _refresh_param(refresh: bool | str) -> str:
    if refresh is True:
        return "true"
    if refresh is False:
        return "false"
    return str(refresh)
