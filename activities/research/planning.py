"""Research planning: a question into sub-questions.

With an LLM (settings.llm_model) the sub-questions come from LiteLLM (prompt,
schema and validation in activities/research/llm/synthesis.py); otherwise,
or when the LLM's answer is unusable, the deterministic planner splits the query
on conjunctions and clauses and adds its key noun phrases. The original query is
always the first sub-question.
"""
from __future__ import annotations

import json
import re

STOPWORDS = frozenset("""
a an the and or but nor of in on at to for from by with without about into over under between among
is are was were be been being am do does did doing have has had having can could shall should will would may might must
what which who whom whose when where why how whether that this these those there here it its they them their we our you your
i me my he him his she her not no as than then so such very more most less least also any all each every some
between versus vs than if else while during after before against per via using use used based effect effects
much many does tell know find give show describe explain
""".split())

TOKEN_RE = re.compile(r"[A-Za-z][A-Za-z0-9\-']*|\d+(?:\.\d+)?")
_SPLIT_RE = re.compile(r"\s*(?:;|,\s*(?:and|but|or)\s+|\?\s+|\band also\b|\bas well as\b|\bwhereas\b|\bwhile\b|\bversus\b|\bvs\.?\b)\s*", re.I)
_AND_RE = re.compile(r"\s+(?:and|or|but)\s+", re.I)


_POSSESSIVE_RE = re.compile(r"'s?$")


def tokens(text: str) -> list[str]:
    """Lower-cased words and numbers; a possessive is its word ("python's" is "python":
    kept whole it was a rare, never-matched key term of every question that used one)."""
    return [_POSSESSIVE_RE.sub("", t.lower()) for t in TOKEN_RE.findall(text)]


def content_terms(text: str) -> list[str]:
    """Lower-cased content words (no stopwords), light plural stripping, in order."""
    out = []
    for t in tokens(text):
        if t in STOPWORDS or len(t) < 2:
            continue
        out.append(stem(t))
    return out


def stem(t: str) -> str:
    if len(t) > 4 and t.endswith("ies"):
        return t[:-3] + "y"
    if len(t) > 3 and t.endswith("s") and not t.endswith("ss"):
        return t[:-1]
    return t


def noun_phrases(text: str, max_len: int = 3) -> list[str]:
    """Runs of consecutive content words (a cheap noun-phrase chunker)."""
    phrases: list[list[str]] = []
    run: list[str] = []
    for t in TOKEN_RE.findall(text):
        if t.lower() in STOPWORDS:
            if run:
                phrases.append(run)
            run = []
        else:
            run.append(t)
    if run:
        phrases.append(run)
    out = []
    for p in phrases:
        # long runs: keep their trailing head (English noun phrases end on the head)
        out.append(" ".join(p[-max_len:]))
    return out


def _clean(q: str) -> str:
    q = q.strip(" ,;:.?!")
    return " ".join(q.split())


def deterministic_plan(query: str, max_subquestions: int = 4) -> list[str]:
    query = " ".join(query.split())
    subs: list[str] = [query]

    def add(candidate: str) -> None:
        c = _clean(candidate)
        if len(content_terms(c)) >= 1 and c.lower() not in {s.lower() for s in subs}:
            subs.append(c)

    clauses = [c for c in _SPLIT_RE.split(query) if c and _clean(c)]
    if len(clauses) > 1:
        for c in clauses:
            add(c)
    else:
        # "A and B" with a shared head: "effects of X and Y on Z" -> keep both sides
        parts = _AND_RE.split(query)
        if len(parts) > 1 and all(len(content_terms(p)) >= 1 for p in parts):
            for p in parts:
                add(p)
    for phrase in sorted(noun_phrases(query), key=lambda p: -len(p.split())):
        if len(phrase.split()) >= 2 or len(subs) < 2:
            add(phrase)
    return subs[:max_subquestions]


def parse_llm_plan(text: str, query: str, max_subquestions: int) -> list[str] | None:
    """Sub-questions from an LLM answer: a JSON list (possibly inside prose or a
    code fence) or numbered/bulleted lines. None when nothing usable."""
    items: list[str] = []
    match = re.search(r"\[.*\]", text, re.S)
    if match:
        try:
            data = json.loads(match.group(0))
            items = [str(x) for x in data if isinstance(x, (str, int, float))]
        except json.JSONDecodeError:
            items = []
    if not items:
        for line in text.splitlines():
            m = re.match(r"\s*(?:\d+[.)]|[-*•])\s+(.+)", line)
            if m:
                items.append(m.group(1))
    subs = [" ".join(query.split())]
    for it in items:
        it = _clean(it.strip('"\''))
        if 3 <= len(it) <= 300 and content_terms(it) and it.lower() not in {s.lower() for s in subs}:
            subs.append(it)
    if len(subs) < 2:
        return None
    return subs[:max_subquestions]

