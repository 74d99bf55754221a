"""Store interfaces. Every method takes the mission first and implementations
derive the physical namespace from it (collection, index, space, prefix, rows),
so no call can reach another mission's data.

Physical names (from the seeds' layout):
  object store : bucket `stratmaster`, keys `tenants/<mission>/{documents,artifacts,embeddings}/...`
  Qdrant       : collection `tenant_<mission>_chunks`
  full text    : index `tenant_<mission>_documents`
  graph        : space `tenant_<mission>`
  PostgreSQL   : rows keyed by tenant (mission) id

Embedded defaults (no server URL set), all under `<data_dir>`:
  objects/<bucket>/tenants/<mission>/...   filesystem object store (objects_fs)
  objects/<bucket>/system/...              system area (backups, exports)
  qdrant/<mission>/                        Qdrant local mode, one storage per mission
  fulltext-tantivy/<mission>/              Tantivy BM25 index (fulltext/<mission>.db: SQLite FTS5, the alternative)
  graph/<mission>.db                       SQLite graph

Every store entry point calls check_mission() first: an invalid mission id is a
non-retryable BadInput error before any path or name is built from it.

Backup hooks (activities/ops/store_dumps.py moves the records, the stores own them):
  vectors.dump(mission)  -> [{"id", "vector", "payload"}]   (scrolled points)
  fulltext.dump(mission) -> [Chunk fields as dicts]           (one per chunk)
  graph.dump(mission)    -> [{"kind": "entity", ...} | {"kind": "relation", ...}]
  store.load(mission, rows) upserts the rows back (idempotent; it does not drop
  first, so restore into a fresh mission or drop() before loading).

Optional (embedded adapters have it): vectors/fulltext.delete_document(mission,
document_id) removes one document's chunks, for re-ingesting a changed document.
graph.delete_document(mission, document_id) (both graph adapters) removes the
document's vertex, its MENTIONS edges and the entities no other document mentions
(retention's documents_days, activities/ops/retention.py).
"""
from __future__ import annotations

import builtins
import re
from typing import Protocol, Sequence

from stratmaster.contracts.knowledge import Chunk, Entity, Relation, SearchHit
from stratmaster.errors import bad_input


_TOKEN = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_TERMS = 64


# English function words: in nearly every chunk, so their BM25 weight is ~0, yet an OR query
# containing one matches (and FTS5 scores) every chunk of the mission: dropping them makes a
# query several times faster at 100k chunks (bench/retrieval/run.py --pad) with the same top hits.
FUNCTION_WORDS = frozenset("""a an the and or but nor of in on at to for from by with as is are was were be been
being it its this that these those than then there their they them he she his her we our you your i what which who
whom whose when where why how do does did can could would should will shall may might must have has had not no so if
into onto about any some""".split())


def dump_chunks(rows: Sequence[dict | Chunk]) -> list[Chunk]:
    """A full-text dump's rows as chunks (a restored backup is untrusted: a bad row is a
    non-retryable BadInput naming it, before anything is written)."""
    try:
        return [r if isinstance(r, Chunk) else Chunk.model_validate(r) for r in rows]
    except ValueError as exc:
        raise bad_input(f"bad full-text dump row: {exc}") from None


def search_terms(text: str) -> list[str]:
    """The words the embedded BM25 indexes search for: query_terms without function words,
    unless nothing else remains."""
    terms = query_terms(text)
    return [t for t in terms if t not in FUNCTION_WORDS] or terms


def query_terms(text: str) -> list[str]:
    """Unique lower-cased word tokens of the user's text, at most MAX_QUERY_TERMS:
    full-text adapters search these as plain words (never query syntax), and the
    bound keeps huge inputs under the engines' clause limits."""
    terms: list[str] = []
    for tok in _TOKEN.findall(text or ""):
        tok = tok.lower()
        if tok not in terms:
            terms.append(tok)
            if len(terms) >= MAX_QUERY_TERMS:
                break
    return terms


def parse_graph_dump(rows: Sequence[dict]) -> tuple[list[Entity], list[Relation]]:
    """Graph dump rows ({"kind": "entity"|"relation", ...fields}) back into models."""
    entities, relations = [], []
    try:
        for r in rows:
            body = {k: v for k, v in r.items() if k != "kind"}
            if r.get("kind") == "entity":
                entities.append(Entity.model_validate(body))
            elif r.get("kind") == "relation":
                relations.append(Relation.model_validate(body))
            else:
                raise ValueError(f"unknown kind {r.get('kind')!r}")
    except (ValueError, AttributeError) as exc:
        raise bad_input(f"bad graph dump row: {exc}") from None
    return entities, relations


def remove_sqlite_files(path) -> None:
    """Delete a SQLite database with its WAL and shared-memory files."""
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        p.unlink(missing_ok=True)


class ObjectNotFound(FileNotFoundError):
    """Raised by every object store adapter for a missing key."""


