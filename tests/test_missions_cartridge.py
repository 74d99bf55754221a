"""Cartridge schema and validation (every problem in one pass, with lines), and
the `stratmaster missions` CLI end to end against the real dev server."""
from __future__ import annotations

import asyncio
import json

import pytest
import yaml
from typer.testing import CliRunner

from stratmaster.contracts.cartridge import Cartridge
from stratmaster.contracts.cartridge_validation import validate_cartridge
from tests.missions_support import DEMO, INVALID, cartridge_dict, cartridge_text, mission_worker, new_mission, pg_state


def test_demo_cartridge_is_valid_and_complete():
    result = validate_cartridge(DEMO.read_text())
    assert result.ok, result.problems
    c = result.cartridge
    assert (c.mission, c.version, c.metadata.owners) == ("demo", "1.0.0", ["research-team@example.com"])
    assert c.engines.graph and not c.engines.web
    assert c.storage.vectors.hnsw_m == 16 and c.storage.vectors.quantization == "none"
    assert c.entity_keywords()["TECHNOLOGY"][0] == "solid-state battery"
    assert c.entity_patterns()["REGULATION"][0].search("see the EU Directive 2023/1791 on efficiency")
    assert c.retention.research_days == 365 and c.retention.deactivated_days == 30
    assert c.model_for("synthesis", "default-model") == "default-model"


def test_invalid_cartridge_reports_every_problem_with_lines():
    result = validate_cartridge(INVALID.read_text())
    assert not result.ok and result.cartridge is None
    found = {p.path: p for p in result.problems}
    expected = {"metadata.id": 5, "metadata.version": 7, "metadata.owners": 8, "engines.telepathy": 13,
                "quality.min_confidence": 15, "storage.vectors.hnsw_m": 18, "storage.vectors.quantization": 19,
                "entities.0.name": 21, "entities.0.patterns": 22, "retention.backups_keep": 24}
    assert {path: found[path].line for path in expected if path in found} == expected
    assert found["engines.telepathy"].reason == "unknown field"
    assert "missing ]" in found["entities.0.patterns"].reason


BOMB = "\n".join(["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                 + [f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi")])


@pytest.mark.parametrize("text, reason", [
    (BOMB, "anchors and aliases"),  # 9^9 strings once expanded: refused before anything is built
    ("metadata:\n  x: &keep 1\n", "anchors and aliases"),
    ("a: " + "[" * 50_000 + "]" * 50_000, "nested deeper than 32 levels"),  # RecursionError in PyYAML before
    ("[" * 50_000 + "]" * 50_000, "nested deeper than 32 levels"),  # RecursionError in json.loads before
])
def test_hostile_structure_is_refused(text, reason):
    result = validate_cartridge(text)
    assert not result.ok and reason in result.problems[0].reason


def test_deep_object_input_is_refused():
    data: dict = {}
    for _ in range(5_000):  # what an ActivateMissionInput.cartridge from the temporal CLI may hold
        data = {"x": data}
    result = validate_cartridge(data=data)
    assert not result.ok and "nested deeper" in result.problems[0].reason


def test_patterns_are_re2():
    bad = cartridge_dict("re2_rules")
    bad["entities"] = [{"name": "GADGET", "patterns": [r"(?<=W-)\d+", r"(\w)\1"]}]
    problems = validate_cartridge(data=bad).problems
    assert [p.path for p in problems] == ["entities.0.patterns"]
    assert "RE2 syntax" in problems[0].reason and "[0]" in problems[0].reason and "[1]" in problems[0].reason


def test_catastrophic_pattern_runs_in_linear_time():
    """`(a+)+$` against 'a'*40+'b' backtracks 2^40 times in Python's engine; the
    cartridge's patterns run in RE2, so extraction returns (a hang here would be
    the old behaviour: the subprocess timeout turns it into a failure)."""
    import subprocess
    import sys
    code = (
        "from stratmaster.contracts.cartridge_validation import validate_cartridge\n"
        "from tests.missions_support import cartridge_dict\n"
        "from activities.ingest.entities import extract_from_text\n"
        "d = cartridge_dict('re2_time')\n"
        "d['entities'] = [{'name': 'RUN', 'patterns': [r'(a+)+$', r'\\b(\\w+\\s?)+ Directive\\b']}]\n"
        "c = validate_cartridge(data=d).cartridge\n"
        "text = 'a' * 40 + 'b ' + 'word ' * 5000 + 'x'\n"
        "print(len(extract_from_text(text, patterns=c.entity_patterns())))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("text, reason, line", [
    ("metadata:\n  id: demo\n  name: [unclosed\n", "invalid YAML", 4),
    ('{\n  "metadata": {"id": "demo",}\n}', "invalid JSON", 2),
    ("", "empty cartridge", None),
    ("- just\n- a list\n", "a cartridge is a mapping", None),
    ("!!python/object/apply:os.system ['echo hi']\n", "invalid YAML", 1),  # safe loader: no code execution
])
def test_parse_errors_are_clear(text, reason, line):
    result = validate_cartridge(text)
    assert not result.ok
    assert reason in result.problems[0].reason
    assert result.problems[0].line == line


