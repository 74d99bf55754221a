"""Sentence vectors: stored with each chunk, and kept between research runs of a worker.

Scoring evidence needs a vector for every sentence of the retrieved passages (most of a
run's time when embedded then). Ingestion embeds them (SentenceEncoder.embed_units over
synthesis.passage_units) and stores them on the chunk row (`pack`); research reads them back
(`unpack`, which trusts nothing: a restored backup may carry anything) and only embeds what no
stored passage covers: the question, web hits, chunks ingested before the column existed.

What it does embed, it keeps in an LRU per (mission, text), so each is embedded once per worker.
Keyed by mission too: a hit never tells one mission that another holds the same sentence.
float32 rows: 1.5 KB a sentence, 30 MB at the default size.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Mapping, Protocol, Sequence, cast

import numpy as np

Embed = Callable[[list[str]], Sequence[Sequence[float]]]


class SentenceVectors:
    def __init__(self, max_entries: int = 20_000):
        self.max_entries = max_entries
        self._lru: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # scoring runs in threads
        self.hits = 0
        self.misses = 0

    def for_mission(self, mission: str, encoder: Encoder, passages: Mapping[str, np.ndarray] | None = None
                    ) -> "MissionEmbed":
        """embed() for `mission`'s texts: the stored passage vectors first, then the cache."""
        embed = encoder.embed

        def run(texts: list[str]) -> Sequence[Sequence[float]]:
            found: dict[str, np.ndarray] = {}
            with self._lock:
                for t in dict.fromkeys(texts):
                    v = passages.get(t) if passages else None
                    if v is not None:
                        found[t] = v
                        continue
                    v = self._lru.get((mission, t))
                    if v is not None:
                        self._lru.move_to_end((mission, t))
                        found[t] = v
            missing = [t for t in dict.fromkeys(texts) if t not in found]
            if missing:
                fresh = np.asarray(embed(missing), dtype=np.float32)
                found.update(zip(missing, fresh))
                with self._lock:
                    for t, v in zip(missing, fresh):
                        self._lru[(mission, t)] = v
                    while len(self._lru) > self.max_entries:
                        self._lru.popitem(last=False)
            with self._lock:
                self.hits += len(texts) - len(missing)
                self.misses += len(missing)
            return cast(Sequence[Sequence[float]], [found[t] for t in texts])  # float32 rows
        return MissionEmbed(run, encoder.query_prefix, encoder.near_duplicate)


class Encoder(Protocol):
    query_prefix: str
    near_duplicate: float

    def embed(self, texts: Sequence[str]) -> Any: ...


class MissionEmbed:
    """An Embed for one mission's texts, with its encoder's query prefix (what a question is
    embedded as) and near-duplicate bar (two sentences that close make one claim)."""

    def __init__(self, run: Embed, query_prefix: str, near_duplicate: float):
        self._run = run
        self.query_prefix = query_prefix
        self.near_duplicate = near_duplicate

    def __call__(self, texts: list[str]) -> Sequence[Sequence[float]]:
        return self._run(texts)


# what a unit is (synthesis.passage_units): stored vectors of other units are not these units' vectors
UNITS = "units-6"


def stamp(model_id: str) -> bytes:
    """What a chunk row's sentence vectors start with: the model and the unit rules that made them."""
    return f"{model_id}/{UNITS}".encode() + b"\0"


def pack(spans: Sequence[tuple[int, int]], vectors: np.ndarray, model_id: str) -> tuple[list[int], bytes]:
    """The chunk row's (sentence_spans, sentence_vectors): flat pairs, then the model's id and
    little-endian float16 rows (vectors of another model are never read as this one's)."""
    return [x for span in spans for x in span], stamp(model_id) + np.asarray(vectors, dtype="<f2").tobytes()


def unpack(text: str, flat: Sequence[int] | None, blob: bytes | None, dim: int, model_id: str
           ) -> dict[tuple[int, int], np.ndarray] | None:
    """span -> unit vector from a chunk row, or None unless every part is consistent (this
    model's stamp, span pairs inside the text, one finite row of `dim` per span): a bad or
    older row costs only speed (research embeds its sentences again and stores them)."""
    head = stamp(model_id)
    if flat is None or blob is None or len(flat) % 2 or dim < 1 or not bytes(blob).startswith(head):
        return None
    blob = bytes(blob)[len(head):]
    if not flat:
        return {} if not blob else None  # a chunk with no sentence to read
    n = len(flat) // 2
    if len(blob) != n * dim * 2:
        return None
    rows = np.frombuffer(blob, dtype="<f2").reshape(n, dim).astype(np.float32)
    spans = list(zip(flat[0::2], flat[1::2]))
    if not np.isfinite(rows).all() or any(not 0 <= s < e <= len(text) for s, e in spans):
        return None
    # ingestion never writes a zero row: one is tampered with, and its sentence is embedded again
    return {span: row for span, row in zip(spans, rows) if row.any()}
