"""Shareable research reports: one document model (model.py) built from a session's stored
report (report.json) and the cited chunks, and one renderer per format: Markdown
(to_markdown.py), HTML (to_html.py), PDF (to_pdf.py: reportlab, pure Python) and DOCX
(to_docx.py: python-docx).

Every string from a document, a question or a model is untrusted: each renderer escapes it
for the format it lands in (HTML entities, Markdown backslash escapes, reportlab's
paragraph markup) after the model stripped control characters; the HTML report carries no
script and a Content-Security-Policy that forbids any. A citation shows its quote
highlighted within the sentence(s) around it in the document (from the stored chunk,
checked to hold the quote verbatim at its offsets).
"""
from __future__ import annotations

from activities.research.report_render.to_docx import render_docx
from activities.research.report_render.to_html import render_html
from activities.research.report_render.to_markdown import render_markdown
from activities.research.report_render.to_pdf import render_pdf

# bumped whenever a renderer's output changes (escaping, layout, context): a stored rendering of an
# older version is rendered again rather than answered (activities/research/reports.py)
RENDERER_VERSION = "2"

RENDERERS = {
    "md": lambda doc: render_markdown(doc).encode(),
    "html": lambda doc: render_html(doc).encode(),
    "pdf": render_pdf,
    "docx": render_docx,
}
