"""BM25 full-text index on SQLite FTS5: the embedded engine before Tantivy, kept as
STRATMASTER_EMBEDDED_FULLTEXT=sqlite-fts5 (and the source Tantivy copies an older mission from).

One database per mission at <data_dir>/fulltext/<mission>.db in WAL mode with a
busy timeout, so the ingestion and research worker processes can share it.
`chunks` is an ordinary table keyed by chunk_id; `chunks_fts` is an external-
content FTS5 index over it kept in step by triggers, so re-indexing a chunk
(INSERT .. ON CONFLICT DO UPDATE) replaces its postings instead of duplicating them.

User queries never reach FTS5 syntax: they are split into word tokens, each
quoted as a phrase, and OR-ed (see fts_query).
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Sequence

from activities.stores.base import dump_chunks, remove_sqlite_files, search_terms
from stratmaster.contracts.common import check_mission
from stratmaster.contracts.knowledge import Chunk, SearchHit


_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY,
    chunk_id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    token_count INTEGER NOT NULL,
    title TEXT,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, title, content='chunks', content_rowid='rowid',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text, title) VALUES (new.rowid, new.text, coalesce(new.title, ''));
END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text, title) VALUES ('delete', old.rowid, old.text, coalesce(old.title, ''));
END;
CREATE TRIGGER IF NOT EXISTS chunks_au AFTER UPDATE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text, title) VALUES ('delete', old.rowid, old.text, coalesce(old.title, ''));
    INSERT INTO chunks_fts(rowid, text, title) VALUES (new.rowid, new.text, coalesce(new.title, ''));
END;
"""

_UPSERT = """
INSERT INTO chunks (chunk_id, document_id, ordinal, text, start, "end", token_count, title, metadata)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(chunk_id) DO UPDATE SET
    document_id = excluded.document_id, ordinal = excluded.ordinal, text = excluded.text,
    start = excluded.start, "end" = excluded."end", token_count = excluded.token_count,
    title = excluded.title, metadata = excluded.metadata
WHERE chunks.text IS NOT excluded.text OR chunks.title IS NOT excluded.title
   OR chunks.document_id IS NOT excluded.document_id OR chunks.ordinal IS NOT excluded.ordinal
   OR chunks.start IS NOT excluded.start OR chunks."end" IS NOT excluded."end"
   OR chunks.token_count IS NOT excluded.token_count OR chunks.metadata IS NOT excluded.metadata
"""


TIE_MARGIN = 50


def fts_query(text: str) -> str | None:
    """Plain text -> a safe FTS5 MATCH expression: every word token quoted as a
    phrase and OR-ed, so operators (AND/OR/NOT/NEAR, *, ^, :, quotes, parentheses)
    in user text are just words or dropped; function words are left out unless
    nothing else remains. None when no token remains."""
    terms = search_terms(text)
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


