// One research run: its progress streamed from GET /research/{id}/events (steps, sub-questions,
// hits, findings as they come) and its result the moment the workflow closes; a finished run
// reopened from the history streams its result at once. The report in every stored format.
import { useEffect, useState } from "preact/hooks";
import { ApiError, download, stream } from "../api";
import type { Citation, Claim, ResearchResult, ResearchStatus } from "../types";
import { Evidence } from "./Evidence";
import { Result } from "./Result";

const FORMATS = ["md", "html", "pdf", "docx"] as const;
const STEP_LABEL: Record<string, string> = {
  pending: "Starting",
  planning: "Planning the question",
  retrieving: "Searching the documents",
  synthesising: "Reading the evidence",
  persisting: "Saving the answer",
};

interface Progress {
  step?: string;
  subquestions: string[];
  hits: number;
  findings: Claim[];
}

export function Run({ mission, workflowId }: { mission: string; workflowId: string }) {
  const [progress, setProgress] = useState<Progress>({ subquestions: [], hits: 0, findings: [] });
  const [status, setStatus] = useState<ResearchStatus | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [opened, setOpened] = useState<{ c: Citation; n: number } | null>(null);
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    const abort = new AbortController();
    setError(null);
    setStatus(null);
    setProgress({ subquestions: [], hits: 0, findings: [] });
    stream(
      `/research/${encodeURIComponent(workflowId)}/events`,
      ({ event, data }) => {
        const d = data as Record<string, unknown>;
        if (event === "status" && typeof d.step === "string") setProgress((p) => ({ ...p, step: d.step as string }));
        else if (event === "subquestions") setProgress((p) => ({ ...p, subquestions: d.subquestions as string[] }));
        else if (event === "hits") setProgress((p) => ({ ...p, hits: d.hits as number }));
        else if (event === "findings") setProgress((p) => ({ ...p, findings: d.claims as Claim[] }));
        else if (event === "result") setStatus(data as ResearchStatus);
        else if (event === "error") setError(String(d.detail ?? d.error));
      },
      abort.signal,
    ).catch((e: unknown) => {
      if (!abort.signal.aborted) setError(e instanceof ApiError ? e.message : String(e));
    });
    return () => abort.abort();
  }, [workflowId, attempt]);

  const result: ResearchResult | null | undefined = status?.result;
  const query = result?.query;
  return (
    <div class={`run${opened ? " with-evidence" : ""}`}>
      <div class="run-main">
        <h2 data-testid="question">{query ?? "Research"}</h2>
        {!status && !error && (
          <div class="progress" aria-live="polite" data-testid="progress">
            <p class="step">
              <span class="spinner" aria-hidden="true" /> {STEP_LABEL[progress.step ?? "pending"] ?? progress.step}…
            </p>
            {progress.subquestions.length > 0 && (
              <>
                <h3>Sub-questions</h3>
                <ul data-testid="subquestions">
                  {progress.subquestions.map((q, i) => (
                    <li key={i}>{q}</li>
                  ))}
                </ul>
              </>
            )}
            {progress.hits > 0 && <p data-testid="hits">{progress.hits} passages found</p>}
            {progress.findings.length > 0 && (
              <p data-testid="findings-so-far">{progress.findings.length} findings so far</p>
            )}
          </div>
        )}
        {error && (
          <div role="alert" class="error">
            <p>{error}</p>
            <button type="button" onClick={() => setAttempt((a) => a + 1)}>
              Try again
            </button>
          </div>
        )}
        {status && !result && (
          <p role="alert" class="error">
            The research {status.status}
            {status.error ? `: ${status.error}` : "."}
          </p>
        )}
        {result && (
          <>
            <Result result={result} open={(c, n) => setOpened({ c, n })} />
            <Downloads workflowId={workflowId} />
          </>
        )}
      </div>
      {opened && (
        <Evidence mission={mission} citation={opened.c} number={opened.n} onClose={() => setOpened(null)} />
      )}
    </div>
  );
}

function Downloads({ workflowId }: { workflowId: string }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const get = async (fmt: string) => {
    setBusy(fmt);
    setError(null);
    try {
      await download(`/research/${encodeURIComponent(workflowId)}/report?format=${fmt}`, `${workflowId}.${fmt}`);
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
    } finally {
      setBusy(null);
    }
  };
  return (
    <section class="downloads">
      <h3>Report</h3>
      <div class="buttons">
        {FORMATS.map((f) => (
          <button type="button" key={f} onClick={() => get(f)} disabled={busy !== null}>
            {busy === f ? `Preparing ${f.toUpperCase()}…` : `Download ${f.toUpperCase()}`}
          </button>
        ))}
      </div>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
    </section>
  );
}
