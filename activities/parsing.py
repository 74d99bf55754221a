"""Bytes -> extracted text. Pure functions (no I/O), called by the ingestion activity.

The type comes from the extension *and* the content: a `.pdf` that is not a
PDF is corrupt; an unknown extension is sniffed; binary junk is refused.
Errors are non-retryable ApplicationErrors with a readable reason.
"""
from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from stratmaster.contracts.ingestion import EMPTY_DOCUMENT
from stratmaster.errors import CORRUPT_DOCUMENT, UNSUPPORTED_TYPE, bad_input

CONTENT_TYPES = {
    "txt": "text/plain",
    "md": "text/markdown",
    "html": "text/html",
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "csv": "text/csv",
    "json": "application/json",
}

EXTENSIONS = {
    ".txt": "txt", ".text": "txt", ".log": "txt", ".rst": "txt",
    ".md": "md", ".markdown": "md",
    ".html": "html", ".htm": "html", ".xhtml": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".csv": "csv", ".tsv": "csv",
    ".json": "json",
}

# Magic numbers of formats we recognise but do not ingest.
_UNSUPPORTED_MAGIC = {
    b"\x89PNG": "PNG image", b"GIF8": "GIF image", b"\xff\xd8\xff": "JPEG image", b"\x7fELF": "executable (ELF)",
    b"MZ": "Windows executable", b"\x1f\x8b": "gzip archive", b"BZh": "bzip2 archive", b"7z\xbc\xaf": "7z archive",
    b"Rar!": "RAR archive", b"\xd0\xcf\x11\xe0": "legacy Office (OLE) file", b"OggS": "Ogg media", b"ID3": "MP3 audio",
    b"RIFF": "RIFF media",
}


@dataclass
class ParsedDocument:
    text: str
    kind: str  # key of CONTENT_TYPES
    title: str | None = None
    # character offsets where each page starts (PDF), for chunk metadata
    page_starts: list[int] = field(default_factory=list)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.kind]


def safe_filename(name: str) -> str:
    """Last path component reduced to a safe alphabet (object keys, logs)."""
    base = PurePosixPath(name.replace("\\", "/")).name or "document"
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "document"
    return base[:120]


def _looks_binary(data: bytes) -> bool:
    """NUL bytes or more than 1% control characters: not text. Invalid UTF-8
    alone is not binary (legacy 8-bit text decodes as cp1252)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False  # UTF-16 with a byte-order mark
    sample = data[:8192]
    if b"\x00" in sample:
        return True
    controls = sum(1 for b in sample if b < 9 or (13 < b < 32 and b != 27))
    return controls > max(1, len(sample) // 100)


def sniff(data: bytes) -> str | None:
    """Kind from the content alone, or None when it is not a document we read."""
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                if "word/document.xml" in z.namelist():
                    return "docx"
        except zipfile.BadZipFile:
            return None
        return None
    if _looks_binary(data):
        return None
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<body" in head or b"<head" in head:
        return "html"
    if head[:1] in (b"{", b"["):
        try:
            json.loads(decode_text(data))
            return "json"
        except ValueError:
            pass
    return "txt"


def detect_kind(name: str, data: bytes) -> str:
    ext = PurePosixPath(name.lower()).suffix
    by_ext = EXTENSIONS.get(ext)
    for magic, what in _UNSUPPORTED_MAGIC.items():
        if data.startswith(magic):
            if by_ext:
                raise bad_input(f"{name}: the extension says {by_ext} but the content is a {what}", CORRUPT_DOCUMENT)
            raise bad_input(f"{name}: unsupported type ({what})", UNSUPPORTED_TYPE)
    sniffed = sniff(data)
    if by_ext in ("pdf", "docx"):
        if sniffed != by_ext:
            raise bad_input(f"{name}: not a valid {by_ext.upper()} file (content does not match the extension)",
                            CORRUPT_DOCUMENT)
        return by_ext
    if by_ext:
        if sniffed is None:
            raise bad_input(f"{name}: binary content in a .{by_ext} file", CORRUPT_DOCUMENT)
        if sniffed in ("pdf", "docx"):
            return sniffed
        return by_ext
    if sniffed is None:
        raise bad_input(f"{name}: unsupported type (binary content, extension {ext or 'none'!r})", UNSUPPORTED_TYPE)
    return sniffed


def decode_text(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _tidy(text: str) -> str:
    """Normalise newlines, trailing spaces and runs of blank lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


# ---------------------------------------------------------------- per type

def _parse_txt(data: bytes) -> ParsedDocument:
    text = _tidy(decode_text(data))
    first = next((line.strip() for line in text.split("\n") if line.strip()), None)
    return ParsedDocument(text, "txt", title=first[:200] if first else None)


def _parse_md(data: bytes) -> ParsedDocument:
    text = _tidy(decode_text(data))
    m = re.search(r"^#\s+(.+)$", text, flags=re.M)
    return ParsedDocument(text, "md", title=m.group(1).strip() if m else None)


_HTML_DROP = ("script", "style", "noscript", "nav", "template", "svg", "iframe", "form", "button")
_HTML_BLOCKS = ("p", "div", "section", "article", "li", "tr", "br", "h1", "h2", "h3", "h4", "h5", "h6",
                "table", "ul", "ol", "blockquote", "pre", "header", "footer", "main", "dd", "dt")


