"""The mission cartridge: the schema of a versioned configuration package (YAML or JSON) for one
mission, and its identity (the digest of its canonical JSON).

A cartridge holds metadata, enabled engines, quality thresholds, storage isolation
parameters, custom entity types, LLM routing overrides and retention. Every model forbids
unknown keys so a typo is a reported problem, not a silently ignored setting. Reading a
cartridge from text, with every problem reported by line, is
stratmaster/contracts/cartridge_validation.py; the lifecycle workflows' contracts are
stratmaster/contracts/missions.py.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Final, Literal

import re2
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


# ---------------------------------------------------------------- identity

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
