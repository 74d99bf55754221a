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
from enum import Enum
from pathlib import PurePosixPath

from temporalio.exceptions import ApplicationError

from activities.ingest.converters import csv as csv_converter
from activities.ingest.converters import docx as docx_converter
from activities.ingest.converters import html as html_converter
from activities.ingest.converters import json as json_converter
from activities.ingest.converters import pdf as pdf_converter
from activities.ingest.converters import text as text_converter
from activities.ingest.converters.base import CONTENT_TYPES, MAX_TEXT_CHARS, ParsedDocument, decode_text, short
from stratmaster.contracts.ingestion import EMPTY_DOCUMENT
from stratmaster.errors import CORRUPT_DOCUMENT, OVERSIZED, UNSUPPORTED_TYPE, bad_input

__all__ = ["CONTENT_TYPES", "EXTENSIONS", "MAX_TEXT_CHARS", "ParsedDocument", "decode_text", "detect_kind",
           "page_of", "parse_document", "safe_filename", "sniff"]

log = logging.getLogger("stratmaster.parsing")

# set in the parser process to its address-space cap, for the MemoryError message
MEMORY_LIMIT_MB: int | None = None

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


class Kind(str, Enum):
    """The document kinds we read (keys of CONTENT_TYPES)."""
    TXT = "txt"
    MD = "md"
    HTML = "html"
    PDF = "pdf"
    DOCX = "docx"
    CSV = "csv"
    JSON = "json"


# one converter module per format (activities/ingest/converters/)
_PARSERS = {Kind.TXT: text_converter.parse_txt, Kind.MD: text_converter.parse_md, Kind.HTML: html_converter.parse_html,
            Kind.PDF: pdf_converter.parse_pdf, Kind.DOCX: docx_converter.parse_docx,
            Kind.CSV: csv_converter.parse_csv, Kind.JSON: json_converter.parse_json}
_FORMAT = {Kind.TXT: "text", Kind.MD: "Markdown", Kind.HTML: "HTML", Kind.PDF: "PDF", Kind.DOCX: "DOCX",
           Kind.CSV: "CSV", Kind.JSON: "JSON"}


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
        fmt = _FORMAT[Kind(kind)]
        parsed = _PARSERS[Kind(kind)](data)
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
        raise bad_input(f"{name}: {fmt} parse failed: {short(exc)}", CORRUPT_DOCUMENT) from exc
    except Exception as exc:
        # still the document (the parsers are pure), but logged with its traceback: it may be a bug of ours
        log.warning("unexpected %s parser error on %s", fmt, name, exc_info=True)
        raise bad_input(f"{name}: {fmt} parse failed: {short(exc)}", CORRUPT_DOCUMENT) from exc
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
