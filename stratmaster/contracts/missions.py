"""Mission cartridges and the contracts of the mission lifecycle workflows.

A cartridge is a versioned configuration package (YAML or JSON) for one mission:
metadata, enabled engines, quality thresholds, storage isolation parameters,
custom entity types, LLM routing overrides and retention. Every model forbids
unknown keys so a typo is a reported problem, not a silently ignored setting.

`validate_cartridge(text)` reports every problem in one pass as (field path,
reason, line when known): parse errors, unknown keys, bad values, duplicate keys.
It is pure (no I/O), so starters may call it to fail fast and to derive the
workflow id; the activation workflow validates again in an activity.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any, Final, Literal

import re2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stratmaster.contracts.common import MissionId

CARTRIDGE_FORMAT: Final = 1
# semver.org 2.0.0 (no leading zeros, optional pre-release / build metadata)
SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
ENTITY_TYPE_RE = re.compile(r"^[A-Z][A-Z0-9_]{1,39}$")
BUILTIN_ENTITY_TYPES = {"PERSON", "ORGANIZATION", "CONCEPT", "DOCUMENT"}


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported to the user, not to stderr
_RE2_OPTIONS.max_mem = 8 << 20  # bounds the automaton a pattern like x{1000}{1000} would build


def compile_pattern(pattern: str) -> Any:
    """A cartridge pattern compiled by RE2 (raises re2.error for unsupported syntax)."""
    return re2.compile(pattern, _RE2_OPTIONS)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- cartridge

class Metadata(Strict):
    id: MissionId
    name: str = Field(min_length=1, max_length=200)
    # patterns and item rules published in the schema; the validators below enforce them with
    # messages that say what is wanted
    version: str = Field(max_length=64, description="semantic version, e.g. 1.2.0",
                         json_schema_extra={"pattern": SEMVER_RE.pattern})
    description: str = Field(default="", max_length=4000)
    owners: list[str] = Field(min_length=1, max_length=50, json_schema_extra={
        "uniqueItems": True, "items": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"}})

    @field_validator("version")
    @classmethod
    def _semver(cls, v: str) -> str:
        if not SEMVER_RE.fullmatch(v):
            raise ValueError("must be a semantic version like 1.2.0 (semver.org)")
        return v

    @field_validator("owners")
    @classmethod
    def _owners(cls, v: list[str]) -> list[str]:
        for owner in v:
            if not owner.strip() or len(owner) > 200:
                raise ValueError("owners must be non-empty names or e-mail addresses (max 200 chars)")
        if len(set(v)) != len(v):
            raise ValueError("owners must be unique")
        return v


class Engines(Strict):
    bm25: bool = True
    dense: bool = True
    graph: bool = False
    web: bool = False
    llm: bool = False

    @model_validator(mode="after")
    def _one_retriever(self) -> "Engines":
        if not (self.bm25 or self.dense or self.web):
            raise ValueError("enable at least one retrieval engine (bm25, dense or web)")
        return self


class Quality(Strict):
    min_confidence: float = Field(default=0.3, ge=0.0, le=1.0,
                                  description="claims below are not findings (kept below the bar with the reason); "
                                              "confidence is calibrated: the share of such findings that are right")
    min_sources: int = Field(default=1, ge=1, le=50, description="distinct documents a finding must cite")
    max_contradiction_ratio: float = Field(default=0.5, ge=0.0, le=1.0,
                                           description="more contradicted findings than this share: the result is contested")
    min_retrieval_score: float = Field(default=0.0, ge=0.0, le=1.0,
                                       description="a finding's best cited hit must have at least this fused retrieval score")


class VectorStorage(Strict):
    hnsw_m: int = Field(default=16, ge=4, le=128)
    hnsw_ef_construct: int = Field(default=64, ge=8, le=1024)
    quantization: Literal["none", "int8"] = "none"
    shards: int = Field(default=1, ge=1, le=64)
    replicas: int = Field(default=1, ge=1, le=10)


class IndexStorage(Strict):
    shards: int = Field(default=1, ge=1, le=64)
    replicas: int = Field(default=0, ge=0, le=10)


class Storage(Strict):
    vectors: VectorStorage = Field(default_factory=VectorStorage)
    fulltext: IndexStorage = Field(default_factory=IndexStorage)


class EntityType(Strict):
    name: str = Field(description="upper-case type name, e.g. TECHNOLOGY")
    keywords: list[str] = Field(default_factory=list, max_length=2000)
    patterns: list[str] = Field(default_factory=list, max_length=200,
                                description="regular expressions in RE2 syntax (linear time: no look-around, no backreferences)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not ENTITY_TYPE_RE.fullmatch(v):
            raise ValueError("must be 2-40 chars of upper-case letters, digits and '_', starting with a letter")
        if v in BUILTIN_ENTITY_TYPES:
            raise ValueError(f"{v} is a built-in type; pick another name")
        return v

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, v: list[str]) -> list[str]:
        if any(not k.strip() or len(k) > 200 for k in v):
            raise ValueError("keywords must be non-empty (max 200 chars)")
        return v

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        bad = []
        for i, p in enumerate(v):
            if len(p) > 500:
                bad.append(f"[{i}] longer than 500 chars")
                continue
            try:
                compile_pattern(p)
            except re2.error as exc:
                reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
                bad.append(f"[{i}] {p!r}: {reason} (RE2 syntax: no look-around or backreferences)")
        if bad:
            raise ValueError("invalid regular expression " + "; ".join(bad))
        return v

    @model_validator(mode="after")
    def _something(self) -> "EntityType":
        if not self.keywords and not self.patterns:
            raise ValueError("an entity type needs keywords or patterns")
        return self


class Routing(Strict):
    """LLM model per task (LiteLLM names); unset means the deployment default."""
    planning: str | None = Field(default=None, min_length=1, max_length=200)
    synthesis: str | None = Field(default=None, min_length=1, max_length=200)
    contradictions: str | None = Field(default=None, min_length=1, max_length=200)
    entity_extraction: str | None = Field(default=None, min_length=1, max_length=200)
    query_expansion: str | None = Field(default=None, min_length=1, max_length=200)


class Retention(Strict):
    documents_days: int | None = Field(default=None, ge=1, description="None keeps documents forever")
    research_days: int | None = Field(default=None, ge=1, description="None keeps research sessions forever")
    backups_keep: int = Field(default=7, ge=1, le=1000)
    deactivated_days: int = Field(default=30, ge=0, le=3650,
                                  description="how long a deactivated mission's data is kept before purge")


class CacheSettings(Strict):
    """The mission's research answer cache. An entry is only ever served while the
    mission's documents and cartridge are exactly those it was computed on; the TTL
    bounds how old it may be otherwise (web results change)."""
    research_ttl_seconds: int = Field(default=3600, ge=0, le=30 * 86400, description="0 turns the cache off")
    similarity: float = Field(default=0.97, ge=0.85, le=1.0,
                              description="near-identical questions (embedding cosine) share an answer; 1.0: same words only")


class Cartridge(Strict):
    format: Literal[1] = CARTRIDGE_FORMAT
    metadata: Metadata
    engines: Engines = Field(default_factory=Engines)
    quality: Quality = Field(default_factory=Quality)
    storage: Storage = Field(default_factory=Storage)
    entities: list[EntityType] = Field(default_factory=list, max_length=100)
    routing: Routing = Field(default_factory=Routing)
    retention: Retention = Field(default_factory=Retention)
    cache: CacheSettings = Field(default_factory=CacheSettings)

    @field_validator("entities")
    @classmethod
    def _unique_entities(cls, v: list[EntityType]) -> list[EntityType]:
        names = [e.name for e in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate entity type names: {', '.join(dupes)}")
        return v

    # -- helpers for the activities that read a mission's config -------------
    @property
    def mission(self) -> str:
        return self.metadata.id

    @property
    def version(self) -> str:
        return self.metadata.version

    def entity_keywords(self) -> dict[str, list[str]]:
        """{type: keywords} as activities/ingest/entities.py `custom=` expects."""
        return {e.name: list(e.keywords) for e in self.entities if e.keywords}

    def entity_patterns(self) -> dict[str, list[Any]]:
        """{type: compiled RE2 patterns}: a tenant's pattern runs in linear time
        (Python's backtracking engine would let `(\\w+\\s?)+ X` take minutes and
        hold the interpreter lock of the whole worker)."""
        return {e.name: [compile_pattern(p) for p in e.patterns] for e in self.entities if e.patterns}

    def model_for(self, task: str, default: str | None = None) -> str | None:
        return getattr(self.routing, task, None) or default


def default_cartridge(mission: str) -> Cartridge:
    """Config of a mission that has no activated cartridge (defaults everywhere)."""
    return Cartridge(metadata=Metadata(id=mission, name=mission, version="0.0.0", owners=["unknown"]))


# ---------------------------------------------------------------- validation

class Problem(BaseModel):
    path: str  # dotted field path ("metadata.version", "entities.1.patterns"), or "<document>"
    reason: str
    line: int | None = None  # 1-based, when the parser knows it


class CartridgeValidation(BaseModel):
    ok: bool
    problems: list[Problem] = Field(default_factory=list)
    cartridge: Cartridge | None = None
    sha256: str | None = None  # of the canonical JSON, so YAML and JSON forms of one cartridge match


MAX_CARTRIDGE_BYTES = 256 * 1024


def canonical_json(cartridge: Cartridge) -> str:
    return json.dumps(cartridge.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def cartridge_sha256(cartridge: Cartridge) -> str:
    return hashlib.sha256(canonical_json(cartridge).encode()).hexdigest()


def stored_digest(stored_json: str) -> str:
    """The digest of a cartridge as it was stored (its JSON as written at activation):
    what `cartridge_sha256` gave then, whatever sections later schema versions add."""
    return hashlib.sha256(json.dumps(json.loads(stored_json), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def same_cartridge(stored_json: str, stored_sha: str, sha: str) -> bool:
    """Is a cartridge with digest `sha` the stored version? Also true when the stored
    one predates a section added since (it reads back with that section's defaults)."""
    return stored_sha == sha or cartridge_sha256(Cartridge.model_validate(json.loads(stored_json))) == sha


def cartridge_yaml(cartridge: Cartridge) -> str:
    return yaml.safe_dump(cartridge.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _line_map(text: str) -> tuple[dict[tuple, int], list[Problem]]:
    """Line of every key path (for reporting) and duplicate keys (PyYAML and
    json.loads would silently keep the last one)."""
    lines: dict[tuple, int] = {}
    dupes: list[Problem] = []
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines, dupes

    def walk(node, path: tuple) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, value_node in node.value:
                key = key_node.value
                if key in seen:
                    dupes.append(Problem(path=_dotted(path + (key,)), reason="duplicate key",
                                         line=key_node.start_mark.line + 1))
                seen.add(key)
                lines[path + (key,)] = key_node.start_mark.line + 1
                walk(value_node, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (str(i),))

    if root is not None:
        walk(root, ())
    return lines, dupes


def _dotted(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "<document>"


MAX_NESTING = 32  # a real cartridge is 4 levels deep


def _structure_problems(text: str) -> list[Problem]:
    """Aliases and deep nesting, found on the event stream (which expands
    nothing and does not recurse): a 377-byte document of nested aliases grows
    x10 per level when loaded, and 50,000 '[' overflow the composer's stack."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            return [Problem(path="<document>", reason="YAML anchors and aliases (&name, *name) are not allowed in a cartridge",
                            line=event.start_mark.line + 1)]
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                return [Problem(path="<document>", reason=f"nested deeper than {MAX_NESTING} levels",
                                line=event.start_mark.line + 1)]
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return []


def _parse(text: str) -> tuple[Any, list[Problem]]:
    if text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text), []
        except json.JSONDecodeError as exc:
            return None, [Problem(path="<document>", reason=f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                                  line=exc.lineno)]
        except RecursionError:
            return None, [Problem(path="<document>", reason=f"nested deeper than {MAX_NESTING} levels")]
    try:
        problems = _structure_problems(text)
        if problems:
            return None, problems
        return yaml.safe_load(text), []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else None
        what = " ".join(str(x) for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x) or str(exc)
        where = f" (line {line}, column {mark.column + 1})" if mark else ""
        return None, [Problem(path="<document>", reason=f"invalid YAML: {what}{where}", line=line)]


def validate_cartridge(text: str | bytes | None = None, data: dict | None = None) -> CartridgeValidation:
    """Every problem of a cartridge in one pass; never raises for bad input."""
    problems: list[Problem] = []
    lines: dict[tuple, int] = {}
    if data is None:
        if isinstance(text, bytes):
            if len(text) > MAX_CARTRIDGE_BYTES:
                return CartridgeValidation(ok=False, problems=[Problem(path="<document>", reason=f"larger than {MAX_CARTRIDGE_BYTES} bytes")])
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                return CartridgeValidation(ok=False, problems=[Problem(path="<document>", reason=f"not UTF-8 text: {exc}")])
        if not text or not text.strip():
            return CartridgeValidation(ok=False, problems=[Problem(path="<document>", reason="empty cartridge")])
        if len(text.encode()) > MAX_CARTRIDGE_BYTES:
            return CartridgeValidation(ok=False, problems=[Problem(path="<document>", reason=f"larger than {MAX_CARTRIDGE_BYTES} bytes")])
        data, problems = _parse(text)
        if problems:
            return CartridgeValidation(ok=False, problems=problems)
        lines, problems = _line_map(text)
    if not isinstance(data, dict):
        problems.append(Problem(path="<document>", reason=f"a cartridge is a mapping of sections, got {type(data).__name__}"))
        return CartridgeValidation(ok=False, problems=problems)
    if _depth(data) > MAX_NESTING:
        problems.append(Problem(path="<document>", reason=f"nested deeper than {MAX_NESTING} levels"))
        return CartridgeValidation(ok=False, problems=problems)
    try:
        cartridge = Cartridge.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(str(p) for p in err["loc"])
            reason = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                reason = "unknown field"
            line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)
            problems.append(Problem(path=_dotted(loc), reason=reason, line=line))
        problems.sort(key=lambda p: (p.line or 0, p.path))
        return CartridgeValidation(ok=False, problems=problems)
    if problems:
        return CartridgeValidation(ok=False, problems=problems)
    return CartridgeValidation(ok=True, cartridge=cartridge, sha256=cartridge_sha256(cartridge))


def _depth(data: Any) -> int:
    """Nesting depth without recursion (`data` may come from a workflow input)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_NESTING:
            break
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def format_problems(problems: list[Problem]) -> str:
    return "; ".join(f"{p.path}{f' (line {p.line})' if p.line else ''}: {p.reason}" for p in problems)


# ---------------------------------------------------------------- workflow contracts
# Workflow inputs carry the mission as a plain string and validate it inside the
# workflow, so a hostile id fails the workflow with a clear BadInput error instead
# of a payload-decoding failure retried forever.

ActivationStatus = Literal["activated", "unchanged", "reactivated", "rolled_back"]


class ActivateMissionInput(BaseModel):
    """Either `cartridge_text` (YAML/JSON text) or `cartridge` (an object)."""
    cartridge_text: str | None = Field(default=None, max_length=512 * 1024)
    cartridge: dict[str, Any] | None = None
    actor: str = "system"
    source: str | None = None  # file name, for the audit log


class RollbackMissionInput(BaseModel):
    mission: str
    to_version: str | None = None  # default: the version active before the current one
    actor: str = "system"


class DeactivateMissionInput(BaseModel):
    mission: str
    actor: str = "system"
    retention_days: int | None = Field(default=None, ge=0, le=3650, description="override retention.deactivated_days")


class MissionRef(BaseModel):
    mission: str
    version: str | None = None


class ListMissionsInput(BaseModel):
    include_deactivated: bool = True


class PurgeExpiredInput(BaseModel):
    now: datetime | None = None  # the workflow fills in workflow.now()
    actor: str = "maintenance"
    missions: list[str] | None = None  # only these (default: every expired mission)


class ActivationResult(BaseModel):
    mission: str
    version: str
    status: ActivationStatus
    previous_version: str | None = None
    steps: list[str] = Field(default_factory=list)
    sha256: str | None = None


class DeactivationResult(BaseModel):
    mission: str
    status: Literal["deactivated", "unchanged"]
    purge_after: datetime | None


class PurgeResult(BaseModel):
    purged: list[str] = Field(default_factory=list)
    waiting: dict[str, datetime] = Field(default_factory=dict)  # deactivated, retention not yet over


class MissionSummary(BaseModel):
    mission: str
    name: str | None = None
    status: str
    active_version: str | None = None
    previous_version: str | None = None
    versions: int = 0
    purge_after: datetime | None = None
    updated_at: datetime | None = None


class MissionList(BaseModel):
    missions: list[MissionSummary]


class HistoryEntry(BaseModel):
    at: datetime
    action: str
    version: str | None
    replaced_version: str | None = None
    actor: str


class MissionDetail(BaseModel):
    summary: MissionSummary
    versions: list[str]
    history: list[HistoryEntry]
    cartridge: Cartridge | None = None


class ExportResult(BaseModel):
    mission: str
    version: str
    sha256: str
    cartridge: Cartridge
    yaml: str


# ---------------------------------------------------------------- activity I/O

class ValidateInput(BaseModel):
    cartridge_text: str | None = None
    cartridge: dict[str, Any] | None = None


class ValidatedCartridge(BaseModel):
    cartridge: Cartridge
    sha256: str


class ActivationPlan(BaseModel):
    """What exists before this activation, so compensation undoes only this run's work."""
    mission: str
    version: str
    sha256: str
    cartridge: Cartridge
    action: Literal["activate", "rollback"] = "activate"
    unchanged: bool = False
    tenant_existed: bool
    version_existed: bool
    previous_status: str | None = None
    previous_version: str | None = None  # tenants.active_version before this run
    previous_previous: str | None = None  # tenants.previous_version before this run
    previous_purge_after: datetime | None = None
    new_previous: str | None = None  # what tenants.previous_version becomes
    vector_dim: int = 384


class StepInput(BaseModel):
    plan: ActivationPlan
    actor: str
    workflow_id: str


class StepResult(BaseModel):
    step: str
    detail: str = ""


ProvisionStep = Literal["postgres", "vectors", "fulltext", "graph", "objects", "record"]


class UndoInput(BaseModel):
    step: StepInput
    name: ProvisionStep


class PlanRollbackInput(BaseModel):
    mission: MissionId
    to_version: str | None = None


class PlanActivationInput(BaseModel):
    validated: ValidatedCartridge


class DeactivateStep(BaseModel):
    mission: MissionId
    actor: str
    now: datetime
    retention_days: int | None = None
    workflow_id: str = ""


class MissionConfig(BaseModel):
    """A mission's active cartridge as activities read it (activities/mission_config.py)."""
    mission: str
    version: str | None  # None: no cartridge activated (defaults)
    status: str  # active | deactivated | provisioning | purging | unknown
    revision: int
    cartridge: Cartridge
