"""DOCX through python-docx, after the zip directory and a streaming element count refuse bombs."""
from __future__ import annotations

import io
import re
import zipfile

from stratmaster.errors import OVERSIZED, bad_input

from activities.ingest.converters import base
from activities.ingest.converters.base import ParsedDocument, heading_blocks, parse_failed, tidy, too_much_text

MAX_ZIP_ENTRIES = 10_000
MAX_ZIP_UNCOMPRESSED = 256 * 1024 * 1024  # all parts of a DOCX together, as declared by the zip directory
MAX_ZIP_RATIO = 200  # uncompressed/compressed, for parts over 1 MiB (real XML compresses 5-30x)
# python-docx holds every XML part as an lxml tree (~150-650 bytes per element): a million empty
# paragraphs compress to 45 KB and take ~650 MB; a long report has a few hundred thousand elements
MAX_DOCX_XML_ELEMENTS = 2_000_000


def check_docx_zip(data: bytes) -> None:
    """Refuse zip and XML bombs from the zip directory and a streaming count of the
    XML elements, before python-docx builds its trees."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        infos = z.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise bad_input(f"DOCX has {len(infos)} parts (limit {MAX_ZIP_ENTRIES})", OVERSIZED)
        total = sum(i.file_size for i in infos)
        if total > MAX_ZIP_UNCOMPRESSED:
            mb = 1024 * 1024
            raise bad_input(f"DOCX expands to {total // mb} MB (limit {MAX_ZIP_UNCOMPRESSED // mb} MB)", OVERSIZED)
        for i in infos:
            if i.file_size > 1024 * 1024 and i.file_size > MAX_ZIP_RATIO * max(i.compress_size, 1):
                raise bad_input(f"DOCX part {i.filename[:100]} expands {i.file_size // max(i.compress_size, 1)}x "
                                f"(a zip bomb; limit {MAX_ZIP_RATIO}x)", OVERSIZED)
        # every XML part python-docx may parse; a start tag has one '<' more than '</'
        elements = 0
        for i in infos:
            if not i.filename.endswith((".xml", ".rels")):
                continue
            last = b""
            with z.open(i) as f:
                while chunk := f.read(1 << 20):
                    elements += chunk.count(b"<") - (last + chunk).count(b"</")
                    last = chunk[-1:]
                    if elements > MAX_DOCX_XML_ELEMENTS:
                        raise bad_input(f"DOCX has over {MAX_DOCX_XML_ELEMENTS:,} XML elements (paragraphs, runs, "
                                        f"cells...; limit {MAX_DOCX_XML_ELEMENTS:,})", OVERSIZED)


def docx_table_rows(tbl) -> list[str]:
    """' | '-joined cell texts per row. A vertically merged cell repeats the text above it;
    consecutive equal cells (horizontal merges) are written once. Linear, where python-docx's
    row.cells walks every merged cell up to its origin (recursively, rescanning the rows)."""
    from docx.oxml.ns import qn

    W_TR, W_TC, W_P = qn("w:tr"), qn("w:tc"), qn("w:p")
    rows: list[str] = []
    above: dict[int, str] = {}
    for tr in tbl.iterchildren(W_TR):
        offset = tr.grid_before
        here: dict[int, str] = {}
        cells: list[str] = []
        for tc in tr.iterchildren(W_TC):
            if tc.vMerge == "continue":
                t = above.get(offset, "")
            else:
                t = "\n".join(p.text for p in tc.iterchildren(W_P)).strip()
            here[offset] = t
            if not cells or cells[-1] != t:
                cells.append(t)
            offset += max(1, tc.grid_span)
        rows.append(" | ".join(cells))
        above = here
    return rows


def parse_docx(data: bytes) -> ParsedDocument:
    import docx
    from docx.enum.style import WD_STYLE_TYPE
    from docx.opc.exceptions import PackageNotFoundError

    check_docx_zip(data)
    try:
        d = docx.Document(io.BytesIO(data))
    except PackageNotFoundError as exc:
        raise parse_failed("DOCX", exc) from exc
    # paragraph style names by id, once (python-docx's p.style rescans every style per call: ~1 ms)
    styles = {s.style_id: s.name or "" for s in d.styles if s.type == WD_STYLE_TYPE.PARAGRAPH}
    default = d.styles.default(WD_STYLE_TYPE.PARAGRAPH)
    default_name = (default.name or "") if default is not None else ""
    lines: list[str] = []
    heading = None
    headings: list[tuple[int, str, int | None]] = []  # (level, text, -) of "Heading N" and "Title" paragraphs
    size = 0
    # body order: paragraphs and tables interleaved as in the document
    for block in d.element.body.iterchildren():
        tag = block.tag.rsplit("}", 1)[-1] if isinstance(block.tag, str) else ""
        if tag == "p":
            text = block.text
            if text.strip():
                style = (styles.get(block.style, default_name) if block.style else default_name).lower()
                level = 1 if style == "title" else int(style[8:]) if re.fullmatch(r"heading [1-9]", style) else 0
                if level:
                    headings.append((level, text, None))
                if heading is None and style.startswith(("heading", "title")):
                    heading = text.strip()
                lines.append(text)
                lines.append("")
                size += len(text) + 2
        elif tag == "tbl":
            rows = docx_table_rows(block)
            lines.extend(rows)
            lines.append("")
            size += sum(len(r) + 1 for r in rows)
        if size > base.MAX_TEXT_CHARS:
            raise too_much_text()
    title = (d.core_properties.title or "").strip() or heading
    text = tidy("\n".join(lines))
    return ParsedDocument(text, "docx", title=title, blocks=heading_blocks(text, headings))
