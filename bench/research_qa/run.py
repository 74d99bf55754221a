"""Research QA bench: does research answer what the documents say, and abstain on what they don't?

    bash bench/research_qa/install.sh                  # the corpora (Debian packages)
    python bench/research_qa/run.py --corpus pgdoc     # one corpus: pydoc | pgdoc | cranfield | all
    python bench/research_qa/run.py --corpus all --llm --limit 30

Corpora and questions: bench/research_qa/corpora.py (three corpora of different kinds, each
question in a train, dev or test split fixed before tuning on it).

Everything goes through the product: a real Temporal dev server, a bench PostgreSQL, the
real mission, ingestion and research workers in-process; ActivateMissionWorkflow activates
the bench cartridge (platform defaults: bm25 + dense, bar 0.3, no LLM unless --llm),
IngestDocumentsWorkflow ingests the pages (by path), ResearchWorkflow runs every question
(full mode). State is cached under .data/bench-research-qa/<corpus> (STRATMASTER_BENCH_DIR).

Per corpus and split, with 95% intervals (Wilson for rates, a bootstrap over questions for ECE):
  answer@1 / answer@3: the answer / a top-3 finding states the gold answer (its quote matches
      the pattern) and cites a gold page
  abstention: unanswerable questions with outcome insufficient_evidence
  false abstention: answerable questions that abstained
  citation precision: findings' citations whose quote is verbatim in the stored page text
  calibration: reliability table of findings' confidence vs correctness, ECE, and the share
      of findings at or above each bar b that are correct (a bar b should hold >= b)
  latency p50/p95 of the research workflow
Writes bench/research_qa/results.json and results.md (date, command, machine; one section per
corpus). `--dump` also writes every run's hits, so bench/research_qa/tune.py can replay synthesis.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench.research_qa.corpora import CORPORA, Corpus, load_questions  # noqa: E402
from bench import results  # noqa: E402

SPLITS = ("train", "dev", "test")
RESULTS = Path(__file__).with_name("results.json")


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(p / 100 * len(v)) - 1))] if v else float("nan")


def wilson(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """95% Wilson score interval of k successes in n."""
    if n == 0:
        return None
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [round(max(0.0, c - h), 3), round(min(1.0, c + h), 3)]


def rate(k: int, n: int) -> dict | None:
    return {"value": round(k / n, 3), "k": k, "n": n, "ci95": wilson(k, n)} if n else None


# ---------------------------------------------------------------- scoring

def states_gold(quote: str, q: dict) -> bool:
    return re.search(q["answer_pattern"], " ".join(quote.split()), re.I) is not None


def correct_claim(claim: dict, q: dict, page_of: dict[str, str]) -> bool:
    """A finding is correct when one of its citations quotes the gold answer from a gold page."""
    return q.get("answerable", False) and any(
        states_gold(c["quote"], q) and page_of.get(c["document_id"]) in q["gold_pages"] for c in claim["supporting"])


def reliability(points: list[tuple[float, bool]], bins: int = 10) -> tuple[list[dict], float]:
    """Reliability table (confidence bins: count, mean confidence, accuracy) and expected calibration error."""
    table, ece = [], 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inb = [(c, y) for c, y in points if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        if not inb:
            continue
        conf = statistics.mean(c for c, _ in inb)
        acc = statistics.mean(1.0 if y else 0.0 for _, y in inb)
        ece += len(inb) / len(points) * abs(conf - acc)
        table.append({"bin": f"{lo:.1f}-{hi:.1f}", "n": len(inb), "confidence": round(conf, 3), "accuracy": round(acc, 3)})
    return table, round(ece, 4)


def score_run(questions: list[dict], results: dict[str, dict], page_of: dict[str, str],
              page_text: dict[str, str]) -> dict:
    answerable = [q for q in questions if q["answerable"]]
    unanswerable = [q for q in questions if not q["answerable"]]
    at1 = at3 = false_abst = 0
    for q in answerable:
        r = results[q["id"]]
        findings = r["claims"]
        if r["outcome"] == "insufficient_evidence":
            false_abst += 1
        ans = r.get("answer") or {}
        if any(states_gold(c["quote"], q) and page_of.get(c["document_id"]) in q["gold_pages"]
               for s in ans.get("sentences", []) for c in s["citations"]):
            at1 += 1
        if any(correct_claim(c, q, page_of) for c in findings[:3]):
            at3 += 1
    abstained = sum(results[q["id"]]["outcome"] == "insufficient_evidence" for q in unanswerable)
    cites = verbatim = 0
    points, by_question = [], []
    for q in questions:
        mine = []
        for c in results[q["id"]]["claims"]:
            mine.append((c["confidence"], correct_claim(c, q, page_of)))
            for x in c["supporting"]:
                cites += 1
                text = page_text.get(x["document_id"], "")
                verbatim += text[x["start"]:x["end"]] == x["quote"]
        points += mine
        by_question.append(mine)
    table, ece = reliability(points) if points else ([], float("nan"))
    # every claim, presented or below the bar: is a confidence of b right at least b of the time?
    every = [(c["confidence"], correct_claim(c, q, page_of))
             for q in questions for c in results[q["id"]]["claims"] + results[q["id"]].get("below_bar", [])]
    holds = {str(b): rate(sum(y for c, y in every if c >= b), sum(1 for c, _ in every if c >= b))
             for b in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)}
    lat = [results[q["id"]]["latency_ms"] for q in questions]
    return {
        "answerable": len(answerable), "unanswerable": len(unanswerable),
        "answer@1": rate(at1, len(answerable)), "answer@3": rate(at3, len(answerable)),
        "abstention": rate(abstained, len(unanswerable)),
        "false_abstention": rate(false_abst, len(answerable)),
        "citation_precision": round(verbatim / cites, 4) if cites else None, "citations": cites,
        "findings": len(points), "ece": ece, "ece_ci95": bootstrap_ece(by_question), "reliability": table,
        "correct_at_or_above": holds,
        "latency_ms": {"p50": round(pct(lat, 50), 1), "p95": round(pct(lat, 95), 1)},
    }


def bootstrap_ece(by_question: list[list[tuple[float, bool]]], rounds: int = 1000) -> list[float] | None:
    """95% interval of the ECE, resampling questions (a question's findings move together)."""
    if not any(by_question):
        return None
    rng = random.Random(7)
    eces = []
    for _ in range(rounds):
        pts = [p for _ in by_question for p in by_question[rng.randrange(len(by_question))]]
        if pts:
            eces.append(reliability(pts)[1])
    eces.sort()
    return [round(eces[int(0.025 * len(eces))], 4), round(eces[int(0.975 * len(eces)) - 1], 4)]


# ---------------------------------------------------------------- run

MIN_CONFIDENCE = 0.3  # the bench mission's bar: findings are correct at least 30% of the time (calibrated; see docs/research.md)
BARS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.5)


