"""One Temporal client factory for starters, workers and tests.

Uses the pydantic data converter everywhere; TLS (mTLS) and API-key settings
cover Temporal Cloud and self-hosted clusters.
"""
from __future__ import annotations

import re

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from stratmaster.errors import ServiceUnavailable
from stratmaster.fairness import FairnessInterceptor
from stratmaster.settings import Settings, get_settings


def tls_config(settings: Settings) -> TLSConfig | bool:
    if not (settings.temporal_tls or settings.temporal_tls_cert or settings.temporal_api_key):
        return False
    return TLSConfig(
        server_root_ca_cert=settings.temporal_tls_ca.read_bytes() if settings.temporal_tls_ca else None,
        client_cert=settings.temporal_tls_cert.read_bytes() if settings.temporal_tls_cert else None,
        client_private_key=settings.temporal_tls_key.read_bytes() if settings.temporal_tls_key else None,
    )


async def connect(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    interceptors: list | None = None,
) -> Client:
    settings = settings or get_settings()
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
            tls=tls_config(settings),
            api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
            runtime=runtime,
            # every mission's workflows carry its fairness key (stratmaster/fairness.py)
            interceptors=[FairnessInterceptor(), *(interceptors or [])],
        )
    except RuntimeError as exc:  # the Rust core raises RuntimeError on connect failures
        raise ServiceUnavailable(
            f"Temporal is not reachable at {settings.temporal_address} (namespace {settings.temporal_namespace}): "
            f"{_reason(exc)}. Start the local stack with `stratmaster dev up`, or set STRATMASTER_TEMPORAL_ADDRESS."
        ) from exc


def _reason(exc: Exception) -> str:
    """The OS-level reason from the core's nested transport error, e.g. "Connection refused"."""
    found = re.search(r'message: "([^"]+)"', str(exc))
    return found.group(1) if found else str(exc)[:200]
