"""The research QA bench's corpora: where each comes from, its pages, their ids, its questions.

Three corpora of different kinds, each installed from a package registry or shipped in
../shared/datasets, each with its own question file (`corpora/<name>/questions.jsonl`):

- pydoc: the Python 3.11 manual (Sphinx HTML, Debian python3.11-doc), 64 pages of tutorial/,
  faq/, howto/, reference/ and using/.
- pgdoc: the PostgreSQL 15 manual (DocBook HTML, Debian postgresql-doc-15), all 1,173 pages.
- cranfield: the Cranfield aeronautics abstracts (science, not software documentation),
  1,400 records turned into one text document each (title, blank line, abstract).

A page id is what a question's `gold_pages` names: a path relative to the manual's html/
directory, or `cranNNNN.txt`. Every question carries its `split` (train, dev or test), fixed
by bench/research_qa/split.py before any tuning on it.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATASETS = HERE.parents[2] / "shared" / "datasets"  # ../shared/datasets beside the checkout


@dataclass(frozen=True)
class Corpus:
    name: str
    title: str
    kind: str  # what sort of text, for the report
    root: Path
    install_hint: str

    @property
    def questions_path(self) -> Path:
        return HERE / "corpora" / self.name / "questions.jsonl"

    def pages(self, work: Path) -> list[Path]:
        """The files to ingest (materialised under `work` when the corpus is not files already)."""
        if self.name == "cranfield":
            return cranfield_files(self.root, work / "cranfield")
        if not self.root.is_dir():
            sys.exit(f"{self.root} is missing: {self.install_hint}")
        if self.name == "pydoc":
            return sorted(p for s in PYDOC_SECTIONS for p in (self.root / s).rglob("*.html"))
        return sorted(self.root.glob("*.html"))

    def page_id(self, path: Path, work: Path) -> str:
        base = work / "cranfield" if self.name == "cranfield" else self.root
        return path.relative_to(base).as_posix()


PYDOC_SECTIONS = ("tutorial", "faq", "howto", "reference", "using")
INSTALL = "run `bash bench/research_qa/install.sh`"
CORPORA = {
    c.name: c for c in (
        Corpus("pydoc", "Python 3.11 manual", "software manual (Sphinx HTML)",
               Path("/usr/share/doc/python3.11/html"), INSTALL + " (Debian python3.11-doc)"),
        Corpus("pgdoc", "PostgreSQL 15 manual", "software manual (DocBook HTML)",
               Path("/usr/share/doc/postgresql-doc-15/html"), INSTALL + " (Debian postgresql-doc-15)"),
        Corpus("cranfield", "Cranfield aeronautics abstracts", "science abstracts (plain text)",
               DATASETS / "cranfield", "the Cranfield collection belongs in ../shared/datasets/cranfield"),
    )
}


def cranfield_records(root: Path) -> list[tuple[int, str, str]]:
    """(id, title, abstract) of every record of cran.all.1400 (fields .I .T .A .B .W)."""
    path = root / "cran.all.1400"
    if not path.is_file():
        sys.exit(f"{path} is missing: the Cranfield collection belongs in ../shared/datasets/cranfield")
    out = []
    for rec in re.split(r"^\.I ", path.read_text(encoding="utf-8", errors="replace"), flags=re.M)[1:]:
        num, _, body = rec.partition("\n")
        fields: dict[str, str] = {}
        for key, value in re.findall(r"^\.([TABW])\n(.*?)(?=^\.[TABW]\n|\Z)", body, flags=re.M | re.S):
            fields[key] = f"{fields[key]}\n{value}" if key in fields else value  # two records hold two .W
        out.append((int(num.strip()), " ".join(fields.get("T", "").split()), fields.get("W", "").strip()))
    return out


def cranfield_text(title: str, abstract: str) -> str:
    return f"{title}\n\n{abstract}\n"


def cranfield_files(root: Path, out: Path) -> list[Path]:
    """One text document per record, `cranNNNN.txt`: its title, a blank line, its abstract."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for num, title, abstract in cranfield_records(root):
        f = out / f"cran{num:04d}.txt"
        text = cranfield_text(title, abstract)
        if not f.is_file() or f.read_text(encoding="utf-8") != text:
            f.write_text(text, encoding="utf-8")
        files.append(f)
    return files


def load_questions(corpus: Corpus, splits: tuple[str, ...] = ()) -> list[dict]:
    qs = [json.loads(line) for line in corpus.questions_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [q for q in qs if not splits or q.get("split") in splits]
