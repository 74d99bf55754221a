"""The document model of a shareable research report, built from a session's stored
report.json and the cited chunks (build_report); every renderer reads this model only.

Text is cleaned here (control characters and lone surrogates stripped, whitespace
flattened, lengths clipped); escaping is each renderer's. A citation's context is the rest
of its sentence(s), or the sentence before and after, split with the same sentence splitter
that made the quotes (activities/research/synthesis.py: sentence_spans).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from activities.research.synthesis import sentence_spans

CONTEXT_CHARS = 240  # at most this much context on either side of a quote
MAX_QUOTE_CHARS = 1200
MAX_BELOW_BAR = 20
MAX_SOURCES = 60

OUTCOME_TEXT = {
    "answered": "Answered from the mission's documents.",
    "contested": "Answered, but contested: more findings are contradicted than this mission's quality bar allows.",
    "insufficient_evidence": "Insufficient evidence: the documents do not say (no finding clears this mission's "
                             "quality bar).",
}

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff\ud800-\udfff]")


def clean(text) -> str:
    """Text safe for every format: str, no control characters or lone surrogates."""
    return _CONTROL.sub("", "" if text is None else str(text))


def flat(text) -> str:
    return " ".join(clean(text).split())


def clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def when(stamp: str) -> str:
    """An ISO timestamp as "2026-11-30 05:11 UTC" (as given when it does not parse)."""
    try:
        t = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return stamp
    t = t.astimezone(timezone.utc) if t.tzinfo else t
    return t.strftime("%Y-%m-%d %H:%M UTC")


# ---------------------------------------------------------------- model

@dataclass
class Cite:
    n: int  # reference number in the Sources list
    quote: str
    before: str = ""  # context in the document, already clipped ("…" marks a cut)
    after: str = ""
    title: str = ""
    source: str = ""  # the document's file name / origin, or the URL of a web hit
    url: str | None = None
    document_id: str = ""
    chunk_id: str = ""
    start: int = 0
    end: int = 0

    @property
    def location(self) -> str:
        return f"characters {self.start}–{self.end}"


@dataclass
class Finding:
    n: int
    text: str
    confidence: float
    supporting: list[Cite]
    contradicting: list[Cite] = field(default_factory=list)
    flagged: bool = False
    flag_reason: str | None = None
    below_bar_reason: str | None = None

    @property
    def sources(self) -> int:
        return len({c.document_id or c.url for c in self.supporting})

    @property
    def contested(self) -> bool:
        return self.flagged or bool(self.contradicting)

    @property
    def why_contested(self) -> str:
        """The flag reason without its "contradicted (...)" wrapper."""
        reason = self.flag_reason or "contradicted by other evidence"
        m = re.fullmatch(r"contradicted \((.*)\)", reason)
        return m.group(1) if m else reason

    @property
    def below_text(self) -> str:
        return self.below_bar_reason or f"confidence {self.confidence:.2f}"


@dataclass
class Source:
    n: int
    title: str
    source: str
    document_id: str
    url: str | None = None


@dataclass
class ReportDoc:
    query: str
    mission: str
    session_id: str
    workflow_id: str
    outcome: str
    answer: str
    answer_confidence: float | None
    answer_cites: list[Cite]
    findings: list[Finding]
    subquestions: list[tuple[str, str | None]]  # (question, its answer; None: not answered separately)
    closest: list[Cite]
    below_bar: list[Finding]
    below_bar_total: int
    sources: list[Source]
    gates: str
    notes: list[str]
    method: str
    started_at: str
    finished_at: str

    @property
    def outcome_text(self) -> str:
        return OUTCOME_TEXT.get(self.outcome, self.outcome)

    @property
    def contradictions(self) -> list[Finding]:
        return [f for f in self.findings if f.contested]

    @property
    def meta(self) -> list[tuple[str, str]]:
        return [("Mission", self.mission), ("Outcome", self.outcome_text),
                ("Session", f"{self.session_id} (workflow {self.workflow_id})"),
                ("Finished", f"{when(self.finished_at)}; {self.method}"), ("Quality bar", self.gates)]


def quote_count(n: int) -> str:
    return f"{n} contradicting quote{'s' if n != 1 else ''}"


# ---------------------------------------------------------------- context

def _heading(text: str) -> bool:
    return text.lstrip().startswith("#")


def quote_context(chunk_text: str, chunk_start: int, start: int, end: int, quote: str,
                  width: int = CONTEXT_CHARS) -> tuple[str, str] | None:
    """(before, after): the rest of the quote's sentence(s), or, when the quote is whole
    sentences, the sentence before and the one after (not headings), each clipped to
    `width` characters at a word. None when the chunk does not hold the quote there."""
    qs, qe = start - chunk_start, end - chunk_start
    if qs < 0 or qe > len(chunk_text) or qs >= qe or " ".join(chunk_text[qs:qe].split()) != " ".join(quote.split()):
        return None
    spans = sentence_spans(chunk_text)
    if not spans:
        return "", ""
    si = next((i for i, (s, e) in enumerate(spans) if s <= qs < e), None)
    ei = next((i for i, (s, e) in enumerate(spans) if s < qe <= e), None)
    if si is None or ei is None:
        return "", ""
    whole = qs <= spans[si][0] and qe >= spans[ei][1]
    b0 = spans[si][0]
    if whole and si > 0 and not _heading(chunk_text[spans[si - 1][0]:spans[si - 1][1]]):
        b0 = spans[si - 1][0]
    a1 = spans[ei][1]
    if whole and ei + 1 < len(spans) and not _heading(chunk_text[spans[ei + 1][0]:spans[ei + 1][1]]):
        a1 = spans[ei + 1][1]
    before, after = flat(chunk_text[b0:qs]), flat(chunk_text[qe:a1])
    if len(before) > width:
        cut = before[-width:]
        before = "…" + cut[cut.find(" ") + 1:] if " " in cut else "…" + cut
    if len(after) > width:
        cut = after[:width]
        after = (cut[:cut.rfind(" ")] if " " in cut else cut) + "…"
    # keep the spacing the document had between context and quote
    if before and qs > 0 and chunk_text[qs - 1].isspace():
        before += " "
    if after and qe < len(chunk_text) and chunk_text[qe].isspace():
        after = " " + after
    return before, after


# ---------------------------------------------------------------- building

def build_report(report: dict, chunks: dict[str, tuple[str, int]], documents: dict[str, tuple[str, str]]) -> ReportDoc:
    """The document model from a stored report.json. `chunks`: chunk id -> (text,
    char_start) of the cited chunks; `documents`: document id -> (title, source)."""
    sources: dict[tuple[str, str | None], Source] = {}

    def cite(c: dict) -> Cite:
        doc_id = str(c.get("document_id") or "")
        url = c.get("url") if isinstance(c.get("url"), str) else None
        title, origin = documents.get(doc_id, ("", ""))
        title = flat(c.get("title") or title or origin or url or doc_id)
        origin = flat(url or origin)
        key = (doc_id, url)
        if key not in sources:
            sources[key] = Source(n=len(sources) + 1, title=clip(title, 300), source=clip(origin, 300),
                                  document_id=doc_id, url=url)
        quote = clean(c.get("quote"))
        before = after = ""
        chunk = chunks.get(str(c.get("chunk_id")))
        if chunk is not None:
            ctx = quote_context(chunk[0], chunk[1], int(c.get("start") or 0), int(c.get("end") or 0), quote)
            if ctx:
                before, after = ctx
        return Cite(n=sources[key].n, quote=clip(flat(quote), MAX_QUOTE_CHARS), before=before, after=after,
                    title=sources[key].title, source=sources[key].source, url=url, document_id=doc_id,
                    chunk_id=str(c.get("chunk_id") or ""), start=int(c.get("start") or 0), end=int(c.get("end") or 0))

    def finding(c: dict, n: int) -> Finding:
        return Finding(n=n, text=clip(flat(c.get("text")), 2000), confidence=float(c.get("confidence") or 0.0),
                       supporting=[cite(x) for x in c.get("supporting") or []],
                       contradicting=[cite(x) for x in c.get("contradicting") or []],
                       flagged=bool(c.get("flagged")), flag_reason=flat(c.get("flag_reason")) or None,
                       below_bar_reason=flat(c.get("below_bar_reason")) or None)

    answer = report.get("answer") or {}
    answer_cites = [cite(x) for s in answer.get("sentences") or [] for x in s.get("citations") or []]
    findings = [finding(c, i + 1) for i, c in enumerate(report.get("claims") or [])]
    below_all = report.get("below_bar") or []
    below = [finding(c, i + 1) for i, c in enumerate(below_all[:MAX_BELOW_BAR])]
    closest = [cite(x) for x in report.get("closest_evidence") or []]
    subs = {a.get("question"): a for a in report.get("subanswers") or [] if isinstance(a, dict)}
    subquestions = [(flat(q), flat(subs[q].get("text")) if q in subs else None) for q in report.get("subquestions") or []]
    g = report.get("gates") or {}
    gates = (f"min_confidence {g.get('min_confidence', '?')}, min_sources {g.get('min_sources', '?')}, "
             f"min_retrieval_score {g.get('min_retrieval_score', '?')}, "
             f"max_contradiction_ratio {g.get('max_contradiction_ratio', '?')}")
    outcome = report.get("outcome") or "answered"
    text = flat(answer.get("text")) if outcome != "insufficient_evidence" else ""
    return ReportDoc(
        query=flat(report.get("query")), mission=flat(report.get("mission")), session_id=flat(report.get("session_id")),
        workflow_id=flat(report.get("workflow_id")), outcome=outcome, answer=text,
        answer_confidence=float(answer["confidence"]) if text and answer.get("confidence") is not None else None,
        answer_cites=answer_cites if text else [], findings=findings, subquestions=subquestions, closest=closest,
        below_bar=below, below_bar_total=len(below_all), sources=list(sources.values())[:MAX_SOURCES], gates=gates,
        notes=[flat(n) for n in report.get("notes") or []][:20],
        method=f"planner {flat(report.get('planner'))}; synthesiser {flat(report.get('synthesiser'))}",
        started_at=flat(report.get("started_at")), finished_at=flat(report.get("finished_at")))
