"""The mission's cartridge governs every research run, with real workers: the
mission worker activates each cartridge version through ActivateMissionWorkflow,
the research worker reads it through the mission config reader (hot reload, no
restart). Web search goes to `searxng_stub` (a MOCK: SearxNG cannot run here);
LLM calls go to the real llama.cpp server through `llm_recorder`, a recording
pass-through proxy that counts what leaves the process."""
from __future__ import annotations

import asyncio
import json
import os
import threading
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import pytest_asyncio

from temporalio.testing import ActivityEnvironment

from stratmaster import queues
from stratmaster.contracts.research import ResearchInput
from tests.research_support import activate_mission, ingest_corpus, research_worker
from tests.test_research_web_graph import searxng_stub  # noqa: F401  (fixture)
from workflows.research import ResearchWorkflow

MISSION = f"gov_{uuid.uuid4().hex[:8]}"
QUESTION = "How much capacity does the XR-7 battery retain after 1000 charge cycles?"
LLM_BASE = os.environ.get("STRATMASTER_TEST_LLM_API_BASE")
_versions = iter(f"1.{i}.0" for i in range(100))


async def activate_version(client, settings, **sections) -> None:
    """Activate the next version of MISSION's cartridge with these section overrides."""
    base = {"engines": {"bm25": True, "dense": True, "graph": False, "web": False, "llm": False},
            "quality": {"min_confidence": 0.0, "min_sources": 1, "max_contradiction_ratio": 1.0,
                        "min_retrieval_score": 0.0}}
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v}
    await activate_mission(client, settings, MISSION, next(_versions), **base)


@pytest_asyncio.fixture(scope="module")
async def mission(temporal_env, settings):
    await activate_version(temporal_env.client, settings)
    await ingest_corpus(temporal_env.client, settings, MISSION)
    return MISSION


async def research(client, **kw):
    return await client.execute_workflow(
        ResearchWorkflow.run, ResearchInput(mission=MISSION, **{"query": QUESTION, "max_subquestions": 2, **kw}),
        id=f"research-{MISSION}-{uuid.uuid4().hex[:8]}", task_queue=queues.RESEARCH)


@pytest.fixture
def llm_recorder():
    """A pass-through proxy in front of the real llama.cpp server recording every request body."""
    if not LLM_BASE:
        pytest.skip("no local LLM server (scripts/services/llm.sh sets STRATMASTER_TEST_LLM_API_BASE)")
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def _forward(self, body: bytes | None):
            req = urllib.request.Request(LLM_BASE.rsplit("/v1", 1)[0] + self.path, data=body, method=self.command,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=120) as resp:
                data = resp.read()
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(json.loads(body or b"{}"))
            self._forward(body)

        def do_GET(self):  # noqa: N802
            seen.append({"GET": self.path})
            self._forward(None)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    server.shutdown()


def llm_settings(settings, url):
    return settings.model_copy(update={"llm_model": "openai/smollm2", "llm_api_base": url})


async def test_dense_off_no_hit_has_a_dense_score(temporal_env, settings, mission):
    client = temporal_env.client
    await activate_version(client, settings, engines={"dense": False})
    async with research_worker(client, settings):
        result = await research(client, mode="retrieve")
    assert result.hits and result.engines == ["bm25"]
    assert all("dense" not in h.scores for h in result.hits), [h.scores for h in result.hits]


async def test_web_off_sends_nothing_to_searxng(temporal_env, settings, mission, searxng_stub):  # noqa: F811
    url, seen = searxng_stub
    client = temporal_env.client
    await activate_version(client, settings, engines={"web": False})
    before = len(seen)
    async with research_worker(client, settings.model_copy(update={"searxng_url": url})):
        result = await research(client, use_web=True)
    assert len(seen) == before, "the SearxNG stub received a request from a mission with engines.web off"
    assert "web: disabled by mission (engines.web: false)" in result.notes
    assert all(h.url is None for h in result.hits) and "web" not in result.engines
    # the same mission allowed the web: the stub is asked (the switch is what held it back)
    await activate_version(client, settings, engines={"web": True})
    async with research_worker(client, settings.model_copy(update={"searxng_url": url})):
        result = await research(client, use_web=True)
    assert len(seen) > before and "web" in result.engines


async def test_llm_off_sends_nothing_to_the_llm(temporal_env, settings, mission, llm_recorder):
    url, seen = llm_recorder
    client = temporal_env.client
    await activate_version(client, settings, engines={"llm": False}, routing={"query_expansion": "openai/smollm2"})
    async with research_worker(client, llm_settings(settings, url)):
        result = await research(client)
    assert seen == [], seen
    assert result.planner == "deterministic" and result.synthesiser == "extractive"
    assert any(n.startswith("llm: disabled by mission") for n in result.notes)


async def test_routing_sends_each_task_to_its_model(temporal_env, settings, mission, llm_recorder):
    url, seen = llm_recorder
    client = temporal_env.client
    await activate_version(client, settings, engines={"llm": True}, routing={
        "planning": "openai/plan-model", "synthesis": "openai/synth-model",
        "contradictions": "openai/contra-model", "query_expansion": "openai/expand-model"})
    async with research_worker(client, llm_settings(settings, url)):
        await research(client)
    # (the expansion prompt shares the planner's system message: its own words are checked first)
    kinds = {"other words or short phrases": "expand-model", "search queries": "plan-model",
             "numbered evidence": "synth-model", "Can both statements be true": "contra-model"}
    used: dict[str, set[str]] = {}
    for body in seen:
        text = json.dumps(body.get("messages", []))
        kind = next((k for k in kinds if k in text), None)
        assert kind is not None, text[:300]
        used.setdefault(kind, set()).add(body["model"])
    for kind, models in used.items():
        assert models == {kinds[kind]}, (kind, models)
    assert {"search queries", "other words or short phrases", "numbered evidence"} <= set(used), used
    # unset routing: the platform default
    seen.clear()
    await activate_version(client, settings, engines={"llm": True}, routing={
        "planning": None, "synthesis": None, "contradictions": None, "query_expansion": None})
    async with research_worker(client, llm_settings(settings, url)):
        await research(client)
    assert seen and {b["model"] for b in seen} == {"smollm2"}


