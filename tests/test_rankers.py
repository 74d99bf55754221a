"""The answer ranker is a versioned model file selected by name, never weights in code."""
from __future__ import annotations

import json

import pytest

from activities.research import confidence
from activities.research.confidence import RANKERS, load_ranker, use_ranker
from stratmaster.settings import Settings


def test_every_shipped_ranker_loads_with_its_provenance():
    names = sorted(p.stem for p in RANKERS.glob("*.json"))
    assert "answer-ranker-1" in names
    for name in names:
        r = load_ranker(name)
        assert r.name == name and r.provenance and len(r.calibration) == 3
        assert set(r.weights) == set(json.loads((RANKERS / f"{name}.json").read_text())["features"])


@pytest.mark.parametrize("name", ["../settings", "Answer", "missing-ranker", ""])
def test_a_name_that_is_no_shipped_ranker_is_refused(name):
    with pytest.raises(ValueError):
        load_ranker(name)


def test_settings_refuse_a_path_as_ranker():
    with pytest.raises(ValueError):
        Settings(_env_file=None, answer_ranker="../../etc/passwd")


def test_use_ranker_switches_the_scores(tmp_path, monkeypatch):
    factors = {"sim": 0.8, "window": 0.8, "cover": 0.5, "passage": 0.5, "key": 1.0, "kind": 1.0, "beside": 1.0,
               "retrieval": 0.6, "documents": 1 / 3, "margin": 0.0}
    before = confidence.probability(factors)
    other = json.loads((RANKERS / "answer-ranker-1.json").read_text()) | {"name": "test-ranker", "bias": -30.0}
    monkeypatch.setattr(confidence, "RANKERS", tmp_path)
    (tmp_path / "test-ranker.json").write_text(json.dumps(other))
    try:
        use_ranker("test-ranker")
        assert confidence.probability(factors) < before
    finally:
        monkeypatch.setattr(confidence, "RANKERS", RANKERS)
        use_ranker(confidence.DEFAULT_RANKER)
    assert confidence.probability(factors) == before


async def test_the_research_worker_uses_the_configured_ranker(settings):
    """STRATMASTER_ANSWER_RANKER reaches research: the worker's start loads it."""
    import workers.research

    spec = await workers.research.build(settings.model_copy(update={"answer_ranker": "answer-ranker-2"}))
    try:
        assert confidence.RANKER.name == "answer-ranker-2" and confidence.BIAS == load_ranker("answer-ranker-2").bias
    finally:
        if spec.close:
            await spec.close()
        use_ranker(confidence.DEFAULT_RANKER)