def _parse_html(data: bytes) -> ParsedDocument:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(data), "html.parser")
    for tag in soup(_HTML_DROP):
        tag.decompose()
    # page chrome rarely carries content worth citing
    for tag in soup.find_all(attrs={"role": ["navigation", "banner", "contentinfo"]}):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    if soup.title:
        soup.title.decompose()
    if not title:
        h1 = soup.find("h1")
        title = h1.get_text(" ", strip=True) if h1 else None
    for tag in soup.find_all(_HTML_BLOCKS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    for cell in soup.find_all(["td", "th"]):
        cell.insert_after(" | ")
    text = soup.get_text()
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    text = re.sub(r" *\| *\n", "\n", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return ParsedDocument(_tidy(text), "html", title=title or None)


def _parse_pdf(data: bytes) -> ParsedDocument:
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
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
            page_text = _tidy(page.extract_text() or "")
            starts.append(pos)
            parts.append(page_text)
            pos += len(page_text) + 2  # the "\n\n" joiner
        meta_title = None
        try:
            meta_title = reader.metadata.title if reader.metadata else None
        except Exception:
            pass
    except PdfReadError as exc:
        raise bad_input(f"corrupt PDF: {exc}", CORRUPT_DOCUMENT) from exc
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, AssertionError, RecursionError,
            OSError, zipfile.BadZipFile) as exc:
        raise bad_input(f"corrupt PDF: {type(exc).__name__}: {exc}", CORRUPT_DOCUMENT) from exc
    text = "\n\n".join(parts)
    if not reader.pages:
        raise bad_input("corrupt PDF: no pages", CORRUPT_DOCUMENT)
    # keep offsets exact: _tidy's strip() only trims the ends, so adjust the starts
    lead = len(text) - len(text.lstrip())
    stripped = text.strip()
    starts = [max(0, s - lead) for s in starts]
    return ParsedDocument(stripped, "pdf", title=(str(meta_title).strip() or None) if meta_title else None,
                          page_starts=starts)


def _parse_docx(data: bytes) -> ParsedDocument:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        d = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise bad_input(f"corrupt DOCX: {type(exc).__name__}: {exc}", CORRUPT_DOCUMENT) from exc
    lines: list[str] = []
    heading = None
    # body order: paragraphs and tables interleaved as in the document
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for block in d.element.body.iterchildren():
        tag = block.tag.rsplit("}", 1)[-1]
        if tag == "p":
            p = Paragraph(block, d)
            if p.text.strip():
                if heading is None and (p.style is not None and (p.style.name or "").lower().startswith(("heading", "title"))):
                    heading = p.text.strip()
                lines.append(p.text)
                lines.append("")
        elif tag == "tbl":
            for row in Table(block, d).rows:
                cells = []
                for c in row.cells:
                    t = c.text.strip()
                    if not cells or cells[-1] != t:  # merged cells repeat
                        cells.append(t)
                lines.append(" | ".join(cells))
            lines.append("")
    title = (d.core_properties.title or "").strip() or heading
    return ParsedDocument(_tidy("\n".join(lines)), "docx", title=title)


def _parse_csv(data: bytes) -> ParsedDocument:
    raw = decode_text(data)
    try:
        dialect = csv.Sniffer().sniff(raw[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = [r for r in csv.reader(io.StringIO(raw), dialect) if any(c.strip() for c in r)]
    if not rows:
        return ParsedDocument("", "csv")
    header = [h.strip() for h in rows[0]]
    lines = [", ".join(header)] if header else []
    # one line per record, "column: value" so every chunk is self-explanatory
    for r in rows[1:]:
        pairs = [f"{header[i] if i < len(header) and header[i] else f'col{i + 1}'}: {v.strip()}"
                 for i, v in enumerate(r) if v.strip()]
        lines.append("; ".join(pairs))
    return ParsedDocument(_tidy("\n".join(lines)), "csv", title=None)


def _flatten(value, path: str, out: list[str]) -> None:
    if isinstance(value, dict):
        if not value:
            return
        for k, v in value.items():
            _flatten(v, f"{path}.{k}" if path else str(k), out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _flatten(v, f"{path}[{i}]", out)
    elif value is not None:
        out.append(f"{path or 'value'}: {value}")


def _parse_json(data: bytes) -> ParsedDocument:
    try:
        obj = json.loads(decode_text(data))
    except ValueError as exc:
        raise bad_input(f"invalid JSON: {exc}", CORRUPT_DOCUMENT) from exc
    lines: list[str] = []
    _flatten(obj, "", lines)
    title = None
    if isinstance(obj, dict):
        for key in ("title", "name", "headline"):
            if isinstance(obj.get(key), str):
                title = obj[key].strip()
                break
    return ParsedDocument(_tidy("\n".join(lines)), "json", title=title)


_PARSERS = {"txt": _parse_txt, "md": _parse_md, "html": _parse_html, "pdf": _parse_pdf,
            "docx": _parse_docx, "csv": _parse_csv, "json": _parse_json}


def parse_document(name: str, data: bytes) -> ParsedDocument:
    """Detect the type and extract text; raises non-retryable errors for bad input."""
    if not data or not data.strip():
        raise bad_input(f"{name}: empty document", EMPTY_DOCUMENT)
    kind = detect_kind(name, data)
    parsed = _PARSERS[kind](data)
    if not parsed.text.strip():
        raise bad_input(f"{name}: no extractable text ({kind})", EMPTY_DOCUMENT)
    parsed.title = (parsed.title or PurePosixPath(name.replace("\\", "/")).stem or None)
    if parsed.title:
        parsed.title = parsed.title[:300]
    return parsed


def page_of(parsed: ParsedDocument, offset: int) -> int | None:
    """1-based page holding the character offset (PDFs), else None."""
    if not parsed.page_starts:
        return None
    page = 1
    for i, start in enumerate(parsed.page_starts):
        if start <= offset:
            page = i + 1
        else:
            break
    return page
