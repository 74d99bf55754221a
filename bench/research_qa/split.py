"""Give every question of a corpus its split, once, before any tuning on it.

    python bench/research_qa/split.py --corpus pgdoc            # new questions: train 40%, dev 20%, test 40%
    python bench/research_qa/split.py --corpus pydoc --in-sample   # questions already tuned on: train/dev only

Answerable and unanswerable questions are split separately, in the order of
sha256("<corpus>:<id>") (no one chooses which question lands where). A question that has a
split keeps it: rerunning never moves a question, so a test question stays test.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.research_qa.corpora import CORPORA  # noqa: E402

SHARES = (("train", 0.4), ("dev", 0.2), ("test", 0.4))
IN_SAMPLE = (("train", 2 / 3), ("dev", 1 / 3))


def assign(corpus: str, questions: list[dict], shares) -> None:
    for answerable in (True, False):
        new = sorted((q for q in questions if q["answerable"] is answerable and "split" not in q),
                     key=lambda q: hashlib.sha256(f"{corpus}:{q['id']}".encode()).hexdigest())
        edges, acc = [], 0.0
        for name, share in shares:
            acc += share
            edges.append((name, round(acc * len(new))))
        for i, q in enumerate(new):
            q["split"] = next(name for name, edge in edges if i < edge)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, choices=list(CORPORA))
    ap.add_argument("--in-sample", action="store_true", help="questions earlier rounds tuned on: train and dev only")
    args = ap.parse_args()
    path = CORPORA[args.corpus].questions_path
    questions = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assign(args.corpus, questions, IN_SAMPLE if args.in_sample else SHARES)
    path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions), encoding="utf-8")
    for split in ("train", "dev", "test"):
        mine = [q for q in questions if q["split"] == split]
        print(f"{split}: {sum(q['answerable'] for q in mine)} answerable + {sum(not q['answerable'] for q in mine)} unanswerable")


if __name__ == "__main__":
    main()
