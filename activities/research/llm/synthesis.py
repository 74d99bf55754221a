"""Structured LLM output for research: the planner's sub-questions and the claim
writer's cited claims.

Both answers are pydantic models; their JSON schemas go to the server as
`response_format` (activities/llm/client.py decides whether the server supports it), so
llama.cpp decodes under a grammar and even a 135M model returns parseable JSON.
The claim schema is narrowed per call: evidence numbers can only be those of the
retrieved hits and, when `quote_enum` is on, quotes can only be sentences of them.
None of that is trusted: every answer is validated again here, and every citation
quote must occur in the cited chunk verbatim (whitespace differences aside) or the
citation is dropped; a claim without a verified citation is dropped; a claim whose
text says more than its quotes (figures or words not in them) is flagged.
"""
from __future__ import annotations

import copy
import json
import re
from typing import Any, Sequence

from pydantic import BaseModel, Field, ValidationError

from activities.research.planning import content_terms, parse_llm_plan
from activities.research.confidence import logit
from activities.research.synthesis import (
    Embed, Sentence, claimable, contradicting, finish_claim, json_object, score_sentences, split_hits,
)
from stratmaster.contracts.knowledge import SearchHit
from stratmaster.contracts.research import Citation, Claim

# ---------------------------------------------------------------- planner

PLAN_SYSTEM = "You turn a research question into short web search queries. Reply with JSON only."
PLAN_USER = (
    'Question: {query}\nWrite {n} different search queries, each a few words naming what to look up. '
    'Format: {{"subquestions": ["...", "..."]}}'
)


class PlanAnswer(BaseModel):
    subquestions: list[str] = Field(min_length=1, max_length=8)


def plan_schema(n: int) -> dict[str, Any]:
    schema = PlanAnswer.model_json_schema()
    prop = schema["properties"]["subquestions"]
    prop["maxItems"] = max(1, n)
    # unbounded repetitions only: bounded ones ({7,90}) nest optionals and slow llama.cpp's sampler 3-5x
    prop["items"] = {"type": "string", "pattern": r"^[A-Za-z][^\"\\{}\[\]\n]+$"}
    return schema


def plan_messages(query: str, n: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": PLAN_SYSTEM},
            {"role": "user", "content": PLAN_USER.format(query=" ".join(query.split()), n=n)}]


def parse_plan(answer: str, query: str, max_subquestions: int) -> list[str] | None:
    """[query, sub-questions...] from the schema-shaped answer (or, from servers
    without constrained decoding, a bare list / numbered lines). Sub-questions need
    two content words and must differ from the query and each other; None when
    nothing usable is left."""
    items: list[str] | None = None
    obj = json_object(answer)
    if obj is not None:
        try:
            items = PlanAnswer.model_validate(obj).subquestions
        except ValidationError:
            items = None
    if items is None:
        loose = parse_llm_plan(answer, query, max_subquestions + 4)
        items = loose[1:] if loose else []
    subs = [" ".join(query.split())]
    for it in items:
        it = " ".join(str(it).strip(" \"'.,;:").split())
        if len(content_terms(it)) < 2 or len(it) > 200 or it.lower() in {s.lower() for s in subs}:
            continue
        subs.append(it)
    if len(subs) < 2:
        return None
    return subs[:max_subquestions]


# ---------------------------------------------------------------- query expansion

EXPANSION_USER = (
    'Question: {query}\nList up to 5 other words or short phrases that documents answering this question '
    'would use. Format: {{"terms": ["...", "..."]}}'
)


class ExpansionAnswer(BaseModel):
    terms: list[str] = Field(max_length=5)


def expansion_schema() -> dict[str, Any]:
    schema = ExpansionAnswer.model_json_schema()
    schema["properties"]["terms"]["items"] = {"type": "string", "pattern": r"^[A-Za-z0-9][^\"\\{}\[\]\n]+$"}
    return schema


def expansion_messages(query: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": PLAN_SYSTEM},
            {"role": "user", "content": EXPANSION_USER.format(query=" ".join(query.split()))}]


