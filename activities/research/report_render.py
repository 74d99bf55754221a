"""Shareable research reports: one document model built from a session's stored
report (report.json) and the cited chunks, rendered to Markdown, HTML, PDF
(reportlab, pure Python) and DOCX (python-docx).

Every string from a document, a question or a model is untrusted: it is escaped for
the format it lands in (HTML entities, Markdown backslash escapes, reportlab's
paragraph markup) and stripped of control characters; the HTML report carries no
script and a Content-Security-Policy that forbids any. A citation shows its quote
highlighted within the sentence(s) around it in the document (from the stored
chunk, checked to hold the quote verbatim at its offsets).
"""
from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path


# bumped whenever a renderer's output changes (escaping, layout): a stored rendering of an older
# version is rendered again rather than answered (activities/research/reports.py)
RENDERER_VERSION = "1"

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


def _quotes(n: int) -> str:
    return f"{n} contradicting quote{'s' if n != 1 else ''}"


# ---------------------------------------------------------------- context

_SENTENCE_BREAK = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+|\n\s*\n")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for m in _SENTENCE_BREAK.finditer(text):
        if m.start() > pos:
            spans.append((pos, m.start()))
        pos = m.end()
    if pos < len(text):
        spans.append((pos, len(text)))
    return spans


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


# ---------------------------------------------------------------- Markdown

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#+|~&])")


def md(text: str) -> str:
    """Untrusted text as literal Markdown: every character CommonMark could read as
    markup (raw HTML included) backslash-escaped; one space kept at either edge."""
    t = clean(text)
    body = _MD_SPECIAL.sub(r"\\\1", " ".join(t.split()))
    if not body:
        return ""
    return (" " if t[:1].isspace() else "") + body + (" " if t[-1:].isspace() else "")


def md_line(text: str) -> str:
    """md() for text that starts a line: a leading list/heading/quote marker escaped too."""
    out = md(text).lstrip()
    return re.sub(r"^(\d+)([.)])", r"\1\\\2", re.sub(r"^([-=])", r"\\\1", out))


def _md_cite(c: Cite) -> list[str]:
    lines = [f"> {md(c.before)}**{md(c.quote)}**{md(c.after)}" if (c.before or c.after) else f"> **{md(c.quote)}**",
             f"> — [{c.n}] {md(c.title)}" + (f" ({md(c.source)})" if c.source and c.source != c.title else "")
             + f", {c.location}", ""]
    return lines


def render_markdown(doc: ReportDoc) -> str:
    out = [f"# Research report: {md(doc.query)}", ""]
    out += [f"- **{label}:** {md(value)}" for label, value in doc.meta]
    out += ["", "## Answer", ""]
    if doc.answer:
        out += [md_line(doc.answer), "", f"**Confidence: {doc.answer_confidence:.2f}**" if doc.answer_confidence is not None
                else "", ""]
        if doc.outcome == "contested":
            out += ["_Contested: see the contradictions below._", ""]
        if doc.answer_cites:
            out += ["Cited:", ""]
            for c in doc.answer_cites:
                out += _md_cite(c)
    else:
        out += ["_The documents do not say: no finding clears this mission's quality bar._", ""]
    out += ["## Findings", ""]
    if not doc.findings:
        out += ["_No finding clears this mission's quality bar._", ""]
    for f in doc.findings:
        out += [f"### {f.n}. {md(f.text)}", "",
                f"Confidence **{f.confidence:.2f}** · {f.sources} source{'s' if f.sources != 1 else ''}"
                + (f" · **contradicted:** {md(f.why_contested)}" if f.contested else ""),
                "", "Supporting evidence:", ""]
        for c in f.supporting:
            out += _md_cite(c)
        if f.contradicting:
            out += ["Contradicting evidence:", ""]
            for c in f.contradicting:
                out += _md_cite(c)
    if doc.contradictions:
        out += ["## Contradictions", ""]
        out += [f"- Finding {f.n}: {md(f.why_contested)} ({_quotes(len(f.contradicting))})" for f in doc.contradictions]
        out.append("")
    if doc.closest:
        out += ["## Closest evidence (not an answer)", ""]
        for c in doc.closest:
            out += _md_cite(c)
    if doc.subquestions:
        out += ["## Sub-questions", ""]
        for i, (q, a) in enumerate(doc.subquestions, 1):
            out.append(f"{i}. {md(q)}" + (f" — {md(a)}" if a else (" — _not answered by the documents_" if a == "" else "")))
        out.append("")
    if doc.below_bar:
        out += [f"## Below this mission's quality bar ({doc.below_bar_total})", ""]
        out += [f"- {md(f.text)} — {md(f.below_text)}" for f in doc.below_bar]
        out.append("")
    out += ["## Sources", ""]
    out += [f"{s.n}. {md(s.title)}" + (f" — {md(s.source)}" if s.source and s.source != s.title else "")
            + (f" (document {md(s.document_id)})" if s.document_id else "") for s in doc.sources]
    if doc.notes:
        out += ["", "## Notes", ""] + [f"- {md(n)}" for n in doc.notes]
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------- HTML

