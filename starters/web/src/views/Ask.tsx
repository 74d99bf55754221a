// Ask the mission's documents a question: POST /missions/{m}/research, then its run's page.
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, postJson } from "../api";
import { href } from "../format";

export function Ask({ mission, canWrite }: { mission: string; canWrite: boolean }) {
  const [query, setQuery] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const box = useRef<HTMLTextAreaElement>(null);
  useEffect(() => box.current?.focus(), [mission, canWrite]); // the question box is where one starts

  if (!canWrite) {
    return (
      <p class="notice" data-testid="read-only">
        You can read this mission's research and documents; asking a new question needs the writer role.
      </p>
    );
  }
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!query.trim()) {
      setError("Type a question first.");
      box.current?.focus();
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const started = await postJson<{ workflow_id: string }>(
        `/missions/${encodeURIComponent(mission)}/research`,
        { query: query.trim() },
      );
      location.hash = href(mission, "", started.workflow_id);
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
      setBusy(false);
    }
  };
  return (
    <form class="ask" onSubmit={submit}>
      <label for="question">Ask the documents of {mission}</label>
      <textarea
        id="question"
        ref={box}
        rows={3}
        maxLength={4000}
        value={query}
        onInput={(e) => setQuery((e.target as HTMLTextAreaElement).value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) submit(e);
        }}
        placeholder="What market share does Voltaris hold?"
      />
      <div class="row">
        <button type="submit" disabled={busy}>
          {busy ? "Starting…" : "Ask"}
        </button>
        <span class="hint">Ctrl+Enter to ask</span>
      </div>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
    </form>
  );
}