def parse_expansion(answer: str, query: str) -> list[str]:
    """Extra search terms (short, not already in the query); [] when unusable."""
    obj = json_object(answer)
    try:
        terms = ExpansionAnswer.model_validate(obj).terms if obj else []
    except ValidationError:
        return []
    have = set(content_terms(query))
    out = []
    for t in terms:
        t = " ".join(str(t).split())[:60]
        if content_terms(t) and not set(content_terms(t)) <= have and t not in out:
            out.append(t)
    return out[:5]


# ---------------------------------------------------------------- claim writer

CLAIMS_SYSTEM = (
    "You answer a question with short factual claims taken from numbered evidence. For each claim, copy one "
    "evidence sentence word for word as the quote, give its evidence number, and restate what it says as the text. "
    "Reply with JSON only."
)
CLAIMS_USER = (
    "Question: {query}\n\nEvidence:\n{evidence}\n\n"
    "Write at most {n} claims that answer the question. "
    'Format: {{"claims": [{{"text": "...", "evidence": [1], "quote": "..."}}]}}'
)


class ClaimAnswer(BaseModel):
    # claim, then evidence number, then quote: under the grammar the quote can only be a
    # sentence of the evidence just named, which a small model copies from its own text
    text: str
    evidence: list[int] = Field(min_length=1, max_length=3)
    quote: str


# one sentence without JSON punctuation: a tiny model otherwise "closes" the object inside
# the string or strings sentences together; max_tokens bounds its length
_TEXT_PATTERN = r"^[A-Z][^\"\\{}\[\]\n.]+[.]$"


class ClaimsAnswer(BaseModel):
    claims: list[ClaimAnswer] = Field(max_length=8)


def _verbatim(h: SearchHit, s: Sentence) -> str:
    """A sentence's exact text in its chunk (table rows: the row, not its rendering), whitespace-normalised."""
    return " ".join(h.text[s.local_start:s.local_end].split())


_GRAMMAR_UNSAFE = re.compile(r'[\\"\x00-\x1f\x7f]')


def grammar_safe(quote: str) -> bool:
    """Can this sentence be a literal of the server's grammar? llama-cpp-python compiles the
    schema's enum to GBNF, and a document sentence with a backslash (b'\\x80abc') made its
    grammar parser fail and the server process die: such sentences are not offered as quotes."""
    return not _GRAMMAR_UNSAFE.search(quote)


def evidence_sentences(hits: Sequence[SearchHit], max_chars: int = 500) -> list[list[str]]:
    """Per hit, the quotable sentences shown to the model (whitespace-normalised),
    up to max_chars per hit: the prompt shows exactly these, the grammar allows
    exactly these as quotes."""
    out: list[list[str]] = [[] for _ in hits]
    used = [0] * len(hits)
    index = {h.chunk_id: i for i, h in enumerate(hits)}
    for s in split_hits(hits):
        i = index[s.hit.chunk_id]
        q = _verbatim(s.hit, s)
        if not grammar_safe(q):
            continue
        if used[i] + len(q) <= max_chars and q not in out[i]:
            out[i].append(q)
            used[i] += len(q) + 1
    return out


def claims_schema(hits: Sequence[SearchHit], max_claims: int, quotes: Sequence[Sequence[str]] | None = None) -> dict[str, Any]:
    """ClaimsAnswer's schema narrowed to these hits. With `quotes` (the evidence
    sentences per hit) each claim is one of a set of variants, one per hit: that
    hit's number as evidence and one of its sentences as the quote, so a
    grammar-constrained model can only quote what it cites (the same claim citing
    two hits is two entries, merged on verification). Without them: any quote,
    evidence numbers 1..len(hits). Claim text is one sentence."""
    schema = copy.deepcopy(ClaimsAnswer.model_json_schema())
    claim = schema["$defs"]["ClaimAnswer"]
    claim["properties"]["text"] = {"type": "string", "pattern": _TEXT_PATTERN}
    n_max = min(3, max(1, len(hits)))
    claim["properties"]["evidence"] = {"type": "array", "items": {"type": "integer", "enum": list(range(1, len(hits) + 1))},
                                       "minItems": 1, "maxItems": n_max}
    claim["properties"]["quote"] = {"type": "string", "minLength": 20}
    variants = []
    for n, qs in enumerate(quotes or [], start=1):
        if qs:
            v = copy.deepcopy(claim)
            v.pop("title", None)
            v["properties"]["evidence"] = {"type": "array", "items": {"const": n}, "minItems": 1, "maxItems": 1}
            v["properties"]["quote"] = {"enum": list(qs)}
            variants.append(v)
    if variants:
        schema["$defs"]["ClaimAnswer"] = {"anyOf": variants}
    schema["properties"]["claims"]["maxItems"] = max(1, max_claims)
    schema["properties"]["claims"]["minItems"] = 1
    return schema