def h(text) -> str:
    return html.escape(clean(text), quote=True)


def _safe_url(url: str | None) -> str | None:
    return url if isinstance(url, str) and re.match(r"^https?://[^\s\"'<>]+$", url) else None


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;
color:#1d2733;line-height:1.5}
h1{font-size:1.5rem;margin-bottom:.3rem}h2{font-size:1.15rem;border-bottom:1px solid #d5dbe1;padding-bottom:.2rem;
margin-top:2rem}h3{font-size:1rem;margin:1.4rem 0 .3rem}
.meta{color:#56626e;font-size:.85rem}.meta dt{font-weight:600;float:left;clear:left;width:7.5rem}.meta dd{margin-left:8rem}
.answer{font-size:1.05rem;background:#f3f6f9;border-left:4px solid #2f6fae;padding:.6rem .9rem}
.conf{font-weight:600}.badge{display:inline-block;font-size:.75rem;padding:0 .4rem;border-radius:.6rem;
background:#fde2e1;color:#8a1c17;margin-left:.3rem}
blockquote{margin:.5rem 0 .8rem;padding:.3rem .8rem;border-left:3px solid #b8c4cf;color:#3b4652}
blockquote.contra{border-left-color:#d1453b}
mark{background:#fff0a0;color:#1d2733;font-weight:600;padding:0 .1rem}
.cite{display:block;font-size:.8rem;color:#56626e;margin-top:.2rem}
ol.sources li,ul li{margin:.2rem 0}.muted{color:#56626e}
"""


def _html_cite(c: Cite, contra: bool = False) -> str:
    link = _safe_url(c.url)
    src = f'<a href="{h(link)}" rel="noopener noreferrer nofollow">{h(c.source)}</a>' if link else h(c.source)
    where = f"[{c.n}] {h(c.title)}" + (f" ({src})" if c.source and c.source != c.title else "") + f", {h(c.location)}"
    return (f'<blockquote class="{"contra" if contra else "support"}">{h(c.before)}<mark>{h(c.quote)}</mark>'
            f'{h(c.after)}<span class="cite">— {where}</span></blockquote>')


def render_html(doc: ReportDoc) -> str:
    p: list[str] = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        # no script, no remote anything: the report is self-contained and inert
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:; base-uri 'none'; form-action 'none'\">",
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Research report: {h(doc.query)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Research report: {h(doc.query)}</h1>",
        '<dl class="meta">', *(f"<dt>{label}</dt><dd>{h(value)}</dd>" for label, value in doc.meta), "</dl>",
        "<h2>Answer</h2>",
    ]
    if doc.answer:
        badge = '<span class="badge">contested</span>' if doc.outcome == "contested" else ""
        conf = (f'<p class="conf">Confidence {doc.answer_confidence:.2f}{badge}</p>'
                if doc.answer_confidence is not None else "")
        p += [f'<p class="answer">{h(doc.answer)}</p>', conf]
        if doc.answer_cites:
            p += ['<p class="muted">Cited:</p>'] + [_html_cite(c) for c in doc.answer_cites]
    else:
        p.append("<p class=\"answer\"><em>The documents do not say: no finding clears this mission's quality bar."
                 "</em></p>")
    p.append("<h2>Findings</h2>")
    if not doc.findings:
        p.append("<p><em>No finding clears this mission's quality bar.</em></p>")
    for f in doc.findings:
        flag = f'<span class="badge">contradicted</span> {h(f.why_contested)}' if f.contested else ""
        p += [f"<h3>{f.n}. {h(f.text)}</h3>",
              f'<p class="muted"><span class="conf">Confidence {f.confidence:.2f}</span> · {f.sources} '
              f'source{"s" if f.sources != 1 else ""} {flag}</p>']
        p += [_html_cite(c) for c in f.supporting]
        if f.contradicting:
            p.append('<p class="muted">Contradicting evidence:</p>')
            p += [_html_cite(c, contra=True) for c in f.contradicting]
    if doc.contradictions:
        p += ["<h2>Contradictions</h2>", "<ul>"]
        p += [f"<li>Finding {f.n}: {h(f.why_contested)} ({_quotes(len(f.contradicting))})</li>" for f in doc.contradictions]
        p.append("</ul>")
    if doc.closest:
        p += ["<h2>Closest evidence (not an answer)</h2>"] + [_html_cite(c) for c in doc.closest]
    if doc.subquestions:
        p += ["<h2>Sub-questions</h2>", "<ol>"]
        for q, a in doc.subquestions:
            p.append(f"<li>{h(q)}" + (f' <span class="muted">— {h(a)}</span>' if a else
                                       (' <span class="muted">— not answered by the documents</span>' if a == "" else ""))
                     + "</li>")
        p.append("</ol>")
    if doc.below_bar:
        p += [f"<h2>Below this mission's quality bar ({doc.below_bar_total})</h2>", "<ul>"]
        p += [f'<li>{h(f.text)} <span class="muted">— {h(f.below_text)}</span></li>' for f in doc.below_bar]
        p.append("</ul>")
    p += ["<h2>Sources</h2>", '<ol class="sources">']
    for s in doc.sources:
        link = _safe_url(s.url)
        src = f'<a href="{h(link)}" rel="noopener noreferrer nofollow">{h(s.source)}</a>' if link else h(s.source)
        p.append(f'<li value="{s.n}">{h(s.title)}' + (f" — {src}" if s.source and s.source != s.title else "")
                 + (f' <span class="muted">(document {h(s.document_id)})</span>' if s.document_id else "") + "</li>")
    p.append("</ol>")
    if doc.notes:
        p += ["<h2>Notes</h2>", "<ul>"] + [f"<li>{h(n)}</li>" for n in doc.notes] + ["</ul>"]
    p.append(f'<p class="muted">Generated by StratMaster on {h(_now())}.</p></body></html>')
    return "\n".join(x for x in p if x) + "\n"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# ---------------------------------------------------------------- PDF

_FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu")]


@lru_cache(maxsize=1)
def _pdf_fonts() -> tuple[str, str, str, frozenset[int]]:
    """(regular, bold, italic, code points the font has): DejaVu Sans when the system
    has it, else Bitstream Vera shipped inside reportlab; both embedded (subset)."""
    import reportlab
    from reportlab.lib.fonts import addMapping
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    candidates = [(d / "DejaVuSans.ttf", d / "DejaVuSans-Bold.ttf", d / "DejaVuSans-Oblique.ttf",
                   d / "DejaVuSans-BoldOblique.ttf") for d in _FONT_DIRS]
    rl = Path(reportlab.__file__).parent / "fonts"
    candidates.append((rl / "Vera.ttf", rl / "VeraBd.ttf", rl / "VeraIt.ttf", rl / "VeraBI.ttf"))
    files = next(c for c in candidates if all(p.exists() for p in c))
    names = ("SMReport", "SMReport-Bold", "SMReport-Italic", "SMReport-BoldItalic")
    for name, path in zip(names, files):
        pdfmetrics.registerFont(TTFont(name, str(path)))
    addMapping(names[0], 0, 0, names[0])
    addMapping(names[0], 1, 0, names[1])
    addMapping(names[0], 0, 1, names[2])
    addMapping(names[0], 1, 1, names[3])
    face = pdfmetrics.getFont(names[0]).face
    return names[0], names[1], names[2], frozenset(face.charToGlyph)


def _x(text, glyphs: frozenset[int]) -> str:
    """Untrusted text inside reportlab paragraph markup: escaped, and characters the
    embedded font lacks shown as '?' (never a blank box)."""
    t = "".join(ch if ord(ch) in glyphs or ch in "\n\t" else "?" for ch in clean(text))
    return html.escape(t, quote=False)


def render_pdf(doc: ReportDoc) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.enums import TA_LEFT
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    regular, bold, italic, glyphs = _pdf_fonts()

    def x(t):
        return _x(t, glyphs)

    ink, muted, accent, red = (colors.HexColor("#1d2733"), colors.HexColor("#56626e"), colors.HexColor("#2f6fae"),
                               colors.HexColor("#c0392b"))
    base = ParagraphStyle("base", fontName=regular, fontSize=9.5, leading=13.5, textColor=ink, alignment=TA_LEFT)
    st = {
        "title": ParagraphStyle("title", base, fontName=bold, fontSize=16, leading=20, spaceAfter=6),
        "meta": ParagraphStyle("meta", base, fontSize=8.5, leading=11.5, textColor=muted),
        "h2": ParagraphStyle("h2", base, fontName=bold, fontSize=12.5, leading=16, spaceBefore=12, spaceAfter=5,
                             textColor=accent),
        "h3": ParagraphStyle("h3", base, fontName=bold, fontSize=10.5, leading=14, spaceBefore=8, spaceAfter=2),
        "answer": ParagraphStyle("answer", base, fontSize=11, leading=15.5, backColor=colors.HexColor("#f3f6f9"),
                                 borderPadding=(6, 6, 6, 8), leftIndent=8, rightIndent=6, spaceBefore=4, spaceAfter=10),
        "quote": ParagraphStyle("quote", base, fontSize=9, leading=12.5),
        "cite": ParagraphStyle("cite", base, fontSize=7.8, leading=10, textColor=muted),
        "small": ParagraphStyle("small", base, fontSize=8.5, leading=11.5, textColor=muted, spaceAfter=3),
        "item": ParagraphStyle("item", base, leftIndent=12, bulletIndent=2, spaceAfter=2),
        "num": ParagraphStyle("num", base, leftIndent=18, bulletIndent=2, spaceAfter=2),
        "label": ParagraphStyle("label", base, fontSize=8.5, leading=11.5, textColor=muted, spaceBefore=4, spaceAfter=2),
    }

    def cite_block(c: Cite, bar) -> Table:
        text = f'{x(c.before)}<font backColor="#fff0a0"><b>{x(c.quote)}</b></font>{x(c.after)}'
        where = f"— [{c.n}] {x(c.title)}" + (f" ({x(c.source)})" if c.source and c.source != c.title else "") \
            + f", {x(c.location)}"
        t = Table([[[Paragraph(text, st["quote"]), Paragraph(where, st["cite"])]]], colWidths=[doc_width - 6 * mm])
        t.setStyle(TableStyle([("LINEBEFORE", (0, 0), (0, -1), 2.2, bar), ("LEFTPADDING", (0, 0), (-1, -1), 7),
                               ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 3)]))
        t.hAlign = "RIGHT"
        return t

    buf = io.BytesIO()
    pdf = SimpleDocTemplate(buf, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=18 * mm,
                            bottomMargin=18 * mm, title=clean(f"Research report: {doc.query}")[:200],
                            author="StratMaster", subject=clean(f"mission {doc.mission}"))
    doc_width = pdf.width
    story: list = [Paragraph(f"Research report: {x(doc.query)}", st["title"])]
    for label, value in doc.meta:
        story.append(Paragraph(f"<b>{label}:</b> {x(value)}", st["meta"]))
    story.append(Paragraph("Answer", st["h2"]))
    if doc.answer:
        story.append(Paragraph(x(doc.answer), st["answer"]))
        if doc.answer_confidence is not None:
            contested = ' <font color="#c0392b">(contested)</font>' if doc.outcome == "contested" else ""
            story.append(Paragraph(f"<b>Confidence {doc.answer_confidence:.2f}</b>{contested}", base))
        if doc.answer_cites:
            story.append(Spacer(1, 4))
            story.append(Paragraph("Cited:", st["small"]))
            story += [cite_block(c, accent) for c in doc.answer_cites]
    else:
        story.append(Paragraph("<i>The documents do not say: no finding clears this mission's quality bar.</i>",
                               st["answer"]))
    story.append(Paragraph("Findings", st["h2"]))
    if not doc.findings:
        story.append(Paragraph("<i>No finding clears this mission's quality bar.</i>", base))
    for f in doc.findings:
        flag = f' · <font color="#c0392b"><b>contradicted:</b> {x(f.why_contested)}</font>' if f.contested else ""
        head = [Paragraph(f"{f.n}. {x(f.text)}", st["h3"]),
                Paragraph(f"<b>Confidence {f.confidence:.2f}</b> · {f.sources} source{'s' if f.sources != 1 else ''}"
                          f"{flag}", st["small"])]
        blocks = [cite_block(c, accent) for c in f.supporting]
        story.append(KeepTogether(head + blocks[:1]))
        story += blocks[1:]
        if f.contradicting:
            story.append(Paragraph("Contradicting evidence:", st["label"]))
            story += [cite_block(c, red) for c in f.contradicting]
    if doc.contradictions:
        story.append(Paragraph("Contradictions", st["h2"]))
        story += [Paragraph(f"<b>Finding {f.n}:</b> {x(f.why_contested)} ({_quotes(len(f.contradicting))})",
                            st["item"], bulletText="•") for f in doc.contradictions]
    if doc.closest:
        story.append(Paragraph("Closest evidence (not an answer)", st["h2"]))
        story += [cite_block(c, muted) for c in doc.closest]
    if doc.subquestions:
        story.append(Paragraph("Sub-questions", st["h2"]))
        for i, (q, a) in enumerate(doc.subquestions, 1):
            tail = f' <font color="#56626e">— {x(a)}</font>' if a else (
                ' <font color="#56626e">— not answered by the documents</font>' if a == "" else "")
            story.append(Paragraph(f"{x(q)}{tail}", st["num"], bulletText=f"{i}."))
    if doc.below_bar:
        story.append(Paragraph(f"Below this mission's quality bar ({doc.below_bar_total})", st["h2"]))
        story += [Paragraph(f'{x(f.text)} <font color="#56626e">— {x(f.below_text)}</font>', st["item"], bulletText="•")
                  for f in doc.below_bar]
    story.append(Paragraph("Sources", st["h2"]))
    for s in doc.sources:
        extra = (f" — {x(s.source)}" if s.source and s.source != s.title else "") + \
                (f' <font color="#56626e" size="7.5">(document {x(s.document_id)})</font>' if s.document_id else "")
        story.append(Paragraph(f"{x(s.title)}{extra}", st["num"], bulletText=f"{s.n}."))
    if doc.notes:
        story.append(Paragraph("Notes", st["h2"]))
        story += [Paragraph(x(n), st["item"], bulletText="•") for n in doc.notes]

    footer = clean(f"StratMaster research report · mission {doc.mission} · session {doc.session_id}")
    footer = "".join(ch if ord(ch) in glyphs else "?" for ch in footer)

    def on_page(canvas, template):
        canvas.saveState()
        canvas.setFont(regular, 7.5)
        canvas.setFillColor(muted)
        canvas.drawString(template.leftMargin, 10 * mm, footer[:120])
        canvas.drawRightString(A4[0] - template.rightMargin, 10 * mm, f"page {canvas.getPageNumber()}")
        canvas.restoreState()

    pdf.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return buf.getvalue()


# ---------------------------------------------------------------- DOCX

def render_docx(doc: ReportDoc) -> bytes:
    import docx
    from docx.enum.text import WD_COLOR_INDEX
    from docx.shared import Pt, RGBColor

    d = docx.Document()
    d.core_properties.title = clip(clean(f"Research report: {doc.query}"), 250)
    d.core_properties.author = "StratMaster"
    normal = d.styles["Normal"]
    normal.font.size = Pt(10)
    grey = RGBColor(0x56, 0x62, 0x6E)

    def para(text: str = "", style: str | None = None, *, bold=False, italic=False, color=None, size=None):
        p = d.add_paragraph(style=style)
        if text:
            r = p.add_run(clean(text))
            r.bold, r.italic = bold, italic
            if color is not None:
                r.font.color.rgb = color
            if size is not None:
                r.font.size = Pt(size)
        return p

    def cite(c: Cite) -> None:
        p = d.add_paragraph(style="Quote")
        p.add_run(clean(c.before))
        q = p.add_run(clean(c.quote))
        q.bold = True
        q.font.highlight_color = WD_COLOR_INDEX.YELLOW
        p.add_run(clean(c.after))
        where = f"— [{c.n}] {c.title}" + (f" ({c.source})" if c.source and c.source != c.title else "") \
            + f", {c.location}"
        para(where, color=grey, size=8)

    d.add_heading(clean(f"Research report: {doc.query}"), level=0)
    for label, value in doc.meta:
        p = d.add_paragraph()
        p.add_run(f"{label}: ").bold = True
        p.add_run(clean(value))
    d.add_heading("Answer", level=1)
    if doc.answer:
        para(doc.answer, size=11)
        if doc.answer_confidence is not None:
            para(f"Confidence {doc.answer_confidence:.2f}" + (" (contested)" if doc.outcome == "contested" else ""),
                 bold=True)
        for c in doc.answer_cites:
            cite(c)
    else:
        para("The documents do not say: no finding clears this mission's quality bar.", italic=True)
    d.add_heading("Findings", level=1)
    if not doc.findings:
        para("No finding clears this mission's quality bar.", italic=True)
    for f in doc.findings:
        d.add_heading(clean(f"{f.n}. {f.text}"), level=2)
        para(f"Confidence {f.confidence:.2f} · {f.sources} source{'s' if f.sources != 1 else ''}"
             + (f" · contradicted: {f.why_contested}" if f.contested else ""), color=grey)
        for c in f.supporting:
            cite(c)
        if f.contradicting:
            para("Contradicting evidence:", color=grey)
            for c in f.contradicting:
                cite(c)
    if doc.contradictions:
        d.add_heading("Contradictions", level=1)
        for f in doc.contradictions:
            para(f"Finding {f.n}: {f.why_contested} ({_quotes(len(f.contradicting))})", "List Bullet")
    if doc.closest:
        d.add_heading("Closest evidence (not an answer)", level=1)
        for c in doc.closest:
            cite(c)
    if doc.subquestions:
        d.add_heading("Sub-questions", level=1)
        for q, a in doc.subquestions:
            para(q + (f" — {a}" if a else (" — not answered by the documents" if a == "" else "")), "List Number")
    if doc.below_bar:
        d.add_heading(f"Below this mission's quality bar ({doc.below_bar_total})", level=1)
        for f in doc.below_bar:
            para(f"{f.text} — {f.below_text}", "List Bullet")
    d.add_heading("Sources", level=1)
    for s in doc.sources:
        para(f"[{s.n}] {s.title}" + (f" — {s.source}" if s.source and s.source != s.title else "")
             + (f" (document {s.document_id})" if s.document_id else ""))
    if doc.notes:
        d.add_heading("Notes", level=1)
        for n in doc.notes:
            para(n, "List Bullet")
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


RENDERERS = {
    "md": lambda doc: render_markdown(doc).encode(),
    "html": lambda doc: render_html(doc).encode(),
    "pdf": render_pdf,
    "docx": render_docx,
}