class SqliteFullTextIndex:
    backend = "sqlite-fts5"

    def __init__(self, data_dir: Path):
        self.root = Path(data_dir).resolve() / "fulltext"

    def _path(self, mission: str) -> Path:
        return self.root / f"{mission}.db"  # mission already validated

    def _connect(self, mission: str, create: bool) -> sqlite3.Connection | None:
        path = self._path(mission)
        if not create and not path.exists():
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 30000")
        _wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        if create:
            conn.executescript(_SCHEMA)
        return conn

    def _with(self, mission: str, fn, create: bool = False, default=None):
        conn = self._connect(mission, create)
        if conn is None:
            return default
        try:
            return fn(conn)
        finally:
            conn.close()

    # --- API ----------------------------------------------------------------
    async def ensure_index(self, mission: str) -> None:
        mission = check_mission(mission)
        await asyncio.to_thread(self._with, mission, lambda c: None, True)

    async def index(self, mission: str, chunks: Sequence[Chunk]) -> None:
        mission = check_mission(mission)
        rows = [(c.chunk_id, c.document_id, c.ordinal, c.text, c.start, c.end, c.token_count, c.title,
                 json.dumps(c.metadata, sort_keys=True, default=str)) for c in chunks]
        if not rows:
            return

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_UPSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        await asyncio.to_thread(self._with, mission, run, True)

    async def search(self, mission: str, query: str, limit: int) -> list[SearchHit]:
        mission = check_mission(mission)
        match = fts_query(query)
        if match is None or limit <= 0:
            return []

        def run(conn: sqlite3.Connection) -> list[tuple]:
            # the top rows by score first, then their columns: joining every match before the
            # sort costs more than the scoring at 100k chunks. Ties are broken by chunk_id, which
            # a restore keeps (rowids it does not), so the inner cut keeps TIE_MARGIN rows extra.
            return conn.execute(
                """SELECT c.chunk_id, c.document_id, c.text, c.start, c."end", c.title, t.score
                   FROM (SELECT rowid, -bm25(chunks_fts, 1.0, 0.5) AS score FROM chunks_fts
                         WHERE chunks_fts MATCH ? ORDER BY score DESC LIMIT ?) t
                   JOIN chunks c ON c.rowid = t.rowid ORDER BY t.score DESC, c.chunk_id LIMIT ?""",
                (match, int(limit) + TIE_MARGIN, int(limit)),
            ).fetchall()
        rows = await asyncio.to_thread(self._with, mission, run, False, [])
        return [SearchHit(chunk_id=r[0], document_id=r[1], text=r[2], start=r[3], end=r[4], title=r[5],
                          score=float(r[6]), source="bm25", scores={"bm25": float(r[6])}) for r in rows]

    async def count(self, mission: str) -> int:
        mission = check_mission(mission)
        return await asyncio.to_thread(
            self._with, mission, lambda c: c.execute("SELECT count(*) FROM chunks").fetchone()[0], False, 0)

    async def delete_document(self, mission: str, document_id: str) -> int:
        """Remove a document's chunks (re-ingestion of a changed document)."""
        mission = check_mission(mission)

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,)).rowcount
        return await asyncio.to_thread(self._with, mission, run, False, 0)

    async def drop(self, mission: str) -> None:
        mission = check_mission(mission)
        await asyncio.to_thread(remove_sqlite_files, self._path(mission))

    # --- backup hooks ----------------------------------------------------------
    async def dump(self, mission: str) -> list[dict]:
        """Every chunk as Chunk fields (JSON-able dicts), ordered by chunk_id."""
        mission = check_mission(mission)

        def run(conn: sqlite3.Connection) -> list[dict]:
            cur = conn.execute('SELECT chunk_id, document_id, ordinal, text, start, "end", token_count, title, '
                               'metadata FROM chunks ORDER BY chunk_id')
            return [Chunk(chunk_id=r[0], document_id=r[1], ordinal=r[2], text=r[3], start=r[4], end=r[5],
                          token_count=r[6], title=r[7], metadata=json.loads(r[8] or "{}")).model_dump(mode="json")
                    for r in cur]
        return await asyncio.to_thread(self._with, mission, run, False, [])

    async def load(self, mission: str, rows: Sequence[dict]) -> None:
        await self.index(mission, dump_chunks(rows))

    async def probe(self) -> str:
        def check() -> str:
            conn = sqlite3.connect(":memory:")
            try:
                conn.execute("CREATE VIRTUAL TABLE t USING fts5(a, tokenize='porter unicode61 remove_diacritics 2')")
            finally:
                conn.close()
            self.root.mkdir(parents=True, exist_ok=True)
            return f"SQLite {sqlite3.sqlite_version} FTS5 at {self.root}"
        return await asyncio.to_thread(check)


def _wal(conn: sqlite3.Connection, deadline_s: float = 30.0) -> None:
    """WAL mode (persistent in the file, so set once). Switching the journal mode does
    not go through the busy handler: when another process is creating or opening the
    same file at that moment SQLite answers "database is locked" at once, so retry."""
    import time

    end = time.monotonic() + deadline_s
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > end:
                raise
            time.sleep(0.05)
