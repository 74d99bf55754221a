"""Fit and check the confidence model offline, on the hits saved by `run.py --dump`.

    python bench/research_qa/tune.py          # current weights: sentence-level answer@1/@3, abstention, ECE
    python bench/research_qa/tune.py --fit    # logistic regression, 5-fold cross-validated by question
    python bench/research_qa/tune.py --calibrate-findings   # refit only the calibration, on the runs' findings

Every sentence of every run's retrieved hits gets its answerability features
(activities/research/answerability.py, as research computes them) and a label: it states
the gold answer (pattern) and comes from a gold page. The fit is scored on the
folds it did not see (reliability table, ECE, ranking), then refitted on all
questions; paste the printed WEIGHTS/BIAS into activities/research/confidence.py.
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


def sentence_rows(runs: dict, questions: list[dict], embed):
    from activities.research.synthesis import claimable, score_sentences, split_hits
    from stratmaster.contracts.knowledge import SearchHit

    page_of = runs["page_of"]
    rows = []  # (question index, features, label, claimable)
    for qi, q in enumerate(questions):
        r = runs["results"].get(q["id"])
        if r is None:
            continue
        hits = [SearchHit.model_validate(h) for h in r["hits"]]
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

    cache = bench_dir / f"rows-{args.runs}-{MODEL_ID}-{UNITS}"  # features of another scorer are not these
    if cache.exists() and not args.refresh:
        return [tuple(r) for r in json.loads(cache.read_text())]
    from activities.ingest.sentence_encoder import get_sentence_encoder
    from activities.research.sentence_vectors import SentenceVectors
    from stratmaster.settings import Settings

    # research's sentence encoder, with its query prefix (each distinct text embedded once)
    embed = SentenceVectors(max_entries=200_000).for_mission("bench", get_sentence_encoder(Settings(_env_file=None)))
    rows = sentence_rows(runs, questions, embed)
    cache.write_text(json.dumps(rows))
    return rows


def main(args):
    import math

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from activities.research.confidence import BIAS, CALIBRATION, WEIGHTS

    bench_dir = Path(os.environ.get("STRATMASTER_BENCH_DIR", ROOT / ".data" / "bench-research-qa")).resolve() / args.corpus
    runs = json.loads((bench_dir / args.runs).read_text())
    # never the test split: its questions are only reported
    questions = [q for q in load_questions(CORPORA[args.corpus], ("train", "dev")) if q["id"] in runs["results"]]
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
        """Each sentence's logit minus its question's best (0 for the top sentence)."""
        m = np.zeros(len(z))
        top = np.zeros(len(z), dtype=bool)
        for qi in set(qidx[mask]):
            idx = np.where((qidx == qi) & mask)[0]
            m[idx] = z[idx] - z[idx].max()
            top[idx[np.argsort(-z[idx])[:3]]] = True
        return m, top

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
    ap.add_argument("--corpus", default="pydoc", choices=list(CORPORA))
    ap.add_argument("--refresh", action="store_true", help="recompute the sentence features")
    main(ap.parse_args())
