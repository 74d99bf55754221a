"""BM25 full-text index on Tantivy (the embedded default; OpenSearch in production).

One index directory per mission at <data_dir>/fulltext-tantivy/<mission>/. Tantivy skips
whole posting blocks that cannot reach the top k (block-max WAND), where SQLite FTS5 scores
every chunk an OR query matches: at 100k chunks that is tens of times faster
(bench/results/stores_embedded.md).

Processes share an index the way Tantivy allows: any number of readers, one writer at a
time. A write takes the index's writer lock (in this process a per-mission lock first;
another process holding it is waited for, up to WRITER_WAIT_S), commits and releases it at
once, so the ingestion and research workers and a restore can all write. A reader reloads
before each query, so a search sees every committed write.

Chunks are keyed by chunk_id (re-indexing a chunk deletes its previous version in the same
commit). Text and title are analysed alike: word tokens, lower-cased, folded to ASCII,
English-stemmed. User queries never reach Tantivy's query language: they become their word
tokens (activities/stores/base.py: search_terms), each a term query on text and title.

A mission indexed by the previous embedded engine (SQLite FTS5, fulltext/<mission>.db) is
copied into Tantivy the first time it is opened, so upgrading a local stack loses nothing.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import tantivy

from activities.stores.base import dump_chunks, search_terms
from stratmaster.contracts.common import check_mission
from stratmaster.contracts.knowledge import Chunk, SearchHit

ANALYZER = "stratmaster_en"
TITLE_BOOST = 0.5  # a title counts half the text, like the FTS5 index's bm25(chunks_fts, 1.0, 0.5)
TIE_MARGIN = 50  # rows fetched beyond the limit so equal scores are ordered by chunk_id
WRITER_WAIT_S = 60.0  # how long a write waits for another process's writer
WRITER_HEAP = 15_000_000  # one indexing thread; tantivy's floor is 15 MB per thread
_STORED_INT = ("ordinal", "start", "end", "token_count")


def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("chunk_id", stored=True, tokenizer_name="raw")
    sb.add_text_field("document_id", stored=True, tokenizer_name="raw")
    sb.add_text_field("text", stored=True, tokenizer_name=ANALYZER)
    sb.add_text_field("title", stored=True, tokenizer_name=ANALYZER)
    for name in _STORED_INT:
        sb.add_integer_field(name, stored=True)
    sb.add_bytes_field("metadata", stored=True, indexed=False)
    return sb.build()


SCHEMA = _schema()


def _analyzer() -> tantivy.TextAnalyzer:
    return (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
            .filter(tantivy.Filter.remove_long(64))
            .filter(tantivy.Filter.lowercase())
            .filter(tantivy.Filter.ascii_fold())
            .filter(tantivy.Filter.stemmer("english"))
            .build())


def _first(doc: tantivy.Document, name: str, default: Any = None) -> Any:
    values = doc.get_all(name)
    return values[0] if values else default


class TantivyFullTextIndex:
    backend = "tantivy"

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir).resolve()
        self.root = self.data_dir / "fulltext-tantivy"
        self._open: dict[str, tuple[int, tantivy.Index]] = {}  # mission -> (directory inode, index)
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()

    def _path(self, mission: str) -> Path:
        return self.root / mission  # mission already validated

    def _lock(self, mission: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(mission, threading.RLock())

    def _index(self, mission: str, create: bool) -> tantivy.Index | None:
        """The mission's index (cached while its directory is the same one: a drop and
        re-create by another process gives a new directory); None when there is none."""
        path = self._path(mission)
        if not path.is_dir():
            if not create and not self._legacy(mission).exists():
                self._open.pop(mission, None)
                return None
            self._create(mission)
        inode = path.stat().st_ino
        cached = self._open.get(mission)
        if cached and cached[0] == inode:
            return cached[1]
        index = tantivy.Index(SCHEMA, path=str(path), reuse=True)
        index.register_tokenizer(ANALYZER, _analyzer())
        self._open[mission] = (inode, index)
        return index

    def _create(self, mission: str) -> None:
        """Create the index in a temporary directory, with a legacy FTS5 index's chunks copied
        in, then rename it into place: no process opens a half-created or half-copied index,
        and a crash before the rename leaves the legacy index to copy again."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(mission)
        tmp = self.root / f".{mission}.{time.monotonic_ns()}.tmp"
        tmp.mkdir()
        legacy = self._legacy(mission)
        try:
            index = tantivy.Index(SCHEMA, path=str(tmp), reuse=False)
            if legacy.exists():
                from activities.stores.fulltext_sqlite import SqliteFullTextIndex

                index.register_tokenizer(ANALYZER, _analyzer())
                rows = asyncio.run(SqliteFullTextIndex(self.data_dir).dump(mission))
                self._commit(index, dump_chunks(rows), None)
            del index
            tmp.rename(path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not path.is_dir():
                raise
            return  # another process created it first
        except BaseException:  # a bad legacy row, a cancellation: nothing half-made stays behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if legacy.exists():
            legacy.rename(legacy.with_suffix(".db.migrated"))

    def _legacy(self, mission: str) -> Path:
        return self.data_dir / "fulltext" / f"{mission}.db"

    def _writer(self, index: tantivy.Index) -> tantivy.IndexWriter:
        """The index's writer: another process may hold it for a while (one commit)."""
        deadline = time.monotonic() + WRITER_WAIT_S
        while True:
            try:
                return index.writer(WRITER_HEAP, 1)
            except ValueError as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _write(self, mission: str, chunks: Sequence[Chunk], delete_document: str | None) -> int:
        """Upsert chunks (and/or delete a document's) in one commit; the number deleted."""
        with self._lock(mission):
            index = self._index(mission, create=True)
            assert index is not None
            deleted = 0
            if delete_document is not None:
                index.reload()
                query = tantivy.Query.term_query(SCHEMA, "document_id", delete_document)
                found = index.searcher().search(query, 1, count=True)
                deleted = found.count or 0  # type: ignore[attr-defined]  # (the stubs omit `count`)
            self._commit(index, chunks, delete_document)
            return deleted

    def _commit(self, index: tantivy.Index, chunks: Sequence[Chunk], delete_document: str | None) -> None:
        writer = self._writer(index)
        try:
            if delete_document is not None:
                writer.delete_documents_by_term("document_id", delete_document)
            for c in chunks:
                writer.delete_documents_by_term("chunk_id", c.chunk_id)
                writer.add_document(tantivy.Document(
                    chunk_id=c.chunk_id, document_id=c.document_id, text=c.text, title=c.title or "",
                    ordinal=c.ordinal, start=c.start, end=c.end, token_count=c.token_count,
                    metadata=json.dumps(c.metadata, sort_keys=True, default=str).encode()))
            writer.commit()
        except BaseException:
            writer.rollback()
            raise
        finally:
            writer.wait_merging_threads()  # finishes merges and releases the writer lock

    def _reader(self, mission: str) -> tantivy.Searcher | None:
        index = self._index(mission, create=False)
        if index is None:
            return None
        index.reload()
        return index.searcher()

    # --- API ----------------------------------------------------------------
    async def ensure_index(self, mission: str) -> None:
        mission = check_mission(mission)
        await asyncio.to_thread(self._index, mission, True)

    async def index(self, mission: str, chunks: Sequence[Chunk]) -> None:
        mission = check_mission(mission)
        if chunks:
            await asyncio.to_thread(self._write, mission, list(chunks), None)

    async def search(self, mission: str, query: str, limit: int) -> list[SearchHit]:
        mission = check_mission(mission)
        terms = search_terms(query)
        if not terms or limit <= 0:
            return []

        def run() -> list[SearchHit]:
            searcher = self._reader(mission)
            if searcher is None:
                return []
            analyzer = _analyzer()
            tokens = list(dict.fromkeys(tok for term in terms for tok in analyzer.analyze(term)))
            if not tokens:
                return []
            clauses = [(tantivy.Occur.Should, tantivy.Query.term_query(SCHEMA, "text", tok)) for tok in tokens]
            clauses += [(tantivy.Occur.Should, tantivy.Query.boost_query(
                tantivy.Query.term_query(SCHEMA, "title", tok), TITLE_BOOST)) for tok in tokens]
            ranked = searcher.search(tantivy.Query.boolean_query(clauses), int(limit) + TIE_MARGIN, count=False).hits
            if len(ranked) > limit:  # stored fields only for the top `limit` and whatever ties the last of them
                ranked = [(score, address) for score, address in ranked if score >= ranked[int(limit) - 1][0]]
            hits = []
            for score, address in ranked:
                doc = searcher.doc(address)
                hits.append(SearchHit(
                    chunk_id=_first(doc, "chunk_id"), document_id=_first(doc, "document_id"),
                    text=_first(doc, "text", ""), start=_first(doc, "start", 0), end=_first(doc, "end", 0),
                    title=_first(doc, "title") or None, score=float(score), source="bm25",
                    scores={"bm25": float(score)}))
            hits.sort(key=lambda h: (-h.score, h.chunk_id))
            return hits[: int(limit)]
        return await asyncio.to_thread(run)

    async def count(self, mission: str) -> int:
        mission = check_mission(mission)

        def run() -> int:
            searcher = self._reader(mission)
            return searcher.num_docs if searcher is not None else 0
        return await asyncio.to_thread(run)

    async def delete_document(self, mission: str, document_id: str) -> int:
        """Remove a document's chunks (re-ingestion of a changed document)."""
        mission = check_mission(mission)
        if not self._path(mission).is_dir() and not self._legacy(mission).exists():
            return 0
        return await asyncio.to_thread(self._write, mission, [], document_id)

    async def drop(self, mission: str) -> None:
        mission = check_mission(mission)

        def run() -> None:
            with self._lock(mission):
                self._open.pop(mission, None)
                path = self._path(mission)
                if path.is_dir():
                    # renamed first: no process opens a half-deleted index
                    gone = self.root / f".{mission}.{time.monotonic_ns()}.drop"
                    path.rename(gone)
                    shutil.rmtree(gone, ignore_errors=True)
                for legacy in (self._legacy(mission), self._legacy(mission).with_suffix(".db.migrated")):
                    legacy.unlink(missing_ok=True)
        await asyncio.to_thread(run)

    async def optimize(self, mission: str) -> str:
        """Maintenance's optimise_indexes: Tantivy merges segments on commit by its own policy
        (tantivy-py exposes no explicit merge); this removes the files merged-away segments left."""
        mission = check_mission(mission)

        def run() -> str:
            with self._lock(mission):
                index = self._index(mission, create=False)
                if index is None:
                    return "no-op: no index"
                index.reload()
                before = index.searcher().num_segments
                writer = self._writer(index)
                writer.garbage_collect_files()
                writer.wait_merging_threads()
                return f"optimized: unused files collected ({before} segments; tantivy merges them on commit)"
        return await asyncio.to_thread(run)

    # --- backup hooks ----------------------------------------------------------
    async def dump(self, mission: str) -> list[dict]:
        """Every chunk as Chunk fields (JSON-able dicts), ordered by chunk_id."""
        mission = check_mission(mission)

        def run() -> list[dict]:
            searcher = self._reader(mission)
            if searcher is None or searcher.num_docs == 0:
                return []
            result = searcher.search(tantivy.Query.all_query(), searcher.num_docs, count=False)
            rows = []
            for _, address in result.hits:
                doc = searcher.doc(address)
                rows.append(Chunk(
                    chunk_id=_first(doc, "chunk_id"), document_id=_first(doc, "document_id"),
                    ordinal=_first(doc, "ordinal", 0), text=_first(doc, "text", ""), start=_first(doc, "start", 0),
                    end=_first(doc, "end", 0), token_count=_first(doc, "token_count", 0),
                    title=_first(doc, "title") or None,
                    metadata=json.loads(_first(doc, "metadata", b"{}") or b"{}")).model_dump(mode="json"))
            return sorted(rows, key=lambda r: r["chunk_id"])
        return await asyncio.to_thread(run)

    async def load(self, mission: str, rows: Sequence[dict]) -> None:
        await self.index(mission, dump_chunks(rows))

    async def probe(self) -> str:
        def check() -> str:
            index = tantivy.Index(SCHEMA)  # in memory: the library and the analyser load
            index.register_tokenizer(ANALYZER, _analyzer())
            self.root.mkdir(parents=True, exist_ok=True)
            return f"{getattr(tantivy, '__version__', 'tantivy')} at {self.root}"
        return await asyncio.to_thread(check)
