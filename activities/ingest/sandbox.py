"""parse_document in a child process, bounded in memory and time.

A hostile document can make a parser allocate gigabytes or spin for minutes
(a DOCX of a million paragraphs, quadratic paths in a library). A thread cannot
be stopped, so each parse runs in its own process, forked from a forkserver
that has the parsers imported already (a few milliseconds per parse):

- RLIMIT_AS caps its address space (`parse_memory_mb`): an allocation past the
  cap fails with MemoryError, reported as Oversized "exceeded N MB";
- past the wall-clock deadline (`parse_timeout_s`) it is killed (SIGKILL) and
  the parse fails with Oversized "exceeded N s"; RLIMIT_CPU backs the deadline
  up should the worker die first;
- cancelling the awaiting task (activity cancelled, worker shutting down) kills
  it too.

Every outcome that is the document's fault is a non-retryable ApplicationError;
a failure to start the process, or a child ended by a signal it did not bring
on itself, is retryable (raised as ParserProcessError).
"""
from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import signal
import threading
import time
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.ingest.parsing import ParsedDocument
from stratmaster.errors import CORRUPT_DOCUMENT, OVERSIZED, bad_input

# imported once in the forkserver, so a forked child starts with them loaded
PRELOAD = ["activities.ingest.sandbox", "activities.ingest.parsing", "activities.ingest.sandbox_preload"]

_ctx_lock = threading.Lock()
_ctx: Any = None
_starting = threading.local()
# Process.start() polls every started child (multiprocessing's _cleanup), and two threads polling one
# forkserver child race for its exit status: starts and joins are serialised (both are quick)
_lifecycle = threading.Lock()


class ParserProcessError(RuntimeError):
    """The parser process could not run or was ended from outside: not the document's fault (retried)."""


def _context():
    global _ctx
    with _ctx_lock:
        if _ctx is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _skip_main_in_children()
            _ctx = ctx
        return _ctx


def _skip_main_in_children() -> None:
    """A forkserver child re-runs the parent's __main__ script (not a `-m` module) before it
    unpickles its target, as spawn does. Ours need nothing from it (the target is
    importable), so the parses started here skip it: no script imports per document."""
    from multiprocessing import spawn

    original = spawn.get_preparation_data
    if getattr(original, "_skips_main", False):
        return

    def get_preparation_data(name):
        data = original(name)
        if getattr(_starting, "parse", False):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    get_preparation_data._skips_main = True  # type: ignore[attr-defined]
    spawn.get_preparation_data = get_preparation_data


def warm_up() -> None:
    """Start the forkserver now (it imports the parsers: ~1 s) rather than on the first document."""
    from multiprocessing import forkserver

    _context()
    forkserver.ensure_running()


# ---------------------------------------------------------------- child side

def _child_main(conn, name: str, data: bytes, memory_bytes: int, cpu_seconds: int) -> None:
    import resource

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the worker's terminal: the worker decides
    def limit(which: int, soft: int, hard: int) -> None:
        _, current = resource.getrlimit(which)  # never above a hard limit set from outside (a container's)
        if current != resource.RLIM_INFINITY:
            soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(which, (soft, hard))

    try:
        limit(resource.RLIMIT_AS, memory_bytes, memory_bytes)
        limit(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 5)
        limit(resource.RLIMIT_CORE, 0, 0)
    except (ValueError, OSError) as exc:
        conn.send(("fatal", f"cannot limit the parser process: {exc}"))
        return
    try:
        from activities.ingest import parsing

        parsing.MEMORY_LIMIT_MB = memory_bytes // (1024 * 1024)
        msg: tuple = ("ok", parsing.parse_document(name, data))
    except ApplicationError as err:
        msg = ("error", err.message, err.type, err.non_retryable)
    except MemoryError:
        msg = ("memory",)
    except BaseException as exc:  # parse_document maps document faults; anything else is a bug, still not retried
        msg = ("error", f"{name}: parser failed: {type(exc).__name__}: {str(exc)[:300]}", CORRUPT_DOCUMENT, True)
    del data
    if msg[0] == "error" and msg[2] == CORRUPT_DOCUMENT and _peak_address_space() >= memory_bytes * 0.9:
        # libxml2 reports a failed allocation as a syntax error ("unknown error"): it was the cap
        msg = ("memory",)
    try:
        conn.send(msg)
    except MemoryError:  # pickling a huge text past the cap
        del msg
        conn.send(("memory",))