async def test_stricter_gate_changes_the_next_run_without_restart(temporal_env, settings, mission):
    client = temporal_env.client
    await activate_version(client, settings, quality={"min_confidence": 0.0})
    async with research_worker(client, settings):
        loose = await research(client)
        assert loose.outcome in ("answered", "contested") and loose.claims and loose.answer.text
        await activate_version(client, settings, quality={"min_confidence": 0.99, "min_sources": 2})
        await asyncio.sleep(settings.mission_config_ttl_seconds + 0.5)  # the reader re-checks within its TTL
        strict = await research(client)
    assert strict.gates.min_confidence == 0.99 and strict.outcome == "insufficient_evidence"
    assert strict.claims == [] and strict.answer.text == "" and strict.closest_evidence
    assert {c.text for c in strict.below_bar} >= {c.text for c in loose.claims}
    assert all("min_confidence 0.99" in c.below_bar_reason for c in strict.below_bar)
    assert any("< min_sources 2" in c.below_bar_reason for c in strict.below_bar)


async def test_contradiction_ratio_marks_the_result_contested(temporal_env, settings, mission):
    """The corpus disagrees about XR-7 capacity (90% vs 60%): with no tolerance for
    contradicted findings the run is contested, with full tolerance answered."""
    client = temporal_env.client
    async with research_worker(client, settings):
        await activate_version(client, settings, quality={"max_contradiction_ratio": 0.0})
        await asyncio.sleep(settings.mission_config_ttl_seconds + 0.5)
        strict = await research(client)
        await activate_version(client, settings, quality={"max_contradiction_ratio": 1.0})
        await asyncio.sleep(settings.mission_config_ttl_seconds + 0.5)
        loose = await research(client)
    assert any(c.contradicting for c in strict.claims)
    assert strict.outcome == "contested" and loose.outcome == "answered"


async def test_the_deterministic_plans_evidence_decides_whether_to_answer(temporal_env, settings, mission):
    """With an LLM plan, the hits of the deterministic plan's sub-questions (Plan.grounding)
    decide whether to answer: evidence only the model's extra searches found never turns
    an abstention into an answer."""
    from stratmaster.contracts.research import RetrieveInput, SynthesiseInput

    await activate_version(temporal_env.client, settings, quality={"min_confidence": 0.3})
    async with research_worker(temporal_env.client, settings) as spec:
        acts = spec.extra["research"]
        env = ActivityEnvironment()
        hits = (await env.run(acts.retrieve, RetrieveInput(mission=MISSION, query=QUESTION, top_k=8))).hits
        plain = await env.run(acts.synthesise, SynthesiseInput(mission=MISSION, query=QUESTION, hits=hits))
        same = await env.run(acts.synthesise, SynthesiseInput(mission=MISSION, query=QUESTION, hits=hits,
                                                              grounding_subquestions=[QUESTION], grounding_hits=hits))
        # a model's extra sub-question (here: the last finding's own words) adds a sub-answer but
        # does not reorder the question's findings
        drift = plain.claims[-1].text
        drifted = await env.run(acts.synthesise, SynthesiseInput(mission=MISSION, query=QUESTION, hits=hits,
                                                                 subquestions=[QUESTION, drift],
                                                                 grounding_subquestions=[QUESTION], grounding_hits=hits))
        off_topic = [h for h in hits if "XR-7" not in h.text]
        vetoed = await env.run(acts.synthesise, SynthesiseInput(mission=MISSION, query=QUESTION, hits=hits,
                                                                grounding_subquestions=[QUESTION],
                                                                grounding_hits=off_topic))
        # persisting re-checks every citation and the bar: a claim held below it stays there
        from datetime import datetime, timezone

        from stratmaster.contracts.research import PersistInput, Plan, SessionInput

        wid = f"research-{MISSION}-veto-{uuid.uuid4().hex[:6]}"
        session = await env.run(acts.start_session, SessionInput(mission=MISSION, workflow_id=wid, query=QUESTION))
        now = datetime.now(timezone.utc)
        stored = await env.run(acts.persist, PersistInput(
            mission=MISSION, session_id=session.session_id, workflow_id=wid, query=QUESTION,
            plan=Plan(subquestions=[QUESTION], planner="llm", grounding=1), hits=hits, synthesis=vetoed,
            started_at=now, finished_at=now))
    assert stored.synthesis.outcome == "insufficient_evidence" and not stored.synthesis.claims
    assert stored.synthesis.below_bar and "deterministic plan's evidence" in stored.synthesis.below_bar[0].below_bar_reason
    assert plain.outcome != "insufficient_evidence" and plain.claims
    assert [c.text for c in same.claims] == [c.text for c in plain.claims]
    assert len(plain.claims) > 1 and drifted.claims[0].text == plain.claims[0].text
    assert drifted.answer and drifted.answer.text == plain.answer.text
    assert [a.question for a in drifted.subanswers] == [drift]
    assert vetoed.outcome == "insufficient_evidence" and not vetoed.claims
    assert "deterministic plan's evidence" in vetoed.below_bar[0].below_bar_reason
