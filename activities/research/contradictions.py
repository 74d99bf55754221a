"""Deterministic contradiction detection between two evidence sentences.

Three tests, strictest first:
  measures : both sentences state a figure for the same (subject, measure) key -
             e.g. ("voltaris", "market share") or ("market", "growth rate") - and the
             figures differ beyond a tolerance (wider when either is hedged, "about 9%").
             Keys come from a number with a unit (%, currency, kWh/GWh, cycles) and the
             measure phrase around it ("market share", "CAGR", "grow by ... a year",
             "efficiency", "per kWh", "cycles"); a bare figure inherits the measure of
             the preceding sentence ("follows with about 14%" after "... 22% of
             installations").
  negation : one sentence negates what the other asserts - only when they share the
             predicate and its complement (high overlap of their non-name content
             words), not merely a subject and a verb ("said it would not follow" vs
             "follows with about 14%" is no contradiction).
  antonyms : the two sides of an antonym pair in otherwise the same statement.
The older anchor-word number test remains for closely shared subjects without a
recognised measure ("drag coefficient 0.32 vs 0.45").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from activities.research.answerability import terms_of
from activities.research.planning import content_terms, tokens

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


@lru_cache(maxsize=16_384)
def _terms(text: str) -> frozenset[str]:
    """Content words without figures; cached: every candidate pair of a run asks again."""
    return frozenset(x for x in terms_of(text) if not x.replace(".", "").replace(",", "").isdigit())


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


# ---------------------------------------------------------------- measures

@dataclass(frozen=True)
class Fact:
    subject: str   # normalised: first word of the entity ("voltaris"), or "market" for market-wide measures
    measure: str   # "market share", "growth rate", "price per kWh", ...
    value: float
    unit: str      # "%", "USD/kWh", "MWh", "cycles", "EUR"
    hedged: bool   # "about", "around", "roughly" ...
    year: str | None = None
    shown: str = ""  # the figure as written, for reasons
    name: str = ""   # the subject as written

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.subject, self.measure, self.unit)


# measure phrases; the nearest one to a figure names its measure
_MEASURES: list[tuple[str, re.Pattern]] = [
    ("market share", re.compile(r"\bmarket[- ]shares?\b|\bshares?\b|\bof (?:the )?(?:[\w-]+ ){0,3}"
                                r"(?:installations|deliveries|sales|shipments)\b", re.I)),
    ("growth rate", re.compile(r"\bCAGR\b|\bcompound annual growth\b|\bgrowth\b|\bgrow(?:s|ing|n)?\b|\bexpand(?:s|ing)?\b",
                               re.I)),
    ("efficiency", re.compile(r"\befficien(?:cy|t)\b", re.I)),
    ("cycle life", re.compile(r"\bcycles?\b|\bcycle life\b", re.I)),
    ("degradation", re.compile(r"\bdegradation\b|\bdegrades?\b", re.I)),
    ("capacity retention", re.compile(r"\bretains?\b|\bretention\b", re.I)),
    ("gross margin", re.compile(r"\bmargins?\b", re.I)),
    ("revenue", re.compile(r"\brevenues?\b|\bturnover\b", re.I)),
    ("price", re.compile(r"\bprices?\b|\bcosts?\b", re.I)),
]
_MARKET_WIDE = {"growth rate"}
_FIGURE = re.compile(
    r"(?P<cur>USD|EUR|GBP|US\$|\$|€|£)?\s?(?<![\w.,])(?P<num>\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\d,]*\.\d)"
    r"\s*(?P<unit>%|percent\b|per ?cent\b|GWh\b|MWh\b|kWh\b|GW\b|MW\b|cycles\b|million\b|billion\b)?"
    r"(?P<per>\s*(?:per|/)\s*kWh\b)?")
_HEDGE = re.compile(r"(?:about|around|roughly|approximately|approx\.?|nearly|almost|some|circa|~|an estimated)\s*$", re.I)
_BOUND = re.compile(r"(?:above|over|more than|less than|below|under|at least|at most|up to|beyond|from|<|>|≤|≥)\s*$",
                    re.I)
_YEAR = re.compile(r"^\s*(?:in|during|for)\s+((?:19|20)\d\d)\b")
_ENTITY = re.compile(r"\b[A-Z][\w'’\-]*(?:\s+(?:[A-Z][\w'’\-]*|AG|SE|SA|plc|&))*")
_NOT_ENTITY = frozenset("""the a an we our in it its this that these those they their on at by for of to as
note however but and or while when with from after before since during there here he she his her
usd eur gbp cagr ceo cfo cto q1 q2 q3 q4 gwh mwh kwh i january february march april may june july august
september october november december european europe global""".split())
_YEARS = re.compile(r"\b(?:19|20)\d\d\b")
_CLAUSE_END = re.compile(r"[;:]|\.\s")


def _entities(text: str) -> list[tuple[int, str, str]]:
    """(position, normalised key, name as written) of capitalised names; sentence-initial function
    words and unit/currency tokens are not names."""
    out = []
    for m in _ENTITY.finditer(text):
        words = m.group(0).split()
        while words and words[0].lower().strip("'’") in _NOT_ENTITY:
            words = words[1:]
        if not words:
            continue
        key = re.sub(r"['’]s?$", "", words[0].lower())
        if len(key) >= 3 and not key.isdigit():
            out.append((m.start() + m.group(0).index(words[0]), key, " ".join(words)))
    return out


def _measure_at(text: str, start: int, end: int) -> str | None:
    """Measure phrase nearest the figure: right after it (same clause, "14% market
    share", "9% a year"), else before it in the same clause."""
    after = text[end:end + 48]
    after = re.split(r"[,;:()]|\.\s|\band\b", after, maxsplit=1)[0]
    best: tuple[int, str] | None = None
    for name, pat in _MEASURES:
        m = pat.search(after)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), name)
    if best:
        return best[1]
    before = text[max(0, start - 90):start]
    before = _CLAUSE_END.split(before)[-1]
    for name, pat in _MEASURES:
        for m in pat.finditer(before):
            dist = len(before) - m.end()
            if best is None or dist < best[0]:
                best = (dist, name)
    return best[1] if best else None