def _peak_address_space() -> int:
    """VmPeak of this process in bytes (0 when unknown)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmPeak:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


# ---------------------------------------------------------------- parent side

class _Run:
    """One parse: started, waited for and (on deadline or cancel) killed in a worker thread,
    so the event loop never blocks on the fork, on writing the document or on the result."""

    def __init__(self, name: str, data: bytes, timeout_s: float, memory_mb: int):
        self.name, self.data = name, data
        self.timeout_s, self.memory_mb = timeout_s, memory_mb
        self.proc = None
        self.pid: int | None = None
        self.cancelled = False

    def cancel(self) -> None:
        """From the event loop: signal only (the thread waits for the exit)."""
        self.cancelled = True
        proc = self.proc
        if proc is not None and self.pid is not None:
            try:
                proc.kill()  # SIGKILL unless its exit status is already known
            except (OSError, AttributeError, ValueError):
                pass

    def run(self) -> tuple:
        ctx = _context()
        deadline = time.monotonic() + self.timeout_s
        recv, send = ctx.Pipe(duplex=False)
        cpu = max(1, int(self.timeout_s) + 1)
        proc = ctx.Process(target=_child_main, name=f"parse {self.name[:60]}", daemon=True,
                           args=(send, self.name, self.data, self.memory_mb * 1024 * 1024, cpu))
        self.data = b""
        self.proc = proc
        started = False
        try:
            _starting.parse = True
            try:
                with _lifecycle:
                    proc.start()
                started = True
            except Exception as exc:
                raise ParserProcessError(f"cannot start the parser process: {exc}") from exc
            finally:
                _starting.parse = False
                send.close()
            self.pid = proc.pid
            if self.cancelled:
                proc.kill()
            ready = multiprocessing.connection.wait([recv], timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                return ("timeout",)
            try:
                return recv.recv()
            except (EOFError, OSError):  # it ended without a result
                _reap(proc)
                return ("died", proc.exitcode)
        finally:
            if started:  # done with it: past the deadline, cancelled, or finishing its exit after the result
                _reap(proc, kill=True)
            recv.close()


def _reap(proc, kill: bool = False) -> None:
    """Wait for the child's exit (the forkserver reaps it: its pid is gone afterwards), killing
    it first when `kill` and it is still running."""
    with _lifecycle:
        if kill and proc.exitcode is None:
            try:
                proc.kill()
            except (OSError, ValueError):
                pass
        proc.join(5)


async def parse_in_child(name: str, data: bytes, *, timeout_s: float, memory_mb: int,
                         on_start=None) -> ParsedDocument:
    """parse_document(name, data) in a child process under `memory_mb` of address space and a
    `timeout_s` wall-clock deadline. `on_start(pid)` is called once the child runs (tests)."""
    run = _Run(name, data, timeout_s, memory_mb)
    task = asyncio.ensure_future(asyncio.to_thread(run.run))
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved even when we were cancelled
    try:
        if on_start is not None:
            while run.pid is None and not task.done():
                await asyncio.sleep(0.005)
            if run.pid is not None:
                on_start(run.pid)
        msg = await asyncio.shield(task)
    except asyncio.CancelledError:
        run.cancel()  # the thread sees the pipe close, reaps the child and returns
        raise
    kind = msg[0]
    if kind == "ok":
        return msg[1]
    if kind == "error":
        _, message, type_, non_retryable = msg
        raise ApplicationError(message, type=type_, non_retryable=non_retryable)
    if kind == "timeout":
        raise bad_input(f"{name}: parsing exceeded {timeout_s:g} s (STRATMASTER_PARSE_TIMEOUT_S)", OVERSIZED)
    if kind == "memory":
        raise bad_input(f"{name}: parsing exceeded {memory_mb} MB (STRATMASTER_PARSE_MEMORY_MB)", OVERSIZED)
    if kind == "died":
        code = msg[1]
        if code is not None and code < 0:
            sig = -code
            if sig == signal.SIGXCPU:
                raise bad_input(f"{name}: parsing exceeded {timeout_s:g} s of CPU (STRATMASTER_PARSE_TIMEOUT_S)",
                                OVERSIZED)
            if sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE, signal.SIGILL):
                # a C parser (libxml2, zlib) crashing on the input, or aborting when an allocation failed
                raise bad_input(f"{name}: the parser crashed ({signal.Signals(sig).name}); the document is "
                                f"malformed or needs more than {memory_mb} MB", CORRUPT_DOCUMENT)
            raise ParserProcessError(f"{name}: the parser process was ended by {signal.Signals(sig).name}")
        raise ParserProcessError(f"{name}: the parser process exited ({code}) without a result")
    raise ParserProcessError(f"{name}: {msg[1] if len(msg) > 1 else kind}")
