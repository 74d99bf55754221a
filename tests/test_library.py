"""A mission's library through the API, with the real missions, ingestion and research
workers: its documents and failures, the stored text around a cited span (the span is the
citation's quote, read from the stored chunks), its research history; mission isolation
(another mission's document is not found, also for a plain Temporal client); the dev-mode
roles header that narrows the caller; the analyst page's files and their
Content-Security-Policy. stitch() is checked on its own against a reference."""
from __future__ import annotations

import random
import uuid

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from activities.research.library import stitch
from stratmaster import queues
from stratmaster.contracts.library import ExcerptInput
from tests.api_support import api_client, cartridge, dev, make_app, run_workers, wait_closed, wait_workflow
from tests.research_support import CORPUS

pytestmark = pytest.mark.timeout(600)
QUESTION = "How much capacity does the XR-7 battery retain after 1000 charge cycles?"
ROLES = "X-StratMaster-Dev-Roles"


# ---------------------------------------------------------------- stitch (no server)

def test_stitch_matches_the_document_text_it_was_cut_from():
    rng = random.Random(7)
    for _ in range(300):
        text = "".join(rng.choice("abcdef \n") for _ in range(rng.randint(1, 400)))
        chunks, pos = [], 0
        while pos < len(text):  # overlapping chunks, sometimes a gap
            end = min(len(text), pos + rng.randint(1, 60))
            chunks.append((pos, end, text[pos:end]))
            pos = max(pos + 1, end - rng.randint(0, 10)) + (rng.randint(1, 5) if rng.random() < 0.1 else 0)
        lo = rng.randint(0, len(text))
        hi = rng.randint(lo, len(text))
        anchor = rng.randint(lo, hi)
        start, end, got = stitch(chunks, lo, hi, anchor)
        assert got == text[start:end]
        assert lo <= start <= end <= hi
        covered = [c for c in chunks if c[0] <= anchor < c[1] and lo <= anchor < hi]
        if covered:  # the stretch around the anchor is the one returned
            assert start <= anchor < end


def test_stitch_stops_at_a_gap_and_keeps_the_anchor_side():
    text = "0123456789" * 10
    chunks = [(0, 30, text[0:30]), (50, 80, text[50:80])]
    assert stitch(chunks, 0, 100, 10) == (0, 30, text[0:30])
    assert stitch(chunks, 0, 100, 60) == (50, 80, text[50:80])
    assert stitch(chunks, 0, 100, 40) == (50, 80, text[50:80])  # in the gap: the next stretch
    assert stitch([], 5, 9, 6) == (5, 5, "")


# ---------------------------------------------------------------- through the API

@pytest.fixture(scope="module")
async def workers(temporal_env, settings):
    async with run_workers(temporal_env.client, settings,
                           [queues.MAINTENANCE, queues.MISSIONS, queues.INGESTION, queues.RESEARCH]):
        yield


async def _mission(api, client, mission: str) -> None:
    r = await api.post("/missions", json=cartridge(mission))
    assert r.status_code == 202, r.text
    assert await wait_closed(client, r.json()["workflow_id"]) == WorkflowExecutionStatus.COMPLETED


