"""Sources: directories on the ingestion workers and S3-compatible bucket prefixes
that a mission keeps in sync with its knowledge base (workflows/sources.py).

Tables (infra/postgres/migrations/080_sources.sql), every query filtered by the
mission's tenant id:
  sources       one row per (mission, source id): the definition (no secrets), the
                sync lease (owner workflow id + token) and the last pass's outcome;
  source_files  the manifest: one row per file/object with its size, mtime (directory)
                or ETag (S3), content hash, status (pending | indexed | failed), the
                reason of a failure and the document that serves it.

A pass (generation, from a global sequence) lists the source page by page in path
order (a cursor, never the whole listing in one payload). Per entry: unchanged when
size+mtime (directory) or ETag+size (S3) match an indexed row whose document still
exists; a directory file whose metadata changed is hashed and only counts as changed
when its sha256 differs. New and changed entries are marked pending (with the page's
ingestion batch id) and handed to IngestDocumentsWorkflow; `apply_page` then records
each file's outcome from the ingestion result. Rows the pass did not see are deleted
files: `delete_missing` removes their documents from every store (the one deletion
path, activities/ops/retention.py: purge_document) and then their rows.

A document is deleted only when no manifest row of the mission refers to it any
more and a source sync created it (documents.batch_id `src-...`): the same bytes
under two paths, or ingested by hand before, stay. A changed file's old version is
recorded as `replaced_document_id` in the same statement that points the row at the
new version, and deleted afterwards, so a crash in between leaves a to-do, never an
orphan; every step is idempotent (retries and resumed runs change nothing twice).

S3 credentials: a source names a profile; `resolve_profile` reads it from the
worker's environment (STRATMASTER_S3_PROFILE_<NAME>_ACCESS_KEY / _SECRET_KEY,
optional _ENDPOINT pinning the endpoint). The ingestion activity reads S3 objects
through `read_source_object` with the same resolution.
"""
from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import os
import posixpath
import re
import stat
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Literal, TypeVar

import asyncpg
import urllib3
from pydantic import TypeAdapter
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeat, keep_alive
from activities.ops.retention import DOCUMENT_COLUMNS, purge_document
from activities.resources import Resources
from activities.stores.tenants import require_mission
from stratmaster import principals, schedules
from stratmaster.addresses import TargetRefused, resolve_host
from stratmaster.contracts.ingestion import EMPTY_DOCUMENT, DocumentRef, SourceObjectRef
from stratmaster.contracts.sources import (
    FORBIDDEN, PLATFORM_ADMIN, SOURCE_BATCH_PREFIX, SOURCE_EMPTY, SOURCE_EXISTS, SOURCE_REMOVED, SOURCE_UNAVAILABLE,
    SYNC_RUNNING, SYNC_SUPERSEDED, UNKNOWN_SOURCE, AddSourceInput, AddSourceResult, ApplyPageInput, ApplyPageResult,
    DeleteMissingInput, DeleteMissingResult, DirectorySpec, FinishSyncInput, FinishSyncResult, ListPageInput, ListPageResult,
    ListSourcesInput, ManifestEntry, PendingFile, RemoveBegin, RemovePage, RemovePageResult, RemoveSourceInput,
    S3Spec, ScheduleSourceInput, SourceList, SourceSpec, SourceStatus, SourceStatusInput, SourceSummary, SyncBeginInput,
    SyncBeginResult, SyncTotals, batch_id_for, schedule_id_for, sync_workflow_id,
)
from stratmaster.errors import BAD_INPUT, NON_RETRYABLE, OVERSIZED, UNKNOWN_MISSION, bad_input, redact

log = logging.getLogger("stratmaster.sources")

T = TypeVar("T")
SKIP_NAMES = {".DS_Store", "Thumbs.db"}  # besides every hidden name (leading '.')
MAX_PATH_CHARS = 4000  # a directory source's root and a file's path in it, together
MAX_REL_PATH_CHARS = 1024  # a file's path in its source (SourceObjectRef.key)
MAX_SKIPPED_KEYS = 10_000  # S3 keys in a row a listing page may pass over
MAX_PAGE_BYTES = 256 * 1024
HEARTBEAT_EVERY_S = 10.0  # a page's pending references stay far below Temporal's 2 MB payload limit
# a failed file is tried again only when it changes; other failures (timeouts) every pass
PERMANENT_FAILURES = {*NON_RETRYABLE, EMPTY_DOCUMENT}
_SPEC = TypeAdapter(SourceSpec)
_HASH_BLOCK = 1 << 20


# ---------------------------------------------------------------- S3 credentials and client
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


async def _s3(fn: Callable[[], T], what: str) -> T:
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


async def read_source_object(pool: asyncpg.Pool, mission: str, ref: SourceObjectRef, limit: int,
                             allow_private: bool = False) -> tuple[str, bytes]:
    """(file name, bytes) of a file of one of the mission's sources, for the ingestion
    activity: an S3 object, or a file below a directory source's root (read without following
    any link, and only if it is the file the listing saw). A missing object or source, or one
    over `limit`, fails the document (non-retryable); an unreachable endpoint is retried."""
    from minio.error import S3Error

    tenant = await require_mission(pool, mission)
    row = await pool.fetchrow("SELECT kind, spec FROM sources WHERE tenant_id = $1 AND source_id = $2",
                              tenant, ref.source_id)
    if row is None:
        raise bad_input(f"mission {mission!r} has no source {ref.source_id!r}", BAD_INPUT)
    spec = _spec(row)
    if isinstance(spec, DirectorySpec):
        check_root(spec.path)
        data = await asyncio.to_thread(read_beneath, spec.path, ref.key, ref.file_id, limit)
        return posixpath.basename(ref.key) or "file", data
    client = await s3_client(spec, mission, allow_private)
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

    return posixpath.basename(name) or "object", await _s3(fetch, f"source {ref.source_id}")


