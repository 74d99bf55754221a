"""NebulaGraph adapter, contract-tested at the statement level.

MOCK: NebulaGraph cannot run on this machine (no package for it in any registry
this project may use), so these tests drive NebulaGraphStore against
RecordingNebulaSessionMock, a stand-in for nebula3's Session that records every
statement with its parameters, encodes the parameters with the real client's
encoder (so they are what execute_py would send), keeps the set of spaces, and
answers queries with canned rows. It checks what the adapter SENDS (statements,
identifiers, parameters, order) and how it reads results -- not nGQL semantics.
"""
from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest
from nebula3.gclient.net.base import ExecuteError, _build_byte_param
from temporalio.exceptions import ApplicationError

from activities.stores.factory import build_stores, health_probes
from activities.stores.graph_nebula import (
    EDGE_TYPES, NebulaGraphStore, _edge_type, ident, schema_statements, space_for,
)
from stratmaster.contracts.knowledge import Entity, Relation
from stratmaster.errors import BAD_INPUT
from stratmaster.settings import Settings
from tests.support.ports import free_port

INJECTION = 'x"}) DETACH DELETE v //'


class _Result:
    def __init__(self, rows: list[dict]):
        self._rows = rows

    def as_primitive(self) -> list[dict]:
        return [dict(r) for r in self._rows]


class RecordingNebulaSessionMock:
    """MOCK of nebula3 Session (NebulaGraph can't run here): records
    (space, statement, params); USE fails for spaces never created, like
    NebulaGraph's SpaceNotFound; `respond(pattern, rows)` queues canned rows for
    the next statement matching the regex; `fail_probes` makes the first N
    schema probes fail as they do until the schema reaches the storage hosts."""

    def __init__(self, fail_probes: int = 0):
        self.calls: list[tuple[str | None, str, dict | None]] = []
        self.spaces: set[str] = set()
        self.space: str | None = None
        self.sessions = 0
        self._responses: list[tuple[re.Pattern, list[dict]]] = []
        self.fail_probes = fail_probes

    # the session factory NebulaGraphStore takes: a fresh session per operation
    @contextlib.contextmanager
    def session(self):
        self.sessions += 1
        self.space = None  # a new session has no space chosen
        yield self

    def respond(self, pattern: str, rows: list[dict]) -> None:
        self._responses.append((re.compile(pattern), rows))

    def execute_py(self, stmt: str, params: dict[str, Any] | None = None):
        if params is not None:
            _build_byte_param(params)  # raises for values the real client cannot send
        self.calls.append((self.space, stmt, params))
        if m := re.fullmatch(r"USE (\S+)", stmt):
            if m.group(1) not in self.spaces:
                raise ExecuteError(stmt, params, -1005, f"SpaceNotFound: SpaceName `{m.group(1)}`")
            self.space = m.group(1)
        elif m := re.match(r"CREATE SPACE IF NOT EXISTS (\w+)\(", stmt):
            self.spaces.add(m.group(1))
        elif m := re.fullmatch(r"DROP SPACE IF EXISTS (\w+)", stmt):
            self.spaces.discard(m.group(1))
        elif stmt.startswith("LOOKUP ON entity WHERE") and self.fail_probes > 0:
            self.fail_probes -= 1
            raise ExecuteError(stmt, params, -1009, "SemanticError: No schema found for `entity'")
        elif self.space is None and not stmt.startswith(("SHOW", "CREATE SPACE", "DROP SPACE")):
            raise ExecuteError(stmt, params, -1005, "SemanticError: Space was not chosen.")
        for i, (pattern, rows) in enumerate(self._responses):
            if pattern.search(stmt):
                del self._responses[i]
                return _Result(rows)
        return _Result([])

    def statements(self, prefix: str = "") -> list[tuple[str | None, str, dict | None]]:
        return [c for c in self.calls if c[1].startswith(prefix)]


@pytest.fixture
def mock() -> RecordingNebulaSessionMock:
    return RecordingNebulaSessionMock()


@pytest.fixture
def store(mock) -> NebulaGraphStore:
    return NebulaGraphStore(session_factory=mock.session, poll_interval=0, ready_timeout=5)