def evidence_text(hits: Sequence[SearchHit], quotes: Sequence[Sequence[str]] | None = None, max_chars: int = 500) -> str:
    """Numbered evidence for the prompt: the quotable sentences when known (what the
    grammar allows as quotes), else the chunk text cut to max_chars."""
    lines = []
    for n, h in enumerate(hits, start=1):
        body = " ".join(quotes[n - 1]) if quotes and quotes[n - 1] else " ".join(h.text.split())
        lines.append(f"[{n}] {body[:max_chars]}")
    return "\n".join(lines)


def claims_messages(query: str, hits: Sequence[SearchHit], max_claims: int,
                    quotes: Sequence[Sequence[str]] | None = None, max_chars: int = 500) -> list[dict[str, str]]:
    return [{"role": "system", "content": CLAIMS_SYSTEM},
            {"role": "user", "content": CLAIMS_USER.format(query=" ".join(query.split()), n=max_claims,
                                                           evidence=evidence_text(hits, quotes, max_chars))}]


def find_verbatim(quote: str, text: str) -> tuple[int, int] | None:
    """Span of `quote` in `text` where only whitespace may differ (no case folding,
    no punctuation stripping); quotes under 4 words prove nothing and are refused."""
    words = quote.split()
    if len(words) < 4:
        return None
    m = re.search(r"\s+".join(re.escape(w) for w in words), text)
    return (m.start(), m.end()) if m else None


_NUM = re.compile(r"\d+(?:[.,]\d+)?")


def support_check(text: str, quotes: Sequence[str]) -> tuple[bool, str | None]:
    """(keep, flag) for a claim's text against its verified quotes. A figure the
    quotes do not contain, or under half of its content words in them, is an
    unsupported claim (dropped); under three quarters is kept but flagged."""
    joined = " ".join(quotes)
    if any(n not in _NUM.findall(joined) for n in _NUM.findall(text)):
        return False, None
    terms = set(content_terms(text))
    share = len(terms & set(content_terms(joined))) / len(terms) if terms else 0.0
    if share < 0.5:
        return False, None
    return True, ("claim text only partly supported by its quotes" if share < 0.75 else None)


def parse_claims(answer: str) -> list[ClaimAnswer] | None:
    """The answer's claims; also accepts the older {"claim", "citations": [{"evidence", "quote"}]} shape
    from servers without constrained decoding. None when the answer is not usable JSON."""
    obj = json_object(answer)
    if not obj or not isinstance(obj.get("claims"), list):
        return None
    out = []
    for raw in obj["claims"]:
        if not isinstance(raw, dict):
            continue
        if "citations" in raw and "quote" not in raw:  # one ClaimAnswer per citation of the old shape
            for c in raw.get("citations") or []:
                if isinstance(c, dict):
                    raw2 = {"text": raw.get("claim") or raw.get("text") or "", "evidence": [c.get("evidence")], "quote": c.get("quote") or ""}
                    try:
                        out.append(ClaimAnswer.model_validate(raw2))
                    except ValidationError:
                        pass
            continue
        try:
            out.append(ClaimAnswer.model_validate({**raw, "text": raw.get("text") or raw.get("claim") or ""}))
        except ValidationError:
            out.append(ClaimAnswer(text="", evidence=[0], quote=""))  # counted as dropped below
    return out