def test_other_schema_rules():
    bad = cartridge_dict("schema_rules")
    bad["metadata"]["version"] = "01.2.3"
    bad["engines"] = {"bm25": False, "dense": False, "web": False}
    bad["entities"] = [{"name": "GADGET", "keywords": ["a"]}, {"name": "GADGET", "keywords": ["b"]},
                       {"name": "PERSON", "keywords": ["c"]}, {"name": "EMPTY"}]
    bad["routing"] = {"synthesis": "openai/x", "astrology": "y"}
    problems = {(p.path, p.reason) for p in validate_cartridge(data=bad).problems}
    paths = {p for p, _ in problems}
    assert {"metadata.version", "engines", "entities.2.name", "entities.3", "routing.astrology"} <= paths
    # duplicate names are a list-level rule, reported once the items themselves are fine
    bad["entities"] = bad["entities"][:2]
    assert any("duplicate entity type" in r for _, r in {(p.path, p.reason) for p in validate_cartridge(data=bad).problems})


def test_duplicate_keys_and_formats_agree():
    text = cartridge_text("dupes")
    dup = text.replace("quality:\n", "quality:\n  min_confidence: 0.1\n", 1)
    result = validate_cartridge(dup)
    assert not result.ok and any(p.reason == "duplicate key" and p.path == "quality.min_confidence"
                                 for p in result.problems)
    as_json = json.dumps(yaml.safe_load(text), indent=1)
    assert validate_cartridge(as_json).sha256 == validate_cartridge(text).sha256
    assert Cartridge.model_validate(yaml.safe_load(text)).model_dump() == validate_cartridge(as_json).cartridge.model_dump()


async def test_cli_end_to_end(temporal_env, settings, monkeypatch, tmp_path):
    from starters.cli import app
    from stratmaster.settings import get_settings

    monkeypatch.setenv("STRATMASTER_TEMPORAL_ADDRESS", temporal_env.client.service_client.config.target_host)
    get_settings.cache_clear()
    runner = CliRunner()

    async def cli(*args: str):
        return await asyncio.to_thread(runner.invoke, app, list(args))

    mission = new_mission("cli")
    v1, v2 = tmp_path / "v1.yaml", tmp_path / "v2.json"
    v1.write_text(cartridge_text(mission, "1.0.0"))
    v2.write_text(json.dumps(cartridge_dict(mission, "1.1.0", quality={"min_confidence": 0.7})))
    try:
        res = await cli("missions", "validate", str(INVALID))
        assert res.exit_code == 1 and "metadata.version" in res.output and "Traceback" not in res.output
        res = await cli("missions", "validate", str(v1))
        assert res.exit_code == 0 and "valid cartridge" in res.output
        res = await cli("missions", "activate", str(INVALID))
        assert res.exit_code == 1  # rejected before any workflow starts

        async with mission_worker(temporal_env.client, settings):
            res = await cli("missions", "activate", str(v1))
            assert res.exit_code == 0 and "activated" in res.output, res.output
            res = await cli("missions", "activate", str(v1))
            assert "unchanged" in res.output
            res = await cli("missions", "import", str(v2))
            assert res.exit_code == 0 and "1.1.0: activated" in res.output, res.output
            res = await cli("missions", "list")
            assert mission in res.output
            out = tmp_path / "export.yaml"
            res = await cli("missions", "export", mission, "-o", str(out))
            assert res.exit_code == 0, res.output
            assert validate_cartridge(out.read_text()).cartridge.quality.min_confidence == 0.7
            res = await cli("missions", "rollback", mission)
            assert res.exit_code == 0 and "1.1.0 -> 1.0.0" in res.output, res.output
            res = await cli("missions", "show", mission)
            assert res.exit_code == 0 and "active=1.0.0" in res.output and "rollback" in res.output
            res = await cli("missions", "rollback", mission)
            assert res.exit_code == 1 and "no previous version" in res.output and "Traceback" not in res.output
            res = await cli("missions", "deactivate", mission, "--retention-days", "3")
            assert res.exit_code == 0 and "deactivated" in res.output
        pg = await pg_state(settings, mission)
        assert pg["tenant"]["status"] == "deactivated"
        assert {a["actor"] for a in pg["audit"]} == {pg["audit"][0]["actor"]} and pg["audit"][0]["actor"].startswith("cli")
    finally:
        get_settings.cache_clear()
