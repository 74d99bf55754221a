"""Hostile documents (issue 11, parsing): each either parses or fails fast with a
non-retryable ApplicationError of the right type, within the parser process's
memory cap and deadline; a parse past its deadline, or cancelled, is killed.
The property tests feed parse_document random bytes and mutated valid
documents of every type. No services needed."""
from __future__ import annotations

import asyncio
import io
import os
import time
import zipfile
import zlib
from datetime import timedelta

import psutil
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from temporalio.exceptions import ApplicationError

from activities.ingest.converters import base as converters_base
from activities.ingest.sandbox import parse_in_child, warm_up
from activities.ingest.parsing import CONTENT_TYPES, ParsedDocument, parse_document
from stratmaster.contracts.ingestion import EMPTY_DOCUMENT
from stratmaster.errors import CORRUPT_DOCUMENT, OVERSIZED, UNSUPPORTED_TYPE
from stratmaster.settings import Settings
from tests.ingestion_support import SAMPLES

DEFAULTS = Settings(_env_file=None)
DOCUMENT_FAULTS = {CORRUPT_DOCUMENT, OVERSIZED, UNSUPPORTED_TYPE, EMPTY_DOCUMENT}


@pytest.fixture(scope="module", autouse=True)
def forkserver():
    warm_up()  # started once, outside the timings below


async def in_child(name: str, data: bytes, **kw) -> ParsedDocument:
    kw.setdefault("timeout_s", DEFAULTS.parse_timeout_s)
    kw.setdefault("memory_mb", DEFAULTS.parse_memory_mb)
    return await parse_in_child(name, data, **kw)


async def refused(name: str, data: bytes, type_: str, within_s: float, **kw) -> ApplicationError:
    t0 = time.perf_counter()
    with pytest.raises(ApplicationError) as info:
        await in_child(name, data, **kw)
    elapsed = time.perf_counter() - t0
    err = info.value
    assert err.type == type_ and err.non_retryable, (err.type, err.message)
    assert err.message.startswith(f"{name}: "), err.message
    assert elapsed < within_s, (elapsed, err.message)
    return err


# ---------------------------------------------------------------- builders

