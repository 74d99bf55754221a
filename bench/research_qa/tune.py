"""Fit and check the answer ranker offline, on the hits saved by `run.py --dump`.

    python bench/research_qa/tune.py --splits --write answer-ranker-2   # the documented procedure (below)
    python bench/research_qa/tune.py [--corpus pydoc]   # the current ranker: sentence-level answer@1/@3, abstention, ECE
    python bench/research_qa/tune.py --fit              # one corpus, 5-fold cross-validated by question
    python bench/research_qa/tune.py --calibrate-findings   # refit only the calibration, on the runs' findings

Every sentence of every run's retrieved hits gets its answerability features
(activities/research/answerability.py, as research computes them) and a label: it states
the gold answer (pattern) and comes from a gold page. `--splits` fits a logistic regression
on the train questions of every corpus, a Platt calibration on each train question's top
three, chooses the regularisation on the dev questions, and writes the model file
activities/research/rankers/NAME.json with its provenance. The test split is never loaded.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.research_qa.corpora import CORPORA, load_questions  # noqa: E402
from bench.research_qa.run import reliability, states_gold  # noqa: E402

NAMES = ["sim", "window", "cover", "passage", "key", "kind", "beside", "retrieval"]


def sentence_rows(runs: dict, questions: list[dict], embed, no_structure: bool = False):
    from activities.research.synthesis import claimable, score_sentences, split_hits, with_structure
    from stratmaster.contracts.knowledge import SearchHit

    page_of = runs["page_of"]
    structure = {} if no_structure else runs.get("structure", {})  # --no-structure: the text alone, as before
    rows = []  # (question index, features, label, claimable)
    for qi, q in enumerate(questions):
        r = runs["results"].get(q["id"])
        if r is None:
            continue
        hits = [with_structure(SearchHit.model_validate(h), structure.get(h["chunk_id"]))
                for h in r["hits"]]
        sents = split_hits(hits)
        score_sentences(q["question"], sents, embed)
        for s in sents:
            quote = s.hit.text[s.local_start:s.local_end]
            label = q["answerable"] and states_gold(quote, q) and page_of.get(s.hit.document_id) in q["gold_pages"]
            rows.append((qi, [s.features[n] for n in NAMES], bool(label), claimable(s)))
    return rows


def evaluate(rows, questions, prob, threshold: float = 0.5) -> dict:
    """Sentence-level: ranking (hit@1/@3 regardless of confidence), findings at the
    threshold (answer@1/@3, abstention), calibration of the top-3 candidates."""
    by_q: dict[int, list] = {}
    for qi, f, y, ok in rows:
        if ok:
            by_q.setdefault(qi, []).append((prob(f), y))
    at1 = at3 = abst = false_abst = rank1 = rank3 = oracle = 0
    points = []
    for qi, q in enumerate(questions):
        ranked = sorted(by_q.get(qi, []), key=lambda x: -x[0])
        top = ranked[0][0] if ranked else 0.0
        findings = [x for x in ranked[:3] if x[0] >= threshold]
        points += ranked[:3]
        if q["answerable"]:
            oracle += any(y for _, y in ranked)
            rank1 += bool(ranked and ranked[0][1])
            rank3 += any(y for _, y in ranked[:3])
            at1 += bool(findings and findings[0][1])
            at3 += any(y for _, y in findings)
            false_abst += top < threshold
        else:
            abst += top < threshold
    n_a = sum(q["answerable"] for q in questions)
    n_u = len(questions) - n_a
    table, ece = reliability([(p, y) for p, y in points]) if points else ([], float("nan"))
    return {"oracle": round(oracle / n_a, 3), "rank@1": round(rank1 / n_a, 3), "rank@3": round(rank3 / n_a, 3),
            "answer@1": round(at1 / n_a, 3), "answer@3": round(at3 / n_a, 3), "abstention": round(abst / max(1, n_u), 3),
            "false_abstention": round(false_abst / n_a, 3), "ece_top3": ece, "reliability": table}


def calibrate_findings(runs: dict, questions: list[dict]) -> None:
    """Platt scaling refitted on what research actually presented: every claim of the dumped runs
    (findings and those below the bar, after clustering, support counting and contradictions),
    labelled by answer@3's criterion. Cross-validated by question at several bars, then fitted on all."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from activities.research.confidence import logit, with_agreement
    from bench.research_qa.run import correct_claim

    rows = []  # (question id, logit, margin, agreement, correct)
    for q in questions:
        r = runs["results"][q["id"]]
        for c in (r["claims"] or []) + (r["below_bar"] or []):
            f = c.get("confidence_factors") or {}
            if "margin" in f:
                rows.append((q["id"], logit(f), f["margin"], f.get("agreement", 1.0),
                             int(correct_claim(c, q, runs["page_of"]))))
    ids = [r[0] for r in rows]
    X = np.array([(z, m) for _, z, m, _, _ in rows])
    agree = np.array([a for *_, a, _ in rows])
    y = np.array([c for *_, c in rows])
    print(f"{len(rows)} claims, {int(y.sum())} correct")

    position = {q["id"]: qi for qi, q in enumerate(questions)}

    def outcome(score, bar):
        e = evaluate([(position[k], i, bool(y[i]), True) for i, k in enumerate(ids)], questions, lambda i: score[i], bar)
        return (f"answer@3 {e['answer@3']:.3f} abstention {e['abstention']:.3f} "
                f"false abstention {e['false_abstention']:.3f} ECE {e['ece_top3']:.3f}")

    number = {k: i for i, k in enumerate(dict.fromkeys(ids))}
    fold = np.array([number[k] % 5 for k in ids])
    cv = np.zeros(len(y))
    for k in range(5):
        cal = LogisticRegression(C=100.0, max_iter=1000).fit(X[fold != k], y[fold != k])
        cv[fold == k] = np.clip(with_agreement(cal.predict_proba(X[fold == k])[:, 1], agree[fold == k]), 0, 1)
    for bar in (0.2, 0.25, 0.3, 0.35):
        print(f"  cross-validated, bar {bar:.2f}: {outcome(cv, bar)}")
    cal = LogisticRegression(C=100.0, max_iter=1000).fit(X, y)
    print(f"CALIBRATION = ({cal.coef_[0][0]:.4f}, {cal.coef_[0][1]:.4f}, {cal.intercept_[0]:.4f})")