async def test_documents_excerpts_and_history(client, settings, workers):
    mission, other = f"lib_{uuid.uuid4().hex[:6]}", f"lib_{uuid.uuid4().hex[:6]}"
    app = make_app(dev(settings), client)
    async with api_client(app) as api:
        await _mission(api, client, mission)
        await _mission(api, client, other)
        files = [("files", (name, text.encode(), "text/markdown")) for name, text in CORPUS.items()]
        files.append(("files", ("junk.bin", bytes(range(256)) * 8 + b"\x00\x00", "application/octet-stream")))
        r = await api.post(f"/missions/{mission}/documents", files=files)
        assert r.status_code == 202, r.text
        assert (await wait_workflow(api, r.json()["workflow_id"]))["status"] == "completed"

        r = await api.get(f"/missions/{mission}/documents")
        assert r.status_code == 200, r.text
        listing = r.json()
        assert listing["total"] == len(CORPUS) and len(listing["documents"]) == len(CORPUS)
        assert {d["source"] for d in listing["documents"]} == {f"inline:{name}" for name in CORPUS}  # (an upload)
        assert all(d["status"] == "indexed" and d["chunk_count"] >= 1 for d in listing["documents"])
        assert [f["source"] for f in listing["failures"]] == ["inline:junk.bin"] and listing["failures"][0]["reason"]
        assert listing["ingesting"] == []
        r = await api.get(f"/missions/{other}/documents")
        assert r.json()["total"] == 0 and r.json()["failures"] == []  # nothing of the first mission
        r = await api.get(f"/missions/{mission}/documents", params={"limit": 1, "offset": 1})
        assert len(r.json()["documents"]) == 1 and r.json()["offset"] == 1

        r = await api.post(f"/missions/{mission}/research", params={"wait": 30}, json={"query": QUESTION})
        assert r.status_code == 200, r.text
        result = r.json()["result"]
        citations = [c for s in (result["answer"] or {}).get("sentences", []) for c in s["citations"]]
        citations += [c for cl in result["claims"] for c in cl["supporting"] + cl["contradicting"]]
        assert citations, result
        for c in citations:
            r = await api.get(f"/missions/{mission}/documents/{c['document_id']}/excerpt",
                              params={"start": c["start"], "length": c["end"] - c["start"], "context": 200})
            assert r.status_code == 200, r.text
            ex = r.json()
            text = ex["text"]
            assert text[ex["start"] - ex["text_start"]:ex["end"] - ex["text_start"]] == c["quote"]
            assert ex["text_start"] >= c["start"] - 200 and ex["text_end"] <= c["end"] + 200
            assert ex["source"].removeprefix("inline:") in CORPUS and ex["char_count"] >= ex["text_end"]
            # the other mission does not have it: not found, like a document that does not exist
            r = await api.get(f"/missions/{other}/documents/{c['document_id']}/excerpt",
                              params={"start": c["start"], "length": c["end"] - c["start"]})
            assert r.status_code == 404 and r.json()["error"] == "document_not_found", r.text
        doc = citations[0]["document_id"]
        for params in ({"start": 10, "length": -5}, {"start": 0, "length": 30_000}, {"start": -1, "length": 3},
                       {"start": 0, "length": 5, "context": 9_999}):
            r = await api.get(f"/missions/{mission}/documents/{doc}/excerpt", params=params)
            assert r.status_code == 422, (params, r.text)
        r = await api.get(f"/missions/{mission}/documents/not-a-uuid/excerpt")
        assert r.status_code == 422
        r = await api.get(f"/missions/{mission}/documents/{uuid.uuid4()}/excerpt", params={"start": 0, "length": 1})
        assert r.status_code == 404 and r.json()["error"] == "document_not_found"
        r = await api.get(f"/missions/{mission}/documents/{doc}/excerpt", params={"start": 10**9, "length": 0})
        assert r.status_code == 409 and r.json()["error"] == "span_outside_document", r.text

        r = await api.get(f"/missions/{mission}/research")
        assert r.status_code == 200, r.text
        runs = r.json()["runs"]
        assert r.json()["total"] == 1 and runs[0]["query"] == QUESTION
        assert runs[0]["workflow_id"] == result["workflow_id"] and runs[0]["status"] == "completed"
        assert runs[0]["outcome"] == result["outcome"]
        assert (await api.get(f"/missions/{other}/research")).json()["runs"] == []

        # roles, in dev mode narrowed by the header: a reader reads, a reader of another mission is refused
        reader = {ROLES: f"mission:{mission}:reader"}
        assert (await api.get(f"/missions/{mission}/documents", headers=reader)).status_code == 200
        r = await api.get(f"/missions/{mission}", headers=reader)
        assert r.json()["permissions"] == ["read"]
        r = await api.post(f"/missions/{mission}/documents", files=files[:1], headers=reader)
        assert r.status_code == 403, r.text
        outsider = {ROLES: f"mission:{other}:admin"}
        for path in (f"/missions/{mission}/documents", f"/missions/{mission}/research",
                     f"/missions/{mission}/documents/{doc}/excerpt?start=0&length=1"):
            assert (await api.get(path, headers=outsider)).status_code == 403, path  # as every mission route

    # a plain Temporal client: the worker checks the mission of the document itself
    with pytest.raises(WorkflowFailureError) as err:
        await client.execute_workflow("DocumentExcerptWorkflow", ExcerptInput(
            mission=other, document_id=doc, start=0, end=5), id=f"excerpt-{uuid.uuid4().hex}",
            task_queue=queues.RESEARCH)
    assert "has no document" in str(err.value.cause)
    with pytest.raises(WorkflowFailureError):  # not a mission id: refused as it decodes
        await client.execute_workflow("ListDocumentsWorkflow", {"mission": "../x"},
                                      id=f"documents-{uuid.uuid4().hex}", task_queue=queues.RESEARCH)


