"""The PDF rendering of a research report (reportlab, pure Python): untrusted text escaped for
reportlab's paragraph markup, with an embedded font (DejaVu Sans when the system has it, else
the Bitstream Vera shipped inside reportlab) and '?' for characters it lacks."""
from __future__ import annotations

import html
import io
from functools import lru_cache
from pathlib import Path

from activities.research.report_render.model import Cite, ReportDoc, clean, quote_count

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
        story += [Paragraph(f"<b>Finding {f.n}:</b> {x(f.why_contested)} ({quote_count(len(f.contradicting))})",
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
