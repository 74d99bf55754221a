"""Research with an LLM configured (the real local llama.cpp server from
scripts/services/llm.sh, SmolLM2-135M, through LiteLLM).

The planner and claim writer send pydantic-derived JSON schemas as
`response_format`, so the server decodes under a grammar; whatever the model
writes, every citation that survives is verified verbatim against a retrieved
chunk, and the workflow falls back to the extractive synthesiser when no claim
survives. The unit tests at the bottom (canned answers) run without the server.
"""
from __future__ import annotations

import json
import uuid

import pytest
import pytest_asyncio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from activities.llm import client as llm
from activities.research.llm import synthesis as llm_synthesis
from stratmaster import queues
from stratmaster.contracts.knowledge import SearchHit
from stratmaster.contracts.research import ResearchInput, workflow_id_for
from stratmaster.settings import Settings
from tests.llm_support import llm_settings  # noqa: F401  (fixture)
from tests.research_support import CORPUS, activate_mission, document_texts, ingest_corpus, research_worker
from workflows.research import ResearchWorkflow
from tests.support.postgres import pg_connect

MISSION = f"rl_{uuid.uuid4().hex[:8]}"
QUERY = "How much capacity does the XR-7 battery retain after 1000 charge cycles?"


@pytest_asyncio.fixture(scope="module")
async def corpus(temporal_env, settings):
    await activate_mission(temporal_env.client, settings, MISSION, engines={"llm": True, "graph": False},
                           quality={"min_confidence": 0.0})
    return await ingest_corpus(temporal_env.client, settings, MISSION)


@pytest_asyncio.fixture(scope="module")
async def llm_run(temporal_env, llm_settings, corpus):  # noqa: F811
    """One research run with the local model: (workflow id, result)."""
    wid = workflow_id_for(MISSION, QUERY, uuid.uuid4().hex)
    async with research_worker(temporal_env.client, llm_settings):
        result = await temporal_env.client.execute_workflow(
            ResearchWorkflow.run, ResearchInput(mission=MISSION, query=QUERY, max_subquestions=3),
            id=wid, task_queue=queues.RESEARCH)
    print(f"\nplanner={result.planner} subquestions={result.subquestions} discarded={result.discarded_subquestions}\nsynthesiser={result.synthesiser} "
          f"dropped={result.dropped_claims} claims={[c.text for c in result.claims]}\ntimings={result.timings_ms}")
    return wid, result


@pytest.mark.llm
async def test_complete_goes_through_litellm(llm_settings):  # noqa: F811
    text = await llm.complete(llm_settings, [{"role": "user", "content": "Say hello."}], MISSION,
                              max_tokens=16, timeout=30)
    assert isinstance(text, str) and text.strip()


@pytest.mark.llm
async def test_schema_reaches_the_server_and_constrains_the_answer(llm_settings):  # noqa: F811
    """response_format goes through LiteLLM to llama.cpp: the tiny model's answer is
    valid JSON of the schema (unconstrained, it rarely is)."""
    assert llm.json_schema_enabled(llm_settings)
    answer = await llm.complete(llm_settings, llm_synthesis.plan_messages(QUERY, 2), MISSION, max_tokens=160,
                                timeout=60, schema=llm_synthesis.plan_schema(2), purpose="test")
    print(f"\nplan answer: {answer}")
    plan = llm_synthesis.PlanAnswer.model_validate_json(answer)
    assert 1 <= len(plan.subquestions) <= 2 and all(s.strip() for s in plan.subquestions)


@pytest.mark.llm
async def test_llm_research_plans_with_the_model_and_only_keeps_verified_citations(llm_settings, llm_run):  # noqa: F811
    wid, result = llm_run
    assert result.status == "completed"
    # the model planned; sub-questions not about the question were discarded (all of them: deterministic plan)
    assert result.planner in ("llm", "deterministic-fallback")
    assert result.subquestions[0] == QUERY and len(result.subquestions) >= 2
    if result.planner == "deterministic-fallback":
        assert result.discarded_subquestions
    assert all(isinstance(s, str) and s.strip() for s in result.subquestions)
    assert result.synthesiser in ("llm", "extractive-fallback")
    assert result.claims  # the fallback guarantees an answer from the evidence
    texts = await document_texts(llm_settings, MISSION)
    hit_ids = {h.chunk_id for h in result.hits}
    for claim in result.claims:
        assert claim.supporting and 0 <= claim.confidence <= 1
        for c in claim.supporting + claim.contradicting:
            assert c.chunk_id in hit_ids and texts[c.document_id][c.start:c.end] == c.quote


@pytest.mark.llm
async def test_llm_usage_is_recorded_for_the_mission(llm_settings, llm_run):  # noqa: F811
    wid, _ = llm_run
    async with pg_connect(llm_settings) as conn:
        rows = await conn.fetch("SELECT purpose, model, prompt_tokens, completion_tokens FROM llm_usage "
                                "WHERE mission = $1 AND workflow_id = $2", MISSION, wid)
    purposes = {r["purpose"] for r in rows}
    assert {"plan", "synthesise"} <= purposes, rows
    assert all(r["model"] == llm_settings.llm_model and r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 for r in rows)


@pytest.mark.llm
async def test_llm_run_replays_deterministically(temporal_env, llm_run):
    wid, _ = llm_run
    history = await temporal_env.client.get_workflow_handle(wid).fetch_history()
    await Replayer(workflows=[ResearchWorkflow], data_converter=pydantic_data_converter).replay_workflow(history)


# ---------------------------------------------------------------- canned answers (no server)