def _data():
    ents = [Entity(entity_id="org:acme", name="Acme Corp", type="ORGANIZATION"),
            Entity(entity_id="per:ada", name="Ada Lovelace", type="PERSON"),
            Entity(entity_id="con:x", name=INJECTION, type="CONCEPT"),
            Entity(entity_id="cus:1", name="Widget", type="PRODUCT")]  # a cartridge's custom type
    rels = [Relation(source_id="per:ada", target_id="org:acme", type="RELATES_TO", weight=2.0, context="works at"),
            Relation(source_id="con:x", target_id="org:acme", type="MENTIONS", weight=0.5, context=INJECTION),
            Relation(source_id="cus:1", target_id="org:acme", type="MADE_BY", weight=1.5)]
    return ents, rels


def _assert_no_user_values_in_statements(mock, values):
    for _space, stmt, _params in mock.calls:
        for v in values:
            assert v not in stmt, (v, stmt)


# --- space and schema ----------------------------------------------------------------------

async def test_ensure_space_creates_space_schema_and_waits_for_it():
    mock = RecordingNebulaSessionMock(fail_probes=2)
    store = NebulaGraphStore(session_factory=mock.session, poll_interval=0, ready_timeout=5)
    await store.ensure_space("alpha")
    stmts = [s for _sp, s, _p in mock.calls]
    assert stmts[0] == ("CREATE SPACE IF NOT EXISTS tenant_alpha(partition_num = 1, replica_factor = 1,"
                        " vid_type = FIXED_STRING(64))")
    assert stmts[1] == "USE tenant_alpha"
    ddl = schema_statements()
    assert stmts[2:2 + len(ddl)] == ddl
    assert all(s.startswith(("CREATE TAG", "CREATE EDGE")) for s in ddl)
    assert any("CREATE TAG INDEX IF NOT EXISTS entity_name_key_index" in s for s in ddl)
    assert {f"CREATE EDGE IF NOT EXISTS {e}" for e in EDGE_TYPES} <= {s.split("(")[0] for s in ddl}
    probes = [c for c in mock.calls if c[1].startswith("LOOKUP ON entity WHERE")]
    assert len(probes) == 3 and all(p == {"probe": ""} for _s, _st, p in probes)  # retried until the schema is live
    assert all(space == "tenant_alpha" for space, s, _p in mock.calls[2:])  # DDL ran inside the mission's space
    n = len(mock.calls)
    await store.ensure_space("alpha")  # cached: nothing sent again
    assert len(mock.calls) == n


async def test_schema_wait_gives_up_with_a_clear_error():
    mock = RecordingNebulaSessionMock(fail_probes=10**6)
    store = NebulaGraphStore(session_factory=mock.session, poll_interval=0.01, ready_timeout=0.05)
    with pytest.raises(TimeoutError, match="schema of tenant_alpha not ready"):
        await store.ensure_space("alpha")


def test_identifier_allow_list():
    assert space_for("alpha_1") == "tenant_alpha_1"
    assert ident("RELATES_TO") == "RELATES_TO"
    for bad in ("tenant_x; DROP SPACE y", "a b", "x`", "", "1abc", "RELATES_TO)", "x" * 65, None):
        with pytest.raises(ApplicationError) as ei:
            ident(bad)
        assert ei.value.type == BAD_INPUT
    with pytest.raises(ApplicationError):
        ident("tenant_alpha", re.compile(r"^tenant_[a-z]{1,3}$"))


@pytest.mark.parametrize("mission", ["../x", "Alpha", "a;DROP SPACE b", "alpha`", "", None, 42, "a" * 49])
async def test_hostile_missions_send_nothing(store, mock, mission):
    for call in (lambda: store.ensure_space(mission), lambda: store.upsert(mission, *_data()),
                 lambda: store.neighbours(mission, ["x"]), lambda: store.count(mission),
                 lambda: store.drop(mission), lambda: store.dump(mission), lambda: store.load(mission, [])):
        with pytest.raises(ApplicationError) as ei:
            await call()
        assert ei.value.type == BAD_INPUT and ei.value.non_retryable
    assert mock.calls == []


# --- writes ------------------------------------------------------------------------------------

