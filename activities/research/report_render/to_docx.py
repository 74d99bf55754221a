"""The DOCX rendering of a research report (python-docx): untrusted text goes in as plain runs
(Word has no markup to escape), stripped of control characters by the model."""
from __future__ import annotations

import io

from activities.research.report_render.model import Cite, ReportDoc, clean, clip, quote_count

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
            para(f"Finding {f.n}: {f.why_contested} ({quote_count(len(f.contradicting))})", "List Bullet")
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
