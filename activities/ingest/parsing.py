"""Bytes -> extracted text. Pure functions (no I/O), called by the ingestion activity.

The type comes from the extension *and* the content: a `.pdf` that is not a
PDF is corrupt; an unknown extension is sniffed; binary junk is refused.
Errors are non-retryable ApplicationErrors with a readable reason: every
failure of a parser is the document's fault (parsing is pure and
deterministic, a retry would fail the same way), CorruptDocument for a
malformed one, Oversized for one past a structural limit (a zip bomb, a
million-paragraph DOCX, text that expands past MAX_TEXT_CHARS).

Time and memory are bounded by the caller: the ingestion activity runs
parse_document in a child process with a deadline and an address-space cap
(activities/ingest/sandbox.py). The limits here refuse the common bombs early
and cheaply; they are not the only line of defence.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from temporalio.exceptions import ApplicationError

from stratmaster.contracts.ingestion import EMPTY_DOCUMENT
from stratmaster.errors import CORRUPT_DOCUMENT, OVERSIZED, UNSUPPORTED_TYPE, bad_input

log = logging.getLogger("stratmaster.parsing")

# Structural limits (the child process's memory cap and deadline back them up).
MAX_TEXT_CHARS = 50_000_000  # extracted text; CSV and JSON repeat headers/paths, so they can expand their input
MAX_ZIP_ENTRIES = 10_000
MAX_ZIP_UNCOMPRESSED = 256 * 1024 * 1024  # all parts of a DOCX together, as declared by the zip directory
MAX_ZIP_RATIO = 200  # uncompressed/compressed, for parts over 1 MiB (real XML compresses 5-30x)
# python-docx holds every XML part as an lxml tree (~150-650 bytes per element): a million empty
# paragraphs compress to 45 KB and take ~650 MB; a long report has a few hundred thousand elements
MAX_DOCX_XML_ELEMENTS = 2_000_000
# set in the parser process to its address-space cap, for the MemoryError message
MEMORY_LIMIT_MB: int | None = None

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
        except Exception:  # BadZipFile, but also struct/ValueError/OverflowError/... on a crafted directory
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
        except (ValueError, RecursionError):  # deep nesting: read it as text
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
        return data.decode("utf-16", errors="replace")  # a truncated or damaged file is still mostly text
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


_HTML_DROP = frozenset(("script", "style", "noscript", "nav", "template", "svg", "iframe", "form", "button"))
# page chrome rarely carries content worth citing
_HTML_DROP_ROLES = frozenset(("navigation", "banner", "contentinfo"))
_HTML_BLOCKS = frozenset(("p", "div", "section", "article", "li", "tr", "br", "h1", "h2", "h3", "h4", "h5", "h6",
                          "table", "ul", "ol", "blockquote", "pre", "header", "footer", "main", "dd", "dt"))


def _html_dropped(tag) -> bool:
    if tag.name in _HTML_DROP:
        return True
    role = tag.get("role")
    return isinstance(role, str) and role in _HTML_DROP_ROLES


def _html_strings(root, kinds):
    """The kept strings under `root` in document order, skipping dropped subtrees. Iterative:
    a document nested 100,000 deep must not hit the recursion limit."""
    from bs4 import Tag

    stack = [iter(root.contents)]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
        elif isinstance(node, Tag):
            if not _html_dropped(node):
                stack.append(iter(node.contents))
        elif type(node) in kinds:
            yield node


def _parse_html(data: bytes) -> ParsedDocument:
    """One pass over the tree: dropped elements are skipped, block elements are
    surrounded by newlines and table cells followed by " | " as the text is written
    (editing the tree instead, with insert_before/after, is quadratic in bs4)."""
    from bs4 import BeautifulSoup, CData, NavigableString, Tag

    kinds = (NavigableString, CData)  # what get_text() keeps: no comments, scripts, doctypes
    soup = BeautifulSoup(decode_text(data), "html.parser")
    out: list[str] = []
    title = h1 = None
    # (children iterator, text to write when the element closes)
    stack: list[tuple] = [(iter(soup.contents), None)]
    while stack:
        node = next(stack[-1][0], None)
        if node is None:
            _, closing = stack.pop()
            if closing:
                out.append(closing)
        elif isinstance(node, Tag):
            if _html_dropped(node):
                continue
            name = node.name
            if name == "title" and title is None:
                title = " ".join(t for t in (s.strip() for s in _html_strings(node, kinds)) if t)
                continue  # the first <title> is the title, not text
            if name == "h1" and h1 is None:
                h1 = " ".join(t for t in (s.strip() for s in _html_strings(node, kinds)) if t)
            if name in _HTML_BLOCKS:
                out.append("\n")
                stack.append((iter(node.contents), "\n"))
            else:
                stack.append((iter(node.contents), " | " if name in ("td", "th") else None))
        elif type(node) in kinds:
            out.append(node)
    text = "".join(out)
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    text = re.sub(r" *\| *\n", "\n", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return ParsedDocument(_tidy(text), "html", title=title or h1 or None)


def _parse_pdf(data: bytes) -> ParsedDocument:
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
            page_text = _tidy(page.extract_text() or "")
            starts.append(pos)
            parts.append(page_text)
            pos += len(page_text) + 2  # the "\n\n" joiner
            if pos > MAX_TEXT_CHARS:
                raise _too_much_text()
        meta_title = None
        try:
            meta_title = reader.metadata.title if reader.metadata else None
        except Exception:
            pass
        npages = len(reader.pages)
    except PyPdfError as exc:  # PdfReadError, LimitReachedError (pypdf's own bomb limits), ParseError, ...
        raise _parse_failed("PDF", exc) from exc
    text = "\n\n".join(parts)
    if not npages:
        raise bad_input("PDF parse failed: no pages", CORRUPT_DOCUMENT)
    # keep offsets exact: _tidy's strip() only trims the ends, so adjust the starts
    lead = len(text) - len(text.lstrip())
    stripped = text.strip()
    starts = [max(0, s - lead) for s in starts]
    return ParsedDocument(stripped, "pdf", title=(str(meta_title).strip() or None) if meta_title else None,
                          page_starts=starts)


def _check_docx_zip(data: bytes) -> None:
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


def _docx_table_rows(tbl) -> list[str]:
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


def _parse_docx(data: bytes) -> ParsedDocument:
    import docx
    from docx.enum.style import WD_STYLE_TYPE
    from docx.opc.exceptions import PackageNotFoundError

    _check_docx_zip(data)
    try:
        d = docx.Document(io.BytesIO(data))
    except PackageNotFoundError as exc:
        raise _parse_failed("DOCX", exc) from exc
    # paragraph style names by id, once (python-docx's p.style rescans every style per call: ~1 ms)
    styles = {s.style_id: s.name or "" for s in d.styles if s.type == WD_STYLE_TYPE.PARAGRAPH}
    default = d.styles.default(WD_STYLE_TYPE.PARAGRAPH)
    default_name = (default.name or "") if default is not None else ""
    lines: list[str] = []
    heading = None
    size = 0
    # body order: paragraphs and tables interleaved as in the document
    for block in d.element.body.iterchildren():
        tag = block.tag.rsplit("}", 1)[-1] if isinstance(block.tag, str) else ""
        if tag == "p":
            text = block.text
            if text.strip():
                if heading is None:
                    style = styles.get(block.style, default_name) if block.style else default_name
                    if style.lower().startswith(("heading", "title")):
                        heading = text.strip()
                lines.append(text)
                lines.append("")
                size += len(text) + 2
        elif tag == "tbl":
            rows = _docx_table_rows(block)
            lines.extend(rows)
            lines.append("")
            size += sum(len(r) + 1 for r in rows)
        if size > MAX_TEXT_CHARS:
            raise _too_much_text()
    title = (d.core_properties.title or "").strip() or heading
    return ParsedDocument(_tidy("\n".join(lines)), "docx", title=title)


def _parse_csv(data: bytes) -> ParsedDocument:
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
        if size > MAX_TEXT_CHARS:
            raise _too_much_text()
    return ParsedDocument(_tidy("\n".join(lines)), "csv", title=None)


def _flatten(value, out: list[str]) -> None:
    """'path: value' lines in document order, without recursion (depth is limited by json.loads)."""
    size = 0
    stack: list[tuple[object, str]] = [(value, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((value[i], f"{path}[{i}]") for i in range(len(value) - 1, -1, -1))
        elif value is not None:
            out.append(f"{path or 'value'}: {value}")
            size += len(out[-1]) + 1
            if size > MAX_TEXT_CHARS:
                raise _too_much_text()


def _parse_json(data: bytes) -> ParsedDocument:
    try:
        obj = json.loads(decode_text(data))
    except RecursionError:
        raise bad_input("JSON parse failed: nested too deeply", CORRUPT_DOCUMENT) from None
    except ValueError as exc:
        raise _parse_failed("JSON", exc) from exc
    lines: list[str] = []
    _flatten(obj, lines)
    title = None
    if isinstance(obj, dict):
        for key in ("title", "name", "headline"):
            if isinstance(obj.get(key), str):
                title = obj[key].strip()
                break
    return ParsedDocument(_tidy("\n".join(lines)), "json", title=title)


_PARSERS = {"txt": _parse_txt, "md": _parse_md, "html": _parse_html, "pdf": _parse_pdf,
            "docx": _parse_docx, "csv": _parse_csv, "json": _parse_json}
_FORMAT = {"txt": "text", "md": "Markdown", "html": "HTML", "pdf": "PDF", "docx": "DOCX", "csv": "CSV",
           "json": "JSON"}


def _short(exc: BaseException) -> str:
    """One line, at most 300 characters: type and message."""
    msg = " ".join(str(exc).split())
    if len(msg) > 300:
        msg = msg[:297] + "..."
    name = type(exc).__name__
    return f"{name}: {msg}" if msg else name


def _parse_failed(fmt: str, exc: BaseException) -> ApplicationError:
    return bad_input(f"{fmt} parse failed: {_short(exc)}", CORRUPT_DOCUMENT)


def _too_much_text() -> ApplicationError:
    return bad_input(f"extracted text exceeds {MAX_TEXT_CHARS:,} characters", OVERSIZED)


def _document_errors() -> tuple[type[BaseException], ...]:
    """What the parsers raise on malformed input."""
    import struct
    import zlib

    from bs4.exceptions import ParserRejectedMarkup
    from docx.opc.exceptions import OpcError
    from lxml import etree
    from pypdf.errors import PyPdfError

    return (csv.Error, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, struct.error, etree.Error, PyPdfError,
            ParserRejectedMarkup, OpcError,
            ValueError, UnicodeError, KeyError, IndexError, LookupError, TypeError, AttributeError, AssertionError,
            OverflowError, EOFError, OSError, NotImplementedError)


def _named(name: str, err: ApplicationError) -> ApplicationError:
    if err.message.startswith(f"{name}: "):
        return err
    return ApplicationError(f"{name}: {err.message}", *err.details, type=err.type, non_retryable=err.non_retryable)


def parse_document(name: str, data: bytes) -> ParsedDocument:
    """Detect the type and extract text. Raises non-retryable ApplicationErrors ("<name>:
    <reason>") for everything that is the document's fault, which is every parser failure:
    the parsers are pure, so a retry would fail the same way."""
    if not data or not data.strip():
        raise bad_input(f"{name}: empty document", EMPTY_DOCUMENT)
    fmt = "document"
    try:
        kind = detect_kind(name, data)
        fmt = _FORMAT[kind]
        parsed = _PARSERS[kind](data)
    except ApplicationError as err:
        raise _named(name, err) from None
    except MemoryError:
        if MEMORY_LIMIT_MB:
            raise bad_input(f"{name}: parsing exceeded {MEMORY_LIMIT_MB} MB (STRATMASTER_PARSE_MEMORY_MB)",
                            OVERSIZED) from None
        raise bad_input(f"{name}: {fmt} parsing ran out of memory", OVERSIZED) from None
    except RecursionError:
        raise bad_input(f"{name}: {fmt} parse failed: nested too deeply", CORRUPT_DOCUMENT) from None
    except _document_errors() as exc:
        raise bad_input(f"{name}: {fmt} parse failed: {_short(exc)}", CORRUPT_DOCUMENT) from exc
    except Exception as exc:
        # still the document (the parsers are pure), but logged with its traceback: it may be a bug of ours
        log.warning("unexpected %s parser error on %s", fmt, name, exc_info=True)
        raise bad_input(f"{name}: {fmt} parse failed: {_short(exc)}", CORRUPT_DOCUMENT) from exc
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
