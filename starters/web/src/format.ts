// Small display helpers shared by the views.

export function when(iso?: string | null): string {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleString();
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function percent(x: number): string {
  return `${Math.round(x * 100)}%`;
}

export const OUTCOME_LABEL: Record<string, string> = {
  answered: "Answered",
  contested: "Contested",
  insufficient_evidence: "The documents do not say",
};

/** The route of the page: #/m/<mission>[/ask|/history|/documents|/r/<workflow id>]. */
export interface Route {
  mission: string | null;
  view: "missions" | "ask" | "run" | "history" | "documents";
  workflowId?: string;
}

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] !== "m" || !parts[1]) return { mission: null, view: "missions" };
  const mission = parts[1];
  if (parts[2] === "r" && parts[3]) return { mission, view: "run", workflowId: parts.slice(3).join("/") };
  if (parts[2] === "history") return { mission, view: "history" };
  if (parts[2] === "documents") return { mission, view: "documents" };
  return { mission, view: "ask" };
}

export function href(mission: string, view = "", workflowId?: string): string {
  const base = `#/m/${encodeURIComponent(mission)}`;
  if (workflowId) return `${base}/r/${encodeURIComponent(workflowId)}`;
  return view ? `${base}/${view}` : base;
}

/** A document's source as a person names it: an upload's file name without the "inline:" mark. */
export function sourceName(source: string): string {
  return source.startsWith("inline:") ? source.slice("inline:".length) : source;
}

/** A failure's reason without the file name it repeats ("a.bin: unsupported type" -> "unsupported type"). */
export function reasonText(source: string, reason?: string | null): string {
  const name = sourceName(source);
  const text = reason ?? "failed";
  return text.startsWith(`${name}: `) ? text.slice(name.length + 2) : text;
}
