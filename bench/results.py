"""Every bench's results file: one per bench, written by the bench, each run stamped with its
date, command and machine.

Folder benches write `bench/<name>/results.md`; single-file benches `bench/results/<name>.md`
(committed, like the folders' files). A file holds one section per command line: a run rewrites
its own command's section and keeps the others, so the default run and, say, a `--pad 98200`
run stand side by side.

    from bench.results import recorded
    with recorded(__file__, "API latency"):
        ...  # whatever the bench prints to stdout becomes its command's section
"""
from __future__ import annotations

import contextlib
import io
import os
import platform
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SINGLE_FILE_RESULTS = ROOT / "bench" / "results"


def machine() -> str:
    """OS, architecture, cores and CPU model, e.g. `Linux x86_64, 2 cores, AMD EPYC 7B13`."""
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {cpu}"


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def script_path(script: str | Path) -> str:
    """The bench's path relative to the checkout, as its header and command name it."""
    return Path(script).resolve().relative_to(ROOT).as_posix()


def command(script: str | Path) -> str:
    return " ".join(["python", script_path(script), *sys.argv[1:]])


def stamp(script: str | Path) -> str:
    """The line under a results file's heading: date, command and machine of this run."""
    return f"{now()} · `{command(script)}` · {machine()}"


def results_path(script: str | Path) -> Path:
    path = Path(script).resolve()
    if path.name == "run.py":
        return path.parent / "results.md"
    return SINGLE_FILE_RESULTS / f"{path.stem}.md"


def header(title: str, script: str | Path) -> list[str]:
    return [f"# {title}: results", "", f"Written by `{script_path(script)}` (do not edit by hand).", ""]


def write(script: str | Path, title: str, body: list[str], path: Path | None = None) -> Path:
    """Write the whole results file: heading, who writes it, this run's stamp, then `body`."""
    path = path or results_path(script)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([*header(title, script), stamp(script), "", *body]).rstrip("\n") + "\n")
    return path


def write_section(script: str | Path, title: str, body: list[str], path: Path | None = None) -> Path:
    """Rewrite this command's section of the results file (heading: the command), keep the others."""
    path = path or results_path(script)
    key = f"## `{command(script)}`"
    sections: dict[str, str] = {}
    if path.is_file():
        for part in re.split(r"^(?=## )", path.read_text(), flags=re.M)[1:]:
            heading, _, rest = part.partition("\n")
            sections[heading.strip()] = rest.strip("\n")
    sections[key] = "\n".join([f"{now()} · {machine()}", "", *body]).strip("\n")
    out = header(title, script)
    for heading, rest in sections.items():
        out += [heading, "", rest, ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out).rstrip("\n") + "\n")
    return path


class _Tee(io.TextIOBase):
    def __init__(self, out) -> None:
        self.out, self.seen = out, io.StringIO()

    def write(self, s: str) -> int:
        self.seen.write(s)
        return self.out.write(s)

    def flush(self) -> None:
        self.out.flush()


@contextlib.contextmanager
def recorded(script: str | Path, title: str) -> Iterator[None]:
    """Print as usual; when the block ends without an error, what it printed to stdout becomes
    this command's section of the bench's results file."""
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield
    path = write_section(script, title, ["```", tee.seen.getvalue().rstrip("\n"), "```"])
    print(f"(written to {path.relative_to(ROOT)})")
