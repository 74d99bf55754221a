"""A claim's confidence in [0, 1]: the estimated probability that it answers the
question correctly, from its evidence.

    z = BIAS + sum(WEIGHTS[f] * factor f)   the ranker (factors from activities/research/answerability.py,
                                           plus `documents`: distinct supporting documents, saturating at 3)
    p = sigmoid(a * z + b * margin + c)      calibration; margin = z minus the best sentence's z for the question
    confidence = p * (0.5 + 0.5 agreement) - 0.1 (1 - agreement)   (agreement = support / (support + contradicting))

The ranker (weights, bias) and its calibration are one model file,
activities/research/rankers/<name>.json, written by `python bench/research_qa/tune.py --fit
--write NAME` with its training data's provenance; the platform setting `answer_ranker`
(STRATMASTER_ANSWER_RANKER) selects one. The ranker is a logistic regression over retrieved
sentences (`sim`/`window`: the sentence encoder's cosine, activities/ingest/sentence_encoder.py),
the calibration a Platt scaling on each question's top three (what become findings). So a
confidence of 0.4 means about 40% of such findings state the right answer, and a mission's
`min_confidence` is a real bar: bench/research_qa/results.md says how far that holds on
questions the model never saw.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

RANKERS = Path(__file__).with_name("rankers")
DEFAULT_RANKER = "answer-ranker-1"


@dataclass(frozen=True)
class Ranker:
    name: str
    weights: dict[str, float]
    bias: float
    # Platt scaling on each question's top-3 sentences: (ranker logit, margin = its logit minus
    # the best sentence's for the same question, intercept)
    calibration: tuple[float, float, float]
    provenance: dict = field(default_factory=dict)


def load_ranker(name: str) -> Ranker:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", name):
        raise ValueError(f"answer ranker {name!r}: a name is lower-case letters, digits and dashes")
    path = RANKERS / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in RANKERS.glob("*.json")))
        raise ValueError(f"answer ranker {name!r} is not one of: {known}")
    d = json.loads(path.read_text(encoding="utf-8"))
    weights = {k: float(v) for k, v in d["weights"].items()}
    a, b, c = (float(x) for x in d["calibration"])
    numbers = [*weights.values(), float(d["bias"]), a, b, c]
    if d.get("name") != name or set(weights) != set(d.get("features", [])) or not all(map(math.isfinite, numbers)):
        raise ValueError(f"answer ranker {name!r}: its file does not hold that ranker with finite weights for its features")
    return Ranker(name, weights, float(d["bias"]), (a, b, c), d.get("provenance", {}))


def use_ranker(name: str) -> Ranker:
    """Make `name` this process's ranker (a worker does so at start, from its settings)."""
    global RANKER, WEIGHTS, BIAS, CALIBRATION
    RANKER = load_ranker(name)
    WEIGHTS, BIAS, CALIBRATION = dict(RANKER.weights), RANKER.bias, RANKER.calibration
    return RANKER


RANKER = load_ranker(DEFAULT_RANKER)
WEIGHTS: dict[str, float] = dict(RANKER.weights)
BIAS: float = RANKER.bias
CALIBRATION: tuple[float, float, float] = RANKER.calibration


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
