"""CSV/TSV: the delimiter sniffed, one "column: value; ..." line per record."""
from __future__ import annotations

import csv
import io

from activities.ingest.converters import base
from activities.ingest.converters.base import ParsedDocument, decode_text, tidy, too_much_text


def parse_csv(data: bytes) -> ParsedDocument:
    raw = decode_text(data)
    try:
        dialect = csv.Sniffer().sniff(raw[:4096], delimiters=",;\t|")
    except Exception:  # csv.Error: no consistent delimiter; the sniffer's guesses are not the document's fault
        dialect = csv.excel
    # a field may be as long as the document (the document size is already capped); the
    # default limit (131,072) is process-wide, so it is only ever raised
    if len(raw) >= csv.field_size_limit():
        csv.field_size_limit(len(raw) + 1)
    # universal newlines: a lone \r (classic Mac) ends a record instead of failing the reader
    rows = [r for r in csv.reader(io.StringIO(raw, newline=None), dialect) if any(c.strip() for c in r)]
    if not rows:
        return ParsedDocument("", "csv")
    header = [h.strip() for h in rows[0]]
    lines = [", ".join(header)] if header else []
    size = len(lines[0]) if lines else 0
    # one line per record, "column: value" so every chunk is self-explanatory
    for r in rows[1:]:
        pairs = [f"{header[i] if i < len(header) and header[i] else f'col{i + 1}'}: {v.strip()}"
                 for i, v in enumerate(r) if v.strip()]
        lines.append("; ".join(pairs))
        size += len(lines[-1]) + 1
        if size > base.MAX_TEXT_CHARS:
            raise too_much_text()
    return ParsedDocument(tidy("\n".join(lines)), "csv", title=None)