def docx_with_body(body: bytes, extra: dict[str, bytes] | None = None) -> bytes:
    """python-docx's blank document with `body` as the content of <w:body>, plus extra parts."""
    import docx

    buf = io.BytesIO()
    docx.Document().save(buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "word/document.xml":
                start = data.index(b"<w:body>") + len(b"<w:body>")
                data = data[:start] + body + data[data.index(b"<w:sectPr", start):]
            z.writestr(info.filename, data)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return out.getvalue()


def pdf_from(objects: list[bytes], xref_count: int | None = None) -> bytes:
    """A PDF of numbered objects (1 is the catalog) with a correct cross-reference table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (i, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (xref_count or len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


@pytest.fixture(scope="module")
def slow_docx() -> bytes:
    """300,000 short paragraphs: parses (under the limits) in several seconds and ~250 MB."""
    body = b"".join(b"<w:p><w:r><w:t>line %d</w:t></w:r></w:p>" % (i * 7919 % 1000003) for i in range(300_000))
    return docx_with_body(body)


# ---------------------------------------------------------------- hostile documents

async def test_million_paragraph_docx_is_refused_before_it_is_loaded():
    body = b"<w:p><w:r><w:t>Paragraph</w:t></w:r></w:p>" * 1_000_000  # 44 MB of XML
    data = docx_with_body(body)
    assert len(data) < 300 * 1024
    err = await refused("million.docx", data, OVERSIZED, within_s=5)
    assert "zip bomb" in err.message
    # as many elements without the telltale compression ratio (2.4 M: w:p, w:r, w:t each): counted, refused
    varied = b"".join(b"<w:p><w:r><w:t>%d</w:t></w:r></w:p>" % (i * 7919 % 1000003) for i in range(800_000))
    err = await refused("varied.docx", docx_with_body(varied), OVERSIZED, within_s=5)
    assert "XML elements" in err.message


async def test_zip_bomb_docx_is_refused_from_the_zip_directory():
    bomb = docx_with_body(b"<w:p><w:r><w:t>hello</w:t></w:r></w:p>", {"word/media/image1.png": bytes(64 << 20)})
    assert len(bomb) < 200 * 1024
    err = await refused("bomb.docx", bomb, OVERSIZED, within_s=3)
    assert "word/media/image1.png" in err.message and "zip bomb" in err.message


async def test_docx_tables_with_long_vertical_merges_and_huge_spans_parse_in_linear_time():
    # python-docx's row.cells walks each merged cell up to its origin, recursively: RecursionError/quadratic
    first = b"<w:tr><w:tc><w:tcPr><w:vMerge w:val=\"restart\"/></w:tcPr><w:p><w:r><w:t>top</w:t></w:r></w:p></w:tc>" \
            b"<w:tc><w:p><w:r><w:t>r0</w:t></w:r></w:p></w:tc></w:tr>"
    rest = b"".join(b"<w:tr><w:tc><w:tcPr><w:vMerge/></w:tcPr><w:p/></w:tc>"
                    b"<w:tc><w:p><w:r><w:t>r%d</w:t></w:r></w:p></w:tc></w:tr>" % i for i in range(1, 5000))
    span = b"<w:tr><w:tc><w:tcPr><w:gridSpan w:val=\"999999999\"/></w:tcPr><w:p><w:r><w:t>wide</w:t></w:r></w:p>" \
           b"</w:tc></w:tr>"
    data = docx_with_body(b"<w:tbl>" + first + rest + span + b"</w:tbl>")
    t0 = time.perf_counter()
    doc = await in_child("merged.docx", data)
    assert time.perf_counter() - t0 < 10
    lines = doc.text.split("\n")
    assert lines[0] == "top | r0" and lines[4999] == "top | r4999" and lines[5000] == "wide"


async def test_deeply_nested_brackets_in_text_and_json():
    brackets = b"[" * 100_000
    doc = await in_child("brackets.txt", brackets)  # text is text, whatever it looks like
    assert doc.kind == "txt" and doc.text == "[" * 100_000
    assert (await in_child("brackets", brackets)).kind == "txt"  # sniffed: not JSON
    for data in (brackets, b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        err = await refused("deep.json", data, CORRUPT_DOCUMENT, within_s=3)
        assert "nested too deeply" in err.message
    # nesting json.loads accepts is flattened without recursion
    doc = parse_document("ok.json", b'{"a":' * 900 + b'"leaf"' + b"}" * 900)
    assert doc.text.endswith(": leaf") and doc.text.startswith("a.a.a.")


async def test_csv_with_a_200k_character_field_parses():
    data = b"id,notes\n1," + b"x" * 200_000 + b"\n2,short\n"
    doc = await in_child("wide.csv", data)
    assert doc.text.split("\n")[1] == "id: 1; notes: " + "x" * 200_000
    assert doc.text.endswith("id: 2; notes: short")


async def test_old_mac_csv_parses_and_expanding_csv_is_capped(monkeypatch):
    doc = await in_child("mac.csv", b"a,b\r1,x\r2,y\r")  # csv.Error "new-line character seen in unquoted field" before
    assert doc.text == "a, b\na: 1; b: x\na: 2; b: y"
    # a long header repeated on every record: the extracted text is capped (lowered here, in-process)
    monkeypatch.setattr(converters_base, "MAX_TEXT_CHARS", 1_000_000)
    with pytest.raises(ApplicationError) as info:
        parse_document("expand.csv", b"h" * 5000 + b"\n" + b"1\n" * 5000)
    assert info.value.type == OVERSIZED and info.value.non_retryable and "extracted text" in info.value.message


async def test_pdfs_past_pypdf_limits_are_corrupt_not_retried():
    # pypdf's LimitReachedError (declared xref size far beyond the file) is not a PdfReadError
    catalog, pages = b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"
    err = await refused("limit.pdf", pdf_from([catalog, pages], xref_count=99_999_999), CORRUPT_DOCUMENT, within_s=3)
    assert "LimitReachedError" in err.message and "PDF parse failed" in err.message
    cyclic = pdf_from([catalog, b"<< /Type /Pages /Kids [2 0 R] /Count 1 >>"])
    err = await refused("cycle.pdf", cyclic, CORRUPT_DOCUMENT, within_s=3)
    assert "PDF parse failed" in err.message
    # a content stream that inflates to 80 MB: pypdf's decompression limit, not our memory
    stream = zlib.compress(b"0" * (80 << 20), 9)
    bomb = pdf_from([catalog, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                     b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
                     b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream)])
    t0 = time.perf_counter()
    with pytest.raises(ApplicationError) as info:
        await in_child("inflate.pdf", bomb)
    assert info.value.non_retryable and info.value.type in (CORRUPT_DOCUMENT, EMPTY_DOCUMENT, OVERSIZED)
    assert time.perf_counter() - t0 < 10


async def test_hostile_html_parses_in_linear_time():
    t0 = time.perf_counter()
    deep = await in_child("deep.html", b"<html><body>" + b"<div>" * 30_000 + b"deep text</body></html>")
    flat = await in_child("flat.html", b"<html><body>" + b"<p>paragraph</p>" * 20_000 + b"</body></html>")
    assert deep.text == "deep text" and flat.text.count("paragraph") == 20_000
    assert time.perf_counter() - t0 < 15  # was ~25 s for the flat one alone (bs4 insert_before is quadratic)


# ---------------------------------------------------------------- the parser process

async def test_a_parse_past_its_deadline_is_killed(slow_docx):
    pids: list[int] = []
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    def started(pid: int) -> None:
        assert psutil.pid_exists(pid)
        pids.append(pid)

    task = asyncio.create_task(ticker())
    try:
        err = await refused("slow.docx", slow_docx, OVERSIZED, within_s=4, timeout_s=0.5, on_start=started)
    finally:
        task.cancel()
    assert err.message == "slow.docx: parsing exceeded 0.5 s (STRATMASTER_PARSE_TIMEOUT_S)"
    assert len(pids) == 1 and not psutil.pid_exists(pids[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)
    assert ticks >= 10  # the event loop (and so the activity's heartbeat) ran meanwhile


async def test_a_parse_past_its_memory_cap_fails_as_oversized(slow_docx):
    err = await refused("big.docx", slow_docx, OVERSIZED, within_s=20, memory_mb=256)
    assert err.message == "big.docx: parsing exceeded 256 MB (STRATMASTER_PARSE_MEMORY_MB)"


async def test_cancelling_the_parse_kills_the_child(slow_docx):
    pids: list[int] = []
    task = asyncio.create_task(in_child("cancel.docx", slow_docx, on_start=pids.append))
    while not pids:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 5
    while psutil.pid_exists(pids[0]) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not psutil.pid_exists(pids[0])


async def test_child_parses_every_sample_like_the_worker_would_in_process():
    for p in sorted(SAMPLES.iterdir()):
        data = p.read_bytes()
        assert await in_child(p.name, data) == parse_document(p.name, data), p.name


# ---------------------------------------------------------------- properties

def _docx_seed() -> bytes:
    return (SAMPLES / "competitor_briefing.docx").read_bytes()


SEEDS = {
    "txt": (SAMPLES / "board_meeting_notes.txt").read_bytes(),
    "md": (SAMPLES / "voltaris_strategy_2025.md").read_bytes(),
    "html": (SAMPLES / "industry_news.html").read_bytes(),
    "csv": (SAMPLES / "battery_costs.csv").read_bytes(),
    "json": (SAMPLES / "product_specs.json").read_bytes(),
    "docx": _docx_seed(),
    "pdf": (SAMPLES / "market_outlook_2025.pdf").read_bytes(),
}
# fragments that matter to each parser
TOKENS = {
    "txt": ["\n", "\r\n", "\t", "[", "{", "\xef\xbb\xbf", "\x00", "\xff\xfe", "PK\x03\x04", "%PDF-", "<html>"],
    "md": ["# ", "\n", "#", "  ", "\t", "```", "*", "[x](y)", "\r"],
    "html": ["<p>", "</p>", "<div>", "</div>", "<td>", "<tr>", "<table>", "<script>", "<title>", "</title>", "<h1>",
             "<nav role=\"navigation\">", "<!--", "-->", "<![CDATA[", "]]>", "&amp;", "&#99999999;", "&#x110000;",
             "<svg>", "<", ">", "\"", "'", "<!DOCTYPE html>", "<br>"],
    "csv": [",", ";", "\t", "|", "\"", "\"\"", "\n", "\r", "\r\n", "a", "1", "\x00", " "],
    "json": ["{", "}", "[", "]", ":", ",", "\"", "\"k\"", "1", "-0", "1e999", "true", "null", "NaN", "\\u0000",
             "\\ud800", " ", "9" * 5000],
}


def _apply(data: bytes, ops: list[tuple[int, float, bytes]]) -> bytes:
    b = bytearray(data)
    for op, where, chunk in ops:
        i = int(where * len(b))
        if op == 0:
            b[i:i + len(chunk)] = chunk  # overwrite
        elif op == 1:
            b[i:i] = chunk  # insert
        elif op == 2:
            del b[i:i + len(chunk) * 8]  # delete
        elif op == 3:
            del b[i:]  # truncate
        else:
            j = int((1 - where) * len(b))
            b[i:i] = b[j:j + 64] * (1 + len(chunk) % 8)  # duplicate a slice
    return bytes(b)


_ops = st.lists(st.tuples(st.integers(0, 4), st.floats(0, 1), st.binary(min_size=1, max_size=24)), min_size=1,
                max_size=6)


def _rezip(data: bytes, target: str, mutate) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            part = src.read(info.filename)
            z.writestr(info.filename, mutate(part) if info.filename == target else part)
    return out.getvalue()


_DOCX_PARTS = [i.filename for i in zipfile.ZipFile(io.BytesIO(SEEDS["docx"])).infolist()]


@st.composite
def documents(draw, kind: str) -> bytes:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.binary(max_size=3000))
    if choice == 1:
        return _apply(SEEDS[kind], draw(_ops))
    if kind == "docx":  # a valid zip around a damaged part, mostly word/document.xml
        target = draw(st.sampled_from(["word/document.xml"] * 4 + _DOCX_PARTS))
        ops = draw(_ops)
        return _rezip(SEEDS["docx"], target, lambda part: _apply(part, ops))
    if kind == "pdf":
        return _apply(SEEDS["pdf"], draw(_ops) + draw(_ops))
    if choice == 2:
        tokens = draw(st.lists(st.sampled_from(TOKENS[kind]) | st.text(max_size=8), max_size=60))
        return "".join(tokens).encode(draw(st.sampled_from(["utf-8", "utf-16", "latin-1"])), errors="replace")
    seed = SEEDS[kind].decode("utf-8")
    cut = draw(st.integers(0, len(seed)))
    tokens = draw(st.lists(st.sampled_from(TOKENS[kind]), min_size=1, max_size=20))
    return (seed[:cut] + "".join(tokens) + seed[cut:]).encode("utf-8", errors="replace")


@pytest.mark.parametrize("kind", ["txt", "md", "html", "csv", "json", "docx", "pdf"])
@hsettings(max_examples=100, deadline=timedelta(seconds=2), derandomize=True, database=None,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_input_parses_or_fails_as_the_documents_fault(kind, data):
    blob = data.draw(documents(kind))
    name = f"fuzz.{kind}"
    try:
        doc = parse_document(name, blob)
    except ApplicationError as err:
        assert err.non_retryable and err.type in DOCUMENT_FAULTS, (err.type, err.message)
        assert err.message.startswith(f"{name}: ")
    else:
        assert doc.text.strip() and doc.kind in CONTENT_TYPES and doc.title
