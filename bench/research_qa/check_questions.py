"""Check a research QA corpus's questions against its pages.

    python3 bench/research_qa/check_questions.py [--corpus pydoc|pgdoc|cranfield] [--questions PATH]

Corpus: the HTML pages under tutorial/, faq/, howto/, reference/ and using/ of
Debian's python3.11-doc (/usr/share/doc/python3.11/html); a page id is its path
relative to html/, e.g. "faq/programming.html".  Page text = the HTML with
<script>/<style>/comments dropped, tags stripped (bs4 when installed, else a
regex) and entities unescaped, whitespace collapsed.

Checks: every line is a JSON object with the expected fields and a unique id;
every answerable question's gold pages are in the corpus and its answer_pattern
(a Python regex, case-insensitive) matches each gold page's text; unanswerable
questions say why; at least 45 answerable, 18 unanswerable and 5 answerable per
corpus directory (by first gold page).  Prints one OK line or the failures and
exits 1 on failure.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import sys
from collections import Counter
from pathlib import Path

DIRS = ("tutorial", "faq", "howto", "reference", "using")
HTML_ROOT = Path("/usr/share/doc/python3.11/html")
QUESTIONS = Path(__file__).resolve().parent / "corpora" / "pydoc" / "questions.jsonl"
MIN_ANSWERABLE, MIN_UNANSWERABLE, MIN_PER_DIR = 40, 15, 5

try:
    import bs4  # type: ignore
except ImportError:  # pragma: no cover - depends on the machine
    bs4 = None


def page_text(raw: str) -> str:
    if bs4 is not None:
        soup = bs4.BeautifulSoup(raw, "html.parser")
        for tag in soup(["script", "style"]):
            tag.decompose()
        text = soup.get_text(" ")
    else:
        text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", raw)
        text = re.sub(r"(?s)<!--.*?-->", " ", text)
        text = re.sub(r"<[^>]+>", " ", text)
        text = html.unescape(text)
    return re.sub(r"\s+", " ", text).strip()


def load_corpus(root: Path, corpus: str = "pydoc") -> dict[str, str]:
    pages = {}
    if corpus != "pydoc":
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        import tempfile

        from bench.research_qa.corpora import CORPORA

        c = CORPORA[corpus]
        work = Path(tempfile.mkdtemp(prefix="qa-check-"))
        for f in c.pages(work):
            raw = f.read_text(encoding="utf-8", errors="replace")
            pages[c.page_id(f, work)] = page_text(raw) if f.suffix == ".html" else re.sub(r"\s+", " ", raw).strip()
        return pages
    for d in DIRS:
        for f in sorted((root / d).glob("*.html")):
            pages[f.relative_to(root).as_posix()] = page_text(f.read_text(encoding="utf-8"))
    return pages


def check(questions_path: Path, root: Path, name: str = "pydoc") -> tuple[list[str], str]:
    fails: list[str] = []
    corpus = load_corpus(root, name)
    if not corpus:
        return [f"no corpus pages under {root} ({', '.join(DIRS)})"], ""
    ids: set[str] = set()
    n_ans = n_unans = 0
    per_dir: Counter[str] = Counter()
    for lineno, line in enumerate(questions_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        try:
            q = json.loads(line)
        except json.JSONDecodeError as e:
            fails.append(f"{where}: invalid JSON ({e})")
            continue
        qid = q.get("id")
        where = f"{qid or where}"
        if not qid or qid in ids:
            fails.append(f"{where}: missing or duplicate id")
        ids.add(qid)
        if not str(q.get("question", "")).strip():
            fails.append(f"{where}: empty question")
        if q.get("split") not in (None, "train", "dev", "test"):
            fails.append(f"{where}: split must be train, dev or test")
        if q.get("answerable") is True:
            n_ans += 1
            gold = q.get("gold_pages") or []
            try:
                rx = re.compile(q.get("answer_pattern") or "", re.I)
                if not q.get("answer_pattern"):
                    raise re.error("empty pattern")
            except re.error as e:
                fails.append(f"{where}: bad answer_pattern ({e})")
                continue
            if not gold:
                fails.append(f"{where}: no gold_pages")
                continue
            per_dir[gold[0].split("/", 1)[0] if name == "pydoc" else name] += 1
            for g in gold:
                if g not in corpus:
                    fails.append(f"{where}: gold page {g!r} not in corpus")
                elif not rx.search(corpus[g]):
                    fails.append(f"{where}: pattern {rx.pattern!r} does not match {g}")
        elif q.get("answerable") is False:
            n_unans += 1
            if not str(q.get("why", "")).strip():
                fails.append(f"{where}: unanswerable without 'why'")
        else:
            fails.append(f"{where}: 'answerable' must be true or false")
    if n_ans < MIN_ANSWERABLE:
        fails.append(f"only {n_ans} answerable questions (want >= {MIN_ANSWERABLE})")
    if n_unans < MIN_UNANSWERABLE:
        fails.append(f"only {n_unans} unanswerable questions (want >= {MIN_UNANSWERABLE})")
    for d in DIRS if name == "pydoc" else ():
        if per_dir[d] < MIN_PER_DIR:
            fails.append(f"only {per_dir[d]} answerable questions with first gold page in {d}/ (want >= {MIN_PER_DIR})")
    dist = " ".join(f"{d}={per_dir[d]}" for d in (DIRS if name == "pydoc" else (name,)))
    summary = (f"OK: {n_ans} answerable + {n_unans} unanswerable questions, "
               f"{len(corpus)} corpus pages, all gold patterns match ({dist}; text via "
               f"{'bs4' if bs4 is not None else 'regex'})")
    return fails, summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="pydoc", choices=("pydoc", "pgdoc", "cranfield"))
    ap.add_argument("--questions", type=Path, help="default: bench/research_qa/corpora/<corpus>/questions.jsonl")
    ap.add_argument("--html", type=Path, default=HTML_ROOT, help="the Python manual's html/ (pydoc)")
    args = ap.parse_args()
    questions = args.questions or QUESTIONS.parents[1] / args.corpus / "questions.jsonl"
    fails, summary = check(questions, args.html, args.corpus)
    if fails:
        print(f"FAIL: {len(fails)} problem(s)")
        for f in fails:
            print("  " + f)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
