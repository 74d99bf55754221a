"""Markdown renderings of a research report: the shareable report (render_markdown, from the
document model) and the plain summary written when a research finishes (render_summary,
from the synthesis; the shareable one replaces it at the same key once rendered).

The shareable report escapes every untrusted character CommonMark could read as markup
(raw HTML included); the summary writes the synthesis as it is.
"""
from __future__ import annotations

import re

from activities.research.report_render.model import Cite, ReportDoc, clean, quote_count
from stratmaster.contracts.research import Citation, Claim, Synthesis

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
        out += [f"- Finding {f.n}: {md(f.why_contested)} ({quote_count(len(f.contradicting))})" for f in doc.contradictions]
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


# ---------------------------------------------------------------- the summary written at persist

def _cite(x: Citation) -> str:
    where = x.url or f"document `{x.document_id}` chunk `{x.chunk_id}`"
    return f"\"{x.quote}\" — {x.title or ''} {where} [{x.start}:{x.end}]"


def _claim_md(c: Claim, heading: str) -> list[str]:
    flag = f" — **flagged: {c.flag_reason}**" if c.flagged else ""
    lines = [f"### {heading} {c.text}", "", f"Confidence: **{c.confidence:.2f}**{flag}", ""]
    if c.below_bar_reason:
        lines += [f"Below the bar: {c.below_bar_reason}", ""]
    lines.append("Supporting evidence:")
    lines += [f"- {_cite(x)}" for x in c.supporting]
    if c.contradicting:
        lines += ["", "Contradicting evidence:"]
        lines += [f"- {_cite(x)}" for x in c.contradicting]
    return lines + [""]


SUMMARY_OUTCOME_TEXT = {
    "answered": "answered from the mission's documents",
    "contested": "answered, but contested: more findings are contradicted than this mission's quality bar allows",
    "insufficient_evidence": "insufficient evidence: the documents do not say (no finding clears this mission's quality bar)",
}


def render_summary(report: dict, syn: Synthesis) -> str:
    g = syn.gates
    lines = [f"# Research: {report['query']}", "",
             f"- mission: `{report['mission']}`  session: `{report['session_id']}`",
             f"- outcome: **{syn.outcome}** — {SUMMARY_OUTCOME_TEXT[syn.outcome]}",
             f"- planner: {report['planner']}; synthesiser: {report['synthesiser']}",
             f"- quality bar: min_confidence {g.min_confidence:g}, min_sources {g.min_sources}, "
             f"min_retrieval_score {g.min_retrieval_score:g}, max_contradiction_ratio {g.max_contradiction_ratio:g}"]
    lines += [f"- note: {n}" for n in report.get("notes", [])]
    lines += ["", "## Answer", ""]
    if syn.answer and syn.answer.sentences:
        for s in syn.answer.sentences:
            lines.append(f"> {s.text}")
            lines += [f"> — {_cite(x)}" for x in s.citations]
            lines.append("")
        lines.append(f"Confidence: **{syn.answer.confidence:.2f}**")
    else:
        lines.append("_The documents do not say: no finding clears this mission's quality bar._")
    lines += ["", "## Sub-questions", ""]
    subs = {a.question: a for a in syn.subanswers if a}
    for i, q in enumerate(report["subquestions"], start=1):
        a = subs.get(q)
        lines.append(f"{i}. {q}" + (f" — {a.text}" if a and a.text else (" — _not answered by the documents_" if a else "")))
    if report.get("discarded_subquestions"):
        lines += ["", "Discarded (not about the question): " + "; ".join(report["discarded_subquestions"])]
    lines += ["", "## Findings", ""]
    if not syn.claims:
        lines.append("_No finding clears this mission's quality bar._")
    for c in syn.claims:
        lines += _claim_md(c, f"{c.ordinal + 1}.")
    if syn.closest_evidence:
        lines += ["", "## Closest evidence (not an answer)", ""]
        lines += [f"- {_cite(x)}" for x in syn.closest_evidence]
    if syn.below_bar:
        lines += ["", "## Below this mission's quality bar", ""]
        for c in syn.below_bar:
            lines += _claim_md(c, "-")
    return "\n".join(lines) + "\n"