async def test_me_and_the_dev_roles_header(client, settings):
    app = make_app(dev(settings), client)
    async with api_client(app) as api:
        r = await api.get("/me")
        assert r.json() == {"username": "dev", "roles": ["platform-admin"], "platform_admin": True, "dev": True,
                            "mission": None, "permissions": None}
        r = await api.get("/me", params={"mission": "demo"}, headers={ROLES: "mission:demo:writer"})
        assert r.json()["permissions"] == ["read", "write"] and r.json()["mission"] == "demo"
        r = await api.get("/me", params={"mission": "other"}, headers={ROLES: "mission:demo:writer"})
        assert r.json()["permissions"] == []
        assert (await api.get("/me", params={"mission": "../x"})).status_code == 422
        r = await api.get("/me", headers={ROLES: "mission:demo:reader, mission:x_y:writer"})
        assert r.json()["roles"] == ["mission:demo:reader", "mission:x_y:writer"] and not r.json()["platform_admin"]
        for bad in ("root", "mission:Demo:reader", "mission:demo:owner", ",".join(["platform-admin"] * 21)):
            r = await api.get("/me", headers={ROLES: bad})
            assert r.status_code == 400, bad
    oidc = settings.model_copy(update={"auth_mode": "oidc", "keycloak_url": "http://127.0.0.1:9"})
    async with api_client(make_app(oidc, client)) as api:  # the header is nothing in OIDC mode
        r = await api.get("/me", headers={ROLES: "platform-admin"})
        assert r.status_code == 401


async def test_the_page_is_served_with_a_strict_policy(client, settings, tmp_path):
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>t</title>")
    (dist / "assets" / "index-abc.js").write_text("console.log(1)")
    (tmp_path / "secret.js").write_text("no")
    app = make_app(dev(settings).model_copy(update={"web_dist": dist}), client)
    async with api_client(app) as api:
        r = await api.get("/")
        assert r.status_code == 307 and r.headers["location"] == "/ui/"
        r = await api.get("/ui/")
        assert r.status_code == 200 and r.text.startswith("<!doctype html>")
        csp = r.headers["content-security-policy"]
        for rule in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'",
                     "connect-src 'self'", "object-src 'none'", "base-uri 'none'"):
            assert rule in csp, csp
        assert "unsafe" not in csp and r.headers["x-frame-options"] == "DENY"
        r = await api.get("/ui/assets/index-abc.js")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
        assert "immutable" in r.headers["cache-control"]
        for path in ("/ui/assets/..%2Fsecret.js", "/ui/assets/../secret.js", "/ui/assets/.hidden.js",
                     "/ui/assets/nothere.js", "/ui/assets/index-abc.exe"):
            assert (await api.get(path)).status_code == 404, path
        assert (await api.get("/ui/config.json")).json() == {"auth_mode": "dev", "authority": None,
                                                             "client_id": "stratmaster-page"}
    kc = settings.model_copy(update={"auth_mode": "oidc", "keycloak_url": "http://keycloak.internal:8080",
                                     "web_keycloak_url": "https://login.example.org", "web_dist": tmp_path / "none"})
    async with api_client(make_app(kc, client)) as api:
        r = await api.get("/ui/config.json")
        assert r.json()["authority"] == "https://login.example.org/realms/stratmaster"
        assert "connect-src 'self' https://login.example.org;" in r.headers["content-security-policy"]
        r = await api.get("/ui/")
        assert r.status_code == 503 and "build_web.sh" in r.text  # not built: says how