def facts(text: str, context: str = "") -> list[Fact]:
    """Figures with their (subject, measure) in text. `context` is the sentence
    before (or a table's header): a figure without a measure phrase inherits the
    single measure stated there, and "market" there makes a growth rate market-wide."""
    return list(_facts(text, context))


@lru_cache(maxsize=4096)  # every evidence sentence is compared with every claim: parse once
def _facts(text: str, context: str) -> tuple[Fact, ...]:
    out: list[Fact] = []
    ents = _entities(text)
    ctx_measures = {f.measure for f in _facts(context, "")} if context else set()
    for m in _FIGURE.finditer(text):
        cur, raw, unit, per = m.group("cur"), m.group("num"), (m.group("unit") or "").lower(), m.group("per")
        if not (cur or unit):
            continue  # bare numbers (years, counts, ordinals) are no measures
        lead = text[max(0, m.start() - 20):m.start()]
        if _BOUND.search(lead) or re.match(r"\s*(?:to|-|–)\s*\d", text[m.end():m.end() + 6]):
            continue  # bounds and range ends are no point values
        value = float(raw.replace(",", ""))
        if unit in ("percent", "per cent", "percent"):
            unit = "%"
        scale = {"million": 1e6, "billion": 1e9, "gwh": 1000.0, "gw": 1000.0}.get(unit, 1.0)
        value *= scale
        unit = {"gwh": "MWh", "mwh": "MWh", "gw": "MW", "mw": "MW", "million": "", "billion": "", "kwh": "kWh",
                "cycles": "cycles"}.get(unit, unit)
        if cur:
            unit = cur.replace("US$", "USD").replace("$", "USD").replace("€", "EUR").replace("£", "GBP") + (
                "/kWh" if per else "")
        measure = _measure_at(text, m.start(), m.end())
        if measure is None and unit == "cycles":
            measure = "cycle life"
        if measure is None and len(ctx_measures) == 1:
            measure = next(iter(ctx_measures))
        if measure is None:
            continue
        if measure in _MARKET_WIDE:
            if not re.search(r"\bmarkets?\b", text + " " + context, re.I):
                continue
            subject, name = "market", "the market"
        else:
            before = [(k, n) for p, k, n in ents if p < m.start()]
            after_ = [(k, n) for p, k, n in ents if p > m.end()]
            if not (before or after_):
                continue  # a figure of nobody in particular cannot contradict anything
            subject, name = before[-1] if before else after_[0]
        y = _YEAR.match(text[m.end():m.end() + 20])
        out.append(Fact(subject, measure, value, unit, bool(_HEDGE.search(lead)), y.group(1) if y else None,
                        m.group(0).strip(), name))
    return tuple(out)


