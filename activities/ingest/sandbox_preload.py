"""Imported once by the parser forkserver (activities/ingest/sandbox.py), never by the worker:
parses a tiny document of each type so that every forked parser process starts with the
lazy imports done and the regular expressions compiled (~10-30 ms saved per document)."""
from __future__ import annotations

import gc
import io
import logging


def _tiny_docx() -> bytes:
    import docx

    d = docx.Document()
    d.add_heading("Title", level=1)
    d.add_paragraph("text")
    d.add_table(rows=1, cols=2).cell(0, 0).text = "cell"
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def _tiny_pdf() -> bytes:
    """One page with one line of text, offsets computed (no writer library needed)."""
    stream = b"BT /F1 12 Tf 72 720 Td (warm up) Tj ET"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (i, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def warm() -> None:
    from activities.ingest.parsing import parse_document

    samples = {
        "w.txt": b"warm up\n\n\n\nline",
        "w.md": b"# Warm\n\ntext",
        "w.json": b'{"title": "w", "a": [1, {"b": 2}]}',
        "w.csv": b"a,b\n1,2\n",
        # entities load bs4's tables (~30 ms) on first use
        "w.html": b"<html><head><title>w</title></head><body><h1>w</h1><p>a &amp; b&nbsp;&eacute;&#233;&#x41;</p>"
                  b"<table><tr><td>1</td></tr></table><script>s</script></body></html>",
    }
    try:
        samples["w.docx"] = _tiny_docx()
        samples["w.pdf"] = _tiny_pdf()
    except Exception:  # pragma: no cover - warming is best effort
        pass
    for name, data in samples.items():
        try:
            parse_document(name, data)
        except Exception:  # pragma: no cover
            logging.getLogger("stratmaster.parsing").debug("warm-up parse of %s failed", name, exc_info=True)


warm()
# what is loaded now is shared by every forked child: keep the collector away from it, or each
# child's first full collection touches (and so copies) every page of it
gc.collect()
gc.freeze()
