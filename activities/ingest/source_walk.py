"""The directory walker of directory sources: lists, hashes and reads the regular files below
a source's root without ever following a symbolic link.

A directory source is a path on the ingestion workers that a mission keeps in sync
(activities/ingest/sources.py). Whatever is below its root may change while a sync runs,
a folder or a file swapped for a link to elsewhere included, so every directory and file is
opened one component at a time relative to its parent's descriptor with O_NOFOLLOW, and a
read checks it holds the very file (device:inode) the listing saw. The root itself is
re-resolved at every sync and read (check_root).
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass

from stratmaster.contracts.sources import SOURCE_UNAVAILABLE
from stratmaster.errors import BAD_INPUT, OVERSIZED, bad_input

SKIP_NAMES = {".DS_Store", "Thumbs.db"}  # besides every hidden name (leading '.')
MAX_PATH_CHARS = 4000  # a directory source's root and a file's path in it, together
MAX_REL_PATH_CHARS = 1024  # a file's path in its source (SourceObjectRef.key)
_HASH_BLOCK = 1 << 20


@dataclass
class Entry:
    """One listed file or object, as both listings (walk_directory here, source_s3.list_bucket)
    return it."""
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


def sha256_beneath(root: str, rel: str, file_id: str | None) -> str:
    """sha256 of the file `rel` below `root`, opened like read_beneath (no links, the listed file)."""
    h = hashlib.sha256()
    with os.fdopen(open_beneath(root, rel), "rb") as fh:
        _same_file(rel, fh.fileno(), file_id)
        while block := fh.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()