def _primary(fs: list[Fact]) -> dict[tuple, Fact]:
    """First figure per key: the one the sentence asserts ("9% ..., well below the 14%
    in our memo" asserts 9%)."""
    out: dict[tuple, Fact] = {}
    for f in fs:
        out.setdefault(f.key, f)
    return out


def close(a: Fact, b: Fact) -> bool:
    rel = 0.10 if (a.hedged or b.hedged) else 0.05
    tol = max(rel * max(abs(a.value), abs(b.value)), 0.5 if a.unit == "%" else 0.0)
    return abs(a.value - b.value) <= tol


def compare_facts(fa: list[Fact], fb: list[Fact]) -> tuple[list[tuple[Fact, Fact]], list[tuple[Fact, Fact]]]:
    """(agreeing, conflicting) figure pairs for shared keys (and years, when both give one)."""
    pa, pb = _primary(fa), _primary(fb)
    agree: list[tuple[Fact, Fact]] = []
    conflict: list[tuple[Fact, Fact]] = []
    for k in sorted(pa.keys() & pb.keys()):
        a, b = pa[k], pb[k]
        if a.year and b.year and a.year != b.year:
            continue
        (agree if close(a, b) else conflict).append((a, b))
    return agree, conflict


def _fmt(f: Fact) -> str:
    return f.shown or f"{f.value:g}{f.unit}"


def _names(text: str) -> set[str]:
    """Content words that belong to capitalised names (not sentence-initial words)."""
    out = set()
    for m in _ENTITY.finditer(text):
        if m.start() == 0 and " " not in m.group(0):
            continue
        out |= set(content_terms(m.group(0)))
    return out


def predicate_overlap(a: str, b: str) -> tuple[float, int]:
    """Jaccard overlap and count of shared content words other than names: the
    predicate and its complement, which a negation must share to contradict."""
    names = _names(a) | _names(b)
    ta, tb = _terms(a) - names, _terms(b) - names
    if not ta or not tb:
        return 0.0, 0
    shared = ta & tb
    return len(shared) / len(ta | tb), len(shared)


def _old_measures(text: str) -> dict[str, set[str]]:
    """number per anchor word: the unit after the number, or the nearest content
    word before it ("lift of 12" -> lift)."""
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
        key = f"{anchor} {unit}".strip()
        if key:
            out.setdefault(key, set()).add(value)
    return out


def contradiction(a: str, b: str, ctx_a: str = "", ctx_b: str = "") -> str | None:
    """The reason a and b contradict, or None. ctx_* is the sentence before each (see facts)."""
    fa, fb = facts(a, ctx_a), facts(b, ctx_b)
    agree, conflict = compare_facts(fa, fb)
    if conflict:
        x, y = conflict[0]
        return f"different figures for {x.name or x.subject} {x.measure}: {_fmt(x)} vs {_fmt(y)}"
    if not same_subject(a, b):
        return None
    jac, shared = predicate_overlap(a, b)
    if _negated(a) != _negated(b):
        return "negation" if jac >= 0.5 and shared >= 2 else None
    # no recognised measure: anchor words on a closely shared subject, at the same time
    if not (fa or fb) and subject_overlap(a, b) >= 0.45 and set(_YEARS.findall(a)) == set(_YEARS.findall(b)):
        ma, mb = _old_measures(a), _old_measures(b)
        for key in sorted(ma.keys() & mb.keys()):
            if ma[key].isdisjoint(mb[key]):
                return f"different numbers for {key}"
    if jac < 0.5:
        return None
    ta, tb = set(tokens(a)), set(tokens(b))
    for w in ta - tb:
        opposite = ANTONYMS.get(w)
        if opposite and opposite & (tb - ta):
            return f"antonyms {w}/{sorted(opposite & tb)[0]}"
    return None


def same_fact(a: str, b: str, ctx_a: str = "", ctx_b: str = "") -> bool:
    """Both state the same figure for a shared key, and nothing conflicts: one fact."""
    agree, conflict = compare_facts(facts(a, ctx_a), facts(b, ctx_b))
    return bool(agree) and not conflict
