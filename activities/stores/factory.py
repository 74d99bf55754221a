"""Choose each store's adapter from settings: production server when its URL is
set, embedded default otherwise. One Stores bundle per worker process."""
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


def build_stores(settings: Settings) -> Stores:
    raise NotImplementedError("filled in by the stores implementation")


def health_probes(settings: Settings) -> dict[str, tuple[str, Callable[[], Awaitable[Any]]]]:
    """name -> (backend, async probe) for every non-PostgreSQL service."""
    return {}
