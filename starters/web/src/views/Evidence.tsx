// A citation opened at its span: the cited document's stored text around the quote (the text
// the citation's offsets point into, fetched from the API, not the quote re-rendered), the span
// highlighted and scrolled into view.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, ApiError } from "../api";
import { sourceName } from "../format";
import type { Citation, Excerpt } from "../types";

interface Props {
  mission: string;
  citation: Citation;
  number: number;
  onClose: () => void;
}

export function Evidence({ mission, citation, number, onClose }: Props) {
  const [excerpt, setExcerpt] = useState<Excerpt | null>(null);
  const [error, setError] = useState<string | null>(null);
  const heading = useRef<HTMLHeadingElement>(null);
  const mark = useRef<HTMLElement>(null);

  useEffect(() => {
    setExcerpt(null);
    setError(null);
    const q = new URLSearchParams({ start: String(citation.start), length: String(citation.end - citation.start) });
    api<Excerpt>(`/missions/${encodeURIComponent(mission)}/documents/${citation.document_id}/excerpt?${q}`)
      .then(setExcerpt)
      .catch((e: unknown) => setError(e instanceof ApiError ? e.message : String(e)));
    heading.current?.focus();
  }, [mission, citation.document_id, citation.start, citation.end]);

  useEffect(() => {
    mark.current?.scrollIntoView({ block: "center" });
  }, [excerpt]);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") onClose();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [onClose]);

  const title = citation.title || excerpt?.title || (excerpt && sourceName(excerpt.source)) || citation.document_id;
  let body = null;
  if (excerpt) {
    const a = excerpt.start - excerpt.text_start;
    const b = excerpt.end - excerpt.text_start;
    const span = excerpt.text.slice(a, b);
    const matches = span === citation.quote;
    body = (
      <>
        <p class="evidence-meta">
          {sourceName(excerpt.source)} · characters {excerpt.start.toLocaleString()}–{excerpt.end.toLocaleString()} of{" "}
          {excerpt.char_count.toLocaleString()}
          {matches ? (
            <span class="badge ok"> the quote is the stored text</span>
          ) : (
            <span class="badge warn"> the stored text differs from the quote</span>
          )}
        </p>
        <div class="excerpt" tabIndex={0} aria-label="the document's text around the cited span">
          {excerpt.text_start > 0 && <span aria-hidden="true">… </span>}
          {excerpt.text.slice(0, a)}
          <mark ref={mark} data-testid="cited-span">
            {span}
          </mark>
          {excerpt.text.slice(b)}
          {excerpt.text_end < excerpt.char_count && <span aria-hidden="true"> …</span>}
        </div>
      </>
    );
  }

  return (
    <aside class="evidence" aria-labelledby="evidence-title" data-testid="evidence">
      <div class="evidence-head">
        <h2 id="evidence-title" tabIndex={-1} ref={heading}>
          [{number}] {title}
        </h2>
        <button type="button" class="close" onClick={onClose} aria-label="Close the cited document">
          ×
        </button>
      </div>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {!excerpt && !error && <p aria-live="polite">Opening the document…</p>}
      {body}
    </aside>
  );
}