async def test_upsert_sends_values_only_as_parameters(store, mock):
    ents, rels = _data()
    await store.upsert("alpha", ents, rels)
    inserts = [c for c in mock.calls if c[1].startswith("INSERT")]
    assert inserts and all(space == "tenant_alpha" for space, _s, _p in inserts)
    by_stmt = {s: p for _sp, s, p in inserts}
    # Typed seed tags are written alongside `entity`; custom types only as `entity`.
    assert by_stmt["INSERT VERTEX entity(name, name_key, type), PERSON(name) VALUES $v0:($n0, $k0, $t0, $n0)"] == {
        "v0": "per:ada", "n0": "Ada Lovelace", "k0": "ada lovelace", "t0": "PERSON"}
    assert by_stmt["INSERT VERTEX entity(name, name_key, type) VALUES $v0:($n0, $k0, $t0)"] == {
        "v0": "cus:1", "n0": "Widget", "k0": "widget", "t0": "PRODUCT"}
    concept = by_stmt["INSERT VERTEX entity(name, name_key, type), CONCEPT(name) VALUES $v0:($n0, $k0, $t0, $n0)"]
    assert concept["n0"] == INJECTION  # the hostile name travels as a parameter, verbatim
    assert by_stmt["INSERT EDGE RELATES_TO(strength, context, weight, relationship_type) "
                   "VALUES $s0->$d0@0:($w0, $c0, $w0, $r0)"] == {
        "s0": "per:ada", "d0": "org:acme", "w0": 2.0, "c0": "works at", "r0": ""}
    assert by_stmt["INSERT EDGE MENTIONS(confidence, context, weight) VALUES $s0->$d0@0:($w0, $c0, $w0)"] == {
        "s0": "con:x", "d0": "org:acme", "w0": 0.5, "c0": INJECTION}
    # A custom relation type is a RELATES_TO edge ranked by the type's hash, type kept as a value.
    _edge, rank, _t = _edge_type("MADE_BY")
    assert by_stmt[f"INSERT EDGE RELATES_TO(strength, context, weight, relationship_type) "
                   f"VALUES $s0->$d0@{rank}:($w0, $c0, $w0, $r0)"]["r0"] == "MADE_BY"
    _assert_no_user_values_in_statements(mock, [INJECTION, "Ada Lovelace", "per:ada", "works at", "MADE_BY",
                                                "Widget", "PRODUCT"])


