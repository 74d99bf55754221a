"""Knowledge graph on NebulaGraph (used when STRATMASTER_NEBULA_HOSTS is set).

One space per mission, `tenant_<mission>` (vid_type FIXED_STRING(64)), with the
schema in infra/nebulagraph/schema.ngql. Needs NebulaGraph >= 3.5.

Injection safety: every user value (ids, names, types, contexts, weights) is
sent as a statement parameter through Session.execute_py, never formatted into
nGQL. What cannot be a parameter -- space, tag and edge names, edge ranks and
LIMIT -- comes from a fixed set or an int the adapter computes, and identifiers
are checked against a strict allow-list regex right before use. (The seeds'
find_related_concepts built its MATCH with an f-string: a concept name such as
`x"}) DETACH DELETE v //` would have rewritten the query.)

Same semantics as the embedded graph_sqlite store: entities upserted by
entity_id, relations by (source, target, type), case-insensitive name lookups
through the casefolded `name_key`.
"""
from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Sequence

from activities.ingest.entities import document_entity
from activities.stores.base import graph_space, parse_graph_dump
from stratmaster.contracts.common import check_mission
from activities.stores.graph_sqlite import name_key
from stratmaster.contracts.knowledge import Entity, Relation
from stratmaster.errors import bad_input
from stratmaster.settings import Settings

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "infra" / "nebulagraph" / "schema.ngql"

_SPACE_RE = re.compile(r"^tenant_[a-z][a-z0-9_]{1,47}$")
_SCHEMA_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
VID_MAX_BYTES = 64  # FIXED_STRING(64): longer ids would be silently truncated (collisions)
_BATCH = 100

SEED_TAGS = ("PERSON", "ORGANIZATION", "CONCEPT")  # typed tags also written for these entity types
EDGE_TYPES = ("MENTIONS", "RELATES_TO", "SOURCES_FROM")
# The seeds' per-edge score property, kept in step with the uniform `weight`.
_SEED_WEIGHT_PROP = {"MENTIONS": "confidence", "RELATES_TO": "strength", "SOURCES_FROM": "relevance"}


def ident(name: str, pattern: re.Pattern = _SCHEMA_NAME_RE) -> str:
    """An nGQL identifier (space/tag/edge name) that cannot be a parameter,
    checked against the allow-list; BadInput otherwise."""
    if not isinstance(name, str) or not pattern.fullmatch(name):
        raise bad_input(f"refusing nGQL identifier {name!r}")
    return name


def space_for(mission: str) -> str:
    return ident(graph_space(check_mission(mission)), _SPACE_RE)


def _vid(value: str, what: str) -> str:
    if not isinstance(value, str) or not value or len(value.encode()) > VID_MAX_BYTES:
        raise bad_input(f"{what} {value!r} must be 1-{VID_MAX_BYTES} bytes (NebulaGraph FIXED_STRING(64) vid)")
    return value


def _edge_type(rel_type: str) -> tuple[str, int, str]:
    """(edge name, rank, relationship_type) for a relation type. The seed types
    map to their edge; any other type is a RELATES_TO edge carrying the type in
    relationship_type, ranked by a hash of it so (source, target, type) stays the key."""
    if rel_type in EDGE_TYPES:
        return rel_type, 0, ""
    return "RELATES_TO", zlib.crc32(rel_type.encode()) & 0x7FFFFFFF or 1, rel_type


