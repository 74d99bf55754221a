"""Ports for the servers the tests start: below the kernel's ephemeral range, never handed out twice
in one process."""
from __future__ import annotations

import random
import socket
from pathlib import Path

_HANDED_OUT: set[int] = set()


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free port below the kernel's ephemeral range: a port from bind(0) can be taken
    as the source port of any outgoing connection before the server meant for it binds
    it (a worker's metrics port was, once, in CI)."""
    floor = _ephemeral_floor()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(15000, max(floor, 15001))
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")
