"""PDF through pypdf: text per page, with the offset where each page starts."""
from __future__ import annotations

import io
import logging

from stratmaster.errors import CORRUPT_DOCUMENT, bad_input

from activities.ingest.converters import base
from activities.ingest.converters.base import ParsedDocument, parse_failed, tidy, too_much_text


def parse_pdf(data: bytes) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.CRITICAL)  # a malformed file logs an error per object
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    raise bad_input("PDF is password-protected", CORRUPT_DOCUMENT)
            except Exception as exc:
                if getattr(exc, "type", None) == CORRUPT_DOCUMENT:
                    raise
                raise bad_input(f"PDF is encrypted and cannot be read: {exc}", CORRUPT_DOCUMENT) from exc
        parts: list[str] = []
        starts: list[int] = []
        pos = 0
        for page in reader.pages:
            page_text = tidy(page.extract_text() or "")
            starts.append(pos)
            parts.append(page_text)
            pos += len(page_text) + 2  # the "\n\n" joiner
            if pos > base.MAX_TEXT_CHARS:
                raise too_much_text()
        meta_title = None
        try:
            meta_title = reader.metadata.title if reader.metadata else None
        except Exception:
            pass
        npages = len(reader.pages)
    except PyPdfError as exc:  # PdfReadError, LimitReachedError (pypdf's own bomb limits), ParseError, ...
        raise parse_failed("PDF", exc) from exc
    text = "\n\n".join(parts)
    if not npages:
        raise bad_input("PDF parse failed: no pages", CORRUPT_DOCUMENT)
    # keep offsets exact: _tidy's strip() only trims the ends, so adjust the starts
    lead = len(text) - len(text.lstrip())
    stripped = text.strip()
    starts = [max(0, s - lead) for s in starts]
    return ParsedDocument(stripped, "pdf", title=(str(meta_title).strip() or None) if meta_title else None,
                          page_starts=starts)
