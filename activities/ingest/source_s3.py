"""S3-compatible bucket prefixes as sources: the credentials profiles a mission may name, the
cached minio clients, the listing, and bounded reads of one object.

Credentials never travel in a workflow: a source names a profile and `resolve_profile`
reads it from the worker's environment (STRATMASTER_S3_PROFILE_<NAME>_ACCESS_KEY /
_SECRET_KEY, optional _ENDPOINT pinning the endpoint, _MISSIONS and _BUCKETS binding it).
An endpoint a mission names must be a public address unless the profile is pinned to it;
clients follow no redirect; S3 errors reach the mission as summaries, never as the
endpoint's own text.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import posixpath
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import urllib3
from temporalio.exceptions import ApplicationError

from activities.ingest.source_walk import Entry
from stratmaster.addresses import TargetRefused, resolve_host
from stratmaster.contracts.ingestion import SourceObjectRef
from stratmaster.contracts.sources import SOURCE_UNAVAILABLE, S3Spec
from stratmaster.errors import BAD_INPUT, OVERSIZED, bad_input, redact

log = logging.getLogger("stratmaster.sources")

T = TypeVar("T")
MAX_SKIPPED_KEYS = 10_000  # S3 keys in a row a listing page may pass over


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str
    endpoint: str | None  # the only endpoint the profile may be used with (None: any public one)
    missions: frozenset[str]  # the missions that may name the profile ("*": every mission)
    locations: tuple[str, ...]  # "bucket" or "bucket/prefix/" it may read (empty: any)


def profile_env(name: str) -> str:
    return f"STRATMASTER_S3_PROFILE_{name.upper()}_"


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def resolve_profile(name: str, environ=None) -> S3Credentials | None:
    """The profile as configured on this worker, or None when it is not (incomplete)."""
    env = os.environ if environ is None else environ
    base = profile_env(name)
    access, secret = env.get(base + "ACCESS_KEY"), env.get(base + "SECRET_KEY")
    if not access or not secret:
        return None
    return S3Credentials(access, secret, env.get(base + "ENDPOINT") or None, frozenset(_csv(env.get(base + "MISSIONS"))),
                         tuple(_csv(env.get(base + "BUCKETS"))))


def _location_allowed(allowed: tuple[str, ...], spec: S3Spec) -> bool:
    if not allowed:
        return True
    for entry in allowed:
        bucket, _, prefix = entry.partition("/")
        if bucket == spec.bucket and spec.prefix.startswith(prefix.rstrip("/") + "/" if prefix else ""):
            return True
    return False


def profile_for(spec: S3Spec, mission: str, environ=None) -> S3Credentials:
    """The credentials `mission` may use for `spec`: the profile must be configured, bound to the
    mission (…_MISSIONS), allow the bucket/prefix (…_BUCKETS) and, when pinned, the endpoint
    (…_ENDPOINT). Every refusal reads the same: which of these failed, or where a profile is
    pinned, is nothing a mission should learn about another's configuration."""
    creds = resolve_profile(spec.credentials_profile, environ)
    if (creds is None or not ({mission, "*"} & creds.missions) or not _location_allowed(creds.locations, spec)
            or (creds.endpoint is not None and creds.endpoint != spec.endpoint)):
        base = profile_env("<name>")
        raise bad_input(
            f"credentials profile {spec.credentials_profile!r} is not available to mission {mission!r} for this "
            f"endpoint and bucket (the operator configures a profile on the ingestion workers: {base}ACCESS_KEY and "
            f"_SECRET_KEY, bound to missions by _MISSIONS, to buckets by _BUCKETS, to one endpoint by _ENDPOINT)",
            SOURCE_UNAVAILABLE)
    return creds


async def check_endpoint(spec: S3Spec, creds: S3Credentials, allow_private: bool) -> None:
    """The endpoint a mission named must be a public address (stratmaster/addresses.py, the policy
    webhooks use), unless the operator pinned the profile to it or allows private endpoints
    (STRATMASTER_S3_ALLOW_PRIVATE): a source is no way to reach the platform's own network."""
    if creds.endpoint is not None or allow_private:
        return
    host, _, port = spec.endpoint.partition(":")  # host[:port] (S3Spec's form)
    try:
        await resolve_host(host, int(port or (443 if spec.secure else 80)), False,
                           "S3 sources reach public endpoints, or one the credentials profile is pinned to "
                           "(STRATMASTER_S3_PROFILE_<NAME>_ENDPOINT)")
    except TargetRefused as exc:
        raise bad_input(f"endpoint {spec.endpoint} refused: {exc}", SOURCE_UNAVAILABLE) from None
    except OSError:
        raise bad_input(f"endpoint {spec.endpoint} does not resolve", SOURCE_UNAVAILABLE) from None


class _NoRedirects(urllib3.PoolManager):
    """A PoolManager that never follows a redirect (urllib3 follows them by default, and minio
    does not turn that off): a 3xx goes back to minio as the error it is, so an S3 server cannot
    send an object read on to another host."""

    def urlopen(self, method, url, redirect=True, **kw):  # type: ignore[override]
        return super().urlopen(method, url, redirect=False, **kw)


_CLIENTS: OrderedDict[tuple, Any] = OrderedDict()
MAX_CLIENTS = 32  # per worker; least recently used goes first