def bench_cartridge(corpus: Corpus, llm: bool, min_confidence: float) -> str:
    import hashlib

    import yaml

    body = {"engines": {"bm25": True, "dense": True, "graph": False, "web": False, "llm": llm},
            "quality": {"min_confidence": min_confidence, "min_sources": 1, "max_contradiction_ratio": 0.5}}
    patch = int(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:6], 16)  # a version per content
    return yaml.safe_dump({
        "format": 1,
        "metadata": {"id": mission_of(corpus), "name": f"{corpus.title} (research QA bench)", "version": f"1.0.{patch}",
                     "owners": ["bench@example.com"]}, **body}, sort_keys=False)


def at_bar(results: dict[str, dict], bar: float) -> dict[str, dict]:
    """The runs as if the mission's min_confidence were `bar` (findings and below-bar claims re-gated on confidence)."""
    out = {}
    for qid, r in results.items():
        every = sorted(r["claims"] + r["below_bar"], key=lambda c: -c["confidence"])
        kept = [c for c in every if c["confidence"] >= bar]
        top = kept[0]["supporting"][:1] if kept else []
        out[qid] = {**r, "claims": kept, "outcome": "answered" if kept else "insufficient_evidence",
                    "answer": {"sentences": [{"citations": top}]} if top else None}
    return out


