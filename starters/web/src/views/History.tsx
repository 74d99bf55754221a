// The mission's research runs, newest first; each reopens at its own page.
import { useEffect, useState } from "preact/hooks";
import { api, ApiError } from "../api";
import { href, OUTCOME_LABEL, when } from "../format";
import type { ResearchList } from "../types";

export function History({ mission }: { mission: string }) {
  const [list, setList] = useState<ResearchList | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api<ResearchList>(`/missions/${encodeURIComponent(mission)}/research?limit=100`)
      .then(setList)
      .catch((e: unknown) => setError(e instanceof ApiError ? e.message : String(e)));
  }, [mission]);
  if (error)
    return (
      <p role="alert" class="error">
        {error}
      </p>
    );
  if (!list) return <p aria-live="polite">Loading the history…</p>;
  if (!list.runs.length) return <p>No research yet in this mission.</p>;
  return (
    <table class="history" data-testid="history">
      <caption>
        {list.total} research runs (newest first{list.total > list.runs.length ? `, the latest ${list.runs.length}` : ""})
      </caption>
      <thead>
        <tr>
          <th scope="col">Question</th>
          <th scope="col">Outcome</th>
          <th scope="col">Asked</th>
        </tr>
      </thead>
      <tbody>
        {list.runs.map((r) => (
          <tr key={r.workflow_id}>
            <td>
              <a href={href(mission, "", r.workflow_id)}>{r.query}</a>
            </td>
            <td>{r.outcome ? OUTCOME_LABEL[r.outcome] : r.status}</td>
            <td>{when(r.created_at)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
