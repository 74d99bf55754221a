"""The short answer to a question, built only from findings that cleared the
mission's quality bar.

Extractive: the answer sentences are the findings' verbatim quotes (the best
finding, and the next one when it is nearly as strong and from another
sentence), each with the citations that carry it. LLM: the findings' texts,
whose citations were verified verbatim against the cited spans before they
became findings (activities/llm_synthesis.verify_claims). No finding, no answer:
the run abstains.
"""
from __future__ import annotations

from typing import Callable, Sequence

from stratmaster.contracts.research import Answer, AnswerSentence, Citation, Claim

MAX_SENTENCES = 2
SECOND_SENTENCE_SHARE = 0.85  # a second sentence only when nearly as confident as the first


def _quote(c: Citation) -> str:
    """A citation's quote with its whitespace runs made single spaces (wrapped lines quote alike)."""
    return " ".join(c.quote.split())


def _same_quote(a: Citation, b: Citation) -> bool:
    return _quote(a) == _quote(b)


def build_answer(question: str, findings: Sequence[Claim], method: str = "extractive") -> Answer:
    """An Answer for `question` from its findings (best first); empty text when none."""
    sentences: list[AnswerSentence] = []
    if findings:
        top = findings[0].confidence
        for f in findings:
            if len(sentences) >= MAX_SENTENCES or (sentences and f.confidence < SECOND_SENTENCE_SHARE * top):
                break
            if method == "llm":
                sentences.append(AnswerSentence(text=f.text, citations=list(f.supporting)))
                continue
            first = f.supporting[0]
            text = _quote(first)
            if any(text == s.text for s in sentences):
                continue
            sentences.append(AnswerSentence(text=text, citations=[c for c in f.supporting if _same_quote(c, first)]))
    return Answer(question=question, text=" ".join(s.text for s in sentences), sentences=sentences,
                  confidence=findings[0].confidence if findings else 0.0, method=method)


def part_findings(own: Sequence[Claim], candidates: Sequence[Claim], findings: Sequence[Claim]) -> list[Claim]:
    """The findings that answer one part of a compound question. `own` is the part's own finding
    (its best claim, when it cleared the bar); without one, a finding of the whole run that states
    one of the part's best candidate sentences answers it: the part's claim can miss the bar alone
    (a contested figure) while the same sentence is a finding of the run, and a part must never read
    "not answered" beside a finding that answers it."""
    if own:
        return list(own[:1])
    quotes = {_quote(c) for cand in candidates for c in cand.supporting}
    return [f for f in findings if any(_quote(c) in quotes for c in f.supporting)][:1]


def combine_answers(question: str, whole: Answer, parts: Sequence[Answer]) -> Answer:
    """The answer to a compound question: each answered part's first sentence, then the
    whole question's own if it adds one; its confidence the weakest part's. Parts that
    cleared no bar add nothing."""
    sentences: list[AnswerSentence] = []
    answered = [p for p in parts if p.sentences]
    for s in [p.sentences[0] for p in answered] + whole.sentences[:1]:
        if all(s.text != t.text for t in sentences):
            sentences.append(s)
    if not answered:
        return whole
    confidence = min([p.confidence for p in answered] + [whole.confidence])
    return whole.model_copy(update={"sentences": sentences, "text": " ".join(s.text for s in sentences),
                                    "confidence": confidence})


def verified_answer(answer: Answer | None, ok: Callable[[Citation], bool]) -> Answer | None:
    """The answer with only citations that `ok` accepts; a sentence left without one is dropped."""
    if answer is None:
        return None
    kept = []
    for s in answer.sentences:
        cits = [c for c in s.citations if ok(c)]
        if cits:
            kept.append(s.model_copy(update={"citations": cits}))
    return answer.model_copy(update={"sentences": kept, "text": " ".join(s.text for s in kept),
                                     "confidence": answer.confidence if kept else 0.0})
