"""Rank fusion of per-retriever hit lists into one hybrid list.

Two methods, both keeping every retriever's raw score in `hit.scores`:
  minmax: scores min-max normalised per retriever to [0,1], then a weighted sum
          (a retriever that missed a chunk contributes 0);
  rrf:    reciprocal rank fusion, sum of w / (k + rank).
The fused `score` of minmax is in [0,1]; RRF scores are rescaled to [0,1] by the
best possible score so confidences can use either.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from stratmaster.contracts.knowledge import SearchHit

DEFAULT_WEIGHTS = {"bm25": 0.5, "dense": 0.5, "graph": 0.3, "web": 0.3, "expansion": 0.3}
RRF_K = 60


def _normalise(hits: Sequence[SearchHit]) -> dict[str, float]:
    if not hits:
        return {}
    scores = [h.score for h in hits]
    lo, hi = min(scores), max(scores)
    if hi - lo < 1e-12:
        return {h.chunk_id: 1.0 for h in hits}
    return {h.chunk_id: (h.score - lo) / (hi - lo) for h in hits}


def _dedupe(hits: Sequence[SearchHit]) -> list[SearchHit]:
    """Keep each chunk's best-ranked hit (a store may return a chunk twice)."""
    seen: set[str] = set()
    out = []
    for h in hits:
        if h.chunk_id not in seen:
            seen.add(h.chunk_id)
            out.append(h)
    return out


def fuse(
    lists: Mapping[str, Sequence[SearchHit]],
    method: str = "minmax",
    top_k: int = 10,
    weights: Mapping[str, float] | None = None,
    rrf_k: int = RRF_K,
) -> list[SearchHit]:
    weights = {**DEFAULT_WEIGHTS, **(weights or {})}
    lists = {name: _dedupe(hits) for name, hits in lists.items() if hits}
    if method not in ("minmax", "rrf"):
        raise ValueError(f"unknown fusion {method!r}: use 'minmax' or 'rrf'")
    fused: dict[str, float] = {}
    first: dict[str, SearchHit] = {}
    raw: dict[str, dict[str, float]] = {}
    for name, hits in lists.items():
        w = weights.get(name, 0.5)
        norm = _normalise(hits) if method == "minmax" else None
        for rank, h in enumerate(hits, start=1):
            first.setdefault(h.chunk_id, h)
            raw.setdefault(h.chunk_id, {})[name] = h.score
            part = w * norm[h.chunk_id] if norm is not None else w / (rrf_k + rank)
            fused[h.chunk_id] = fused.get(h.chunk_id, 0.0) + part
    if not fused:
        return []
    total_w = sum(weights.get(name, 0.5) for name in lists)
    best_possible = total_w if method == "minmax" else total_w / (rrf_k + 1)
    ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]
    out = []
    for chunk_id, score in ranked:
        h = first[chunk_id]
        scores = {**h.scores, **raw[chunk_id], method: score}
        out.append(h.model_copy(update={
            "score": min(1.0, score / best_possible) if best_possible > 0 else 0.0,
            "source": "hybrid" if len(raw[chunk_id]) > 1 or len(lists) > 1 else h.source,
            "scores": scores,
        }))
    return out


def merge_subquestion_hits(per_query: Sequence[Sequence[SearchHit]], limit: int) -> list[SearchHit]:
    """Union of hits across sub-questions, each chunk at its best fused score, with each
    retriever's best score for it across the sub-questions (the sub-question a chunk fused
    best for is not always the one its text is closest to: evidence features read these)."""
    best: dict[str, SearchHit] = {}
    scores: dict[str, dict[str, float]] = {}
    for hits in per_query:
        for h in hits:
            if h.chunk_id not in best or h.score > best[h.chunk_id].score:
                best[h.chunk_id] = h
            kept = scores.setdefault(h.chunk_id, {})
            for name, value in h.scores.items():
                kept[name] = max(value, kept.get(name, value))
    merged = [h.model_copy(update={"scores": scores[h.chunk_id]}) for h in best.values()]
    return sorted(merged, key=lambda h: (-h.score, h.chunk_id))[:limit]