async def s3_client(spec: S3Spec, mission: str, allow_private: bool = False):
    """A minio client for the mission's source (cached per endpoint and credentials, at most
    MAX_CLIENTS), after the profile and endpoint checks; short timeouts, few retries (the
    activity's own retry policy does the rest), no redirects."""
    from minio import Minio

    creds = profile_for(spec, mission)
    await check_endpoint(spec, creds, allow_private)
    key = (spec.endpoint, spec.secure, spec.region, creds.access_key,
           hashlib.sha256(creds.secret_key.encode()).hexdigest())
    client = _CLIENTS.get(key)
    if client is None:
        http = _NoRedirects(
            timeout=urllib3.Timeout(connect=10, read=120), maxsize=4,
            retries=urllib3.Retry(total=3, redirect=False, backoff_factor=0.5, status_forcelist=[500, 502, 503, 504]))
        client = Minio(spec.endpoint, access_key=creds.access_key, secret_key=creds.secret_key, secure=spec.secure,
                       region=spec.region, http_client=http)
        _CLIENTS[key] = client
        while len(_CLIENTS) > MAX_CLIENTS:
            _CLIENTS.popitem(last=False)
    else:
        _CLIENTS.move_to_end(key)
    return client


_S3_UNUSABLE = {"AccessDenied", "NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
                "InvalidBucketName", "AuthorizationHeaderMalformed", "PermanentRedirect"}
_S3_CODE = re.compile(r"[A-Za-z]{1,64}")


def _code(exc) -> str:
    """An S3 error code as shown to the mission: a word, else 'an unrecognised error' (the server's
    own text is never echoed: it may be anything the endpoint chose to answer)."""
    code = getattr(exc, "code", None) or ""
    return code if _S3_CODE.fullmatch(code) else "an unrecognised error"


async def s3_call(fn: Callable[[], T], what: str) -> T:
    """Run a blocking minio call in a thread; S3 refusals become SourceUnavailable (not
    retried), transport trouble a retryable error. Messages are summaries: the error code
    or the kind of failure, never the endpoint's answer or the connection's details."""
    from minio.error import S3Error

    try:
        return await asyncio.to_thread(fn)
    except S3Error as exc:
        if exc.code in _S3_UNUSABLE:
            raise bad_input(f"{what}: the endpoint refused ({exc.code})", SOURCE_UNAVAILABLE) from None
        raise ApplicationError(f"{what}: the endpoint answered {_code(exc)}", type="S3Error") from None
    except ApplicationError:
        raise
    except Exception as exc:  # urllib3 MaxRetryError, connection refused, a redirect, a non-S3 answer, ...
        log.warning("S3 call failed: %s", redact(f"{what}: {type(exc).__name__}: {exc}")[:1000])
        raise ApplicationError(f"{what}: the endpoint could not be used ({type(exc).__name__})",
                               type="S3Unreachable") from None


async def read_object(client, spec: S3Spec, ref: SourceObjectRef, limit: int) -> tuple[str, bytes]:
    """(file name, bytes) of the source's object `ref.key` (below the prefix): a missing object, or
    one over `limit` (by HEAD, or by what the body holds), fails the document (non-retryable)."""
    from minio.error import S3Error

    name = spec.prefix + ref.key
    shown = f"{spec.bucket}/{name}"

    def fetch() -> bytes:
        try:
            st = client.stat_object(spec.bucket, name)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise bad_input(f"object {shown!r} is no longer in source {ref.source_id!r}", BAD_INPUT) from None
            raise
        if (st.size or 0) > limit:
            raise bad_input(f"{shown}: {st.size} bytes is over the limit of {limit} bytes "
                            "(STRATMASTER_MAX_DOCUMENT_BYTES)", OVERSIZED)
        resp = client.get_object(spec.bucket, name)
        try:
            data = resp.read(limit + 1)  # never more than the limit in memory, whatever HEAD said
        finally:
            resp.close()
            resp.release_conn()
        if len(data) > limit:
            raise bad_input(f"{shown}: over the limit of {limit} bytes (STRATMASTER_MAX_DOCUMENT_BYTES)", OVERSIZED)
        return data

    return posixpath.basename(name) or "object", await s3_call(fetch, f"source {ref.source_id}")


def list_bucket(client, spec: S3Spec, after: str | None, limit: int) -> list[Entry]:
    """Up to `limit` objects under the prefix, keys strictly after `after` (S3's own
    StartAfter: the listing resumes server-side, it is never re-read from the start)."""
    out: list[Entry] = []
    start = spec.prefix + after if after else None
    skipped = 0
    for obj in client.list_objects(spec.bucket, prefix=spec.prefix or None, recursive=True, start_after=start):
        name = obj.object_name
        if obj.is_dir or not name or name.endswith("/") or "\x00" in name or not name.startswith(spec.prefix) \
                or not (0 < len(name) - len(spec.prefix) <= 1024):
            skipped += 1
            if skipped > MAX_SKIPPED_KEYS:  # a listing of nothing usable must not run on without end
                raise bad_input(f"over {MAX_SKIPPED_KEYS} unusable keys in a row under the prefix (folders, "
                                "names over 1024 characters)", SOURCE_UNAVAILABLE)
            continue
        skipped = 0
        rel = name[len(spec.prefix):]
        out.append(Entry(rel, int(obj.size or 0), etag=(obj.etag or "").strip('"')))
        if len(out) >= limit:
            break
    return out