def vector_index_config(defaults: tuple[int, int, bool], hnsw_m: int | None = None,
                        hnsw_ef_construct: int | None = None, quantization: bool | None = None,
                        shards: int | None = None, replicas: int | None = None) -> dict:
    """A mission's vector index parameters (a cartridge's storage.vectors), each not given
    falling back to the store's `defaults` (hnsw_m, hnsw_ef_construct, quantization); shards and
    replicas stay None when not given. Bad values are the caller's input error."""
    cfg = {"hnsw_m": defaults[0] if hnsw_m is None else hnsw_m,
           "hnsw_ef_construct": defaults[1] if hnsw_ef_construct is None else hnsw_ef_construct,
           "quantization": defaults[2] if quantization is None else quantization,
           "shards": shards, "replicas": replicas}
    for key, low in (("hnsw_m", 0), ("hnsw_ef_construct", 4), ("shards", 1), ("replicas", 1)):
        v = cfg[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            raise bad_input(f"bad {key} {v!r}: an integer >= {low}")
    if not isinstance(cfg["quantization"], bool):
        raise bad_input(f"bad quantization {cfg['quantization']!r}: true or false")
    return cfg


def collection_name(mission: str) -> str:
    return f"tenant_{mission}_chunks"


def index_name(mission: str) -> str:
    return f"tenant_{mission}_documents"


def graph_space(mission: str) -> str:
    return f"tenant_{mission}"


def object_prefix(mission: str) -> str:
    return f"tenants/{mission}/"


class ObjectStore(Protocol):
    """Keys are relative to `tenants/<mission>/` and start with one of the areas
    `documents/`, `artifacts/`, `embeddings/` (e.g. `documents/<id>/report.pdf`).
    `put` returns the full object key (`tenants/<mission>/documents/...`); get,
    exists and delete also accept that full form back. `list` returns relative
    keys (pass them straight to get). Keys with `..`, `.` or empty segments, a
    leading `/`, backslashes or NUL are BadInput. Missing keys raise ObjectNotFound.

    The system area (`system/<key>`, e.g. `backups/<id>/manifest.json`) is not
    mission-scoped and follows the same key rules."""

    async def put(self, mission: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> str: ...
    async def get(self, mission: str, key: str) -> bytes: ...
    async def exists(self, mission: str, key: str) -> bool: ...
    async def list(self, mission: str, prefix: str = "") -> list[str]: ...
    async def sizes(self, mission: str) -> dict[str, int]: ...  # key -> bytes, from the listing
    async def delete(self, mission: str, key: str) -> bool: ...
    async def delete_mission(self, mission: str) -> int: ...
    async def drop(self, mission: str) -> None: ...  # delete_mission without the count
    async def put_system(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str: ...
    async def get_system(self, key: str) -> bytes: ...
    async def list_system(self, prefix: str = "") -> builtins.list[str]: ...
    async def delete_system(self, key: str) -> bool: ...


class VectorStore(Protocol):
    """Point id = chunk_id (a UUID; other strings are mapped with uuid5). Payload
    keeps document_id, chunk_id, text, start, end, title, mission. upsert creates
    the collection (dim from the vectors) when missing; search on a mission with
    no collection returns []. Hits have source="dense", score = cosine."""

    # Optional per-mission parameters (cartridge storage.vectors); None = the settings.
    async def ensure_collection(self, mission: str, dim: int, *, hnsw_m: int | None = None,
                                hnsw_ef_construct: int | None = None, quantization: bool | None = None,
                                shards: int | None = None, replicas: int | None = None) -> None: ...
    async def upsert(self, mission: str, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None: ...
    async def search(self, mission: str, vector: Sequence[float], limit: int) -> list[SearchHit]: ...
    async def count(self, mission: str) -> int: ...
    async def drop(self, mission: str) -> None: ...
    async def dump(self, mission: str) -> list[dict]: ...
    async def load(self, mission: str, rows: Sequence[dict]) -> None: ...


class FullTextIndex(Protocol):
    """BM25 over chunks keyed by chunk_id (re-indexing a chunk replaces it).
    `query` is plain user text: adapters treat it as a bag of words (OR), never
    as query syntax. Hits have source="bm25", score > 0, higher is better."""

    # Adapters with a notion of shards/replicas (OpenSearch) also take keyword-only
    # shards=/replicas= (cartridge storage.fulltext); callers check the signature.
    async def ensure_index(self, mission: str) -> None: ...
    async def index(self, mission: str, chunks: Sequence[Chunk]) -> None: ...
    async def search(self, mission: str, query: str, limit: int) -> list[SearchHit]: ...
    async def count(self, mission: str) -> int: ...
    async def drop(self, mission: str) -> None: ...
    async def dump(self, mission: str) -> list[dict]: ...
    async def load(self, mission: str, rows: Sequence[dict]) -> None: ...


class GraphStore(Protocol):
    """Entities upserted by entity_id, relations by (source_id, target_id, type).
    neighbours(names): entities linked (either direction) to the entities whose
    name matches one of `names` case-insensitively, the matched entities
    themselves excluded, strongest total relation weight first."""

    async def ensure_space(self, mission: str) -> None: ...
    async def upsert(self, mission: str, entities: Sequence[Entity], relations: Sequence[Relation]) -> None: ...
    async def neighbours(self, mission: str, names: Sequence[str], limit: int = 20) -> list[Entity]: ...
    async def count(self, mission: str) -> tuple[int, int]: ...
    async def drop(self, mission: str) -> None: ...
    async def dump(self, mission: str) -> list[dict]: ...
    async def load(self, mission: str, rows: Sequence[dict]) -> None: ...
