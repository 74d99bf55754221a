// The mission's documents and sources with their state (indexed, being ingested, failed and
// why); writers add documents by drag and drop or the file picker, and watch the ingestion's
// progress stream until its result.
import { useEffect, useState } from "preact/hooks";
import { api, ApiError, stream } from "../api";
import { authHeaders } from "../auth";
import { bytes, reasonText, sourceName, when } from "../format";
import type { DocumentListing, ManifestEntry, SourceSummary } from "../types";

interface Upload {
  workflowId: string;
  names: string[];
  done?: number;
  total?: number;
  result?: { ingested: number; duplicates: number; failed: { source: string; reason?: string | null }[] };
  error?: string;
}

export function Documents({ mission, canWrite }: { mission: string; canWrite: boolean }) {
  const [listing, setListing] = useState<DocumentListing | null>(null);
  const [sources, setSources] = useState<SourceSummary[] | null>(null);
  const [failedFiles, setFailedFiles] = useState<Record<string, ManifestEntry[]>>({});
  const [error, setError] = useState<string | null>(null);
  const [uploads, setUploads] = useState<Upload[]>([]);
  const [refresh, setRefresh] = useState(0);
  const base = `/missions/${encodeURIComponent(mission)}`;

  useEffect(() => {
    setError(null);
    api<DocumentListing>(`${base}/documents?limit=200`)
      .then(setListing)
      .catch((e: unknown) => setError(e instanceof ApiError ? e.message : String(e)));
    api<{ sources: SourceSummary[] }>(`${base}/sources`)
      .then(async (s) => {
        setSources(s.sources);
        const failed: Record<string, ManifestEntry[]> = {};
        for (const src of s.sources.filter((x) => (x.files?.failed ?? 0) > 0)) {
          const st = await api<{ files: ManifestEntry[] }>(
            `${base}/sources/${encodeURIComponent(src.source_id)}?status=failed&limit=20`,
          );
          failed[src.source_id] = st.files;
        }
        setFailedFiles(failed);
      })
      .catch(() => setSources([]));
  }, [mission, refresh]);

  const update = (wid: string, patch: Partial<Upload>) =>
    setUploads((list) => list.map((u) => (u.workflowId === wid ? { ...u, ...patch } : u)));

  const send = async (files: File[]) => {
    if (!files.length) return;
    const form = new FormData();
    for (const f of files) form.append("files", f, f.name);
    setError(null);
    let started: { workflow_id: string };
    try {
      const r = await fetch(`${base}/documents`, { method: "POST", body: form, headers: authHeaders() });
      const body = await r.json().catch(() => null);
      if (!r.ok) {
        const detail = body && typeof body === "object" && "detail" in body ? body.detail : `HTTP ${r.status}`;
        throw new ApiError(r.status, body?.error ?? "error", typeof detail === "string" ? detail : JSON.stringify(detail));
      }
      started = body;
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
      return;
    }
    const wid = started.workflow_id;
    setUploads((list) => [{ workflowId: wid, names: files.map((f) => f.name) }, ...list]);
    const abort = new AbortController();
    stream(
      `/ingestions/${encodeURIComponent(wid)}/events`,
      ({ event, data }) => {
        const d = data as Record<string, any>;
        if (event === "progress") update(wid, { done: d.done, total: d.total });
        if (event === "result") {
          const res = d.result;
          if (res) {
            update(wid, {
              result: {
                ingested: res.totals?.ingested ?? 0,
                duplicates: res.totals?.duplicates ?? 0,
                failed: res.failures ?? [],
              },
            });
          } else update(wid, { error: d.error ?? `the ingestion ${d.status}` });
          setRefresh((n) => n + 1);
        }
      },
      abort.signal,
    ).catch((e: unknown) => update(wid, { error: e instanceof ApiError ? e.message : String(e) }));
  };

  return (
    <div class="documents">
      {canWrite ? <DropZone onFiles={send} /> : (
        <p class="notice" data-testid="no-upload">Adding documents needs the writer role in this mission.</p>
      )}
      {error && (
        <p role="alert" class="error" data-testid="upload-error">
          {error}
        </p>
      )}
      {uploads.length > 0 && (
        <section aria-live="polite">
          <h3>Your uploads</h3>
          <ul class="uploads">
            {uploads.map((u) => (
              <li key={u.workflowId} data-testid="upload">
                {u.names.join(", ")}:{" "}
                {u.error ? (
                  <span class="error">{u.error}</span>
                ) : u.result ? (
                  <span>
                    {u.result.ingested} indexed, {u.result.duplicates} already there
                    {u.result.failed.length > 0 && (
                      <>
                        , {u.result.failed.length} failed:{" "}
                        {u.result.failed.map((f) => `${sourceName(f.source)} (${reasonText(f.source, f.reason)})`).join("; ")}
                      </>
                    )}
                  </span>
                ) : (
                  <span>
                    ingesting{u.total ? ` ${u.done ?? 0} of ${u.total}` : ""}…
                  </span>
                )}
              </li>
            ))}
          </ul>
        </section>
      )}
      {listing && listing.ingesting.length > 0 && (
        <p class="notice">{listing.ingesting.length} ingestion(s) still running; their documents are pending.</p>
      )}
      <section>
        <h3>Documents{listing ? ` (${listing.total})` : ""}</h3>
        {!listing && !error && <p aria-live="polite">Loading the documents…</p>}
        {listing && listing.documents.length === 0 && <p>No documents yet.</p>}
        {listing && listing.documents.length > 0 && (
          <table data-testid="documents">
            <thead>
              <tr>
                <th scope="col">Document</th>
                <th scope="col">Type</th>
                <th scope="col">Size</th>
                <th scope="col">Passages</th>
                <th scope="col">State</th>
                <th scope="col">Added</th>
              </tr>
            </thead>
            <tbody>
              {listing.documents.map((d) => (
                <tr key={d.document_id}>
                  <td>
                    {d.title || sourceName(d.source)}
                    {d.title && <div class="sub">{sourceName(d.source)}</div>}
                  </td>
                  <td>{d.content_type}</td>
                  <td>{bytes(d.size_bytes)}</td>
                  <td>{d.chunk_count}</td>
                  <td>{d.status}</td>
                  <td>{when(d.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      {listing && listing.failures.length > 0 && (
        <section>
          <h3>Failed documents</h3>
          <ul class="failures" data-testid="failures">
            {listing.failures.map((f) => (
              <li key={`${f.batch_id}:${f.source}`}>
                <strong>{sourceName(f.source)}</strong>: {reasonText(f.source, f.reason)} <span class="sub">({f.reason_type}, {when(f.created_at)})</span>
              </li>
            ))}
          </ul>
        </section>
      )}
      <section>
        <h3>Sources</h3>
        {sources === null && <p aria-live="polite">Loading the sources…</p>}
        {sources && sources.length === 0 && <p>No synced sources.</p>}
        {sources && sources.length > 0 && (
          <ul class="sources" data-testid="sources">
            {sources.map((s) => (
              <li key={s.source_id}>
                <strong>{s.source_id}</strong> ({s.kind}: {s.location}) · every {Math.round(s.interval_seconds / 60)} min
                · last sync {s.last_sync_status ?? "never"} {when(s.last_sync_at)}
                {s.syncing && " · syncing now"}
                <div class="sub">
                  {Object.entries(s.files ?? {})
                    .map(([k, v]) => `${v} ${k}`)
                    .join(", ") || "no files yet"}
                </div>
                {s.last_sync_error && <div class="error">{s.last_sync_error}</div>}
                {(failedFiles[s.source_id] ?? []).length > 0 && (
                  <ul class="failures">
                    {failedFiles[s.source_id].map((f) => (
                      <li key={f.path}>
                        <strong>{f.path}</strong>: {f.reason ?? f.reason_type}
                      </li>
                    ))}
                  </ul>
                )}
              </li>
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}

function DropZone({ onFiles }: { onFiles: (files: File[]) => void }) {
  const [over, setOver] = useState(false);
  return (
    <div
      class={`dropzone${over ? " over" : ""}`}
      data-testid="dropzone"
      onDragOver={(e) => {
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={(e) => {
        e.preventDefault();
        setOver(false);
        onFiles(Array.from(e.dataTransfer?.files ?? []));
      }}
    >
      <label for="files">
        Drop documents here, or <span class="link">choose files</span> (PDF, Word, HTML, Markdown, text)
      </label>
      <input
        id="files"
        type="file"
        multiple
        onChange={(e) => {
          const input = e.target as HTMLInputElement;
          onFiles(Array.from(input.files ?? []));
          input.value = "";
        }}
      />
    </div>
  );
}
