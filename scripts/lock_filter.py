"""Split requirements.lock by package: `--only NAME` prints NAME's pinned requirement with its
hashes; `--drop NAME` prints the lock without it. scripts/bootstrap.sh installs the lock without
llama-cpp-python, which scripts/install_llm.sh builds with its own flags.

usage: python scripts/lock_filter.py (--only|--drop) NAME requirements.lock
"""
from __future__ import annotations

import re
import sys


def blocks(text: str) -> list[tuple[str | None, str]]:
    """The lock as (package name or None, text) blocks: a requirement line with its continuation
    and comment lines; header comments have no name."""
    out: list[tuple[str | None, str]] = []
    for line in text.splitlines(keepends=True):
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==", line)
        if m:
            out.append((m.group(1).lower().replace("_", "-"), line))
        elif out and line[:1].isspace():
            name, body = out[-1]
            out[-1] = (name, body + line)
        else:
            out.append((None, line))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("--only", "--drop"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, name, path = argv[0], argv[1].lower().replace("_", "-"), argv[2]
    with open(path, encoding="utf-8") as f:
        parts = blocks(f.read())
    if mode == "--only":
        # the requirement and its hashes, without the "# via" comment lines
        body = "".join(b for n, b in parts if n == name)
        sys.stdout.write("".join(ln for ln in body.splitlines(keepends=True) if not ln.lstrip().startswith("#")))
    else:
        sys.stdout.write("".join(b for n, b in parts if n != name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