def load_rows(args, questions, runs, bench_dir: Path):
    from activities.ingest.sentence_encoder import MODEL_ID
    from activities.research.sentence_vectors import UNITS

    import hashlib

    flat = "-flat" if getattr(args, "no_structure", False) else ""
    which = hashlib.sha256(" ".join(q["id"] for q in questions).encode()).hexdigest()[:10]  # rows are per question list
    cache = bench_dir / f"rows-{args.runs}-{MODEL_ID}-{UNITS}{flat}-{which}"  # features of another scorer are not these
    if cache.exists() and not args.refresh:
        return [tuple(r) for r in json.loads(cache.read_text())]
    from activities.ingest.sentence_encoder import get_sentence_encoder
    from activities.research.sentence_vectors import SentenceVectors
    from stratmaster.settings import Settings

    # research's sentence encoder, with its query prefix (each distinct text embedded once)
    embed = SentenceVectors(max_entries=200_000).for_mission("bench", get_sentence_encoder(Settings(_env_file=None)))
    rows = sentence_rows(runs, questions, embed, getattr(args, "no_structure", False))
    cache.write_text(json.dumps(rows))
    return rows


def question_margins(z, qidx, mask):
    """Each sentence's logit minus its question's best (0 for the top sentence), and which
    sentences are their question's top three (what become findings), over the rows in `mask`."""
    import numpy as np

    m = np.zeros(len(z))
    top = np.zeros(len(z), dtype=bool)
    for qi in set(qidx[mask]):
        idx = np.where((qidx == qi) & mask)[0]
        m[idx] = z[idx] - z[idx].max()
        top[idx[np.argsort(-z[idx])[:3]]] = True
    return m, top