def mission_of(corpus: Corpus) -> str:
    return f"bench_{corpus.name}"


async def main(args, corpus: Corpus) -> dict:
    from temporalio.worker import Worker

    from workers.registry import WORKFLOW_RUNNER

    import workers.ingestion
    import workers.missions
    import workers.research
    from stratmaster.migrations import apply_migrations
    from stratmaster import queues
    from stratmaster.contracts.ingestion import IngestInput
    from stratmaster.contracts.missions import ActivateMissionInput
    from stratmaster.contracts.research import ResearchInput
    from stratmaster.local_postgres import LocalPostgres
    from stratmaster.local_temporal import start_local_env
    from stratmaster.principals import path_ref
    from stratmaster.search_attributes import for_mission
    from stratmaster.settings import Settings
    from tests.support.ports import free_port
    from workflows.ingestion import IngestDocumentsWorkflow
    from workflows.missions import ActivateMissionWorkflow
    from workflows.research import ResearchWorkflow

    MISSION = mission_of(corpus)
    questions = load_questions(corpus, tuple(args.split))
    if args.limit:
        questions = [q for q in questions if q["answerable"]][: args.limit] + [q for q in questions if not q["answerable"]][: max(1, args.limit // 3)]
    bench_dir = Path(os.environ.get("STRATMASTER_BENCH_DIR", ROOT / ".data" / "bench-research-qa")).resolve() / corpus.name
    pages = corpus.pages(bench_dir)
    bench_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(bench_dir, 0o755)
    pg = LocalPostgres(data_dir=bench_dir / "pg", port=free_port())
    pg.start()
    env = None
    try:
        await apply_migrations(pg.dsn)
        extra = {}
        if args.llm:
            extra = {"llm_model": os.environ.get("STRATMASTER_LLM_MODEL", "openai/smollm2"),
                     "llm_api_base": os.environ["STRATMASTER_LLM_API_BASE"]}
        settings = Settings(_env_file=None, data_dir=bench_dir / "data", database_url=pg.dsn, postgres_port=pg.port,
                            mission_config_ttl_seconds=0, **extra)
        env = await start_local_env()
        client = env.client
        specs = {q: await mod.build(settings) for q, mod in ((queues.MISSIONS, workers.missions),
                                                               (queues.INGESTION, workers.ingestion),
                                                               (queues.RESEARCH, workers.research))}
        with ThreadPoolExecutor(4) as ex:
            running = [Worker(client, task_queue=q, workflows=s.workflows, activities=s.activities, activity_executor=ex,
                              workflow_runner=WORKFLOW_RUNNER)
                       for q, s in specs.items()]
            for w in running:
                asyncio.ensure_future(w.run())
            act = await client.execute_workflow(
                ActivateMissionWorkflow.run, ActivateMissionInput(cartridge_text=bench_cartridge(corpus, args.llm, args.min_confidence), actor="bench"),
                id=f"bench-activate-{uuid.uuid4().hex[:8]}", task_queue=queues.MISSIONS, search_attributes=for_mission(MISSION))
            print(f"mission {MISSION}: {act.status} (llm {'on' if args.llm else 'off'})", file=sys.stderr)
            t0 = time.perf_counter()
            ing = await client.execute_workflow(
                IngestDocumentsWorkflow.run, IngestInput(mission=MISSION, documents=[path_ref(settings, MISSION, str(p)) for p in pages]),
                id=f"ingest-{MISSION}-{uuid.uuid4().hex[:8]}", task_queue=queues.INGESTION,
                search_attributes=for_mission(MISSION))
            ingest_s = time.perf_counter() - t0
            print(f"ingested {len(pages)} pages: {ing.totals.model_dump()} in {ingest_s:.0f} s", file=sys.stderr)
            pool = specs[queues.RESEARCH].extra["research"].pool
            rows = await pool.fetch(
                "SELECT d.id::text AS id, d.source, d.extracted_key FROM documents d JOIN tenants t ON t.id = d.tenant_id "
                "WHERE t.name = $1", MISSION)
            by_path = {str(p): corpus.page_id(p, bench_dir) for p in pages}
            page_of = {r["id"]: by_path[r["source"]] for r in rows if r["source"] in by_path}
            stores = specs[queues.RESEARCH].extra["research"].stores
            page_text = {}
            for r in rows:
                if r["extracted_key"]:
                    page_text[r["id"]] = (await stores.objects.get(MISSION, r["extracted_key"])).decode()
            chunks = await pool.fetchval("SELECT count(*) FROM chunks c JOIN tenants t ON t.id = c.tenant_id WHERE t.name = $1", MISSION)

            results: dict[str, dict] = {}
            for i, q in enumerate(questions, 1):
                t = time.perf_counter()
                res = await client.execute_workflow(
                    ResearchWorkflow.run, ResearchInput(mission=MISSION, query=q["question"], cache="off"),
                    id=f"research-{MISSION}-{uuid.uuid4().hex[:12]}", task_queue=queues.RESEARCH,
                    search_attributes=for_mission(MISSION))
                r = res.model_dump(mode="json", exclude=set() if args.dump else {"hits"})
                r["latency_ms"] = (time.perf_counter() - t) * 1000
                results[q["id"]] = r
                top = (res.answer.text[:90] if res.answer and res.answer.text else "-")
                print(f"[{i}/{len(questions)}] {q['id']} {res.outcome:<21} {r['latency_ms']:6.0f} ms  {top}", file=sys.stderr)
            structure = {}
            if args.dump:
                ids = list({h["chunk_id"] for r in results.values() for h in r.get("hits") or []})
                for row in await pool.fetch("SELECT id::text AS id, metadata FROM chunks WHERE id = ANY($1::uuid[])", ids):
                    m = row["metadata"]
                    structure[row["id"]] = json.loads(m) if isinstance(m, str) else m
            for w in running:
                await w.shutdown()
        for s in specs.values():
            if s.close:
                await s.close()
        report = {"corpus": {"name": corpus.name, "title": corpus.title, "kind": corpus.kind, "pages": len(pages),
                             "chunks": chunks, "ingest_s": round(ingest_s, 1)},
                  "min_confidence": args.min_confidence, "llm": bool(args.llm), "questions": len(questions),
                  "ranker": settings.answer_ranker,
                  "splits": {}}
        for split in ("all",) + SPLITS:
            qs = [q for q in questions if split == "all" or q.get("split") == split]
            if not qs:
                continue
            m = score_run(qs, results, page_of, page_text)
            m["bars"] = {str(b): {k: v for k, v in score_run(qs, at_bar(results, b), page_of, page_text).items()
                                  if k in ("answer@1", "answer@3", "abstention", "false_abstention")} for b in BARS}
            report["splits"][split] = m
        print_report(report)
        record(report, args)
        if args.dump:  # with each hit's chunk structure, which research reads from the chunk row
            (bench_dir / f"runs{'-llm' if args.llm else ''}.json").write_text(json.dumps(
                {"results": results, "page_of": page_of, "page_text": page_text, "structure": structure}))
        return report
    finally:
        if env is not None:
            await env.shutdown()
        pg.stop()


def fmt(m: dict | None) -> str:
    if not m:
        return "-"
    lo, hi = m["ci95"]
    return f"{m['value']:.3f} [{lo:.2f}, {hi:.2f}] ({m['k']}/{m['n']})"


def print_report(r: dict) -> None:
    c = r["corpus"]
    print(f"\nresearch QA over the {c['title']} ({c['pages']} pages, {c['chunks']} chunks; ingested in {c['ingest_s']} s); "
          f"LLM {'on' if r['llm'] else 'off'}; bar {r['min_confidence']}")
    for split, m in r["splits"].items():
        print(f"  [{split}] {m['answerable']} answerable + {m['unanswerable']} unanswerable")
        print(f"    answer@1            {fmt(m['answer@1'])}")
        print(f"    answer@3            {fmt(m['answer@3'])}")
        print(f"    abstention          {fmt(m['abstention'])}")
        print(f"    false abstention    {fmt(m['false_abstention'])}")
        print(f"    citation precision  {m['citation_precision']}   ({m['citations']} citations)")
        print(f"    ECE                 {m['ece']} {m['ece_ci95']}   ({m['findings']} findings)")
        print("    correct at or above " + "; ".join(
            f"{b}: {v['value']:.2f} ({v['n']})" for b, v in m["correct_at_or_above"].items() if v))
        print(f"    latency ms          p50 {m['latency_ms']['p50']}  p95 {m['latency_ms']['p95']}")


def record(report: dict, args) -> None:
    """Keep this corpus's figures in results.json (one entry per corpus and LLM setting) and
    rewrite results.md from it: the bench's one results file, with date, command and machine."""
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    key = f"{report['corpus']['name']}{'-llm' if args.llm else ''} @ {report['ranker']}"
    data[key] = {"date": results.now(), "command": results.command(__file__), "machine": results.machine(),
                 **report}
    RESULTS.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    RESULTS.with_suffix(".md").write_text(render_md(data))


def render_md(data: dict) -> str:
    out = ["# Research QA bench: results", "",
           "Written by `bench/research_qa/run.py` (do not edit by hand). Rates with 95% Wilson intervals "
           "(k/n); ECE with a 95% bootstrap interval over questions. Only the test split is held out: "
           "see bench/research_qa/README.md for which splits informed which choices.", ""]
    for key, r in sorted(data.items()):
        c = r["corpus"]
        out += [f"## {c['title']} ({key})", "",
                f"{r['date']} · `{r['command']}` · {r['machine']}  ",
                f"{c['kind']}; {c['pages']} pages, {c['chunks']} chunks, ingested in {c['ingest_s']} s; "
                f"bar {r['min_confidence']}, LLM {'on' if r['llm'] else 'off'}, answer ranker "
                f"`{r.get('ranker', 'answer-ranker-1')}`", "",
                "| split | questions | answer@1 | answer@3 | abstention | false abstention | ECE | citation precision | latency p50 / p95 ms |",
                "|---|---|---|---|---|---|---|---|---|"]
        for split, m in r["splits"].items():
            out.append(f"| {split} | {m['answerable']} + {m['unanswerable']} | {fmt(m['answer@1'])} | {fmt(m['answer@3'])} | "
                       f"{fmt(m['abstention'])} | {fmt(m['false_abstention'])} | {m['ece']} {m['ece_ci95']} | "
                       f"{m['citation_precision']} | {m['latency_ms']['p50']} / {m['latency_ms']['p95']} |")
        out += ["", "Share of findings correct at or above a confidence bar (a bar b should hold at least b):", "",
                "| split | " + " | ".join(f">= {b}" for b in ("0.3", "0.4", "0.5", "0.6", "0.7", "0.8")) + " |",
                "|---|" + "---|" * 6]
        for split, m in r["splits"].items():
            out.append(f"| {split} | " + " | ".join(
                f"{v['value']:.2f} ({v['n']})" if v else "-" for v in m["correct_at_or_above"].values()) + " |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", default="pydoc", choices=[*CORPORA, "all"])
    parser.add_argument("--split", action="append", choices=SPLITS, default=[],
                        help="only these splits' questions (repeatable; default every split)")
    parser.add_argument("--llm", action="store_true", help="with the local LLM (STRATMASTER_LLM_API_BASE: a llama.cpp server)")
    parser.add_argument("--limit", type=int, default=0, help="first N answerable (+N/3 unanswerable) questions only")
    parser.add_argument("--dump", action="store_true", help="also save every run with its hits for tune.py")
    parser.add_argument("--min-confidence", type=float, default=MIN_CONFIDENCE, help="the bench mission's quality bar")
    args = parser.parse_args()
    for name in (CORPORA if args.corpus == "all" else [args.corpus]):
        asyncio.run(main(args, CORPORA[name]))
