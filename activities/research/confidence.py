"""A claim's confidence in [0, 1]: the estimated probability that it answers the
question correctly, from its evidence.

    z = BIAS + sum(WEIGHTS[f] * factor f)   the ranker (factors from activities/research/answerability.py,
                                           plus `documents`: distinct supporting documents, saturating at 3)
    p = sigmoid(a * z + b * margin + c)      calibration; margin = z minus the best sentence's z for the question
    confidence = p * (0.5 + 0.5 agreement) - 0.1 (1 - agreement)   (agreement = support / (support + contradicting))

The ranker is a logistic regression over every retrieved sentence of the research
QA bench (`sim`/`window`: the sentence encoder's cosine, activities/ingest/sentence_encoder.py),
and the calibration a Platt scaling on each question's top three (what become findings),
both fitted by `python bench/research_qa/tune.py --fit` (cross-validated by question;
`--calibrate-findings` checks a calibration fitted on the presented claims instead; run.py
prints the reliability table and ECE). So a
confidence of 0.4 means about 40% of such findings state the right answer, and a
mission's `min_confidence` is a real bar.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

# fitted by bench/research_qa/tune.py --fit (see bench/research_qa/README.md)
WEIGHTS: dict[str, float] = {"sim": 6.309, "window": 13.172, "cover": 0.79, "passage": 4.387, "key": 1.029, "kind": 3.891,
                             "beside": 0.786, "retrieval": 1.405, "documents": 0.5}
BIAS = -20.14
# Platt scaling fitted on each question's top-3 sentences (what become findings): (ranker logit,
# margin = its logit minus the best sentence's for the same question, intercept)
CALIBRATION = (0.523, 1.1201, -1.6866)


def logit(factors: Mapping[str, float]) -> float:
    """The ranker: how likely a sentence answers the question, before calibration."""
    return BIAS + sum(w * factors.get(name, 0.0) for name, w in WEIGHTS.items())


def probability(factors: Mapping[str, float]) -> float:
    """Calibrated probability that the sentence answers the question (factors["margin"]:
    how far its logit is below the question's best sentence; 0 for the best)."""
    z = CALIBRATION[0] * logit(factors) + CALIBRATION[1] * factors.get("margin", 0.0) + CALIBRATION[2]
    return 1.0 / (1.0 + math.exp(-z))


def with_margins(items: Sequence, factors_of, candidates: Sequence | None = None) -> None:
    """Set factors["margin"] on each item's factors: its logit minus the best logit among
    `candidates` (none given, or none there: the items)."""
    logits = [logit(factors_of(x)) for x in items]
    best = max((logit(factors_of(x)) for x in candidates), default=0.0) if candidates else max(logits, default=0.0)
    for x, z in zip(items, logits):
        factors_of(x)["margin"] = round(z - best, 4)


def with_agreement(p, agreement):
    """Contradicting evidence lowers it (not calibrated by the bench, whose corpus rarely
    disagrees); floats or numpy arrays alike."""
    return p * (0.5 + 0.5 * agreement) - 0.1 * (1 - agreement)


def confidence(features: Mapping[str, float], support_docs: Sequence[str], n_contradicting: int) -> tuple[float, dict[str, float]]:
    n = len(support_docs)
    if n == 0:
        return 0.0, {**features, "documents": 0.0, "agreement": 0.0}
    factors = {**features, "documents": round(min(1.0, len(set(support_docs)) / 3), 3)}
    agreement = n / (n + n_contradicting)
    value = with_agreement(probability(factors), agreement)
    return round(max(0.0, min(1.0, value)), 2), {**factors, "agreement": round(agreement, 3)}