# ---------------------------------------------------------------- listing
@dataclass
class Entry:
    path: str  # relative, '/'-separated
    size: int
    mtime_ns: int | None = None
    etag: str | None = None
    file_id: str | None = None  # directories: "device:inode" as listed (a read checks it is the same file)


_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: a FIFO never blocks the open


def check_root(root: str) -> None:
    """A directory source's root must still be the real path it was registered as: a link swapped
    in for it (or for a parent) since then is refused, not followed. Checked at every sync and read."""
    if os.path.realpath(root) != root:
        raise bad_input(f"directory {root} now resolves through a symbolic link; sources read real paths only",
                        SOURCE_UNAVAILABLE)


def open_beneath(root: str, rel: str) -> int:
    """A descriptor of the regular file `rel` below `root`, opened one component at a time relative
    to its parent's descriptor with O_NOFOLLOW: a symbolic link anywhere below the root (one
    swapped in after the listing, say) is refused, never followed."""
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise bad_input(f"{rel!r} is not a plain relative path", BAD_INPUT)
    fd = os.open(root, _O_DIR)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _O_DIR, dir_fd=fd)
            os.close(fd)
            fd = nxt
        f = os.open(parts[-1], _O_FILE, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise bad_input(f"{rel}: is or passes through a symbolic link; not read", BAD_INPUT) from None
        raise
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(f).st_mode):
        os.close(f)
        raise bad_input(f"{rel}: not a regular file", BAD_INPUT)
    return f


def _same_file(rel: str, fd: int, file_id: str | None) -> os.stat_result:
    st = os.fstat(fd)
    if file_id is not None and f"{st.st_dev}:{st.st_ino}" != file_id:
        raise bad_input(f"{rel}: not the file the listing saw (replaced since); the next sync reads it", BAD_INPUT)
    return st


def read_beneath(root: str, rel: str, file_id: str | None, limit: int) -> bytes:
    """The bytes of `rel` below `root` (open_beneath), if it is the listed file and within `limit`."""
    try:
        fd = open_beneath(root, rel)
    except FileNotFoundError:
        raise bad_input(f"{rel}: no longer in the directory", BAD_INPUT) from None
    except OSError as exc:
        raise bad_input(f"{rel}: cannot read: {exc.strerror or exc}", SOURCE_UNAVAILABLE) from None
    with os.fdopen(fd, "rb") as fh:
        st = _same_file(rel, fd, file_id)
        if st.st_size > limit:
            raise bad_input(f"{rel}: {st.st_size} bytes is over the limit of {limit} bytes "
                            "(STRATMASTER_MAX_DOCUMENT_BYTES)", OVERSIZED)
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise bad_input(f"{rel}: over the limit of {limit} bytes (STRATMASTER_MAX_DOCUMENT_BYTES)", OVERSIZED)
    return data


