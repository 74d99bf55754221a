"""Research QA bench: does research answer what the documents say, and abstain on what they don't?

    bash bench/research_qa/install.sh             # Debian's python3.11-doc (the corpus)
    python bench/research_qa/run.py [--llm] [--limit N]

Corpus: the Python 3.11 manual's HTML pages under tutorial/, faq/, howto/,
reference/ and using/ (64 pages, Debian package python3.11-doc). Questions:
bench/research_qa/questions.jsonl (answerable ones with a gold answer pattern and
gold pages; unanswerable ones the pages cannot answer).

Everything goes through the product: a real Temporal dev server, a bench
PostgreSQL, the real mission, ingestion and research workers in-process;
ActivateMissionWorkflow activates the bench cartridge, IngestDocumentsWorkflow
ingests the pages (by path), ResearchWorkflow runs every question (full mode).
State is cached under .data/bench-research-qa (STRATMASTER_BENCH_DIR).

Prints and writes to bench/results/research_qa[-llm].json:
  answer@1 / answer@3: the answer / a top-3 finding states the gold answer (its
      quote matches the pattern) and cites a gold page
  abstention: unanswerable questions with outcome insufficient_evidence
  false abstention: answerable questions that abstained
  citation precision: findings' citations whose quote is verbatim in the stored page text
  calibration: reliability table of findings' confidence vs correctness, ECE
  latency p50/p95 of the research workflow
`--dump` also writes every run's hits, so `bench/research_qa/tune.py` can replay
synthesis offline.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
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

HTML_ROOT = Path("/usr/share/doc/python3.11/html")
SECTIONS = ("tutorial", "faq", "howto", "reference", "using")
QUESTIONS = Path(__file__).with_name("questions.jsonl")
MISSION = "bench_pydoc"


def corpus_pages(root: Path = HTML_ROOT) -> list[Path]:
    if not root.is_dir():
        sys.exit(f"{root} is missing: run `bash bench/research_qa/install.sh` (Debian python3.11-doc)")
    return sorted(p for s in SECTIONS for p in (root / s).rglob("*.html"))


def load_questions(path: Path = QUESTIONS) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(p / 100 * len(v)) - 1))] if v else float("nan")


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
    points = []
    for q in questions:
        for c in results[q["id"]]["claims"]:
            points.append((c["confidence"], correct_claim(c, q, page_of)))
            for x in c["supporting"]:
                cites += 1
                text = page_text.get(x["document_id"], "")
                verbatim += text[x["start"]:x["end"]] == x["quote"]
    table, ece = reliability(points) if points else ([], float("nan"))
    lat = [results[q["id"]]["latency_ms"] for q in questions]
    return {
        "answerable": len(answerable), "unanswerable": len(unanswerable),
        "answer@1": round(at1 / len(answerable), 3), "answer@3": round(at3 / len(answerable), 3),
        "abstention": round(abstained / len(unanswerable), 3) if unanswerable else None,
        "false_abstention": round(false_abst / len(answerable), 3),
        "citation_precision": round(verbatim / cites, 4) if cites else None, "citations": cites,
        "findings": len(points), "ece": ece, "reliability": table,
        "latency_ms": {"p50": round(pct(lat, 50), 1), "p95": round(pct(lat, 95), 1)},
    }


# ---------------------------------------------------------------- run

MIN_CONFIDENCE = 0.3  # the bench mission's bar: findings are correct at least 30% of the time (calibrated; see docs/research.md)
BARS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.5)


def bench_cartridge(llm: bool, min_confidence: float) -> str:
    import hashlib

    import yaml

    body = {"engines": {"bm25": True, "dense": True, "graph": False, "web": False, "llm": llm},
            "quality": {"min_confidence": min_confidence, "min_sources": 1, "max_contradiction_ratio": 0.5}}
    patch = int(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:6], 16)  # a version per content
    return yaml.safe_dump({
        "format": 1,
        "metadata": {"id": MISSION, "name": "Python 3.11 manual (research QA bench)", "version": f"1.0.{patch}",
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


async def main(args) -> dict:
    from temporalio.worker import Worker

    from workers.registry import WORKFLOW_RUNNER

    import workers.ingestion
    import workers.missions
    import workers.research
    from stratmaster.migrations import apply_migrations
    from stratmaster import queues
    from stratmaster.contracts.ingestion import DocumentRef, IngestInput
    from stratmaster.contracts.missions import ActivateMissionInput
    from stratmaster.contracts.research import ResearchInput
    from stratmaster.local_postgres import LocalPostgres
    from stratmaster.local_temporal import start_local_env
    from stratmaster.search_attributes import for_mission
    from stratmaster.settings import Settings
    from tests.conftest import free_port
    from workflows.ingestion import IngestDocumentsWorkflow
    from workflows.missions import ActivateMissionWorkflow
    from workflows.research import ResearchWorkflow

    questions = load_questions()
    if args.limit:
        questions = [q for q in questions if q["answerable"]][: args.limit] + [q for q in questions if not q["answerable"]][: max(1, args.limit // 3)]
    pages = corpus_pages()
    bench_dir = Path(os.environ.get("STRATMASTER_BENCH_DIR", ROOT / ".data" / "bench-research-qa")).resolve()
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
                ActivateMissionWorkflow.run, ActivateMissionInput(cartridge_text=bench_cartridge(args.llm, args.min_confidence), actor="bench"),
                id=f"bench-activate-{uuid.uuid4().hex[:8]}", task_queue=queues.MISSIONS, search_attributes=for_mission(MISSION))
            print(f"mission {MISSION}: {act.status} (llm {'on' if args.llm else 'off'})", file=sys.stderr)
            t0 = time.perf_counter()
            ing = await client.execute_workflow(
                IngestDocumentsWorkflow.run, IngestInput(mission=MISSION, documents=[DocumentRef(path=str(p)) for p in pages]),
                id=f"ingest-{MISSION}-{uuid.uuid4().hex[:8]}", task_queue=queues.INGESTION,
                search_attributes=for_mission(MISSION))
            ingest_s = time.perf_counter() - t0
            print(f"ingested {len(pages)} pages: {ing.totals.model_dump()} in {ingest_s:.0f} s", file=sys.stderr)
            pool = specs[queues.RESEARCH].extra["research"].pool
            rows = await pool.fetch(
                "SELECT d.id::text AS id, d.source, d.extracted_key FROM documents d JOIN tenants t ON t.id = d.tenant_id "
                "WHERE t.name = $1", MISSION)
            page_of = {r["id"]: str(Path(r["source"]).relative_to(HTML_ROOT)) for r in rows if r["source"].startswith(str(HTML_ROOT))}
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
            for w in running:
                await w.shutdown()
        for s in specs.values():
            if s.close:
                await s.close()
        report = score_run(questions, results, page_of, page_text)
        report["bars"] = {str(b): {k: v for k, v in score_run(questions, at_bar(results, b), page_of, page_text).items()
                                   if k in ("answer@1", "answer@3", "abstention", "false_abstention")} for b in BARS}
        report |= {"min_confidence": args.min_confidence, "corpus": {"pages": len(pages), "chunks": chunks, "ingest_s": round(ingest_s, 1)},
                   "llm": bool(args.llm), "questions": len(questions)}
        print_report(report)
        out_dir = ROOT / "bench" / "results"
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"research_qa{'-llm' if args.llm else ''}.json").write_text(json.dumps(report, indent=2))
        if args.dump:
            (bench_dir / f"runs{'-llm' if args.llm else ''}.json").write_text(json.dumps(
                {"results": results, "page_of": page_of, "page_text": page_text}))
        return report
    finally:
        if env is not None:
            await env.shutdown()
        pg.stop()


def print_report(r: dict) -> None:
    print(f"\nresearch QA over the Python 3.11 manual ({r['corpus']['pages']} pages, {r['corpus']['chunks']} chunks); "
          f"LLM {'on' if r['llm'] else 'off'}; {r['answerable']} answerable + {r['unanswerable']} unanswerable questions")
    print(f"  at the mission's min_confidence {r['min_confidence']}:")
    print(f"  answer@1            {r['answer@1']:.3f}")
    print(f"  answer@3            {r['answer@3']:.3f}   (target >= 0.8)")
    print(f"  abstention          {r['abstention']:.3f}   (target >= 0.9)")
    print(f"  false abstention    {r['false_abstention']:.3f}   (target <= 0.1)")
    print(f"  citation precision  {r['citation_precision']}   ({r['citations']} citations)")
    print(f"  ECE                 {r['ece']}   ({r['findings']} findings)")
    print(f"  latency ms          p50 {r['latency_ms']['p50']}  p95 {r['latency_ms']['p95']}")
    print("  other bars (findings re-gated on confidence): " + "; ".join(
        f"{b}: answer@3 {m['answer@3']:.2f} abstention {m['abstention']:.2f} false {m['false_abstention']:.2f}"
        for b, m in r["bars"].items()))
    print("  reliability: " + "; ".join(f"{b['bin']}: n={b['n']} conf {b['confidence']:.2f} acc {b['accuracy']:.2f}"
                                        for b in r["reliability"]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--llm", action="store_true", help="with the local LLM (STRATMASTER_LLM_API_BASE: a llama.cpp server)")
    parser.add_argument("--limit", type=int, default=0, help="first N answerable (+N/3 unanswerable) questions only")
    parser.add_argument("--dump", action="store_true", help="also save every run with its hits for tune.py")
    parser.add_argument("--min-confidence", type=float, default=MIN_CONFIDENCE, help="the bench mission's quality bar")
    asyncio.run(main(parser.parse_args()))