async def test_upsert_batches_and_rejects_overlong_ids(store, mock):
    ents = [Entity(entity_id=f"e{i}", name=f"Name {i}", type="THING") for i in range(250)]
    await store.upsert("alpha", ents, [])
    batches = mock.statements("INSERT VERTEX")
    assert [len(p) // 4 for _s, _st, p in batches] == [100, 100, 50]
    assert sorted(v for _s, _st, p in batches for k, v in p.items() if k.startswith("v")) == sorted(
        e.entity_id for e in ents)
    n = len(mock.calls)
    with pytest.raises(ApplicationError) as ei:
        await store.upsert("alpha", [Entity(entity_id="x" * 65, name="long", type="T")], [])
    assert ei.value.type == BAD_INPUT and len(mock.calls) == n  # refused before sending
    with pytest.raises(ApplicationError):
        await store.upsert("alpha", [], [Relation(source_id="a", target_id="é" * 33, type="MENTIONS")])
    await store.upsert("alpha", [], [])
    assert len(mock.calls) == n


# --- reads -------------------------------------------------------------------------------------

async def test_neighbours_injection_goes_only_into_params(store, mock):
    await store.ensure_space("alpha")
    mock.respond(r"^MATCH", [{"entity_id": "org:acme", "name": "Acme Corp", "type": "ORGANIZATION", "w": 0.5}])
    got = await store.neighbours("alpha", [INJECTION, "  Ada   LOVELACE "], limit=7)
    assert got == [Entity(entity_id="org:acme", name="Acme Corp", type="ORGANIZATION")]
    space, stmt, params = mock.statements("MATCH")[-1]
    assert space == "tenant_alpha"
    assert params == {"keys": sorted({INJECTION.casefold(), "ada lovelace"})}
    assert INJECTION not in stmt and "DETACH" not in stmt and stmt.endswith("LIMIT 7")
    # The statement text does not depend on the names at all.
    await store.neighbours("alpha", ["Acme Corp"], limit=7)
    assert mock.statements("MATCH")[-1][1] == stmt
    assert "$keys" in stmt and "NOT (n.entity.name_key IN $keys)" in stmt and "ORDER BY w DESC" in stmt
    # The seeds' f-string query shape (name spliced into a property map) is gone.
    assert "{name:" not in stmt
    assert await store.neighbours("alpha", ["   ", ""]) == [] and await store.neighbours("alpha", ["x"], 0) == []


async def test_reads_on_a_mission_without_space(store, mock):
    assert await store.neighbours("ghost", ["x"]) == []
    assert await store.count("ghost") == (0, 0)
    assert await store.dump("ghost") == []
    assert [s for _sp, s, _p in mock.calls] == ["USE tenant_ghost"] * 3  # nothing ran outside a space


async def test_count_and_dump_parse_rows(store, mock):
    await store.ensure_space("alpha")
    mock.respond(r"^LOOKUP ON entity YIELD id\(vertex\) AS id \| YIELD count", [{"n": 4}])
    mock.respond(r"^LOOKUP ON MENTIONS YIELD src\(edge\) AS s \| YIELD count", [{"n": 1}])
    mock.respond(r"^LOOKUP ON RELATES_TO YIELD src\(edge\) AS s \| YIELD count", [{"n": 2}])
    assert await store.count("alpha") == (4, 3)
    mock.respond(r"^LOOKUP ON entity YIELD id\(vertex\) AS entity_id", [
        {"entity_id": "per:ada", "name": "Ada Lovelace", "type": "PERSON"},
        {"entity_id": "con:x", "name": INJECTION, "type": "CONCEPT"}])
    mock.respond(r"^LOOKUP ON RELATES_TO YIELD src\(edge\) AS source_id", [
        {"source_id": "per:ada", "target_id": "org:acme", "weight": 2.0, "context": "works at",
         "relationship_type": ""},
        {"source_id": "cus:1", "target_id": "org:acme", "weight": 1.5, "context": None,
         "relationship_type": "MADE_BY"}])
    mock.respond(r"^LOOKUP ON MENTIONS YIELD src\(edge\) AS source_id", [
        {"source_id": "con:x", "target_id": "org:acme", "weight": 0.5, "context": INJECTION}])
    rows = await store.dump("alpha")
    assert rows == [
        {"kind": "entity", "entity_id": "con:x", "name": INJECTION, "type": "CONCEPT"},
        {"kind": "entity", "entity_id": "per:ada", "name": "Ada Lovelace", "type": "PERSON"},
        {"kind": "relation", "source_id": "con:x", "target_id": "org:acme", "type": "MENTIONS", "weight": 0.5,
         "context": INJECTION},
        {"kind": "relation", "source_id": "cus:1", "target_id": "org:acme", "type": "MADE_BY", "weight": 1.5,
         "context": ""},
        {"kind": "relation", "source_id": "per:ada", "target_id": "org:acme", "type": "RELATES_TO", "weight": 2.0,
         "context": "works at"},
    ]
    # load() writes the same rows back through the parameterised upsert.
    n = len(mock.calls)
    await store.load("beta", rows)
    sent = mock.calls[n:]
    assert any(s == "USE tenant_beta" for _sp, s, _p in sent)
    assert all(sp in (None, "tenant_beta") for sp, _s, _p in sent)  # nothing touched alpha
    assert {p["r0"] for _sp, s, p in sent if s.startswith("INSERT EDGE RELATES_TO")} == {"", "MADE_BY"}
    with pytest.raises(ApplicationError):
        await store.load("beta", [{"kind": "wat"}])


async def test_missions_map_to_separate_spaces_and_drop(store, mock):
    ents, rels = _data()
    await store.upsert("alpha", ents, rels)
    await store.upsert("beta", ents[:1], [])
    writes = [(sp, s) for sp, s, _p in mock.calls if s.startswith("INSERT")]
    assert {sp for sp, _s in writes} == {"tenant_alpha", "tenant_beta"}
    assert sum(sp == "tenant_beta" for sp, _s in writes) == 1
    await store.drop("beta")
    await store.drop("beta")
    assert mock.statements("DROP")[-1][1] == "DROP SPACE IF EXISTS tenant_beta"
    assert mock.spaces == {"tenant_alpha"}
    assert await store.count("beta") == (0, 0)
    await store.upsert("beta", ents[:1], [])  # re-created after a drop (not served from the ready cache)
    assert "tenant_beta" in mock.spaces


async def test_delete_document_removes_vertex_mentions_and_orphans_by_parameters(store, mock):
    """Retention (documents_days): the document's vertex with its edges, and the
    entities only it mentioned; ids travel only as parameters."""
    from activities.ingest.entities import document_entity

    doc_id = "0f8e2a9c-1d7b-5e3a-9c4f-2b6d8e1a7c35"
    vid = document_entity(doc_id, None).entity_id
    assert await store.delete_document("ghost", doc_id) == 0  # no space: nothing else sent
    assert mock.calls[-1][1] == "USE tenant_ghost"
    await store.ensure_space("alpha")
    mock.respond(r"^MATCH .* WHERE id\(d\) == \$doc RETURN", [{"entity_id": "org:only"}, {"entity_id": INJECTION}])
    mock.respond(r"^MATCH .* WHERE id\(v\) IN \$ids", [{"entity_id": INJECTION}])  # still mentioned elsewhere
    n = len(mock.calls)
    assert await store.delete_document("alpha", doc_id) == 2
    sent = [(sp, s, p) for sp, s, p in mock.calls[n:] if not s.startswith("USE")]
    assert all(sp == "tenant_alpha" for sp, _s, _p in sent)
    assert [(s, p) for _sp, s, p in sent] == [
        ("MATCH (d:entity)-[e:MENTIONS]->(v:entity) WHERE id(d) == $doc RETURN DISTINCT id(v) AS entity_id",
         {"doc": vid}),
        ("MATCH (d:entity)-[e:MENTIONS]->(v:entity) WHERE id(v) IN $ids AND id(d) <> $doc "
         "RETURN DISTINCT id(v) AS entity_id", {"ids": sorted(["org:only", INJECTION]), "doc": vid}),
        ("DELETE VERTEX $x0 WITH EDGE", {"x0": "org:only"}),  # orphans first: a re-run still finds the document
        ("DELETE VERTEX $doc WITH EDGE", {"doc": vid}),
    ]
    _assert_no_user_values_in_statements(mock, [INJECTION, "org:only", vid])
    # already deleted: nothing mentioned, only the (idempotent) vertex delete
    n = len(mock.calls)
    assert await store.delete_document("alpha", doc_id) == 0
    assert [s for _sp, s, _p in mock.calls[n:] if not s.startswith(("USE", "MATCH"))] == ["DELETE VERTEX $doc WITH EDGE"]
    with pytest.raises(ApplicationError) as ei:
        await store.delete_document("a;DROP SPACE b", doc_id)
    assert ei.value.type == BAD_INPUT


# --- wiring ------------------------------------------------------------------------------------

def test_factory_and_settings(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, nebula_hosts="graphd-1:9669, graphd-2:9669",
                        nebula_user="svc")
    stores = build_stores(settings)
    assert isinstance(stores.graph, NebulaGraphStore) and stores.graph.backend == "nebulagraph"
    assert stores.graph._hosts == [("graphd-1", 9669), ("graphd-2", 9669)] and stores.graph._user == "svc"
    with pytest.raises(ValueError, match="host:port"):
        NebulaGraphStore.from_settings(Settings(_env_file=None, data_dir=tmp_path, nebula_hosts="graphd"))


async def test_unreachable_graphd_fails_its_probe(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, nebula_hosts=f"127.0.0.1:{free_port()}")
    backend, probe = health_probes(settings)["graph"]
    assert backend == "nebulagraph"
    with pytest.raises(Exception):
        await probe()


async def test_probe_uses_show_hosts(store, mock):
    mock.respond(r"^SHOW HOSTS$", [{"Host": "storaged0", "Status": "ONLINE"}])
    assert await store.probe() == "NebulaGraph, 1 storage host(s)"
