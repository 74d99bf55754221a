"""Choose each store's adapter from settings: production server when its URL is
set, embedded default otherwise. One Stores bundle per worker process.

Each store has one `_<store>(settings)` chooser of the form
    if settings.<service>_url: <server adapter>  else: <embedded default>
Server adapters are imported lazily so the embedded defaults need none of
their client libraries at import time."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from activities.stores.base import FullTextIndex, GraphStore, ObjectStore, VectorStore
from stratmaster.settings import Settings


@dataclass
class Stores:
    objects: ObjectStore
    vectors: VectorStore
    fulltext: FullTextIndex
    graph: GraphStore

    async def close(self) -> None:
        for store in (self.objects, self.vectors, self.fulltext, self.graph):
            close = getattr(store, "close", None)
            if close:
                await close()

    async def drop_mission(self, mission: str) -> None:
        """Remove the mission's namespace from every store (saga compensation, restore)."""
        await self.vectors.drop(mission)
        await self.fulltext.drop(mission)
        await self.graph.drop(mission)
        await self.objects.delete_mission(mission)


def _objects(settings: Settings) -> ObjectStore:
    if settings.minio_endpoint:
        from activities.stores.objects_minio import MinioObjectStore  # production adapter

        return MinioObjectStore.from_settings(settings)
    from activities.stores.objects_fs import FsObjectStore

    return FsObjectStore(settings.abs_data_dir / "objects" / settings.object_bucket)


def _vectors(settings: Settings) -> VectorStore:
    if settings.qdrant_url or settings.embedded_vectors == "qdrant-local":
        from activities.stores.vectors_qdrant import QdrantVectorStore  # production adapter (server)

        return QdrantVectorStore.from_settings(settings)
    from activities.stores.vectors_pgvector import PgVectorStore

    return PgVectorStore.from_settings(settings)


def _fulltext(settings: Settings) -> FullTextIndex:
    if settings.opensearch_url:
        from activities.stores.fulltext_opensearch import OpenSearchIndex  # production adapter

        return OpenSearchIndex.from_settings(settings)
    if settings.embedded_fulltext == "sqlite-fts5":
        from activities.stores.fulltext_sqlite import SqliteFullTextIndex

        return SqliteFullTextIndex(settings.abs_data_dir)
    from activities.stores.fulltext_tantivy import TantivyFullTextIndex

    return TantivyFullTextIndex(settings.abs_data_dir)


def _graph(settings: Settings) -> GraphStore:
    if settings.nebula_hosts:
        from activities.stores.graph_nebula import NebulaGraphStore  # production adapter

        return NebulaGraphStore.from_settings(settings)
    from activities.stores.graph_sqlite import SqliteGraphStore

    return SqliteGraphStore(settings.abs_data_dir)


def build_stores(settings: Settings) -> Stores:
    return Stores(objects=_objects(settings), vectors=_vectors(settings),
                  fulltext=_fulltext(settings), graph=_graph(settings))


def backend_name(store: Any) -> str:
    return getattr(store, "backend", type(store).__name__)


def health_probes(settings: Settings) -> dict[str, tuple[str, Callable[[], Awaitable[Any]]]]:
    """name -> (backend, async probe) for every non-PostgreSQL service.

    A probe returns a short detail string or raises. Each builds its own adapter
    so a broken service only fails its own probe. Add "llm" / "web" entries below."""
    probes: dict[str, tuple[str, Callable[[], Awaitable[Any]]]] = {}
    for name, chooser in (("objects", _objects), ("vectors", _vectors), ("fulltext", _fulltext), ("graph", _graph)):
        probes[name] = _store_probe(settings, chooser)
    searxng_url = settings.searxng_url
    if searxng_url:  # web search (research): only when configured
        from activities.research.web_search import probe as web_probe

        probes["web"] = ("searxng", lambda: web_probe(searxng_url))
    return probes


def _store_probe(settings: Settings, chooser) -> tuple[str, Callable[[], Awaitable[Any]]]:
    try:
        store = chooser(settings)
    except Exception as exc:  # adapter missing / misconfigured: report it as the probe's failure
        error = exc

        async def failed() -> Any:
            raise error
        return "unavailable", failed

    async def run() -> Any:
        try:
            probe = getattr(store, "probe", None)
            return await probe() if probe else "no probe"
        finally:
            close = getattr(store, "close", None)
            if close:
                await close()
    return backend_name(store), run
