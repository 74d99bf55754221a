"""Production store adapters against the real servers that scripts/services/*.sh
start (OpenSearch, MinIO). Locally the tests skip when a server's env var is
unset; under CI (CI=true) they fail instead, so a broken service script cannot
pass silently. NebulaGraph cannot run here: see RecordingNebulaSessionMock in
tests/test_adapters_nebula.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

OPENSEARCH_ENV = "STRATMASTER_TEST_OPENSEARCH_URL"
MINIO_ENV = "STRATMASTER_TEST_MINIO_ENDPOINT"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_server(env: str, script: str) -> str:
    """The server address from `env`; skip locally, fail under CI, when unset."""
    value = os.environ.get(env)
    if not value:
        msg = f"{env} unset: source scripts/services/{script} first (scripts/test.sh does)"
        if in_ci():
            pytest.fail(f"CI=true but {msg}", pytrace=False)
        pytest.skip(msg)
    return value


def make_opensearch(_data_dir: Path | None = None):
    from activities.stores.fulltext_opensearch import OpenSearchIndex

    return OpenSearchIndex(require_server(OPENSEARCH_ENV, "opensearch.sh"))


def make_minio(_data_dir: Path | None = None, bucket: str = "stratmaster"):
    from activities.stores.objects_minio import MinioObjectStore

    endpoint = require_server(MINIO_ENV, "minio.sh")
    return MinioObjectStore(endpoint, os.environ.get("STRATMASTER_TEST_MINIO_ACCESS_KEY"),
                            os.environ.get("STRATMASTER_TEST_MINIO_SECRET_KEY"), bucket=bucket)
