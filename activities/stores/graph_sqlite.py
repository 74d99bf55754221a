"""Knowledge graph on SQLite (embedded default for NebulaGraph).

One database per mission at <data_dir>/graph/<mission>.db (WAL, busy timeout:
shared by worker processes). Entities keyed by entity_id; relations keyed by
(source, target, type). All writes are upserts; all SQL is parameterised.
`name_key` is the casefolded name, so name lookups are case-insensitive for
any script, not only ASCII.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Sequence

from activities.ingest.entities import document_entity
from activities.stores.base import parse_graph_dump, remove_sqlite_files
from stratmaster.contracts.common import check_mission
from stratmaster.contracts.knowledge import Entity, Relation

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    entity_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    name_key TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entities_name_key ON entities(name_key);
CREATE TABLE IF NOT EXISTS relations (
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    type TEXT NOT NULL,
    weight REAL NOT NULL DEFAULT 1.0,
    context TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (source, target, type)
);
CREATE INDEX IF NOT EXISTS relations_target ON relations(target);
"""

_NEIGHBOURS = """
WITH seeds(id) AS (SELECT entity_id FROM entities WHERE name_key IN (SELECT value FROM json_each(?))),
edges(other, weight) AS (
    SELECT r.target, r.weight FROM relations r JOIN seeds s ON r.source = s.id
    UNION ALL
    SELECT r.source, r.weight FROM relations r JOIN seeds s ON r.target = s.id
)
SELECT e.entity_id, e.name, e.type, sum(edges.weight) AS w
FROM edges JOIN entities e ON e.entity_id = edges.other
WHERE edges.other NOT IN (SELECT id FROM seeds)
GROUP BY e.entity_id ORDER BY w DESC, e.name LIMIT ?
"""


def name_key(name: str) -> str:
    return " ".join(name.casefold().split())


class SqliteGraphStore:
    backend = "sqlite-graph"

    def __init__(self, data_dir: Path):
        self.root = Path(data_dir).resolve() / "graph"

    def _path(self, mission: str) -> Path:
        return self.root / f"{mission}.db"  # mission already validated

    def _with(self, mission: str, fn, create: bool = False, default=None):
        path = self._path(mission)
        if not create and not path.exists():
            return default
        self.root.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            if create:
                conn.executescript(_SCHEMA)
            return fn(conn)
        finally:
            conn.close()

    async def ensure_space(self, mission: str) -> None:
        mission = check_mission(mission)
        await asyncio.to_thread(self._with, mission, lambda c: None, True)

    async def upsert(self, mission: str, entities: Sequence[Entity], relations: Sequence[Relation]) -> None:
        mission = check_mission(mission)
        ents = [(e.entity_id, e.name, e.type, name_key(e.name)) for e in entities]
        rels = [(r.source_id, r.target_id, r.type, float(r.weight), r.context) for r in relations]
        if not ents and not rels:
            return

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    """INSERT INTO entities (entity_id, name, type, name_key) VALUES (?, ?, ?, ?)
                       ON CONFLICT(entity_id) DO UPDATE SET name = excluded.name, type = excluded.type,
                                                            name_key = excluded.name_key""", ents)
                conn.executemany(
                    """INSERT INTO relations (source, target, type, weight, context) VALUES (?, ?, ?, ?, ?)
                       ON CONFLICT(source, target, type) DO UPDATE SET weight = excluded.weight,
                                                                       context = excluded.context""", rels)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        await asyncio.to_thread(self._with, mission, run, True)

    async def neighbours(self, mission: str, names: Sequence[str], limit: int = 20) -> list[Entity]:
        mission = check_mission(mission)
        keys = sorted({name_key(n) for n in names if isinstance(n, str) and n.strip()})
        if not keys or limit <= 0:
            return []
        rows = await asyncio.to_thread(
            self._with, mission, lambda c: c.execute(_NEIGHBOURS, (json.dumps(keys), int(limit))).fetchall(),
            False, [])
        return [Entity(entity_id=r[0], name=r[1], type=r[2]) for r in rows]

    async def count(self, mission: str) -> tuple[int, int]:
        mission = check_mission(mission)

        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            return (conn.execute("SELECT count(*) FROM entities").fetchone()[0],
                    conn.execute("SELECT count(*) FROM relations").fetchone()[0])
        return await asyncio.to_thread(self._with, mission, run, False, (0, 0))

    async def drop(self, mission: str) -> None:
        mission = check_mission(mission)
        await asyncio.to_thread(remove_sqlite_files, self._path(mission))

    async def delete_document(self, mission: str, document_id: str) -> int:
        """Remove a document from the graph (retention): its DOCUMENT vertex with
        every edge of it, and the entities it MENTIONS that no other document
        mentions any more (with their edges). Entities still mentioned elsewhere
        stay, and so do RELATES_TO edges between them (they carry no document of
        origin). Returns the MENTIONS edges removed; 0 when already gone."""
        mission = check_mission(mission)
        doc = document_entity(document_id, None).entity_id

        def run(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                targets = [r[0] for r in conn.execute(
                    "SELECT target FROM relations WHERE source = ? AND type = 'MENTIONS'", (doc,))]
                orphans = [t for t in targets if conn.execute(
                    "SELECT 1 FROM relations WHERE target = ? AND type = 'MENTIONS' AND source <> ? LIMIT 1",
                    (t, doc)).fetchone() is None]
                for vid in orphans + [doc]:
                    conn.execute("DELETE FROM relations WHERE source = ? OR target = ?", (vid, vid))
                    conn.execute("DELETE FROM entities WHERE entity_id = ?", (vid,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return len(targets)
        return await asyncio.to_thread(self._with, mission, run, False, 0)

    # --- backup hooks ----------------------------------------------------------
    async def dump(self, mission: str) -> list[dict]:
        """[{"kind": "entity", entity_id, name, type}, ..., {"kind": "relation", source_id,
        target_id, type, weight, context}, ...] in key order."""
        mission = check_mission(mission)

        def run(conn: sqlite3.Connection) -> list[dict]:
            out = [{"kind": "entity", **Entity(entity_id=r[0], name=r[1], type=r[2]).model_dump()}
                   for r in conn.execute("SELECT entity_id, name, type FROM entities ORDER BY entity_id")]
            out += [{"kind": "relation", **Relation(source_id=r[0], target_id=r[1], type=r[2], weight=r[3],
                                                    context=r[4]).model_dump()}
                    for r in conn.execute("SELECT source, target, type, weight, context FROM relations "
                                          "ORDER BY source, target, type")]
            return out
        return await asyncio.to_thread(self._with, mission, run, False, [])

    async def load(self, mission: str, rows: Sequence[dict]) -> None:
        await self.upsert(mission, *parse_graph_dump(rows))

    async def probe(self) -> str:
        def check() -> str:
            self.root.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(":memory:")
            try:
                conn.execute("SELECT json_each.value FROM json_each('[1]')").fetchall()
            finally:
                conn.close()
            return f"SQLite {sqlite3.sqlite_version} at {self.root}"
        return await asyncio.to_thread(check)
