"""The report routes against the real Temporal test server, PostgreSQL, the embedded
stores and the real research and maintenance workers (OIDC mode with a stub
verifier): a real research over the research test corpus, its report downloaded
through the API as PDF (pypdf finds the answer in it), Markdown, HTML and DOCX;
every format rendered and stored by POST; read and write roles; another mission's
research and an unknown one are a 404; every write an audit row."""
from __future__ import annotations

import asyncio
import io
import time
import uuid

import pytest
import pytest_asyncio

from stratmaster import queues
from stratmaster.contracts.reports import CONTENT_TYPES, FORMATS
from stratmaster.contracts.research import ResearchInput, workflow_id_for
from stratmaster.search_attributes import for_mission
from tests.api_support import StubVerifier, api_client, audit_rows, make_app, run_workers, stub_oidc, token
from tests.research_support import ingest_corpus, research_worker
from workflows.research import ResearchWorkflow

pytestmark = pytest.mark.timeout(600)

M = f"apirp_{uuid.uuid4().hex[:8]}"
O = f"apirpo_{uuid.uuid4().hex[:8]}"
QUESTION = "How much capacity does the XR-7 battery retain after 1000 charge cycles?"
READER = token("rpreader", f"mission:{M}:reader")
WRITER = token("rpwriter", f"mission:{M}:writer")
O_ADMIN = token("rpoadmin", f"mission:{O}:admin")


def norm(text: str) -> str:
    return " ".join(text.split())


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


@pytest_asyncio.fixture(scope="module")
async def researched(temporal_env, settings):
    """A completed research of mission M (and mission O, with a research of its own)."""
    client = temporal_env.client
    await ingest_corpus(client, settings, M)
    await ingest_corpus(client, settings, O)
    out = {}
    async with research_worker(client, settings):
        for mission in (M, O):
            wid = workflow_id_for(mission, QUESTION, uuid.uuid4().hex)
            out[mission] = (wid, await client.execute_workflow(
                ResearchWorkflow.run, ResearchInput(mission=mission, query=QUESTION), id=wid,
                task_queue=queues.RESEARCH, search_attributes=for_mission(mission)))
    return out


@pytest.fixture(scope="module")
async def api(temporal_env, settings, researched):
    async with run_workers(temporal_env.client, settings, [queues.MAINTENANCE]), \
            research_worker(temporal_env.client, settings):
        async with api_client(make_app(stub_oidc(settings), temporal_env.client, verifier=StubVerifier())) as c:
            yield c


async def audited(settings, actor: str, action: str, status: int) -> dict:
    deadline = time.monotonic() + 30
    while True:
        rows = await audit_rows(settings, actor=actor, expect=0)
        found = [r for r in rows if r["action"] == action and r["status"] == status]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no audit row {action} {status} by {actor}: {rows}"
        await asyncio.sleep(0.3)


async def test_report_download_and_render(api, settings, researched):
    wid, result = researched[M]
    assert result.answer and result.answer.text and result.claims

    # PDF (the default) for a reader: an attachment that pypdf reads, holding the answer
    r = await api.get(f"/research/{wid}/report", headers=READER)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == f'attachment; filename="research-{result.session_id}.pdf"'
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.content.startswith(b"%PDF")
    text = norm(pdf_text(r.content))
    assert norm(result.answer.text) in text and norm(QUESTION) in text
    assert any(norm(c.quote) in text for cl in result.claims for c in cl.supporting)

    for fmt in ("md", "html", "docx"):
        r = await api.get(f"/research/{wid}/report", params={"format": fmt}, headers=READER)
        assert r.status_code == 200 and r.headers["content-type"] == CONTENT_TYPES[fmt], (fmt, r.headers)
        assert r.headers["content-disposition"].endswith(f'.{fmt}"')
    r = await api.get(f"/research/{wid}/report", params={"format": "md"}, headers=READER)
    assert "# Research report:" in r.text and "XR" in r.text
    r = await api.get(f"/research/{wid}/report", params={"format": "html"}, headers=READER)
    assert "default-src 'none'" in r.text and "<script" not in r.text
    assert (await api.get(f"/research/{wid}/report", params={"format": "odt"}, headers=READER)).status_code == 422

    # render and store every format: write (a reader is refused)
    r = await api.post(f"/research/{wid}/report", headers=READER)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    r = await api.post(f"/research/{wid}/report", json={}, headers=WRITER)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["mission"], out["workflow_id"], out["session_id"]) == (M, wid, result.session_id)
    assert {a["format"] for a in out["artifacts"]} == set(FORMATS)
    for a in out["artifacts"]:
        assert a["key"] == f"tenants/{M}/artifacts/research/{result.session_id}/report.{a['format']}"
        assert a["size"] > 0 and len(a["sha256"]) == 64 and a["content_type"] == CONTENT_TYPES[a["format"]]
    assert (await api.post(f"/research/{wid}/report", json={"formats": ["pdf"]}, headers=WRITER)).status_code == 422
    row = await audited(settings, "rpwriter", "report.render", 200)
    assert row["mission"] == M and row["target"] == wid and sorted(row["detail"]["formats"]) == sorted(FORMATS)
    row = await audited(settings, "rpreader", "report.render", 403)
    assert row["mission"] == M and row["target"] == wid


async def test_other_missions_and_unknown_research_are_404(api, researched):
    wid, _ = researched[M]
    other_wid, _ = researched[O]
    # another mission's caller: exactly as a research that does not exist
    for method in ("GET", "POST"):
        r = await api.request(method, f"/research/{wid}/report", headers=O_ADMIN)
        assert r.status_code == 404 and r.json()["error"] == "unknown_workflow", r.text
        missing = await api.request(method, f"/research/research-{M}-nope/report", headers=WRITER)
        assert missing.status_code == 404 and missing.json()["detail"].replace(f"research-{M}-nope", wid) == \
            r.json()["detail"]
    # its own research is fine for it, and not for M's callers
    r = await api.get(f"/research/{other_wid}/report", params={"format": "md"}, headers=O_ADMIN)
    assert r.status_code == 200 and r.text.startswith("# Research report")
    assert (await api.get(f"/research/{other_wid}/report", headers=READER)).status_code == 404
