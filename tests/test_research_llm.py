"""Research with an LLM configured (the real local llama.cpp server from
scripts/services/llm.sh, through LiteLLM): whatever the model writes, every
citation that survives is verified verbatim against a retrieved chunk, and the
workflow falls back to the deterministic planner / extractive synthesiser when
the model's answer is unusable."""
from __future__ import annotations

import uuid

import pytest
import pytest_asyncio

from activities import llm
from stratmaster import queues
from stratmaster.contracts.research import ResearchInput, workflow_id_for
from tests.llm_support import llm_settings  # noqa: F401  (fixture)
from tests.research_support import document_texts, ingest_corpus, research_worker
from workflows.research import ResearchWorkflow

pytestmark = pytest.mark.llm
MISSION = f"rl_{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(scope="module")
async def corpus(temporal_env, settings):
    return await ingest_corpus(temporal_env.client, settings, MISSION)


async def test_complete_goes_through_litellm(llm_settings):  # noqa: F811
    text = await llm.complete(llm_settings, [{"role": "user", "content": "Say hello."}], MISSION, max_tokens=16)
    assert isinstance(text, str) and text.strip()


async def test_llm_research_only_keeps_verified_citations(temporal_env, llm_settings, corpus):  # noqa: F811
    q = "How much capacity does the XR-7 battery retain after 1000 charge cycles?"
    async with research_worker(temporal_env.client, llm_settings):
        result = await temporal_env.client.execute_workflow(
            ResearchWorkflow.run, ResearchInput(mission=MISSION, query=q, max_subquestions=3),
            id=workflow_id_for(MISSION, q, uuid.uuid4().hex), task_queue=queues.RESEARCH)
    print(f"planner={result.planner} synthesiser={result.synthesiser} dropped={result.dropped_claims} "
          f"claims={[c.text for c in result.claims]} timings={result.timings_ms}")
    assert result.planner in ("llm", "deterministic-fallback")
    assert result.subquestions[0] == q
    assert result.synthesiser in ("llm", "extractive-fallback")
    assert result.claims  # the fallback guarantees an answer from the evidence
    texts = await document_texts(llm_settings, MISSION)
    hit_ids = {h.chunk_id for h in result.hits}
    for claim in result.claims:
        assert claim.supporting and 0 <= claim.confidence <= 1
        for c in claim.supporting + claim.contradicting:
            assert c.chunk_id in hit_ids and texts[c.document_id][c.start:c.end] == c.quote