def walk_directory(root: str, after: str | None, limit: int) -> list[Entry]:
    """Up to `limit` regular files below `root`, strictly after `after`, in path order
    (component by component, so a page never re-walks what earlier pages covered:
    directories wholly before the cursor are not entered). Hidden names, symbolic links
    and names that are not UTF-8 are skipped. Every directory is opened relative to its
    parent's descriptor without following links, so a folder swapped for a link while the
    walk runs is never entered."""
    after_parts = tuple(after.split("/")) if after else None
    out: list[Entry] = []

    def visit(dir_fd: int, parts: tuple[str, ...]) -> None:
        try:
            with os.scandir(dir_fd) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            # never treat an unreadable directory as empty: that would delete its files' documents
            shown = "/".join((root, *parts))
            raise bad_input(f"{shown}: cannot list: {exc.strerror or exc}", SOURCE_UNAVAILABLE) from None
        for e in entries:
            if len(out) >= limit:
                return
            if e.name.startswith(".") or e.name in SKIP_NAMES:
                continue
            try:
                e.name.encode("utf-8")
            except UnicodeEncodeError:
                continue
            p = parts + (e.name,)
            try:
                st = os.stat(e.name, dir_fd=dir_fd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    if after_parts is not None and p < after_parts and after_parts[:len(p)] != p:
                        continue  # everything below sorts before the cursor
                    try:
                        sub = os.open(e.name, _O_DIR, dir_fd=dir_fd)
                    except OSError as exc:
                        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                            continue  # swapped for a link (or a file) since the listing: not entered
                        raise
                    try:
                        visit(sub, p)
                    finally:
                        os.close(sub)
                elif stat.S_ISREG(st.st_mode):
                    if after_parts is not None and p <= after_parts:
                        continue
                    rel = "/".join(p)
                    if len(rel) > MAX_REL_PATH_CHARS or len(root) + 1 + len(rel) > MAX_PATH_CHARS:
                        continue
                    out.append(Entry(rel, st.st_size, mtime_ns=st.st_mtime_ns, file_id=f"{st.st_dev}:{st.st_ino}"))
            except FileNotFoundError:
                continue  # removed while listing: its files are gone

    check_root(root)
    try:
        fd = os.open(root, _O_DIR)
    except OSError:
        raise bad_input(f"directory {root} does not exist on this worker (or is not a directory)",
                        SOURCE_UNAVAILABLE) from None
    try:
        visit(fd, ())
    finally:
        os.close(fd)
    return out


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


def sha256_beneath(root: str, rel: str, file_id: str | None) -> str:
    """sha256 of the file `rel` below `root`, opened like read_beneath (no links, the listed file)."""
    h = hashlib.sha256()
    with os.fdopen(open_beneath(root, rel), "rb") as fh:
        _same_file(rel, fh.fileno(), file_id)
        while block := fh.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def source_ref(source_id: str, path: str, size: int | None = None, file_id: str | None = None) -> DocumentRef:
    """How ingestion reads a source's file: by the source's id and the file's path in it (the worker
    looks the source up in the mission's own rows: no path or endpoint travels in the workflow)."""
    return DocumentRef(source_object=SourceObjectRef(source_id=source_id, key=path, size=size, file_id=file_id))


def _op_key(suffix: str) -> str | None:
    if not activity.in_activity():
        return None
    info = activity.info()
    return f"{info.workflow_run_id}/{info.activity_id}/{suffix}"


async def _audit(conn, actor: str, mission: str, action: str, target: str, detail: dict, op_key: str | None) -> None:
    await conn.execute(
        """INSERT INTO audit_log (actor, mission, action, target, detail, op_key) VALUES ($1, $2, $3, $4, $5::jsonb, $6)
           ON CONFLICT (op_key) WHERE op_key IS NOT NULL DO NOTHING""",
        actor, mission, action, target, json.dumps(detail, default=str), op_key)


def _spec(row) -> DirectorySpec | S3Spec:
    return _SPEC.validate_python(json.loads(row["spec"]) if isinstance(row["spec"], str) else row["spec"])


def _uuid(value) -> uuid.UUID | None:
    return None if value is None else (value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


# ---------------------------------------------------------------- activities
class SourceActivities:
    """Activities of the sources area (ingestion-tasks: the workers that read the
    directories are the ones that ingest them)."""

    def __init__(self, resources: Resources):
        self.settings = resources.settings
        self.pool = resources.pool
        self.stores = resources.stores

    def all(self) -> list:
        return [self.add, self.schedule, self.remove_begin, self.wait_idle, self.remove_page, self.remove_finish,
                self.sync_begin, self.list_page, self.apply_page, self.delete_missing, self.sync_finish,
                self.list_sources, self.status]

    # ------------------------------------------------------------ helpers
    async def _tenant_any(self, mission: str) -> uuid.UUID:
        """The mission's tenant id, active or not (removal and reads work on a deactivated mission)."""
        tid = await self.pool.fetchval("SELECT id FROM tenants WHERE name = $1", mission)
        if tid is None:
            raise bad_input(f"unknown mission {mission!r}", UNKNOWN_MISSION)
        return tid

    @staticmethod
    async def _lease(conn, tenant, source_id: str, token: str, *, allow_removing: bool = False) -> Any:
        """The source row, share-locked for the caller's transaction, if this sync still holds it."""
        row = await conn.fetchrow(
            "SELECT kind, spec, status, sync_token FROM sources WHERE tenant_id = $1 AND source_id = $2 FOR SHARE",
            tenant, source_id)
        if row is None:
            raise bad_input(f"source {source_id!r} was removed", SOURCE_REMOVED)
        if row["status"] == "removing" and not allow_removing:
            raise bad_input(f"source {source_id!r} is being removed", SOURCE_REMOVED)
        if row["sync_token"] != token:
            raise bad_input(f"another sync took over source {source_id!r}", SYNC_SUPERSEDED)
        return row

    @staticmethod
    async def _running(workflow_id: str) -> bool:
        from temporalio.client import WorkflowExecutionStatus
        from temporalio.service import RPCError, RPCStatusCode

        try:
            desc = await activity.client().get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return desc.status == WorkflowExecutionStatus.RUNNING

    async def _drop_document(self, conn, tenant, mission: str, source_id: str, doc_id, path: str, why: str) -> bool:
        """Delete a document from every store unless another manifest row (of any of the
        mission's sources) still refers to it, or it was not created by a source sync."""
        doc_id = _uuid(doc_id)
        if doc_id is None:
            return False
        doc = await conn.fetchrow(f"SELECT {DOCUMENT_COLUMNS}, batch_id FROM documents WHERE id = $1 AND tenant_id = $2",
                                  doc_id, tenant)
        if doc is None:
            return False  # already gone (a previous attempt, retention)
        if not (doc["batch_id"] or "").startswith(SOURCE_BATCH_PREFIX):
            return False  # ingested outside the sources (by hand, the API): not ours to delete
        still = await conn.fetchval(
            """SELECT 1 FROM source_files WHERE tenant_id = $1 AND document_id = $2
                 AND NOT (source_id = $3 AND path = $4) LIMIT 1""", tenant, doc_id, source_id, path)
        if still:
            return False
        heartbeat({"deleting": str(doc_id)})

        async def count(c) -> None:  # in the document row's transaction: counted once, whatever retries
            await c.execute("""UPDATE sources SET pass_documents_deleted = pass_documents_deleted + 1
                               WHERE tenant_id = $1 AND source_id = $2""", tenant, source_id)

        await purge_document(
            self.stores, conn, mission, doc, actor=f"source:{source_id}", action="source.document_deleted",
            detail={"source_id": source_id, "path": path, "why": why},
            op_key=f"source-document/{doc_id}/{doc['created_at'].isoformat()}", also=count)
        return True

    @staticmethod
    async def _delete_row(conn, tenant, source_id: str, path: str, before_generation: int | None = None) -> bool:
        """Delete a manifest row and count it for the pass, in one transaction."""
        async with conn.transaction():
            gone = await conn.execute(
                """DELETE FROM source_files WHERE tenant_id = $1 AND source_id = $2 AND path = $3
                     AND ($4::bigint IS NULL OR seen_generation < $4)""", tenant, source_id, path, before_generation)
            if gone == "DELETE 0":
                return False
            await conn.execute("""UPDATE sources SET pass_files_deleted = pass_files_deleted + 1
                                  WHERE tenant_id = $1 AND source_id = $2""", tenant, source_id)
        return True

    async def _cleanup_replaced(self, conn, tenant, mission: str, source_id: str, paths: list[str] | None) -> int:
        """Delete the older versions recorded in replaced_document_id (of `paths`, or all)."""
        rows = await conn.fetch(
            """SELECT path, replaced_document_id FROM source_files
               WHERE tenant_id = $1 AND source_id = $2 AND replaced_document_id IS NOT NULL
                 AND ($3::text[] IS NULL OR path = ANY($3::text[]))""", tenant, source_id, paths)
        deleted = 0
        for r in rows:
            deleted += await self._drop_document(conn, tenant, mission, source_id, r["replaced_document_id"],
                                                 r["path"], "replaced")
            await conn.execute(
                """UPDATE source_files SET replaced_document_id = NULL
                   WHERE tenant_id = $1 AND source_id = $2 AND path = $3 AND replaced_document_id = $4""",
                tenant, source_id, r["path"], r["replaced_document_id"])
        return deleted

    # ------------------------------------------------------------ add / schedule / remove
    @activity.defn(name="source_add")
    async def add(self, req: AddSourceInput) -> AddSourceResult:
        """Check the actor's role and that this worker can reach the source, then store
        the definition (idempotent: the same definition again is `unchanged`; only the
        interval may change, `updated`)."""
        tenant = await require_mission(self.pool, req.mission)
        d = req.source
        spec = d.spec
        audit_roles: list[str] = req.actor_roles
        if isinstance(spec, DirectorySpec):
            # the roles must come signed (stratmaster/principals.py): the input's actor_roles are only a claim
            try:
                signer, audit_roles = principals.verify_principal(principals.load_key(self.settings), req.principal,
                                                                  req.mission)
            except principals.GrantRefused as exc:
                raise bad_input(f"only a platform admin ({PLATFORM_ADMIN}) may register a directory source, with a "
                                f"principal signed by the API or the CLI; this request has {exc}", FORBIDDEN) from None
            if PLATFORM_ADMIN not in audit_roles:
                raise bad_input(f"only a platform admin ({PLATFORM_ADMIN}) may register a directory source; "
                                f"{signer!r} is not one", FORBIDDEN)
            real = os.path.realpath(spec.path)
            if real != spec.path:  # every sync and read checks the root still is this real path
                raise bad_input(f"directory {spec.path} passes through a symbolic link; register the real path "
                                f"{real}", BAD_INPUT)
            if not os.path.isdir(real):
                raise bad_input(f"directory {spec.path} does not exist on the ingestion workers", SOURCE_UNAVAILABLE)
            if not os.access(real, os.R_OK | os.X_OK):
                raise bad_input(f"directory {spec.path} is not readable by the ingestion workers", SOURCE_UNAVAILABLE)
            data = str(self.settings.abs_data_dir)
            if real == data or real.startswith(data + os.sep) or data.startswith(real.rstrip(os.sep) + os.sep):
                raise bad_input(f"directory {spec.path} overlaps the platform's data directory", BAD_INPUT)
        else:
            client = await s3_client(spec, req.mission, self.settings.s3_allow_private)

            def probe() -> None:
                if not client.bucket_exists(spec.bucket):
                    raise bad_input(f"bucket {spec.bucket!r} does not exist at {spec.endpoint}", SOURCE_UNAVAILABLE)
                for _ in client.list_objects(spec.bucket, prefix=spec.prefix or None, recursive=True):
                    break
            await _s3(probe, f"source {d.source_id} ({spec.location()})")

        wanted = spec.model_dump(mode="json")
        status: Literal["created", "updated", "unchanged"]
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT spec, interval_seconds, status FROM sources WHERE tenant_id = $1 AND source_id = $2 FOR UPDATE",
                tenant, d.source_id)
            if row is not None:
                if row["status"] == "removing":
                    raise bad_input(f"source {d.source_id!r} is being removed; add it again once that finished",
                                    SOURCE_EXISTS)
                if json.loads(row["spec"]) != wanted:
                    raise bad_input(f"mission {req.mission!r} already has a source {d.source_id!r} with a different "
                                    f"definition ({_spec(row).location()}); remove it first", SOURCE_EXISTS)
                status = "unchanged"
                if row["interval_seconds"] != d.interval_seconds:
                    status = "updated"
                    await conn.execute("UPDATE sources SET interval_seconds = $3 WHERE tenant_id = $1 AND source_id = $2",
                                       tenant, d.source_id, d.interval_seconds)
            else:
                status = "created"
                await conn.execute(
                    """INSERT INTO sources (tenant_id, source_id, kind, spec, interval_seconds, created_by)
                       VALUES ($1, $2, $3, $4::jsonb, $5, $6)""",
                    tenant, d.source_id, spec.kind, json.dumps(wanted), d.interval_seconds, req.actor)
            if status != "unchanged":
                await _audit(conn, req.actor, req.mission, f"source.{'add' if status == 'created' else 'update'}",
                             d.source_id, {"kind": spec.kind, "location": spec.location(),
                                           "interval_seconds": d.interval_seconds, "roles": audit_roles},
                             _op_key("audit"))
        return AddSourceResult(mission=req.mission, source_id=d.source_id, status=status, location=spec.location(),
                               interval_seconds=d.interval_seconds,
                               schedule_id=schedule_id_for(req.mission, d.source_id),
                               sync_workflow_id=sync_workflow_id(req.mission, d.source_id))

    @activity.defn(name="source_schedule")
    async def schedule(self, req: ScheduleSourceInput) -> bool:
        """Create/update (`upsert`) or delete the source's Temporal Schedule (idempotent)."""
        client = activity.client()
        if req.action == "delete":
            return await schedules.delete_source_schedule(client, req.mission, req.source_id)
        await schedules.upsert_source_schedule(client, req.mission, req.source_id, req.interval_seconds)
        return True

    @activity.defn(name="source_remove_begin")
    async def remove_begin(self, req: RemoveSourceInput) -> RemoveBegin:
        """Mark the source `removing`: syncs stop at their next step and no new one starts."""
        tenant = await self._tenant_any(req.mission)
        kind = await self.pool.fetchval(
            "UPDATE sources SET status = 'removing' WHERE tenant_id = $1 AND source_id = $2 RETURNING kind",
            tenant, req.source_id)
        return RemoveBegin(found=kind is not None, kind=kind)

    @activity.defn(name="source_wait_idle")
    async def wait_idle(self, req: RemovePage) -> None:
        """Retryable SyncRunning while a sync still holds the lease; then release it."""
        tenant = await self._tenant_any(req.mission)
        owner = await self.pool.fetchval("SELECT sync_owner FROM sources WHERE tenant_id = $1 AND source_id = $2",
                                         tenant, req.source_id)
        if owner and await self._running(owner):
            raise ApplicationError(f"sync {owner} is still running", type=SYNC_RUNNING)
        await self.pool.execute(
            """UPDATE sources SET sync_owner = NULL, sync_token = NULL, pass_files_deleted = 0,
                   pass_documents_deleted = 0 WHERE tenant_id = $1 AND source_id = $2""", tenant, req.source_id)

    @activity.defn(name="source_remove_page")
    async def remove_page(self, req: RemovePage) -> RemovePageResult:
        """Up to `limit` manifest rows: their documents (when nothing else refers to
        them) from every store, then the rows."""
        tenant = await self._tenant_any(req.mission)
        out = RemovePageResult()
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT path, document_id, replaced_document_id FROM source_files
                   WHERE tenant_id = $1 AND source_id = $2 ORDER BY path LIMIT $3""",
                tenant, req.source_id, req.limit)
            for r in rows:
                for doc in (r["replaced_document_id"], r["document_id"]):
                    out.documents += await self._drop_document(conn, tenant, req.mission, req.source_id, doc,
                                                               r["path"], "source removed")
                out.files += await self._delete_row(conn, tenant, req.source_id, r["path"])
        out.more = len(rows) == req.limit
        return out

    @activity.defn(name="source_remove_finish")
    async def remove_finish(self, req: RemoveSourceInput) -> RemovePageResult:
        """Delete the source row (the manifest is empty by now); what the removal deleted."""
        tenant = await self._tenant_any(req.mission)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """DELETE FROM sources WHERE tenant_id = $1 AND source_id = $2
                   RETURNING kind, spec, pass_files_deleted, pass_documents_deleted""", tenant, req.source_id)
            if row is None:  # a retry after the commit
                return RemovePageResult()
            done = RemovePageResult(files=row["pass_files_deleted"], documents=row["pass_documents_deleted"])
            await _audit(conn, req.actor, req.mission, "source.remove", req.source_id,
                         {"kind": row["kind"], "location": _spec(row).location(), "files": done.files,
                          "documents_deleted": done.documents}, _op_key("audit"))
        return done

    # ------------------------------------------------------------ sync
    @activity.defn(name="source_sync_begin")
    async def sync_begin(self, req: SyncBeginInput) -> SyncBeginResult:
        """Take the source's sync lease and a new pass number. Another running sync keeps
        it (`busy`); a lease left by a sync that is no longer running is taken over. A
        retry of this very call returns the same pass. A source that no longer exists
        (`gone`) has its schedule deleted."""
        row = await self.pool.fetchrow("SELECT id, status FROM tenants WHERE name = $1", req.mission)
        if row is None or row["status"] != "active":
            if row is None:
                await schedules.delete_source_schedule(activity.client(), req.mission, req.source_id)
                return SyncBeginResult(outcome="gone", detail=f"mission {req.mission!r} does not exist")
            return SyncBeginResult(outcome="inactive", detail=f"mission {req.mission!r} is {row['status']}")
        tenant = row["id"]
        async with self.pool.acquire() as conn, conn.transaction():
            src = await conn.fetchrow(
                """SELECT kind, status, sync_owner, sync_token, sync_generation FROM sources
                   WHERE tenant_id = $1 AND source_id = $2 FOR UPDATE""", tenant, req.source_id)
            if src is not None and src["status"] == "active":
                if src["sync_token"] == req.token:
                    return SyncBeginResult(outcome="started", generation=src["sync_generation"], kind=src["kind"])
                owner = src["sync_owner"]
                if owner and owner != req.owner and await self._running(owner):
                    return SyncBeginResult(outcome="busy", kind=src["kind"], detail=f"{owner} is syncing this source")
                generation = await conn.fetchval("SELECT nextval('source_sync_generation')")
                await conn.execute(
                    """UPDATE sources SET sync_owner = $3, sync_token = $4, sync_generation = $5, sync_started_at = NOW(),
                           pass_files_deleted = 0, pass_documents_deleted = 0
                       WHERE tenant_id = $1 AND source_id = $2""",
                    tenant, req.source_id, req.owner, req.token, generation)
                return SyncBeginResult(outcome="started", generation=generation, kind=src["kind"])
        if src is not None:
            return SyncBeginResult(outcome="removed", kind=src["kind"], detail=f"source {req.source_id!r} is being removed")
        await schedules.delete_source_schedule(activity.client(), req.mission, req.source_id)
        return SyncBeginResult(outcome="gone", detail=f"mission {req.mission!r} has no source {req.source_id!r}")

    @activity.defn(name="source_list_page")
    async def list_page(self, req: ListPageInput) -> ListPageResult:
        """One page of the listing after `cursor`: classify each entry against the manifest,
        mark new/changed ones pending (this page's batch) and every entry seen by this pass.
        Returns the pending files' document references (at most `page_size`)."""
        tenant = await require_mission(self.pool, req.mission)
        async with self.pool.acquire() as conn, conn.transaction():
            spec = _spec(await self._lease(conn, tenant, req.source_id, req.token))
        heartbeat({"page": req.page, "stage": "list"})
        async with keep_alive({"stage": "list"}):
            if isinstance(spec, DirectorySpec):
                entries = await asyncio.to_thread(walk_directory, spec.path, req.cursor, req.scan_limit)
            else:
                client = await s3_client(spec, req.mission, self.settings.s3_allow_private)
                entries = await _s3(lambda: list_bucket(client, spec, req.cursor, req.scan_limit),
                                    f"source {req.source_id} ({spec.location()})")
        manifest = {r["path"]: r for r in await self.pool.fetch(
            """SELECT f.path, f.size_bytes, f.mtime_ns, f.etag, f.sha256, f.status, f.reason_type, f.added_generation,
                      (d.id IS NOT NULL AND d.status = 'indexed') AS doc_ok
               FROM source_files f LEFT JOIN documents d ON d.id = f.document_id AND d.tenant_id = f.tenant_id
               WHERE f.tenant_id = $1 AND f.source_id = $2 AND f.path = ANY($3::text[])""",
            tenant, req.source_id, [e.path for e in entries])}
        batch_id = batch_id_for(req.source_id, req.generation, req.page)
        unchanged: list[str] = []
        touched: list[tuple] = []
        pending: list[tuple[Entry, str | None, bool]] = []
        examined = 0
        budget = 0  # ~bytes of the pending references (and of their results): long paths make smaller pages
        limit = self.settings.max_document_bytes
        for e in entries:
            examined += 1
            r = manifest.get(e.path)
            settled = r is not None and ((r["status"] == "indexed" and r["doc_ok"])
                                         or (r["status"] == "failed" and r["reason_type"] in PERMANENT_FAILURES))
            sha = None
            if isinstance(spec, S3Spec):
                if settled and r is not None and r["etag"] == e.etag and r["size_bytes"] == e.size:
                    unchanged.append(e.path)
                    continue
            else:
                if settled and r is not None and r["size_bytes"] == e.size and r["mtime_ns"] == e.mtime_ns:
                    unchanged.append(e.path)
                    continue
                if e.size <= limit:  # bigger ones fail as Oversized in ingestion, unread
                    heartbeat({"page": req.page, "stage": "hash", "path": e.path})
                    try:
                        sha = await asyncio.to_thread(sha256_beneath, spec.path, e.path, e.file_id)
                    except FileNotFoundError:
                        continue  # deleted meanwhile: not seen, so handled as deleted
                    except ApplicationError:
                        continue  # swapped for a link or another file meanwhile: not seen (the next pass lists it anew)
                    except OSError as exc:
                        raise bad_input(f"{spec.path}/{e.path}: cannot read: {exc.strerror or exc}",
                                        SOURCE_UNAVAILABLE) from None
                    if settled and r is not None and r["sha256"] and r["sha256"].strip() == sha:
                        touched.append((e.path, e.size, e.mtime_ns))
                        continue
            pending.append((e, sha, r is None or r["added_generation"] == req.generation))
            budget += 2 * len(e.path) + len(getattr(spec, "path", "")) + 300
            if len(pending) >= req.page_size or budget >= MAX_PAGE_BYTES:
                break
        done = examined == len(entries) and len(entries) < req.scan_limit
        next_cursor = entries[examined - 1].path if examined else req.cursor

        async with self.pool.acquire() as conn, conn.transaction():
            await self._lease(conn, tenant, req.source_id, req.token)
            if unchanged:
                await conn.execute(
                    """UPDATE source_files SET seen_generation = $3
                       WHERE tenant_id = $1 AND source_id = $2 AND path = ANY($4::text[])""",
                    tenant, req.source_id, req.generation, unchanged)
            if touched:
                await conn.executemany(
                    """UPDATE source_files SET size_bytes = $4, mtime_ns = $5, seen_generation = $3, updated_at = NOW()
                       WHERE tenant_id = $1 AND source_id = $2 AND path = $6""",
                    [(tenant, req.source_id, req.generation, size, mtime, path) for path, size, mtime in touched])
            if pending:
                await conn.executemany(
                    """INSERT INTO source_files (tenant_id, source_id, path, size_bytes, mtime_ns, etag, sha256, status,
                                                 batch_id, seen_generation, added_generation)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $9)
                       ON CONFLICT (tenant_id, source_id, path) DO UPDATE SET
                           size_bytes = EXCLUDED.size_bytes, mtime_ns = EXCLUDED.mtime_ns, etag = EXCLUDED.etag,
                           sha256 = EXCLUDED.sha256, status = 'pending', reason_type = NULL, reason = NULL,
                           batch_id = EXCLUDED.batch_id, seen_generation = EXCLUDED.seen_generation,
                           updated_at = NOW()""",
                    [(tenant, req.source_id, e.path, e.size, e.mtime_ns, e.etag, sha, batch_id, req.generation)
                     for e, sha, _new in pending])

        def ref(e: Entry) -> DocumentRef:
            return source_ref(req.source_id, e.path, e.size, e.file_id)

        return ListPageResult(next_cursor=next_cursor, done=done, listed=examined, unchanged=len(unchanged),
                              touched=len(touched),
                              pending=[PendingFile(path=e.path, ref=ref(e), new=new) for e, _sha, new in pending])

    @activity.defn(name="source_apply_page")
    async def apply_page(self, req: ApplyPageInput) -> ApplyPageResult:
        """Record the ingestion outcome of a page's pending files (rows still pending in
        this batch only: a retry changes nothing), then delete the versions they replaced."""
        tenant = await require_mission(self.pool, req.mission)
        out = ApplyPageResult()
        paths = [i.path for i in req.items]
        async with self.pool.acquire() as conn:
            # an older to-do of these rows first: the column holds one
            out.documents_deleted += await self._cleanup_replaced(conn, tenant, req.mission, req.source_id, paths)
            async with conn.transaction():
                spec = _spec(await self._lease(conn, tenant, req.source_id, req.token, allow_removing=True))
                rows = {r["path"]: r for r in await conn.fetch(
                    """SELECT path, status, batch_id, document_id, sha256 FROM source_files
                       WHERE tenant_id = $1 AND source_id = $2 AND path = ANY($3::text[]) FOR UPDATE""",
                    tenant, req.source_id, paths)}
                for item in req.items:
                    r = rows.get(item.path)
                    if r is None or r["status"] != "pending" or r["batch_id"] != req.batch_id:
                        continue
                    old = r["document_id"]
                    if item.status in ("ingested", "duplicate") and item.document_id:
                        new = uuid.UUID(item.document_id)
                        await conn.execute(
                            """UPDATE source_files SET status = 'indexed', document_id = $4,
                                   replaced_document_id = $5, sha256 = COALESCE($6, sha256), reason_type = NULL,
                                   reason = NULL, indexed_at = NOW(), updated_at = NOW()
                               WHERE tenant_id = $1 AND source_id = $2 AND path = $3""",
                            tenant, req.source_id, item.path, new, old if old and old != new else None, item.sha256)
                        out.indexed += 1
                    elif item.status == "failed":
                        # the file changed into something that does not ingest: its old version goes too
                        # (the index never serves content the source no longer has)
                        await conn.execute(
                            """UPDATE source_files SET status = 'failed', document_id = NULL, replaced_document_id = $4,
                                   reason_type = $5, reason = $6, updated_at = NOW()
                               WHERE tenant_id = $1 AND source_id = $2 AND path = $3""",
                            tenant, req.source_id, item.path, old, item.reason_type or "Failed",
                            redact(item.reason or "")[:4000])
                        out.failed += 1
                    elif (found := await self._outcome(conn, tenant, spec, req.source_id, req.batch_id, item.path,
                                                       r["sha256"])) is not None:
                        # no usable result in the payload (a label clipped alike): PostgreSQL has the outcome
                        status, doc, reason_type, reason = found
                        await conn.execute(
                            """UPDATE source_files SET status = $4, document_id = $5, replaced_document_id = $6,
                                   reason_type = $7, reason = $8, updated_at = NOW(),
                                   indexed_at = CASE WHEN $4 = 'indexed' THEN NOW() ELSE indexed_at END
                               WHERE tenant_id = $1 AND source_id = $2 AND path = $3""",
                            tenant, req.source_id, item.path, status, doc, old if old and old != doc else None,
                            reason_type, reason)
                        out.indexed += status == "indexed"
                        out.failed += status == "failed"
                    else:  # no result: stays pending, tried again next pass
                        await conn.execute(
                            """UPDATE source_files SET reason_type = 'NoResult', updated_at = NOW(),
                                   reason = 'the ingestion returned no result for this file; tried again next sync'
                               WHERE tenant_id = $1 AND source_id = $2 AND path = $3""",
                            tenant, req.source_id, item.path)
            out.documents_deleted += await self._cleanup_replaced(conn, tenant, req.mission, req.source_id, paths)
        return out

    @staticmethod
    async def _outcome(conn, tenant, spec, source_id: str, batch_id: str, path: str, sha: str | None):
        """(status, document id, reason type, reason) of a file of `batch_id` from PostgreSQL:
        its ingestion_failures row, or (directories: the hash is known) its document."""
        label = source_ref(source_id, path).label
        failure = await conn.fetchrow(
            "SELECT reason_type, reason FROM ingestion_failures WHERE tenant_id = $1 AND batch_id = $2 AND source = $3",
            tenant, batch_id, label[:2000])
        if failure is not None:
            return "failed", None, failure["reason_type"], failure["reason"]
        if sha:
            doc = await conn.fetchval(
                "SELECT id FROM documents WHERE tenant_id = $1 AND sha256 = $2 AND status = 'indexed'",
                tenant, sha.strip())
            if doc is not None:
                return "indexed", doc, None, None
        return None

    @activity.defn(name="source_delete_missing")
    async def delete_missing(self, req: DeleteMissingInput) -> DeleteMissingResult:
        """Up to `limit` rows this pass did not see (files deleted from the source): their
        documents from every store, then the rows; plus any older version still to delete.
        A pass that listed nothing while the manifest has files refuses (SourceEmpty):
        an unmounted directory must not wipe the index."""
        tenant = await require_mission(self.pool, req.mission)
        out = DeleteMissingResult()
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await self._lease(conn, tenant, req.source_id, req.token)
            if req.listed_total == 0:
                n = await conn.fetchval("SELECT count(*) FROM source_files WHERE tenant_id = $1 AND source_id = $2",
                                        tenant, req.source_id)
                if n:
                    raise bad_input(f"source {req.source_id!r} listed no files but its manifest has {n}: nothing was "
                                    "deleted (an unmounted directory? an emptied bucket?); remove the source to drop "
                                    "its documents", SOURCE_EMPTY)
            rows = await conn.fetch(
                """SELECT path, document_id, replaced_document_id, seen_generation FROM source_files
                   WHERE tenant_id = $1 AND source_id = $2
                     AND (seen_generation < $3 OR replaced_document_id IS NOT NULL)
                   ORDER BY path LIMIT $4""", tenant, req.source_id, req.generation, req.limit)
            for r in rows:
                if r["replaced_document_id"] is not None:
                    out.documents += await self._cleanup_replaced(conn, tenant, req.mission, req.source_id, [r["path"]])
                if r["seen_generation"] < req.generation:
                    out.documents += await self._drop_document(conn, tenant, req.mission, req.source_id,
                                                               r["document_id"], r["path"], "deleted from the source")
                    out.files += await self._delete_row(conn, tenant, req.source_id, r["path"], req.generation)
        out.more = len(rows) == req.limit
        return out

    @activity.defn(name="source_sync_finish")
    async def sync_finish(self, req: FinishSyncInput) -> FinishSyncResult:
        """Record the pass's outcome (with the exact deletion counts) and release the lease,
        only while this sync holds it. The token stays, so a retry records the same."""
        tenant = await self._tenant_any(req.mission)
        row = await self.pool.fetchrow(
            """UPDATE sources SET last_sync_status = $4, last_sync_workflow = $5, last_sync_at = NOW(),
                   last_sync_error = $6, sync_owner = NULL,
                   last_sync_totals = $7::jsonb || jsonb_build_object('deleted', pass_files_deleted,
                                                                      'documents_deleted', pass_documents_deleted)
               WHERE tenant_id = $1 AND source_id = $2 AND sync_token = $3
               RETURNING pass_files_deleted, pass_documents_deleted""",
            tenant, req.source_id, req.token, req.status, req.workflow_id,
            redact(req.error)[:2000] if req.error else None, req.totals.model_dump_json())
        if row is None:
            return FinishSyncResult(recorded=False)
        return FinishSyncResult(recorded=True, files_deleted=row["pass_files_deleted"],
                                documents_deleted=row["pass_documents_deleted"])

    # ------------------------------------------------------------ read-only
    async def _summaries(self, tenant, mission: str, source_id: str | None = None) -> list[SourceSummary]:
        rows = await self.pool.fetch(
            """SELECT * FROM sources WHERE tenant_id = $1 AND ($2::text IS NULL OR source_id = $2)
               ORDER BY source_id""", tenant, source_id)
        counts: dict[str, dict[str, int]] = {}
        for c in await self.pool.fetch(
                """SELECT source_id, status, count(*) AS n FROM source_files
                   WHERE tenant_id = $1 AND ($2::text IS NULL OR source_id = $2) GROUP BY source_id, status""",
                tenant, source_id):
            counts.setdefault(c["source_id"], {})[c["status"]] = c["n"]
        out = []
        for r in rows:
            totals = r["last_sync_totals"]
            out.append(SourceSummary(
                source_id=r["source_id"], kind=r["kind"], location=_spec(r).location(),
                interval_seconds=r["interval_seconds"], status=r["status"], created_by=r["created_by"],
                created_at=r["created_at"], schedule_id=schedule_id_for(mission, r["source_id"]),
                syncing=r["sync_owner"], last_sync_status=r["last_sync_status"], last_sync_at=r["last_sync_at"],
                last_sync_workflow=r["last_sync_workflow"], last_sync_error=r["last_sync_error"],
                last_sync_totals=SyncTotals.model_validate_json(totals) if totals else None,
                files=counts.get(r["source_id"], {})))
        return out

    @activity.defn(name="source_list")
    async def list_sources(self, req: ListSourcesInput) -> SourceList:
        tenant = await self._tenant_any(req.mission)
        return SourceList(mission=req.mission, sources=await self._summaries(tenant, req.mission))

    @activity.defn(name="source_status")
    async def status(self, req: SourceStatusInput) -> SourceStatus:
        """The source's summary and a page of its manifest (failed files first, then by path)."""
        tenant = await self._tenant_any(req.mission)
        found = await self._summaries(tenant, req.mission, req.source_id)
        if not found:
            raise bad_input(f"mission {req.mission!r} has no source {req.source_id!r}", UNKNOWN_SOURCE)
        matching = await self.pool.fetchval(
            """SELECT count(*) FROM source_files WHERE tenant_id = $1 AND source_id = $2
                 AND ($3::text IS NULL OR status = $3)""", tenant, req.source_id, req.status)
        rows = await self.pool.fetch(
            """SELECT path, status, size_bytes, mtime_ns, etag, sha256, document_id, reason_type, reason, updated_at,
                      indexed_at
               FROM source_files WHERE tenant_id = $1 AND source_id = $2 AND ($3::text IS NULL OR status = $3)
               ORDER BY (status = 'failed') DESC, (status = 'pending') DESC, path OFFSET $4 LIMIT $5""",
            tenant, req.source_id, req.status, req.offset, req.limit)
        files = [ManifestEntry(
            path=r["path"], status=r["status"], size_bytes=r["size_bytes"],
            mtime=datetime.fromtimestamp(r["mtime_ns"] / 1e9, tz=timezone.utc) if r["mtime_ns"] is not None else None,
            etag=r["etag"], sha256=r["sha256"].strip() if r["sha256"] else None,
            document_id=str(r["document_id"]) if r["document_id"] else None, reason_type=r["reason_type"],
            reason=r["reason"], updated_at=r["updated_at"], indexed_at=r["indexed_at"]) for r in rows]
        return SourceStatus(mission=req.mission, source=found[0], files=files, matching=matching, offset=req.offset,
                            limit=req.limit)

