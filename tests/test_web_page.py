"""The analyst page in a real browser: Debian's Chromium, headless, driven by Playwright,
against the API served by uvicorn in dev mode with the real missions, ingestion and
research workers. A writer drops documents and sees the ingestion's result (a refused file
with the API's reason), asks by keyboard only, sees the progress stream and the answer,
opens a citation at its highlighted span (the stored text) and closes it, reopens the run
from the history and downloads its report, and asks what the documents do not say; a reader
gets no upload and no ask form; a caller without access sees the API's own reason. No script
runs that the page's Content-Security-Policy would refuse, and axe-core finds no serious or
critical accessibility violation on the answer, an abstention, the documents and the history. Screenshots go to
STRATMASTER_SCREENSHOTS (default .data/screenshots) to be looked at."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus

from starters.api.routers.web import DEFAULT_DIST
from stratmaster import queues
from tests.api_support import api_client, cartridge, dev, ensure_mission, make_app, run_workers, served, wait_closed
from tests.research_support import CORPUS

pytestmark = [pytest.mark.timeout(900), pytest.mark.servers]
CHROMIUM = Path("/usr/bin/chromium")
AXE = DEFAULT_DIST.parent / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = Path(os.environ.get("STRATMASTER_SCREENSHOTS", ".data/screenshots"))
QUESTION = "How much capacity does the XR-7 battery retain after 1000 charge cycles?"
# the flags a root, offline Chromium needs here (no sandbox as root; no background calls home)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
# which of the page's parts ever appeared (a fast research may show its progress only briefly);
# an init script runs through the DevTools protocol, not as page script, so the CSP does not apply
WATCH = """
window.__seen = new Set();
new MutationObserver(() => {
  for (const el of document.querySelectorAll('[data-testid]')) window.__seen.add(el.dataset.testid);
}).observe(document, {subtree: true, childList: true});
"""

if os.environ.get("CI") != "true":
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium (bash scripts/install_chromium.sh)", allow_module_level=True)
    if not (DEFAULT_DIST / "index.html").exists():
        pytest.skip("needs the built page (bash scripts/build_web.sh)", allow_module_level=True)


@pytest.fixture(scope="module")
async def workers(temporal_env, settings):
    async with run_workers(temporal_env.client, settings,
                           [queues.MAINTENANCE, queues.MISSIONS, queues.INGESTION, queues.RESEARCH]):
        yield


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield b
        await b.close()


async def axe_violations(page) -> list[dict]:
    """axe-core's serious and critical violations of the page as it is now."""
    await page.evaluate(AXE.read_text())
    found = await page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
    }""")
    return [v for v in found if v["impact"] in ("serious", "critical")]


async def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_an_analyst_asks_reads_and_checks_a_citation(client, settings, workers, browser, tmp_path):
    mission, other = f"web_{uuid.uuid4().hex[:6]}", f"web_{uuid.uuid4().hex[:6]}"
    app = make_app(dev(settings), client)
    app.state.events_poll_seconds = 0.1
    async with served(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            for m in (mission, other):
                r = await http.post("/missions", json=cartridge(m))
                assert await wait_closed(client, r.json()["workflow_id"]) == WorkflowExecutionStatus.COMPLETED

        context = await browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 900})
        await context.add_init_script(WATCH)
        page = await context.new_page()
        refused: list[str] = []  # the CSP's refusals, as the browser reports them
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        streams: list[str] = []
        page.on("request", lambda r: streams.append(r.url) if r.url.endswith("/events") else None)

        # the missions, then the documents: drop the corpus and a file the API refuses to index
        await page.goto(f"{url}/ui/")
        await page.get_by_role("link", name=mission).click()
        await page.get_by_role("link", name="Documents").click()
        assert await page.get_by_test_id("mission-meta").inner_text() == f"API test {mission} · cartridge 1.0.0"
        docs = [tmp_path / name for name in CORPUS]
        for p, text in zip(docs, CORPUS.values()):
            p.write_text(text)
        junk = tmp_path / "junk.bin"
        junk.write_bytes(bytes(range(256)) * 8 + b"\x00\x00")
        await page.set_input_files("#files", [*map(str, docs), str(junk)])
        upload = page.get_by_test_id("upload")
        await upload.filter(has_text="indexed").wait_for(timeout=180_000)
        assert f"{len(CORPUS)} indexed" in await upload.inner_text()
        assert "junk.bin (unsupported type" in await upload.inner_text()  # with the API's reason
        # and by drag and drop: a file dropped on the zone, as the browser hands it over
        await page.get_by_test_id("dropzone").evaluate("""zone => {
            const dt = new DataTransfer();
            dt.items.add(new File(['Dropped notes: the XR-7 ships in 2027.'], 'dropped-notes.txt', {type: 'text/plain'}));
            zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""")
        await upload.filter(has_text="dropped-notes.txt").filter(has_text="1 indexed").wait_for(timeout=120_000)
        await page.get_by_test_id("documents").locator("tr", has_text="dropped-notes.txt").wait_for()
        await page.get_by_test_id("documents").wait_for()
        assert await page.get_by_test_id("documents").locator("tbody tr").count() == len(CORPUS) + 1
        assert "junk.bin" in await page.get_by_test_id("failures").inner_text()
        assert await axe_violations(page) == []
        await shot(page, "documents")

        # ask, keyboard only: the question box has the focus on the Ask view; Ctrl+Enter asks
        await page.get_by_role("link", name="Ask").click()
        await page.wait_for_selector("#question:focus")
        await page.keyboard.type(QUESTION)
        await page.keyboard.press("Control+Enter")
        await page.get_by_test_id("result").wait_for(timeout=120_000)
        seen = set(await page.evaluate("[...window.__seen]"))
        assert "progress" in seen, seen  # the streamed progress was shown before the result
        assert any("/research/research-" in s for s in streams), streams  # from the SSE endpoint
        assert await page.get_by_test_id("question").inner_text() == QUESTION
        outcome = await page.get_by_test_id("outcome").inner_text()
        assert outcome.split(" ·")[0] in ("Answered", "Contested"), outcome
        answer = await page.get_by_test_id("answer").inner_text()
        assert "1000 charge cycles" in answer, answer
        assert await page.locator("details.below-bar[open]").count() == 0  # collapsed
        await shot(page, "answer")

        # to the first citation by Tab alone, open it with Enter: the stored text, the span marked
        for _ in range(60):
            await page.keyboard.press("Tab")
            if await page.evaluate("document.activeElement.classList.contains('cite')"):
                break
        else:
            raise AssertionError("no citation reachable by keyboard")
        label = await page.evaluate("document.activeElement.getAttribute('aria-label')")
        await page.keyboard.press("Enter")
        mark = page.get_by_test_id("cited-span")
        await mark.wait_for()
        span = await mark.inner_text()
        assert "the quote is the stored text" in await page.get_by_test_id("evidence").inner_text()
        sentences = answer.split("[")[0]
        assert span.strip() and span.strip()[:40] in answer or span.strip()[:40] in sentences, (span, answer)
        assert await page.evaluate("document.activeElement.id") == "evidence-title"  # focus moved to it
        excerpt = await page.locator(".excerpt").inner_text()
        assert len(excerpt) > len(span)  # in its context, not the quote alone
        assert await axe_violations(page) == []
        await shot(page, "citation")
        await page.keyboard.press("Escape")
        await page.get_by_test_id("evidence").wait_for(state="detached")
        assert label.startswith("citation 1")

        # the report, as downloaded
        async with page.expect_download() as dl:
            await page.get_by_role("button", name="Download MD").click()
        path = await (await dl.value).path()
        assert "1000 charge cycles" in Path(path).read_text()

        # the history reopens the run, its result streamed at once
        await page.get_by_role("link", name="History").click()
        await page.get_by_test_id("history").wait_for()
        assert await axe_violations(page) == []
        await shot(page, "history")
        await page.get_by_role("link", name=QUESTION).click()
        await page.get_by_test_id("answer").wait_for()
        assert await page.get_by_test_id("answer").inner_text() == answer

        # a question the documents cannot answer: said plainly, with what came closest
        await page.get_by_role("link", name="Ask").click()
        await page.wait_for_selector("#question:focus")
        await page.keyboard.type("What is the capital of Peru?")
        await page.keyboard.press("Control+Enter")
        await page.get_by_test_id("result").wait_for(timeout=120_000)
        assert await page.get_by_test_id("outcome").inner_text() == "The documents do not say"
        assert await page.get_by_role("heading", name="The documents do not say").count() == 1
        assert await page.get_by_test_id("answer").count() == 0
        assert await axe_violations(page) == []
        await shot(page, "abstention")

        # a reader: no upload, no ask form, the answer still readable
        await page.get_by_test_id("view-as").select_option(f"mission:{mission}:reader")
        await page.get_by_test_id("who").filter(has_text="read").wait_for()
        await page.get_by_role("link", name="Documents").click()
        await page.get_by_test_id("no-upload").wait_for()
        assert await page.get_by_test_id("dropzone").count() == 0
        await page.get_by_role("link", name="Ask").click()
        await page.get_by_test_id("read-only").wait_for()
        assert await page.locator("#question").count() == 0
        await shot(page, "reader")

        # someone with a role in another mission only: the API's refusal, in its own words
        await page.get_by_test_id("view-as").select_option("")
        await page.get_by_role("link", name="History").click()
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            r = await http.get(f"/missions/{mission}", headers={"X-StratMaster-Dev-Roles": f"mission:{other}:admin"})
        assert r.status_code == 403
        await page.evaluate(f"sessionStorage.setItem('stratmaster.devRoles', 'mission:{other}:admin')")
        await page.reload()
        error = page.get_by_test_id("page-error")
        await error.wait_for()
        assert await error.inner_text() == r.json()["detail"]

        assert refused == [] and errors == [], (refused, errors)
        await context.close()


async def test_the_policy_refuses_an_injected_script(client, settings, browser):
    """The CSP is in force: a script element added to the page (as an injection would) does not run."""
    app = make_app(dev(settings), client)
    async with served(app) as url:
        page = await browser.new_page()
        await page.goto(f"{url}/ui/")
        await page.wait_for_selector(".top")
        ran = await page.evaluate("""() => new Promise(done => {
            const s = document.createElement('script');
            s.textContent = 'window.__injected = true';
            document.body.append(s);
            setTimeout(() => done(window.__injected === true), 200);
        })""")
        assert ran is False
        styled = await page.evaluate("""() => {
            const d = document.createElement('div');
            d.setAttribute('style', 'width: 123px');
            document.body.append(d);
            return getComputedStyle(d).width;
        }""")
        assert styled != "123px"  # no inline style attributes either


KEYCLOAK = os.environ.get("STRATMASTER_TEST_KEYCLOAK_URL")
PAGE_TEST_PORT = 18080


@pytest.mark.keycloak
@pytest.mark.skipif(not KEYCLOAK and os.environ.get("CI") != "true", reason="needs Keycloak (scripts/services/keycloak.sh)")
async def test_sign_in_with_keycloak_authorization_code_and_pkce(client, settings, workers, browser):
    """OIDC mode, the real Keycloak: the page sends the user to Keycloak's login form (code flow,
    PKCE S256, client stratmaster-page), comes back with a code, and calls the API with the
    user's access token: the reader of mission demo sees it, read-only."""
    assert KEYCLOAK, "STRATMASTER_TEST_KEYCLOAK_URL is not set under CI: scripts/services/keycloak.sh did not run"
    async with api_client(make_app(dev(settings), client)) as api:
        await ensure_mission(api, client, "demo")
    oidc = settings.model_copy(update={"auth_mode": "oidc", "keycloak_url": KEYCLOAK})
    # the port the realm's stratmaster-page client lists as a web origin for tests (CORS on the token call)
    async with served(make_app(oidc, client), port=PAGE_TEST_PORT) as url:
        context = await browser.new_context()
        page = await context.new_page()
        refused: list[str] = []
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        authorize: list[str] = []
        page.on("request", lambda r: authorize.append(r.url) if "/protocol/openid-connect/auth" in r.url else None)
        await page.goto(f"{url}/ui/")
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_selector("#kc-form-login")
        assert "code_challenge_method=S256" in authorize[0] and "client_id=stratmaster-page" in authorize[0]
        await page.fill("#username", "demo-reader")
        await page.fill("#password", "reader123")
        await page.click("#kc-login")
        try:
            await page.get_by_test_id("missions").wait_for(timeout=30_000)
        except Exception:
            await shot(page, "signin-failed")
            raise
        assert "code=" not in page.url  # the code is consumed and dropped from the address
        assert await page.get_by_test_id("who").inner_text() == "demo-reader"
        await page.get_by_role("link", name="demo", exact=False).first.click()
        await page.get_by_test_id("read-only").wait_for()
        assert "read" in await page.get_by_test_id("who").inner_text()
        assert refused == [], refused
        await context.close()
