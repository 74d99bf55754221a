// A finished research: the answer sentence by sentence, each with the citations it was built
// from; the findings with their confidence and who says what when sources disagree; what fell
// below the mission's bar (collapsed); an abstention said plainly, with the closest evidence.
import type { ComponentChildren } from "preact";
import { OUTCOME_LABEL, percent } from "../format";
import type { Answer, Citation, Claim, ResearchResult } from "../types";

export type OpenCitation = (c: Citation, n: number) => void;

/** Numbers citations in order of appearance, one number per cited span. */
export class CitationNumbers {
  private seen = new Map<string, number>();
  number(c: Citation): number {
    const key = `${c.document_id}:${c.start}:${c.end}:${c.url ?? ""}`;
    let n = this.seen.get(key);
    if (n === undefined) {
      n = this.seen.size + 1;
      this.seen.set(key, n);
    }
    return n;
  }
}

function Cite({ c, numbers, open }: { c: Citation; numbers: CitationNumbers; open: OpenCitation }) {
  const n = numbers.number(c);
  const name = c.title || c.url || "a document";
  if (c.source === "web" && c.url) {
    return (
      <a class="cite" href={c.url} target="_blank" rel="noopener noreferrer" title={name}>
        [{n}]
      </a>
    );
  }
  return (
    <button type="button" class="cite" onClick={() => open(c, n)} aria-label={`citation ${n}: ${name}`} title={name}>
      [{n}]
    </button>
  );
}

function Cites(props: { list: Citation[]; numbers: CitationNumbers; open: OpenCitation }) {
  return (
    <>
      {props.list.map((c) => (
        <Cite key={`${c.chunk_id}:${c.start}`} c={c} numbers={props.numbers} open={props.open} />
      ))}
    </>
  );
}

function AnswerText(props: { answer: Answer; numbers: CitationNumbers; open: OpenCitation; testid?: string }) {
  const { answer, numbers, open } = props;
  return (
    <p class="answer-text" data-testid={props.testid}>
      {answer.sentences.map((s, i) => (
        <span class="sentence" key={i}>
          {s.text} <Cites list={s.citations} numbers={numbers} open={open} />{" "}
        </span>
      ))}
    </p>
  );
}

function Confidence({ value }: { value: number }) {
  const level = value >= 0.7 ? "high" : value >= 0.4 ? "medium" : "low";
  return (
    <span class={`confidence ${level}`} title="how likely this finding states the answer">
      <span class="bar" aria-hidden="true">
        <span class={`fill w${Math.round(value * 10)}`} />
      </span>
      confidence {percent(value)}
    </span>
  );
}

function Finding({ claim, numbers, open }: { claim: Claim; numbers: CitationNumbers; open: OpenCitation }) {
  const contested = claim.contradicting.length > 0;
  return (
    <li class={`finding${contested ? " contested" : ""}`}>
      <p>
        {claim.text} <Cites list={claim.supporting} numbers={numbers} open={open} />
      </p>
      <Confidence value={claim.confidence} />
      {claim.flagged && claim.flag_reason && <p class="flag">⚠ {claim.flag_reason}</p>}
      {claim.below_bar_reason && <p class="flag">Below the bar: {claim.below_bar_reason}</p>}
      {contested && (
        <div class="sides" role="group" aria-label="sources that disagree">
          <Side title="Says" list={claim.supporting} numbers={numbers} open={open} />
          <Side title="Disagrees" list={claim.contradicting} numbers={numbers} open={open} />
        </div>
      )}
    </li>
  );
}

function Side(props: { title: string; list: Citation[]; numbers: CitationNumbers; open: OpenCitation }) {
  return (
    <div class="side">
      <h4>{props.title}</h4>
      <ul>
        {props.list.map((c) => (
          <li key={`${c.chunk_id}:${c.start}`}>
            <q>{c.quote}</q> — {c.title || "untitled"} <Cite c={c} numbers={props.numbers} open={props.open} />
          </li>
        ))}
      </ul>
    </div>
  );
}

function Section({ title, children }: { title: string; children: ComponentChildren }) {
  return (
    <section>
      <h3>{title}</h3>
      {children}
    </section>
  );
}

export function Result({ result, open }: { result: ResearchResult; open: OpenCitation }) {
  const numbers = new CitationNumbers();
  const outcome = result.outcome ?? "answered";
  const abstained = outcome === "insufficient_evidence";
  // the parts of a compound question, when one says something the whole answer does not
  const parts = result.subanswers.some((a) => a.text !== (result.answer?.text ?? "")) ? result.subanswers : [];
  return (
    <div class="result" data-testid="result">
      <p class={`outcome ${outcome}`} data-testid="outcome">
        {OUTCOME_LABEL[outcome] ?? outcome}
        {result.answer && !abstained && ` · confidence ${percent(result.answer.confidence)}`}
        {result.cached && " · answered from the mission's cache"}
      </p>
      {abstained ? (
        <Section title="The documents do not say">
          <p>
            Nothing in this mission's documents states an answer well enough to pass its quality bar. This is what came
            closest:
          </p>
          <ul class="closest">
            {result.closest_evidence.map((c) => (
              <li key={`${c.chunk_id}:${c.start}`}>
                <q>{c.quote}</q> — {c.title || "untitled"} <Cite c={c} numbers={numbers} open={open} />
              </li>
            ))}
          </ul>
        </Section>
      ) : (
        result.answer && (
          <Section title="Answer">
            <AnswerText answer={result.answer} numbers={numbers} open={open} testid="answer" />
          </Section>
        )
      )}
      {parts.length > 1 && (
        <Section title="Each part of the question">
          <dl class="parts">
            {parts.map((a, i) => (
              <div key={i}>
                <dt>{a.question}</dt>
                <dd>
                  {a.sentences.length ? (
                    <AnswerText answer={a} numbers={numbers} open={open} testid="part-answer" />
                  ) : (
                    <em>The documents do not say.</em>
                  )}
                </dd>
              </div>
            ))}
          </dl>
        </Section>
      )}
      {result.claims.length > 0 && (
        <Section title={`Findings (${result.claims.length})`}>
          <ol class="findings">
            {result.claims.map((c) => (
              <Finding key={c.claim_id} claim={c} numbers={numbers} open={open} />
            ))}
          </ol>
        </Section>
      )}
      {result.below_bar.length > 0 && (
        <details class="below-bar">
          <summary>Below the mission's quality bar ({result.below_bar.length})</summary>
          <ol class="findings">
            {result.below_bar.map((c) => (
              <Finding key={c.claim_id} claim={c} numbers={numbers} open={open} />
            ))}
          </ol>
        </details>
      )}
      {result.notes.length > 0 && (
        <details class="notes">
          <summary>Notes ({result.notes.length})</summary>
          <ul>
            {result.notes.map((n, i) => (
              <li key={i}>{n}</li>
            ))}
          </ul>
        </details>
      )}
    </div>
  );
}