def _hits() -> list[SearchHit]:
    names = ["xr7-lab-report.md", "xr7-field-study.md"]
    return [SearchHit(chunk_id=f"c{i}", document_id=f"d{i}", text=CORPUS[n], start=0, end=len(CORPUS[n]),
                      score=0.5, title=n, source="corpus") for i, n in enumerate(names)]


def _answer(*claims: dict) -> str:
    return json.dumps({"claims": list(claims)})


LAB = "The XR-7 battery retains 90 percent of its capacity after 1000 charge cycles."


def test_verified_quote_becomes_a_citation_at_its_exact_span():
    hits = _hits()
    claims, dropped = llm_synthesis.verify_claims(
        "demo", QUERY, _answer({"text": "The XR-7 keeps 90 percent of its capacity after 1000 cycles.",
                                "evidence": [1], "quote": "The XR-7 battery retains 90 percent of its\ncapacity after 1000 charge cycles."}),
        hits, None)
    assert dropped == 0 and len(claims) == 1
    (c,) = claims[0].supporting
    assert c.chunk_id == "c0" and hits[0].text[c.start:c.end] == c.quote == LAB  # whitespace-only difference accepted


def test_quote_not_in_the_evidence_is_rejected():
    hits = _hits()
    fabricated = "The XR-7 battery retains 99 percent of its capacity after 1000 charge cycles."
    result = llm_synthesis.verify_claims("demo", QUERY, _answer(
        {"text": "The XR-7 battery retains 99 percent of its capacity.", "evidence": [1], "quote": fabricated},
        {"text": "The XR-7 battery retains 90 percent of its capacity.", "evidence": [2], "quote": LAB},  # wrong source
        {"text": "The XR-7 battery retains 90 percent of its capacity.", "evidence": [7], "quote": LAB},  # not retrieved
        {"text": "The XR-7 battery retains 90 percent of its capacity.", "evidence": [1], "quote": LAB.upper()},  # case
        {"text": "The XR-7 battery retains 90 percent of its capacity.", "evidence": [1], "quote": "XR-7 battery"},  # too short
    ), hits, None)
    assert result == ([], 5)


def test_claim_saying_more_than_its_quote_is_dropped_or_flagged():
    hits = _hits()
    claims, dropped = llm_synthesis.verify_claims("demo", QUERY, _answer(
        {"text": "The XR-7 battery retains 75 percent of its capacity.", "evidence": [1], "quote": LAB},  # invented figure
        {"text": "Solar panels are cheap and efficient in every climate.", "evidence": [1], "quote": LAB},  # unrelated
        {"text": "The XR-7 battery retains 90 percent capacity after 1000 cycles in cold Nordic winters.",
         "evidence": [1], "quote": LAB},  # partly supported
    ), hits, None)
    assert dropped == 2 and len(claims) == 1
    assert claims[0].flagged and "partly supported" in claims[0].flag_reason


def test_unusable_answer_is_none_so_the_caller_falls_back():
    assert llm_synthesis.verify_claims("demo", QUERY, "I cannot answer that.", _hits(), None) is None
    assert llm_synthesis.parse_plan("not json", QUERY, 3) is None
    assert llm_synthesis.parse_plan('{"subquestions": ["1000", "XR-7 cycle life tests"]}', QUERY, 3) == [
        QUERY, "XR-7 cycle life tests"]


def test_claims_schema_only_allows_quotes_of_the_cited_hit():
    hits = _hits()
    quotes = llm_synthesis.evidence_sentences(hits)
    assert LAB in quotes[0] and LAB not in quotes[1]
    schema = llm_synthesis.claims_schema(hits, 3, quotes)
    variants = schema["$defs"]["ClaimAnswer"]["anyOf"]
    assert [v["properties"]["evidence"]["items"]["const"] for v in variants] == [1, 2]
    assert [v["properties"]["quote"]["enum"] for v in variants] == quotes
    assert schema["properties"]["claims"]["maxItems"] == 3


def test_response_format_only_for_servers_that_take_it():
    schema = llm_synthesis.plan_schema(2)
    local = Settings(llm_model="openai/smollm2", llm_api_base="http://127.0.0.1:1/v1")
    assert llm.response_format(local, schema) == {"type": "json_object", "schema": schema}
    assert llm.response_format(local, None) is None
    assert llm.response_format(Settings(llm_model="anthropic/claude-3-haiku"), schema) is None
    assert llm.response_format(local.model_copy(update={"llm_json_schema": False}), schema) is None
    assert llm.response_format(Settings(llm_model="gpt-4o-mini", llm_json_schema=True), schema) is not None


@pytest.mark.llm
async def test_document_text_cannot_break_the_servers_grammar(llm_settings):  # noqa: F811
    """A sentence with backslashes once made llama-cpp-python's schema-to-grammar step fail and
    its server process die (one tenant's document taking the model down for all): such
    sentences are not offered as quotes, and the server still answers afterwards."""
    text = ("For example b'\\x80abc'.decode(\"utf-8\", \"ignore\") gives 'abc' without an error. "
            "Encodings are specified as strings containing the encoding's name.")
    hits = [SearchHit(chunk_id="c1", document_id="d1", text=text, start=0, end=len(text), score=1.0, source="hybrid")]
    quotes = llm_synthesis.evidence_sentences(hits)
    assert quotes == [["Encodings are specified as strings containing the encoding's name."]]
    answer = await llm.complete(llm_settings, llm_synthesis.claims_messages("What are encodings?", hits, 2, quotes),
                                MISSION, max_tokens=120, timeout=60, schema=llm_synthesis.claims_schema(hits, 2, quotes),
                                purpose="test")
    assert answer.strip()
    assert (await llm.complete(llm_settings, [{"role": "user", "content": "Say hello."}], MISSION,
                               max_tokens=8, timeout=30)).strip()
