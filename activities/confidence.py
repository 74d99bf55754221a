"""A claim's confidence in [0,1], derived only from its evidence.

Factors (each in [0,1]):
  support    : number of supporting citations (saturates at 4)
  documents  : distinct supporting documents (saturates at 3) - independent sources count most
  retrieval  : mean fused retrieval score of the cited hits
  relevance  : similarity of the claim to the question
  agreement  : support / (support + contradicting)
confidence = agreement * (0.15 + 0.2 support + 0.3 documents + 0.2 retrieval + 0.15 relevance)
             - 0.15 * contradicted share
"""
from __future__ import annotations

from typing import Sequence


def confidence(
    support_docs: Sequence[str],
    retrieval_scores: Sequence[float],
    relevance: float,
    n_contradicting: int,
) -> tuple[float, dict[str, float]]:
    n = len(support_docs)
    if n == 0:
        return 0.0, {"support": 0.0, "documents": 0.0, "retrieval": 0.0, "relevance": 0.0, "agreement": 0.0}
    support = min(1.0, n / 4)
    documents = min(1.0, len(set(support_docs)) / 3)
    retrieval = max(0.0, min(1.0, sum(retrieval_scores) / len(retrieval_scores))) if retrieval_scores else 0.0
    relevance = max(0.0, min(1.0, relevance))
    agreement = n / (n + n_contradicting)
    base = 0.15 + 0.2 * support + 0.3 * documents + 0.2 * retrieval + 0.15 * relevance
    value = agreement * base - 0.15 * (1 - agreement)
    value = round(max(0.0, min(1.0, value)), 2)
    factors = {"support": round(support, 3), "documents": round(documents, 3), "retrieval": round(retrieval, 3),
               "relevance": round(relevance, 3), "agreement": round(agreement, 3)}
    return value, factors
