"""Deterministic contradiction detection between two evidence sentences.

Two sentences are compared only when they are about the same subject (enough
shared content words); they contradict when one negates what the other asserts,
when they give different numbers for the same measure, or when they use the two
sides of an antonym pair in the same context.
"""
from __future__ import annotations

import re

from activities.planning import content_terms, tokens

NEGATIONS = frozenset({"not", "no", "never", "none", "nor", "neither", "cannot", "without", "fails", "failed",
                       "isn't", "aren't", "wasn't", "weren't", "doesn't", "don't", "didn't", "won't", "can't",
                       "couldn't", "shouldn't", "hasn't", "haven't", "hadn't", "nothing", "nobody", "unable"})

_ANTONYMS = [
    ("increase", "decrease"), ("increases", "decreases"), ("increased", "decreased"), ("increasing", "decreasing"),
    ("rise", "fall"), ("rises", "falls"), ("rose", "fell"), ("higher", "lower"), ("more", "less"),
    ("greater", "smaller"), ("larger", "smaller"), ("faster", "slower"), ("gain", "loss"), ("gains", "losses"),
    ("positive", "negative"), ("stable", "unstable"), ("safe", "unsafe"), ("effective", "ineffective"),
    ("improves", "worsens"), ("improved", "worsened"), ("improve", "worsen"), ("success", "failure"),
    ("succeeded", "failed"), ("true", "false"), ("accept", "reject"), ("accepted", "rejected"),
    ("supports", "contradicts"), ("confirmed", "refuted"), ("agree", "disagree"), ("agrees", "disagrees"),
    ("above", "below"), ("strong", "weak"), ("stronger", "weaker"), ("maximum", "minimum"), ("always", "never"),
    ("significant", "insignificant"), ("present", "absent"), ("possible", "impossible"), ("valid", "invalid"),
    ("profitable", "unprofitable"), ("growth", "decline"), ("grew", "shrank"), ("grows", "shrinks"),
    ("cheap", "expensive"),
    ("laminar", "turbulent"), ("hot", "cold"), ("wins", "loses"), ("won", "lost"),
]
ANTONYMS: dict[str, set[str]] = {}
for a, b in _ANTONYMS:
    ANTONYMS.setdefault(a, set()).add(b)
    ANTONYMS.setdefault(b, set()).add(a)

_NUM_RE = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)*)\s*(%|percent\b|[a-zA-Z]+)?")


def _terms(text: str) -> set[str]:
    return {x for x in content_terms(text) if not x.replace(".", "").replace(",", "").isdigit()}


def subject_overlap(a: str, b: str) -> float:
    """Jaccard overlap of the content words (numbers excluded)."""
    ta, tb = _terms(a), _terms(b)
    return len(ta & tb) / len(ta | tb) if ta and tb else 0.0


def same_subject(a: str, b: str, min_shared: int = 2, min_jaccard: float = 0.3) -> bool:
    ta, tb = _terms(a), _terms(b)
    if not ta or not tb:
        return False
    shared = ta & tb
    return len(shared) >= min(min_shared, len(ta), len(tb)) and len(shared) / len(ta | tb) >= min_jaccard


def _negated(text: str) -> bool:
    return any(t in NEGATIONS or t.endswith("n't") for t in tokens(text))


def _measures(text: str) -> dict[str, set[str]]:
    """number per measure: the measure is the unit after the number, or the
    nearest content word before it ("lift of 12" -> lift)."""
    out: dict[str, set[str]] = {}
    for m in _NUM_RE.finditer(text):
        value = m.group(1).replace(",", "")
        unit = (m.group(2) or "").lower()
        if unit in ("percent",):
            unit = "%"
        before = content_terms(text[max(0, m.start() - 60):m.start()])
        before = [w for w in before if not w.replace(".", "").isdigit()]
        anchor = before[-1] if before else ""
        if unit in ("and", "or", "to", "in", "of", "the", "at", "by", "for", "on", "with"):
            unit = ""
        key = f"{anchor} {unit}".strip()  # "retain %", "coefficient", "mach"
        if key:
            out.setdefault(key, set()).add(value)
    return out


def contradiction(a: str, b: str) -> str | None:
    """The reason a and b contradict, or None."""
    if not same_subject(a, b):
        return None
    if _negated(a) != _negated(b):
        return "negation"
    ma, mb = _measures(a), _measures(b)
    if subject_overlap(a, b) >= 0.45:  # numbers only compare on a closely shared subject
        for key in sorted(ma.keys() & mb.keys()):
            if ma[key].isdisjoint(mb[key]):
                return f"different numbers for {key}"
    ta, tb = set(tokens(a)), set(tokens(b))
    for w in ta - tb:
        opposite = ANTONYMS.get(w)
        if opposite and opposite & (tb - ta):
            return f"antonyms {w}/{sorted(opposite & tb)[0]}"
    return None
