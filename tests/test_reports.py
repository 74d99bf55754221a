"""Shareable research reports: a real research run over the research test corpus
(plus a hostile document), rendered by RenderReportWorkflow on the research worker
to Markdown, HTML, PDF and DOCX, stored under the mission's prefix, read back and
checked (PDF text with pypdf, DOCX with python-docx, HTML with html.parser)."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import re
import shutil
import uuid
from html.parser import HTMLParser
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import WorkflowFailureError
from typer.testing import CliRunner

from activities.research.report_render.model import quote_context
from activities.research.synthesis import sentence_spans
from activities.stores.factory import build_stores
from stratmaster import queues
from stratmaster.contracts.reports import FORMATS, RenderReportInput
from stratmaster.contracts.research import ResearchInput, workflow_id_for
from stratmaster.search_attributes import for_mission
from tests.research_support import CORPUS, ingest_corpus, research_worker
from workflows.reports import RenderReportWorkflow
from workflows.research import ResearchWorkflow

pytestmark = pytest.mark.timeout(600)
MISSION = f"rp_{uuid.uuid4().hex[:8]}"
OTHER = f"ro_{uuid.uuid4().hex[:8]}"
BATTERY_Q = "How much capacity does the XR-7 battery retain after 1000 charge cycles, and does cold weather reduce its range?"
HOSTILE_DOC = (
    "XR-9 module notes.\n\n"
    "Lab staff measured the module on a test bench. "
    "The XR-9 module <script>alert('pwned')</script> stores 5 kWh of energy <img src=x onerror=alert(1)> in its cells. "
    "Its casing is made of recycled aluminium.\n"
)
HOSTILE_Q = "<script>alert('q')</script> How much energy does the XR-9 module store?"
KEEP = os.environ.get("STRATMASTER_TEST_KEEP_REPORTS")  # a folder: keep the rendered files to look at


def norm(text: str) -> str:
    return " ".join(text.split())


@pytest_asyncio.fixture(scope="module")
async def corpus(temporal_env, settings):
    return await ingest_corpus(temporal_env.client, settings, MISSION, {**CORPUS, "xr9-notes.txt": HOSTILE_DOC})


async def research(client, settings, query: str):
    wid = workflow_id_for(MISSION, query, uuid.uuid4().hex)
    async with research_worker(client, settings):
        result = await client.execute_workflow(ResearchWorkflow.run, ResearchInput(mission=MISSION, query=query), id=wid,
                                               task_queue=queues.RESEARCH, search_attributes=for_mission(MISSION))
    return wid, result


async def render(client, settings, mission: str, wid: str, fetch: str | None = "pdf", formats=FORMATS, reuse=False):
    async with research_worker(client, settings):
        return await client.execute_workflow(
            RenderReportWorkflow.run, RenderReportInput(mission=mission, workflow_id=wid, fetch=fetch, formats=list(formats),
                                                        reuse=reuse),
            id=f"report-{uuid.uuid4().hex[:10]}", task_queue=queues.RESEARCH, search_attributes=for_mission(mission))


@pytest_asyncio.fixture(scope="module")
async def battery(temporal_env, settings, corpus):
    return await research(temporal_env.client, settings, BATTERY_Q)


@pytest_asyncio.fixture(scope="module")
async def stored(settings):
    stores = build_stores(settings)
    yield stores
    await stores.close()


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def docx_text(data: bytes) -> str:
    import docx

    return "\n".join(p.text for p in docx.Document(io.BytesIO(data)).paragraphs)


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags_of(markup: str) -> list[tuple[str, dict]]:
    p = Tags()
    p.feed(markup)
    return p.tags


# ---------------------------------------------------------------- units

def test_quote_context_is_the_surrounding_sentences():
    text = ("# Title\n\nFirst sentence here. The XR-7 battery retains 90 percent of its capacity. "
            "Third sentence follows. Fourth one.")
    q = "The XR-7 battery retains 90 percent of its capacity."
    s = text.index(q)
    before, after = quote_context(text, 100, 100 + s, 100 + s + len(q), q)
    assert before == "First sentence here. " and after == " Third sentence follows."
    part = "retains 90 percent"  # part of a sentence: the rest of that sentence around it
    s = text.index(part)
    before, after = quote_context(text, 0, s, s + len(part), part)
    assert before == "The XR-7 battery " and after == " of its capacity."
    s = text.index("First")  # no heading as context
    assert quote_context(text, 0, s, s + len("First sentence here."), "First sentence here.")[0] == ""
    assert quote_context(text, 0, 0, 5, "not what is there") is None
    short = "A b. C d! E"
    assert [short[a:b] for a, b in sentence_spans(short)] == ["A b.", "C d!", "E"]


# ---------------------------------------------------------------- end to end

async def test_report_in_every_format(temporal_env, settings, battery, stored):
    wid, result = battery
    assert result.claims and result.answer and result.answer.text
    out = await render(temporal_env.client, settings, MISSION, wid, fetch="pdf")
    assert out.session_id == result.session_id and {a.format for a in out.artifacts} == set(FORMATS)
    files = {}
    for a in out.artifacts:
        assert a.key == f"tenants/{MISSION}/artifacts/research/{result.session_id}/report.{a.format}"
        data = await stored.objects.get(MISSION, a.key)
        assert hashlib.sha256(data).hexdigest() == a.sha256 and len(data) == a.size
        files[a.format] = data
    assert base64.b64decode(out.content_b64) == files["pdf"] and files["pdf"].startswith(b"%PDF")
    if KEEP:
        Path(KEEP).mkdir(parents=True, exist_ok=True)
        for fmt, data in files.items():
            (Path(KEEP) / f"battery.{fmt}").write_bytes(data)

    quotes = [c.quote for cl in result.claims for c in cl.supporting + cl.contradicting]
    texts = {"pdf": pdf_text(files["pdf"]), "docx": docx_text(files["docx"]), "md": files["md"].decode(),
             "html": files["html"].decode()}
    assert "\\" not in norm(result.answer.text)  # (the Markdown escapes below assume plain text)
    for fmt in ("pdf", "docx"):
        body = norm(texts[fmt])
        assert norm(result.answer.text) in body, fmt
        for q in quotes:
            assert norm(q) in body, (fmt, q)
        assert f"Confidence {result.answer.confidence:.2f}" in body and "Contradictions" in body
        for cl in result.claims:
            assert f"Confidence {cl.confidence:.2f}" in body
    from activities.research.report_render.to_markdown import md as md_escape
    for q in quotes:
        assert f"<mark>{norm(q)}</mark>".replace("'", "&#x27;") in texts["html"] or \
            f"<mark>{norm(q)}</mark>".replace("'", "&#x27;").replace('"', "&quot;") in texts["html"], q
        assert md_escape(q) in texts["md"]
    # each quote sits in its surrounding text: the sentence before/after it in the document
    flagged = [cl for cl in result.claims if cl.flagged]
    reasons = [re.sub(r"^contradicted \((.*)\)$", r"\1", cl.flag_reason) for cl in flagged]
    assert flagged and all(r in norm(texts["pdf"]) and r in texts["html"] for r in reasons), reasons
    assert re.search(r"[a-z.]\s*<mark>", texts["html"]) and re.search(r"</mark>\s*[A-Za-z]", texts["html"])
    # the stored report.md is the shareable one now (a superset of the persisted summary)
    assert f"# Research report: {md_escape(BATTERY_Q)}" in texts["md"]


async def test_a_stored_rendering_is_answered_without_rendering_again(temporal_env, settings, battery, stored):
    """GET .../report asks for reuse: a format stored before is answered as it is (a completed
    report does not change); an explicit render writes it anew."""
    from stratmaster.contracts.reports import report_key

    from activities.research.report_render import RENDERER_VERSION

    wid, result = battery
    marker = b"%PDF-1.4 stored before"
    key = report_key(result.session_id, "pdf")
    await stored.objects.put(MISSION, key, marker, "application/pdf")
    await stored.objects.put(MISSION, key + ".renderer", RENDERER_VERSION.encode(), "text/plain")
    out = await render(temporal_env.client, settings, MISSION, wid, fetch="pdf", formats=["pdf"], reuse=True)
    assert base64.b64decode(out.content_b64) == marker and out.artifacts[0].size == len(marker)
    # rendered by an older renderer (or by nobody known): rendered again, even when asked to reuse
    await stored.objects.put(MISSION, key + ".renderer", b"0", "text/plain")
    older = await render(temporal_env.client, settings, MISSION, wid, fetch="pdf", formats=["pdf"], reuse=True)
    assert base64.b64decode(older.content_b64) != marker
    await stored.objects.put(MISSION, key, marker, "application/pdf")
    again = await render(temporal_env.client, settings, MISSION, wid, fetch="pdf", formats=["pdf"])
    fresh = base64.b64decode(again.content_b64)
    assert fresh != marker and fresh.startswith(b"%PDF") and await stored.objects.get(MISSION, again.artifacts[0].key) == fresh


async def test_hostile_document_text_is_inert_in_html_and_markdown(temporal_env, settings, corpus, stored):
    wid, result = await research(temporal_env.client, settings, HOSTILE_Q)
    quotes = [c.quote for cl in result.claims for c in cl.supporting]
    assert any("<script>" in q for q in quotes), quotes  # the hostile sentence is cited
    out = await render(temporal_env.client, settings, MISSION, wid, fetch="html")
    page = base64.b64decode(out.content_b64).decode()
    if KEEP:
        (Path(KEEP) / "hostile.html").write_text(page)
    tags = tags_of(page)
    names = {t for t, _ in tags}
    assert "script" not in names and "img" not in names and "iframe" not in names
    assert not [a for _, attrs in tags for a in attrs if a.startswith("on")]
    assert not [v for _, attrs in tags for v in attrs.values() if v and "javascript:" in v.lower()]
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page  # shown, as text
    assert "&lt;script&gt;alert(&#x27;q&#x27;)&lt;/script&gt;" in page  # the question too
    assert "default-src 'none'" in page  # and a CSP that would block any script anyway

    from markdown_it import MarkdownIt
    md_key = next(a.key for a in out.artifacts if a.format == "md")
    rendered = MarkdownIt("commonmark").render((await stored.objects.get(MISSION, md_key)).decode())
    md_tags = {t for t, _ in tags_of(rendered)}
    assert "script" not in md_tags and "img" not in md_tags and "&lt;script&gt;" in rendered

    pdf_key = next(a.key for a in out.artifacts if a.format == "pdf")
    text = norm(pdf_text(await stored.objects.get(MISSION, pdf_key)))
    assert "<script>alert('pwned')</script>" in text  # the PDF shows the text as it is


@pytest_asyncio.fixture(scope="module")
async def other(settings):
    from activities.stores.postgres import create_pool
    from activities.stores.tenants import ensure_tenant

    pool = await create_pool(settings.database_url)
    try:
        await ensure_tenant(pool, OTHER)
    finally:
        await pool.close()
    return OTHER


async def test_another_mission_cannot_fetch_the_report(temporal_env, settings, battery, stored, other):
    wid, result = battery
    for mission, research_id in ((OTHER, wid), (MISSION, f"research-{MISSION}-nope")):
        with pytest.raises(WorkflowFailureError) as info:
            await render(temporal_env.client, settings, mission, research_id)
        assert info.value.cause.type == "ReportNotFound", info.value.cause
        assert "has no research" in info.value.cause.message
    key = f"tenants/{MISSION}/artifacts/research/{result.session_id}/report.pdf"
    assert await stored.objects.exists(MISSION, key)
    with pytest.raises(Exception):  # another mission's key is refused by the object store itself
        await stored.objects.get(OTHER, key)
    assert not await stored.objects.list(OTHER, "artifacts/research/")


async def test_cli_downloads_a_report(temporal_env, settings, battery, other, tmp_path, monkeypatch):
    from starters.cli import app
    from stratmaster.settings import get_settings

    wid, result = battery
    monkeypatch.setenv("STRATMASTER_TEMPORAL_ADDRESS", temporal_env.client.service_client.config.target_host)
    get_settings.cache_clear()
    try:
        async with research_worker(temporal_env.client, settings):
            pdf = tmp_path / "out.pdf"
            res = await asyncio.to_thread(CliRunner().invoke, app, ["research", "report", wid, "--format", "pdf",
                                                                    "-o", str(pdf)])
            assert res.exit_code == 0, res.output
            assert pdf.read_bytes().startswith(b"%PDF") and norm(result.answer.text) in norm(pdf_text(pdf.read_bytes()))
            assert f"tenants/{MISSION}/artifacts/research/{result.session_id}/report.pdf" in res.output
            res = await asyncio.to_thread(CliRunner().invoke, app, ["research", "report", wid, "--format", "md"])
            assert res.exit_code == 0 and res.stdout.startswith("# Research report:")
            res = await asyncio.to_thread(CliRunner().invoke, app, ["research", "report", wid, "-m", OTHER,
                                                                    "--format", "html", "-o", str(tmp_path / "x.html")])
            assert res.exit_code == 1 and "has no research" in res.output and not (tmp_path / "x.html").exists()
    finally:
        get_settings.cache_clear()
    if KEEP:
        shutil.copy(pdf, Path(KEEP) / "cli.pdf")
