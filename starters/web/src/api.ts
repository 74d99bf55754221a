// The API, called like any client: JSON in and out, the caller's headers, and the API's own
// reason on a refusal (its ErrorBody), shown to the user as it is.
import { EventStreamContentType, fetchEventSource } from "@microsoft/fetch-event-source";
import { authHeaders } from "./auth";

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

function reason(status: number, body: unknown): ApiError {
  if (body && typeof body === "object" && "detail" in body) {
    const b = body as { error?: string; detail: unknown };
    const detail = Array.isArray(b.detail)
      ? b.detail.map((d: { loc?: unknown[]; msg?: string }) => `${(d.loc ?? []).join(".")}: ${d.msg ?? ""}`).join("; ")
      : String(b.detail);
    return new ApiError(status, b.error ?? "error", detail);
  }
  return new ApiError(status, "error", `the API answered HTTP ${status}`);
}

async function failed(r: Response): Promise<ApiError> {
  let body: unknown = null;
  try {
    body = await r.json();
  } catch {
    /* not JSON */
  }
  return reason(r.status, body);
}

export async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers = { Accept: "application/json", ...authHeaders(), ...(init.headers as Record<string, string>) };
  const r = await fetch(path, { ...init, headers });
  if (!r.ok) throw await failed(r);
  return (await r.json()) as T;
}

export function postJson<T>(path: string, body: unknown): Promise<T> {
  return api<T>(path, { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
}

export async function download(path: string, filename: string): Promise<void> {
  const r = await fetch(path, { headers: authHeaders() });
  if (!r.ok) throw await failed(r);
  const url = URL.createObjectURL(await r.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export type StreamEvent = { event: string; data: unknown };

/** A Server-Sent Events stream of the API (with the caller's headers, which EventSource cannot
 * send), until it ends or `signal` aborts; a refusal (4xx) ends it with the API's reason. */
export async function stream(path: string, onEvent: (e: StreamEvent) => void, signal: AbortSignal): Promise<void> {
  let ended = false;
  await fetchEventSource(path, {
    headers: { Accept: EventStreamContentType, ...authHeaders() },
    signal,
    openWhenHidden: true, // the answer must be there when the user comes back to the tab
    async onopen(r) {
      if (r.ok && (r.headers.get("content-type") ?? "").startsWith(EventStreamContentType)) return;
      throw await failed(r);
    },
    onmessage(m) {
      if (!m.event) return;
      let data: unknown = m.data;
      try {
        data = JSON.parse(m.data);
      } catch {
        /* plain text */
      }
      onEvent({ event: m.event, data });
      if (m.event === "result" || m.event === "error") ended = true;
    },
    onclose() {
      if (!ended) throw new ApiError(0, "stream_closed", "the progress stream closed before the result");
    },
    onerror(err) {
      throw err; // no silent reconnect: the view says what happened and offers to reopen
    },
  });
}