def verify_claims(mission: str, query: str, answer: str, hits: Sequence[SearchHit], embed: Embed | None,
                  max_claims: int = 8, ranked_hits: Sequence[SearchHit] | None = None) -> tuple[list[Claim], int] | None:
    """Verified claims from the model's answer and how many it wrote were dropped;
    None when the answer is not usable JSON. A citation survives only when its
    evidence number names a retrieved hit and its quote is in that hit verbatim
    (whitespace aside); it then cites the hit's own text at that span.

    A claim's confidence is its best quote's, scored as the extractive path scores it:
    the evidence unit holding the quote (with the sentence before it) against every
    sentence of `ranked_hits` (all the run retrieved; the model saw only `hits`). Ranked
    against the model's few hits alone, its pick was always near the top, so the bundled
    model's answer@1 fell below the deterministic path's."""
    parsed = parse_claims(answer)
    if parsed is None:
        return None
    pool = split_hits(hits)
    merged: dict[str, list[Citation]] = {}  # claim text (lower) -> citations; the same claim twice is merged
    texts: dict[str, str] = {}
    flags: dict[str, str] = {}
    order: list[str] = []
    dropped = 0
    for raw in parsed[: max_claims * 2]:
        text = " ".join(raw.text.split())
        support: list[Citation] = []
        for n in dict.fromkeys(raw.evidence):
            if not 1 <= n <= len(hits):  # never cite a source that was not retrieved
                continue
            h = hits[n - 1]
            span = find_verbatim(raw.quote, h.text)
            if span is not None:
                support.append(Sentence(h, span[0], span[1], h.text[span[0]:span[1]]).citation())
        keep, flag = support_check(text, [c.quote for c in support]) if text and support else (False, None)
        if not keep:
            dropped += 1
            continue
        key = text.lower()
        if key not in merged:
            if len(order) >= max_claims:
                dropped += 1
                continue
            merged[key], texts[key] = [], text
            order.append(key)
        for c in support:
            if all((c.chunk_id, c.start) != (x.chunk_id, x.start) for x in merged[key]):
                merged[key].append(c)
        if flag:
            flags[key] = flag
    by_chunk = {h.chunk_id: h for h in hits}
    ranked = split_hits(ranked_hits) if ranked_hits else pool
    score_sentences(query, ranked, embed)
    best = max((logit(s.features) for s in ranked if s.features and claimable(s)), default=None)
    claims: list[Claim] = []
    for key in order:
        text, support = texts[key], merged[key]
        # the claim is as good as its best verified quote, scored like an extractive sentence
        # by document offsets: overlapping chunks keep a shared sentence once, under either chunk
        quoted = [unit for c in support for unit in ranked if unit.hit.document_id == c.document_id and unit.features
                  and unit.hit.start + unit.local_start <= c.start and c.end <= unit.hit.start + unit.local_end]
        if not quoted:  # a quote across units: scored on its own
            quoted = [Sentence(by_chunk[c.chunk_id], c.start - by_chunk[c.chunk_id].start,
                               c.end - by_chunk[c.chunk_id].start, " ".join(c.quote.split())) for c in support]
            score_sentences(query, quoted, embed)
        feats = dict(max(quoted, key=lambda s: logit(s.features or {})).features or {})
        if best is not None:  # ranked against every retrieved sentence, as an extractive claim is
            feats["margin"] = round(min(0.0, logit(feats) - best), 4)
        # contradictions are judged against the verified quotes, not the model's paraphrase
        exclude = {(s.document_id, s.start) for s in support}
        against: list[tuple[Sentence, str]] = []
        for q in support:
            for s, r in contradicting(q.quote, pool, exclude):
                if s.key not in exclude:
                    exclude.add(s.key)
                    against.append((s, r))
        flag = flags.get(key)
        if flag and against:
            flag += f"; contradicted ({', '.join(sorted({r for _, r in against}))})"
        claims.append(finish_claim(mission, query, len(claims), text, support, against, feats, flag))
    return claims, dropped


def sample(answer: str, limit: int = 300) -> str:
    """The model's answer for logs (one line)."""
    return json.dumps(answer[:limit])
