"""Sentence vectors kept between research runs of a worker.

Scoring evidence embeds every sentence of the retrieved passages (most of a run's time); the
passages a mission's questions retrieve overlap, so each (mission, sentence) is embedded once
per worker while it stays in this LRU. Keyed by mission too: a hit never tells one mission
that another holds the same sentence. float32 rows: 1.5 KB a sentence, 30 MB at the default size.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Sequence, cast

import numpy as np

Embed = Callable[[list[str]], Sequence[Sequence[float]]]


class SentenceVectors:
    def __init__(self, max_entries: int = 20_000):
        self.max_entries = max_entries
        self._lru: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # scoring runs in threads
        self.hits = 0
        self.misses = 0

    def for_mission(self, mission: str, embed: Embed) -> Embed:
        """embed() for `mission`'s texts, through the cache."""
        def run(texts: list[str]) -> Sequence[Sequence[float]]:
            found: dict[str, np.ndarray] = {}
            with self._lock:
                for t in dict.fromkeys(texts):
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
        return run