def schema_statements(path: Path = SCHEMA_PATH) -> list[str]:
    lines = [ln for ln in path.read_text().splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


class SpaceMissing(Exception):
    pass


class NebulaGraphStore:
    backend = "nebulagraph"

    def __init__(self, hosts: Sequence[tuple[str, int]] = (), user: str = "root", password: str = "nebula", *,
                 session_factory: Callable[[], ContextManager[Any]] | None = None,
                 ready_timeout: float = 60.0, poll_interval: float = 1.0,
                 partition_num: int = 1, replica_factor: int = 1):
        """session_factory: a context manager yielding a session with
        execute_py(stmt, params) (tests pass a recording mock); default is a
        nebula3 ConnectionPool on `hosts`."""
        self._hosts = list(hosts)
        self._user, self._password = user, password
        self._session_factory = session_factory
        self._pool: Any = None  # a nebula3 ConnectionPool, made on first use
        self._pool_lock = threading.Lock()
        self._ready: set[str] = set()
        self._ready_timeout, self._poll = ready_timeout, poll_interval
        self._partitions, self._replicas = int(partition_num), int(replica_factor)

    @classmethod
    def from_settings(cls, settings: Settings) -> "NebulaGraphStore":
        hosts = []
        for item in (settings.nebula_hosts or "").split(","):
            host, _, port = item.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"STRATMASTER_NEBULA_HOSTS entry {item!r} is not host:port")
            hosts.append((host, int(port)))
        return cls(hosts, settings.nebula_user, settings.nebula_password.get_secret_value())

    # --- sessions (blocking; run in a thread) ---------------------------------------
    def _session(self) -> ContextManager[Any]:
        if self._session_factory is not None:
            return self._session_factory()
        with self._pool_lock:
            if self._pool is None:
                from nebula3.Config import Config
                from nebula3.gclient.net import ConnectionPool

                config = Config()
                config.max_connection_pool_size = 10
                config.timeout = 30_000
                pool = ConnectionPool()
                if not pool.init(self._hosts, config):
                    raise ConnectionError(f"cannot reach NebulaGraph at {self._hosts}")
                self._pool = pool
        return self._pool.session_context(self._user, self._password)

    @staticmethod
    def _exec(session: Any, stmt: str, params: dict[str, Any] | None = None) -> list[dict]:
        result = session.execute_py(stmt, params)  # raises ExecuteError when not succeeded
        return result.as_primitive() or []

    def _use(self, session: Any, space: str) -> None:
        try:
            self._exec(session, f"USE {ident(space, _SPACE_RE)}")
        except Exception as exc:
            if "SpaceNotFound" in str(exc) or "not found" in str(exc).lower():
                raise SpaceMissing(space) from None
            raise

    @contextlib.contextmanager
    def _in_space(self, space: str) -> Iterator[Any]:
        with self._session() as session:
            self._use(session, space)
            yield session

    def _retry(self, fn: Callable[[], Any], what: str) -> Any:
        """Schema changes reach the storage hosts after a heartbeat or two."""
        deadline = time.monotonic() + self._ready_timeout
        while True:
            try:
                return fn()
            except Exception as exc:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"NebulaGraph: {what} not ready after {self._ready_timeout}s: {exc}") from exc
                time.sleep(self._poll)

    # --- blocking operations ------------------------------------------------------------
    def _ensure(self, space: str) -> None:
        if space in self._ready:
            return
        with self._session() as s:
            self._exec(s, f"CREATE SPACE IF NOT EXISTS {ident(space, _SPACE_RE)}"
                          f"(partition_num = {self._partitions}, replica_factor = {self._replicas},"
                          f" vid_type = FIXED_STRING({VID_MAX_BYTES}))")
            self._retry(lambda: self._use(s, space), f"space {space}")
            for stmt in schema_statements():
                self._exec(s, stmt)
            self._retry(lambda: self._exec(
                s, "LOOKUP ON entity WHERE entity.name_key == $probe YIELD id(vertex) AS id", {"probe": ""}),
                f"schema of {space}")
        self._ready.add(space)

    def _upsert(self, space: str, entities: Sequence[Entity], relations: Sequence[Relation]) -> None:
        self._ensure(space)
        by_tag: dict[str | None, list[Entity]] = {}
        for e in entities:
            _vid(e.entity_id, "entity_id")
            by_tag.setdefault(e.type if e.type in SEED_TAGS else None, []).append(e)
        by_edge: dict[tuple[str, int], list[tuple[Relation, str]]] = {}
        for r in relations:
            _vid(r.source_id, "source_id")
            _vid(r.target_id, "target_id")
            edge, rank, rel_type = _edge_type(r.type)
            by_edge.setdefault((edge, rank), []).append((r, rel_type))

        with self._in_space(space) as s:
            for tag, group in by_tag.items():
                tags = "entity(name, name_key, type)" + (f", {ident(tag)}(name)" if tag else "")
                for i in range(0, len(group), _BATCH):
                    values: list[str] = []
                    params: dict[str, Any] = {}
                    for j, e in enumerate(group[i:i + _BATCH]):
                        params.update({f"v{j}": e.entity_id, f"n{j}": e.name, f"k{j}": name_key(e.name),
                                       f"t{j}": e.type})
                        values.append(f"$v{j}:($n{j}, $k{j}, $t{j}" + (f", $n{j})" if tag else ")"))
                    self._exec(s, f"INSERT VERTEX {tags} VALUES " + ", ".join(values), params)
            for (edge, rank), edges in by_edge.items():
                seed_prop = _SEED_WEIGHT_PROP[edge]
                props = f"{seed_prop}, context, weight" + (", relationship_type" if edge == "RELATES_TO" else "")
                for i in range(0, len(edges), _BATCH):
                    values, params = [], {}
                    for j, (r, rel_type) in enumerate(edges[i:i + _BATCH]):
                        params.update({f"s{j}": r.source_id, f"d{j}": r.target_id, f"w{j}": float(r.weight),
                                       f"c{j}": r.context})
                        extra = ""
                        if edge == "RELATES_TO":
                            params[f"r{j}"] = rel_type
                            extra = f", $r{j}"
                        values.append(f"$s{j}->$d{j}@{int(rank)}:($w{j}, $c{j}, $w{j}{extra})")
                    self._exec(s, f"INSERT EDGE {ident(edge)}({props}) VALUES " + ", ".join(values), params)

    _NEIGHBOURS = (
        "MATCH (v:entity)-[e:MENTIONS|RELATES_TO|SOURCES_FROM]-(n:entity) "
        "WHERE v.entity.name_key IN $keys AND NOT (n.entity.name_key IN $keys) "
        "WITH n, sum(e.weight) AS w "
        "RETURN id(n) AS entity_id, n.entity.name AS name, n.entity.type AS type, w "
        "ORDER BY w DESC, name ASC LIMIT {limit}"
    )

    def _neighbours(self, space: str, keys: list[str], limit: int) -> list[Entity]:
        try:
            with self._in_space(space) as s:
                rows = self._exec(s, self._NEIGHBOURS.format(limit=int(limit)), {"keys": keys})
        except SpaceMissing:
            return []
        return [Entity(entity_id=r["entity_id"], name=r["name"], type=r["type"]) for r in rows]

    def _count(self, space: str) -> tuple[int, int]:
        try:
            with self._in_space(space) as s:
                def n(stmt: str) -> int:
                    rows = self._exec(s, stmt)
                    return int(rows[0]["n"]) if rows else 0
                entities = n("LOOKUP ON entity YIELD id(vertex) AS id | YIELD count(*) AS n")
                relations = sum(n(f"LOOKUP ON {ident(edge)} YIELD src(edge) AS s | YIELD count(*) AS n")
                                for edge in EDGE_TYPES)
        except SpaceMissing:
            return 0, 0
        return entities, relations

    _MENTIONED = ("MATCH (d:entity)-[e:MENTIONS]->(v:entity) WHERE id(d) == $doc "
                  "RETURN DISTINCT id(v) AS entity_id")
    _STILL_MENTIONED = ("MATCH (d:entity)-[e:MENTIONS]->(v:entity) WHERE id(v) IN $ids AND id(d) <> $doc "
                        "RETURN DISTINCT id(v) AS entity_id")

    def _delete_document(self, space: str, doc: str) -> int:
        try:
            with self._in_space(space) as s:
                targets = sorted({r["entity_id"] for r in self._exec(s, self._MENTIONED, {"doc": doc})})
                still: set[str] = set()
                for i in range(0, len(targets), _BATCH):
                    still |= {r["entity_id"] for r in self._exec(
                        s, self._STILL_MENTIONED, {"ids": targets[i:i + _BATCH], "doc": doc})}
                orphans = [t for t in targets if t not in still]
                # orphans before the document vertex: after a crash in between, a re-run
                # still finds the document's MENTIONS edges and finishes the job
                for i in range(0, len(orphans), _BATCH):
                    group = orphans[i:i + _BATCH]
                    self._exec(s, "DELETE VERTEX " + ", ".join(f"$x{j}" for j in range(len(group))) + " WITH EDGE",
                               {f"x{j}": vid for j, vid in enumerate(group)})
                self._exec(s, "DELETE VERTEX $doc WITH EDGE", {"doc": doc})
        except SpaceMissing:
            return 0
        return len(targets)

    def _drop(self, space: str) -> None:
        with self._session() as s:
            self._exec(s, f"DROP SPACE IF EXISTS {ident(space, _SPACE_RE)}")
        self._ready.discard(space)

    def _dump(self, space: str) -> list[dict]:
        try:
            with self._in_space(space) as s:
                ents = self._exec(s, "LOOKUP ON entity YIELD id(vertex) AS entity_id, "
                                     "properties(vertex).name AS name, properties(vertex).type AS type")
                rels = []
                for edge in EDGE_TYPES:
                    extra = ", properties(edge).relationship_type AS relationship_type" if edge == "RELATES_TO" else ""
                    for r in self._exec(s, f"LOOKUP ON {ident(edge)} YIELD src(edge) AS source_id, "
                                           f"dst(edge) AS target_id, properties(edge).weight AS weight, "
                                           f"properties(edge).context AS context{extra}"):
                        rels.append(Relation(source_id=r["source_id"], target_id=r["target_id"],
                                             type=r.get("relationship_type") or edge,
                                             weight=float(r["weight"] if r["weight"] is not None else 1.0),
                                             context=r.get("context") or ""))
        except SpaceMissing:
            return []
        out = [{"kind": "entity", **Entity(entity_id=r["entity_id"], name=r["name"], type=r["type"]).model_dump()}
               for r in sorted(ents, key=lambda r: r["entity_id"])]
        out += [{"kind": "relation", **r.model_dump()}
                for r in sorted(rels, key=lambda r: (r.source_id, r.target_id, r.type))]
        return out

    # --- GraphStore API ---------------------------------------------------------------------
    async def ensure_space(self, mission: str) -> None:
        await asyncio.to_thread(self._ensure, space_for(mission))

    async def upsert(self, mission: str, entities: Sequence[Entity], relations: Sequence[Relation]) -> None:
        space = space_for(mission)
        if entities or relations:
            await asyncio.to_thread(self._upsert, space, list(entities), list(relations))

    async def neighbours(self, mission: str, names: Sequence[str], limit: int = 20) -> list[Entity]:
        space = space_for(mission)
        keys = sorted({name_key(n) for n in names if isinstance(n, str) and n.strip()})
        if not keys or limit <= 0:
            return []
        return await asyncio.to_thread(self._neighbours, space, keys, limit)

    async def count(self, mission: str) -> tuple[int, int]:
        return await asyncio.to_thread(self._count, space_for(mission))

    async def drop(self, mission: str) -> None:
        await asyncio.to_thread(self._drop, space_for(mission))

    async def delete_document(self, mission: str, document_id: str) -> int:
        """Same semantics as SqliteGraphStore.delete_document (retention)."""
        space = space_for(mission)
        doc = _vid(document_entity(document_id, None).entity_id, "document vertex id")
        return await asyncio.to_thread(self._delete_document, space, doc)

    async def dump(self, mission: str) -> list[dict]:
        return await asyncio.to_thread(self._dump, space_for(mission))

    async def load(self, mission: str, rows: Sequence[dict]) -> None:
        await self.upsert(mission, *parse_graph_dump(rows))

    async def probe(self) -> str:
        def check() -> str:
            with self._session() as s:
                rows = self._exec(s, "SHOW HOSTS")
            return f"NebulaGraph, {len(rows)} storage host(s)"
        return await asyncio.to_thread(check)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