def fit_on_splits(args) -> None:
    """The documented procedure: fit the ranker and its calibration on the train split of every
    corpus given, choose the regularisation on the dev split, never read the test split; with
    --write NAME, write activities/research/rankers/NAME.json with its provenance."""
    from datetime import datetime, timezone

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from activities.ingest.sentence_encoder import MODEL_ID
    from activities.research.confidence import RANKERS, WEIGHTS
    from activities.research.sentence_vectors import UNITS

    base = Path(os.environ.get("STRATMASTER_BENCH_DIR", ROOT / ".data" / "bench-research-qa")).resolve()
    rows, questions, corpus_of, split_of = [], [], [], []
    for name in args.corpus:
        bench_dir = base / name
        runs = json.loads((bench_dir / args.runs).read_text())
        qs = [q for q in load_questions(CORPORA[name], ("train", "dev")) if q["id"] in runs["results"]]
        offset = len(questions)
        rows += [(qi + offset, f, y, ok) for qi, f, y, ok in load_rows(args, qs, runs, bench_dir)]
        questions += qs
        corpus_of += [name] * len(qs)
        split_of += [q["split"] for q in qs]
    kept = [r for r in rows if r[3]]
    X = np.array([f for _, f, _, _ in kept])
    y = np.array([int(label) for _, _, label, _ in kept])
    qidx = np.array([qi for qi, _, _, _ in kept])
    train = np.array([split_of[qi] == "train" for qi in qidx])
    print(f"{len(questions)} train+dev questions ({', '.join(args.corpus)}), {len(kept)} claimable sentences, "
          f"{int(y.sum())} correct; fitting on {int(train.sum())} train sentences")
    documents = WEIGHTS.get("documents", 0.5)  # no sentence row informs it: kept as set

    def top3_margins(z, mask):
        return question_margins(z, qidx, mask)

    def fit(c):
        ranker = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(X[train], y[train])
        z = X @ ranker.coef_[0] + ranker.intercept_[0]
        m, top = top3_margins(z, train)
        cal = LogisticRegression(C=100.0, max_iter=1000).fit(np.c_[z[top], m[top]], y[top])
        m_all, _ = top3_margins(z, np.ones(len(z), dtype=bool))
        p = 1 / (1 + np.exp(-(cal.coef_[0][0] * z + cal.coef_[0][1] * m_all + cal.intercept_[0])))
        return ranker, cal, p

    def dev_report(p):
        out = {}
        for name in args.corpus:
            mine = [qi for qi in range(len(questions)) if corpus_of[qi] == name and split_of[qi] == "dev"]
            local = {qi: k for k, qi in enumerate(mine)}  # evaluate() counts over the questions it is given
            dev_rows = [(local[qi], i, bool(y[i]), True) for i, qi in enumerate(qidx) if qi in local]
            out[name] = evaluate(dev_rows, [questions[qi] for qi in mine], lambda i: p[i], args.bar)
        return out

    best = None
    for c in (0.03, 0.1, 0.3, 1.0, 3.0):
        ranker, cal, p = fit(c)
        dev = dev_report(p)
        score = sum(d["answer@1"] + d["answer@3"] + d["abstention"] - d["false_abstention"] - d["ece_top3"]
                    for d in dev.values()) / len(dev)
        print(f"C {c}: dev " + "; ".join(f"{n} answer@1 {d['answer@1']:.3f} answer@3 {d['answer@3']:.3f} "
                                         f"abstention {d['abstention']:.3f} false {d['false_abstention']:.3f} "
                                         f"ECE {d['ece_top3']:.3f}" for n, d in dev.items()) + f"  (score {score:.3f})")
        if best is None or score > best[0]:
            best = (score, c, ranker, cal, dev)
    score, c, ranker, cal, dev = best
    weights = {n: round(float(v), 4) for n, v in zip(NAMES, ranker.coef_[0])} | {"documents": documents}
    model = {
        "name": args.write or "unsaved",
        "features": NAMES + ["documents"],
        "weights": weights,
        "bias": round(float(ranker.intercept_[0]) - documents / 3, 4),
        "calibration": [round(float(cal.coef_[0][0]), 4), round(float(cal.coef_[0][1]), 4), round(float(cal.intercept_[0]), 4)],
        "provenance": {
            "fitted_by": "python bench/research_qa/tune.py " + " ".join(sys.argv[1:]),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "data": {n: {"train_questions": sum(1 for qi, q in enumerate(questions) if corpus_of[qi] == n and q["split"] == "train"),
                         "dev_questions": sum(1 for qi, q in enumerate(questions) if corpus_of[qi] == n and q["split"] == "dev")}
                     for n in args.corpus},
            "rows": "every claimable retrieved sentence of the train questions' runs (run.py --dump), labelled by "
                    "whether it states the gold answer from a gold page",
            "chosen_on": f"dev split: C={c} of 0.03/0.1/0.3/1/3 by mean(answer@1 + answer@3 + abstention - false "
                         f"abstention - ECE) at bar {args.bar}",
            "dev": {n: {k: d[k] for k in ("answer@1", "answer@3", "abstention", "false_abstention", "ece_top3")}
                    for n, d in dev.items()},
            "test": "never read by this script",
            "units": UNITS, "sentence_encoder": MODEL_ID,
            "note": "the documents weight is kept from the previous ranker: no sentence row informs it",
        },
    }
    print(json.dumps(model, indent=1))
    if args.write:
        (RANKERS / f"{args.write}.json").write_text(json.dumps(model, indent=1) + "\n")
        print(f"wrote {RANKERS / (args.write + '.json')}")


def main(args):
    import math

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from activities.research.confidence import BIAS, CALIBRATION, WEIGHTS

    if args.splits:
        return fit_on_splits(args)
    args.corpus = args.corpus[0]
    bench_dir = Path(os.environ.get("STRATMASTER_BENCH_DIR", ROOT / ".data" / "bench-research-qa")).resolve() / args.corpus
    runs = json.loads((bench_dir / args.runs).read_text())
    # never the test split: its questions are only reported
    questions = [q for q in load_questions(CORPORA[args.corpus], tuple(args.split or ("train", "dev")))
                 if q["id"] in runs["results"]]
    if args.calibrate_findings:
        return calibrate_findings(runs, questions)
    rows = load_rows(args, questions, runs, bench_dir)
    print(f"{len(questions)} questions, {len(rows)} sentences, {sum(y for _, _, y, _ in rows)} correct")

    def ranker_logit(f, w=WEIGHTS, b=BIAS):
        return b + sum(w.get(n, 0.0) * v for n, v in zip(NAMES, f)) + w.get("documents", 0) / 3

    best: dict[int, float] = {}
    for qi, f, _, ok in rows:
        if ok:
            best[qi] = max(best.get(qi, -1e9), ranker_logit(f))
    cur = {}
    for i, (qi, f, _, ok) in enumerate(rows):
        z = ranker_logit(f)
        cur[i] = 1 / (1 + math.exp(-(CALIBRATION[0] * z + CALIBRATION[1] * (z - best.get(qi, z)) + CALIBRATION[2])))
    print("current:", json.dumps(evaluate([(qi, i, y, ok) for i, (qi, _, y, ok) in enumerate(rows)], questions,
                                          lambda i: cur[i])))
    if not args.fit:
        return
    X = np.array([f for _, f, _, ok in rows if ok])
    y = np.array([int(l) for _, _, l, ok in rows if ok])
    qidx = np.array([qi for qi, _, _, ok in rows if ok])
    kept = [r for r in rows if r[3]]

    def fit(mask):
        """(ranker weights, bias, calibration a, b) from the rows in mask: a ranker over
        all sentences, then Platt scaling of its logit on each question's top 3."""
        m = LogisticRegression(C=args.c, class_weight="balanced", max_iter=3000).fit(X[mask], y[mask])
        w = {n: float(v) for n, v in zip(NAMES, m.coef_[0])}
        b = float(m.intercept_[0])
        z = X @ m.coef_[0] + b
        return w, b, z

    def margins(z, mask):
        return question_margins(z, qidx, mask)

    def calibrate(z, m, top):
        """Platt scaling of (logit, margin) on each question's top 3: what become findings."""
        cal = LogisticRegression(C=100.0, max_iter=1000).fit(np.c_[z[top], m[top]], y[top])
        return float(cal.coef_[0][0]), float(cal.coef_[0][1]), float(cal.intercept_[0])

    folds = 5
    cv = np.zeros(len(X))
    for k in range(folds):
        test = (qidx % folds) == k
        w, b, z = fit(~test)
        m_train, top_train = margins(z, ~test)
        a, am, c = calibrate(z, m_train, top_train)
        m_test, _ = margins(z, test)
        cv[test] = 1 / (1 + np.exp(-(a * z[test] + am * m_test[test] + c)))
    lookup = {i: p for i, p in enumerate(cv)}
    indexed = [(qi, i, yv, True) for i, (qi, _, yv, _) in enumerate(kept)]
    print("cross-validated:", json.dumps(evaluate(indexed, questions, lambda i: lookup[i])))
    for t in (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5):
        e = evaluate(indexed, questions, lambda i: lookup[i], t)
        print(f"  bar {t:.2f}: answer@1 {e['answer@1']:.3f} answer@3 {e['answer@3']:.3f} abstention {e['abstention']:.3f} "
              f"false abstention {e['false_abstention']:.3f}")
    everything = np.ones(len(X), dtype=bool)
    w, b, z = fit(everything)
    a, am, c = calibrate(z, *margins(z, everything))
    weights = {n: round(v, 3) for n, v in w.items()}
    print(f"WEIGHTS = {json.dumps({**weights, 'documents': WEIGHTS.get('documents', 0)})}")
    print(f"BIAS = {round(b - WEIGHTS.get('documents', 0) / 3, 3)}\nCALIBRATION = ({round(a, 4)}, {round(am, 4)}, {round(c, 4)})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--calibrate-findings", action="store_true",
                    help="refit the calibration on the dumped runs' claims (after --fit and a run.py --dump)")
    ap.add_argument("--c", type=float, default=1.0, help="inverse regularisation strength")
    ap.add_argument("--runs", default="runs.json")
    ap.add_argument("--corpus", action="append", choices=list(CORPORA),
                    help="repeatable; default pydoc (--splits: every corpus)")
    ap.add_argument("--splits", action="store_true",
                    help="fit on the train split of every corpus, choose on dev (the documented procedure)")
    ap.add_argument("--write", metavar="NAME", help="with --splits: write activities/research/rankers/NAME.json")
    ap.add_argument("--bar", type=float, default=0.3, help="the quality bar dev figures are read at")
    ap.add_argument("--split", action="append", choices=("train", "dev"), help="(one corpus) only these splits")
    ap.add_argument("--no-structure", action="store_true",
                    help="replay without the chunks' structure (definition terms): the units as the text alone gives them")
    ap.add_argument("--refresh", action="store_true", help="recompute the sentence features")
    args = ap.parse_args()
    args.corpus = args.corpus or (list(CORPORA) if args.splits else ["pydoc"])
    main(args)
