"""Claims with cited evidence from retrieved hits.

Extractive (no LLM): split hits into sentences (keeping exact offsets; table rows
are rows, rendered as "Name: column value, ..." for comparison and claim text while
their citation quotes stay verbatim), score each by query-term overlap + embedding
similarity + the hit's retrieval score, cluster near-duplicates and sentences that
state the same figure for the same (subject, measure) - "14% market share" in two
documents is one claim with two sources - and make one claim per cluster from its
best natural-language sentence; the cluster's sentences are the supporting evidence.

LLM: numbered evidence goes to the model through LiteLLM; every citation it
returns must name an evidence number and quote text found in that hit, else the
citation is dropped, and a claim left without citations is dropped.

Both: contradicting evidence (activities/research/contradictions.py) and a confidence from
the evidence (activities/research/confidence.py). Citations only ever point at retrieved
hits, at offsets where the quote is verbatim.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from activities.research.answerability import (
    RARE_WEIGHT, features, names_a_value, question_weights, term_weight, terms_of,
)
from activities.research.confidence import confidence, probability, with_margins
from activities.research.contradictions import contradiction, facts, same_fact
from activities.research.planning import content_terms
from stratmaster.contracts.knowledge import SearchHit
from stratmaster.contracts.research import Citation, Claim

Embed = Callable[[list[str]], Sequence[Sequence[float]]]

_SENT_END = re.compile(r"[.!?]+(?=[\s\"')\]]|$)|\n\s*\n")
_ABBREV = {"e.g", "i.e", "dr", "mr", "mrs", "ms", "vs", "etc", "fig", "al", "no", "eq", "ref", "approx", "st"}
CLAIM_NS = uuid.UUID("5d6f3c1e-8a41-4f51-9c55-3a8e2b7b9a10")


@dataclass
class Sentence:
    hit: SearchHit
    local_start: int
    local_end: int
    text: str
    score: float = 0.0  # estimated probability that this sentence answers the question
    sim: float = 0.0
    features: dict | None = None  # activities/research/answerability.py
    context: str = ""  # the sentence before (or a table's header row): measures inherit from it
    table: bool = False  # a table row: evidence, and claim text only as its rendered statement

    @property
    def key(self) -> tuple[str, int]:
        return (self.hit.document_id, self.hit.start + self.local_start)

    def citation(self) -> Citation:
        return Citation(
            chunk_id=self.hit.chunk_id, document_id=self.hit.document_id,
            start=self.hit.start + self.local_start, end=self.hit.start + self.local_end,
            quote=self.hit.text[self.local_start:self.local_end], title=self.hit.title, url=self.hit.url,
            score=round(self.hit.score, 4), source=self.hit.source,
        )


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, trimmed of surrounding whitespace."""
    spans, start = [], 0
    for m in _SENT_END.finditer(text):
        before = text[max(0, m.start() - 6):m.start()].split()
        if m.group(0).startswith(".") and before and before[-1].lower().rstrip(".") in _ABBREV:
            continue
        spans.append((start, m.end()))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return _through_displayed_code(text, out)


def _through_displayed_code(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """A sentence that runs through a line of code set apart ("A good choice is usually\n\n
    #!/usr/bin/env python3\n\nwhich searches for ...") is one sentence: the part before stops
    mid-phrase, the code is one short line, the part after goes on in lower case. Not a
    console line, a lead-in ("... configured with the --with-dtrace option:") and its output:
    "$ apt-get install x", then prose, then "checking for ..." are three units."""
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(spans):
        s, e = spans[i]
        merged = 0
        while (merged < 2 and i + 2 < len(spans) and (text[e - 1].isalnum() or text[e - 1] == ",")
               and not _CODE_START.match(text[s:e])
               and "\n" not in text[spans[i + 1][0]:spans[i + 1][1]] and spans[i + 1][1] - spans[i + 1][0] <= 80
               and text[spans[i + 1][1] - 1] != ":"
               and not _is_row(text[spans[i + 1][0]:spans[i + 1][1]])  # "$ cat f | grep x": no table
               and text[spans[i + 2][0]].islower()):
            e = spans[i + 2][1]
            i += 2
            merged += 1
        out.append((s, e))
        i += 1
    return out


def verify_citation(c: Citation, chunk_text: str, chunk_start: int) -> bool:
    """The quote is exactly the chunk's text at the cited (document-level) span."""
    lo, hi = c.start - chunk_start, c.end - chunk_start
    return 0 <= lo < hi <= len(chunk_text) and chunk_text[lo:hi] == c.quote


def locate(quote: str, text: str) -> tuple[int, int] | None:
    """Span of quote in text: exact, else tolerant of whitespace/case differences."""
    quote = quote.strip().strip('"').strip()
    if len(quote) < 8:
        return None
    i = text.find(quote)
    if i >= 0:
        return i, i + len(quote)
    words = quote.rstrip(".").split()
    if not words:
        return None
    pattern = r"\s+".join(re.escape(w) for w in words)
    m = re.search(pattern, text, re.I)
    return (m.start(), m.end()) if m else None


def _statement(text: str, min_terms: int) -> bool:
    """A sentence worth citing: not a heading, list marker or table row; enough content words,
    or a short sentence that states a value ("The default is 4.0.", "Use PyTuple_Pack() instead.",
    "If it is not set, the default is “3”."), the answer to "what is the default ..." itself."""
    words = len(text.split())
    if text.startswith(("#", "|", "---")) or words < 3:
        return False
    terms = len(content_terms(text))
    if words >= 5 and terms >= min_terms:
        return True
    return terms >= 1 and text.endswith(".") and names_a_value(text)


_KV_LINE = re.compile(r"^\s*[\w\[\]. ]{1,60}:\s+\S")


def _tabular(raw: str) -> bool:
    """Record dumps (JSON "key: value" lines, CSV "a: 1; b: 2" records) are no statements."""
    lines = [x for x in raw.splitlines() if x.strip()]
    return len(lines) >= 3 and sum(bool(_KV_LINE.match(x)) for x in lines) >= 0.6 * len(lines)


def claimable(s: Sentence) -> bool:
    """Claim text must read as a statement: a table row only with its header (rendered
    "Name: column value"), prose only with an end of sentence (not a heading or a
    fragment cut at a chunk boundary)."""
    if s.table:
        return bool(s.context) and any(ch.isdigit() for ch in s.text)
    if _code_or_pointer(s.text):
        return False
    end = s.text.rstrip("*_\"'”’)]")
    # a sentence ending in a colon introduces what follows ("CPython must then be configured with
    # the --with-dtrace option:"): a statement when it reads as one (a capital, six words, no code)
    colon = end.endswith(":") and s.text[:1].isupper() and len(s.text.split()) >= 6 and "=" not in s.text
    return end.endswith((".", "!", "?")) or colon or len(s.text.split()) > 25


_CODE_START = re.compile(r"^(>>>|\$ |def |class |import |from \S+ import |return\b)")
# an assignment, a statement end, braces, or a call chained or indexed ("f(x)[0]", "a.b(c).d"): not a
# word in parentheses ("(2023 figures)") nor a function named in prose ("PyTuple_Pack()")
_CODE_TOKEN = re.compile(r"[=;{}]|\)[\[(.]\w|\w\([^)\s]*\)?\[|^\w+\(\S+,$")


def _code_or_pointer(text: str) -> bool:
    """Code ("def main(): fn = os.path...", a run of assignments, statement ends, braces, chained
    calls) and "See also ..." pointers to other pages read as no statement of their own."""
    if text.startswith("See also") or _CODE_START.match(text):
        return True
    words = text.split()
    return len(words) >= 6 and sum(bool(_CODE_TOKEN.search(w)) for w in words) >= 0.25 * len(words)


def _heading_line(text: str, s: int, e: int) -> int:
    """Start after a short title line glued to the sentence by a single newline
    ("Executive summary\nThe global market ..."), else s. A wrapped line ends in
    mid-phrase or continues in lower case, so it is kept."""
    nl = text.find("\n", s, e)
    if nl < 0:
        return s
    first, rest = text[s:nl].strip(), text[nl + 1:e].lstrip()
    words = first.split()
    if (0 < len(words) <= 6 and "|" not in first and first[0].isupper() and rest[:1].isupper() and first[-1] not in ".,;:!?-"
            and words[-1].lower() not in _GLUE):
        return nl + 1 + (len(text[nl + 1:e]) - len(rest))
    return s


_GLUE = frozenset("a an the of and or to in on for with by at from as is are was were that".split())


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _is_row(line: str) -> bool:
    return line.count("|") >= 2


def _render_row(cells: list[str], header: list[str] | None) -> str:
    """"Voltaris Energy Storage | 9% | Baltic" under "Company | Share | Source" ->
    "Voltaris Energy Storage: share 9%, source Baltic." (labels lower-cased so they
    are not read as names)."""
    first, rest = cells[0], cells[1:]
    labels = header[1:] if header and len(header) == len(cells) else [""] * len(rest)
    parts = [f"{label.lower()} {v}".strip() for label, v in zip(labels, rest) if v]
    return f"{first}: {', '.join(parts)}." if parts else first


def _rows(h: SearchHit, s: int, e: int, header: list[str] | None) -> tuple[list[Sentence], list[str] | None]:
    """Table rows in text[s:e], one Sentence per row (its own verbatim span)."""
    out, pos = [], s
    for line in h.text[s:e].split("\n"):
        ls = pos + len(line) - len(line.lstrip())
        le = pos + len(line.rstrip())
        pos += len(line) + 1
        if le <= ls or not _is_row(h.text[ls:le]) or set(h.text[ls:le]) <= set("|-: "):
            continue  # blank, prose next to the table, or a markdown separator row
        cells = _cells(h.text[ls:le])
        if header is None and not any(ch.isdigit() for ch in h.text[ls:le]):
            header = cells  # the first row without figures names the columns
            continue
        out.append(Sentence(h, ls, le, _render_row(cells, header), context=" ".join(header or []), table=True))
    return out, header


_TERM = re.compile(r"[A-Za-z][\w.+-]*\w")
_BLANK_LINE = re.compile(r"\n[ \t\r]*\n")
_CAMEL = re.compile(r"[a-z][A-Z]")


def _defined_term(raw: str) -> bool:
    """A name on a line of its own ("Jython", "CPython"): CamelCase, or a word English
    hardly uses ("Introduction", "SUMMARY" are common words)."""
    return (len(raw) <= 30 and _TERM.fullmatch(raw) is not None
            and (_CAMEL.search(raw) is not None or term_weight(raw.lower()) >= RARE_WEIGHT))


def _definitions(text: str, spans: list[tuple[int, int]]) -> set[int]:
    """Indices of spans that are a definition list's terms: a name alone on its line, a blank
    line, then its description (a capitalised sentence, no code, row, record or title line).
    Only where the passage has two such pairs: one alone is as likely a heading."""
    found = set()
    for i, ((s, e), (s1, e1)) in enumerate(zip(spans, spans[1:])):
        if not (s > 0 and text[s - 1] == "\n" and _defined_term(text[s:e]) and _BLANK_LINE.search(text, e, s1)):
            continue  # a term starts a line: a chunk can start mid-word ("lation")
        desc = text[s1:e1]
        if (desc[0].isupper() and not _CODE_START.match(desc) and not _defined_term(desc) and not _tabular(desc)
                and not any(_is_row(x) for x in desc.splitlines()) and _heading_line(text, s1, e1) == s1):
            found.add(i)
    return found if len(found) >= 2 else set()


def _term_at(h: SearchHit, s: int, e: int) -> str | None:
    """The term whose description holds the sentence text[s:e] (the innermost, for nested lists)."""
    best = None
    for ts, te, term in h.terms:
        if ts <= s and e <= te and (best is None or ts >= best[0]):
            best = (ts, term)
    return best[1] if best else None


def hit_units(h: SearchHit) -> Iterator[Sentence]:
    """Every sentence and table row of one passage, in order, before de-duplication and
    filtering (ingestion embeds each: see passage_units). A definition list's term joins
    the first sentence of its description ("Jython\n\nPython implemented in Java." is the
    unit "Jython: Python implemented in Java."), which alone does not say what it describes."""
    previous, header = "", None
    spans = sentence_spans(h.text)
    terms = set() if h.structured else _definitions(h.text, spans)  # guessed only where the converter knew nothing
    skip = -1
    for i, (s, e) in enumerate(spans):
        if i == skip:
            continue
        term = _term_at(h, s, e)
        if term is not None:
            # every sentence of a description is read with its term, not only the first
            sent = Sentence(h, s, e, f"{term}: {' '.join(h.text[s:e].split())}", context=previous)
            previous = sent.text
            yield sent
            continue
        if i in terms:
            s1, e1 = spans[i + 1]
            header, skip = None, i + 1
            sent = Sentence(h, s, e1, f"{h.text[s:e]}: {' '.join(h.text[s1:e1].split())}", context=previous)
            previous = sent.text
            yield sent
            continue
        # a heading glued to its first sentence ("# Title\n\nText."): split off by blank lines already;
        # single newlines after a heading line are cut here
        while s < e and h.text[s] == "#" and "\n" in h.text[s:e]:
            s = h.text.index("\n", s, e) + 1
            while s < e and h.text[s].isspace():
                s += 1
        s = _heading_line(h.text, s, e)
        raw = h.text[s:e]
        if any(_is_row(x) for x in raw.splitlines()):
            rows, header = _rows(h, s, e, header)
            yield from rows
            continue
        header = None
        if _tabular(raw):
            previous = ""
            continue
        sent = Sentence(h, s, e, " ".join(raw.split()), context=previous)
        previous = sent.text
        yield sent


def passage_units(text: str, structure: Mapping | None = None) -> list[tuple[tuple[int, int], str]]:
    """((start, end), text) of every unit hit_units reads in a passage: what ingestion embeds
    and stores with the chunk, so research scores the passage's sentences without the model.
    `structure`: the chunk's metadata (its `terms`, `structured`)."""
    return [((u.local_start, u.local_end), u.text) for u in hit_units(with_structure(
        SearchHit(chunk_id="", document_id="", text=text, start=0, end=len(text), score=0.0, source=""), structure))]


def with_structure(h: SearchHit, meta: Mapping | None) -> SearchHit:
    """The hit with its chunk's structure (metadata written at ingestion) where it has any."""
    if not meta or not (meta.get("structured") or meta.get("section")):
        return h
    terms = [(int(t[0]), int(t[1]), str(t[2])) for t in meta.get("terms") or []
             if isinstance(t, (list, tuple)) and len(t) == 3]
    section = meta.get("section")
    return h.model_copy(update={"structured": bool(meta.get("structured")), "terms": terms,
                                "section": section if isinstance(section, str) else None})


def passage_lookup(hits: Sequence[SearchHit], stored: Mapping[str, Mapping[tuple[int, int], np.ndarray]]
                   ) -> dict[str, np.ndarray]:
    """Unit text -> its stored vector, for the units of every hit whose chunk has them
    (`stored`: chunk id -> span -> vector; the embed function consults this first)."""
    out: dict[str, np.ndarray] = {}
    for h in hits:
        spans = stored.get(h.chunk_id)
        if not spans:
            continue
        for u in hit_units(h):
            v = spans.get((u.local_start, u.local_end))
            if v is not None:
                out.setdefault(u.text, v)
    return out


def split_hits(hits: Sequence[SearchHit], min_terms: int = 3) -> list[Sentence]:
    seen: set = set()
    out = []
    for h in hits:
        for u in hit_units(h):
            # overlapping chunks repeat sentences: one per document span / per document text;
            # the same sentence in two documents stays twice (independent support)
            norm = (h.document_id, u.text.lower())
            if u.key in seen or norm in seen or (not u.table and not _statement(u.text, min_terms)):
                continue
            seen.update({u.key, norm})
            out.append(u)
    # a chunk that starts mid-sentence repeats the sentence's tail: keep the whole sentence only
    return [x for x in out if x.table or not any(
        y is not x and y.hit.document_id == x.hit.document_id and len(y.text) > len(x.text) and x.text in y.text
        for y in out)]


def unit_vectors(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    m = np.asarray(vectors, dtype=np.float32)
    if m.ndim != 2 or m.size == 0:
        return np.zeros((len(vectors), 1), dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.maximum(norms, 1e-9)


def score_sentences(query: str, sents: list[Sentence], embed: Embed | None) -> np.ndarray | None:
    """Each sentence's answerability features and score (the calibrated probability
    that it answers `query`, from one supporting document); returns the sentence vectors.
    A sentence is also read with the one before it ("The default is 4.0." after the
    sentence naming the setting)."""
    weights = question_weights(query)
    vecs = None
    # Every sentence with a predecessor is also read with it (reading only short sentences so
    # lost answers on bench/research_qa). The pair is the sum of the two sentences'
    # vectors rather than an embedding of their concatenation: each distinct text is embedded
    # once (the predecessor is usually a sentence of the same hit), half the model time.
    windowed = [i for i, s in enumerate(sents) if s.context]
    window_sims = np.zeros(len(sents))
    if embed and sents:
        # the question as the encoder embeds a query (bge: after its search instruction)
        query_text = getattr(embed, "query_prefix", "") + query
        texts = list(dict.fromkeys([query_text] + [s.text for s in sents] + [sents[i].context for i in windowed]))
        row = {t: i for i, t in enumerate(texts)}
        unit = unit_vectors(embed(texts))
        vecs = unit[[row[s.text] for s in sents]]
        sims = vecs @ unit[0]
        if windowed:
            pairs = unit_vectors(unit[[row[sents[i].context] for i in windowed]] + vecs[windowed])
            window_sims[windowed] = pairs @ unit[0]
    else:
        sims = np.zeros(len(sents))
    for s, sim, wsim in zip(sents, sims, window_sims):
        s.sim = float(sim)
        s.features = features(query, weights, s.text, s.context, f"{s.hit.title or ''} {s.hit.section or ''} {s.hit.text}", s.sim,
                              s.hit.scores.get("dense", 0.0))
        s.features["window"] = round(max(s.features["sim"], float(wsim)), 4)
        s.features["documents"] = round(1 / 3, 3)  # one supporting document until clustered into a claim
    with_margins(sents, lambda s: s.features, [s for s in sents if claimable(s)])
    for s in sents:
        s.score = probability(s.features or {})  # set for every sentence above
    return vecs


def _jaccard(a: str, b: str) -> float:
    ta, tb = terms_of(a), terms_of(b)
    return len(ta & tb) / len(ta | tb) if ta | tb else 0.0


def _claim_id(mission: str, query: str, text: str) -> str:
    return str(uuid.uuid5(CLAIM_NS, f"{mission}\x00{query}\x00{text}"))


def contradicting(text: str, pool: Sequence[Sentence], exclude: set, context: str = "") -> list[tuple[Sentence, str]]:
    out = []
    for s in pool:
        if s.key in exclude:
            continue
        reason = contradiction(text, s.text, context, s.context)
        if reason:
            out.append((s, reason))
    return out


def finish_claim(mission: str, query: str, ordinal: int, text: str, support: list[Citation],
                  against: list[tuple[Sentence, str]], feats: dict, flag: str | None = None) -> Claim:
    contra = [s.citation() for s, _ in against]
    value, factors = confidence(feats, [c.document_id for c in support], len(contra))
    reasons = sorted({r for _, r in against})
    flag_reason = flag or (f"contradicted ({', '.join(reasons)})" if reasons else None)
    return Claim(claim_id=_claim_id(mission, query, text), ordinal=ordinal, text=text, confidence=value,
                 supporting=support, contradicting=contra, flagged=bool(flag_reason), flag_reason=flag_reason,
                 confidence_factors=factors)


def score_for_questions(questions: Sequence[str], sents: list[Sentence], embed: Embed | None) -> np.ndarray | None:
    """score_sentences against each question, keeping for every sentence the question it
    answers best: a compound question's parts ("... and how fast is the market growing?")
    each get their own best sentence, at the part's own margin."""
    vecs = score_sentences(questions[0], sents, embed)
    best = [(s.score, s.features) for s in sents]
    for q in questions[1:]:
        score_sentences(q, sents, embed)
        best = [max(b, (s.score, s.features), key=lambda x: x[0]) for b, s in zip(best, sents)]
    for s, (score, feats) in zip(sents, best):
        s.score, s.features = score, feats
    return vecs


def answer_parts(query: str, subquestions: Sequence[str]) -> list[str]:
    """The query and the sub-questions that are questions of their own (clauses of four
    words or more, not the planner's key phrases, which would match any topical sentence)."""
    return [query] + [q for q in dict.fromkeys(subquestions) if len(q.split()) >= 4 and q.lower() != query.lower()]


def extractive(mission: str, query: str, hits: Sequence[SearchHit], embed: Embed | None,
               max_claims: int = 8, max_margin: float = 6.0, subquestions: Sequence[str] = ()) -> list[Claim]:
    sents = split_hits(hits)
    if not sents:
        return []
    vecs = score_for_questions(answer_parts(query, subquestions), sents, embed)
    near_duplicate = getattr(embed, "near_duplicate", 0.85)  # MiniLM's bar for a plain embed()
    keys = [{f.key for f in facts(s.text, s.context)} for s in sents]
    order = sorted(range(len(sents)), key=lambda i: (-sents[i].score, sents[i].key))
    # keep sentences near the best one: weakly related sentences make noise claims
    # (margin: ranker logit below the best claimable sentence's; see activities/research/confidence.py)
    def near(i: int, within: float = max_margin) -> bool:
        return (sents[i].features or {}).get("margin", 0.0) >= -within

    candidates = [i for i in order if near(i) and claimable(sents[i])][: max(40, max_claims * 6)]
    # a figure for the same (subject, measure) as a candidate is a candidate too: the other side of
    # "14% vs 9% market share" becomes its own claim, cross-linked, even if it scored lower
    wanted = set().union(*(keys[i] for i in candidates)) if candidates else set()
    chosen = set(candidates)
    candidates += [i for i in order if i not in chosen and keys[i] & wanted and near(i, 2 * max_margin)]
    # natural sentences first, so a cluster's claim text is prose whenever any member is
    candidates.sort(key=lambda i: (sents[i].table, -sents[i].score, sents[i].key))
    pool = [sents[i] for i in order if near(i, 2 * max_margin)][:200]
    clusters: list[list[int]] = []
    for i in candidates:
        placed = False
        for members in clusters:
            first = members[0]
            a, b = sents[first], sents[i]
            close = _jaccard(b.text, a.text) >= 0.5 or (
                vecs is not None and float(vecs[i] @ vecs[first]) >= near_duplicate) or same_fact(a.text, b.text, a.context, b.context)
            if not close:
                continue
            if contradiction(a.text, b.text, a.context, b.context):
                continue  # same subject, opposite statement: handled below as contradicting evidence
            members.append(i)
            placed = True
            break
        if not placed and len(clusters) < max_claims * 3:
            clusters.append([i])
    clusters.sort(key=lambda m: min(order.index(i) for i in m))  # best evidence first
    # a claim's conflicting counterpart (same key, other figure) follows it, so both make the cut
    ranked: list[list[int]] = []
    for c in clusters:
        if c in ranked:
            continue
        ranked.append(c)
        ranked += [d for d in clusters if d not in ranked and keys[d[0]] & keys[c[0]]]
    claims = []
    for ordinal, members in enumerate(ranked[:max_claims]):
        rep = sents[members[0]]
        support = [sents[i].citation() for i in members]
        against = contradicting(rep.text, pool, {sents[i].key for i in members}, rep.context)
        claims.append(finish_claim(mission, query, ordinal, rep.text, support, against, rep.features or {}))
    claims.sort(key=lambda c: -c.confidence)  # a contradicted claim drops below the uncontested ones
    return [c.model_copy(update={"ordinal": i}) for i, c in enumerate(claims)]


# ---------------------------------------------------------------- LLM

def json_object(text: str) -> dict | None:
    text = re.sub(r"^```(?:json)?|```$", "", text.strip(), flags=re.M)
    start = text.find("{")
    while start >= 0:
        depth = 0
        for j in range(start, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    try:
                        obj = json.loads(text[start:j + 1])
                        if isinstance(obj, dict):
                            return obj
                    except json.JSONDecodeError:
                        break
        start = text.find("{", start + 1)
    return None


# ---------------------------------------------------------------- LLM-judged contradictions

CONTRA_PROMPT = """Statement A: {a}
Statement B: {b}
Can both statements be true at the same time? Answer with one word: yes or no."""


def contradiction_candidates(claims: Sequence[Claim], hits: Sequence[SearchHit], limit: int = 4) -> list[tuple[int, Sentence, str]]:
    """Sentence pairs the heuristics did not flag but that share the claim's subject
    closely: (claim index, evidence sentence, supporting quote) for the LLM to judge."""
    from activities.research.contradictions import subject_overlap

    pool = split_hits(hits)
    out = []
    for i, c in enumerate(claims):
        used = {(x.document_id, x.start) for x in c.supporting + c.contradicting}
        quote = c.supporting[0].quote
        ranked = sorted((s for s in pool if s.key not in used), key=lambda s: -subject_overlap(quote, s.text))
        for s in ranked[:1]:
            if subject_overlap(quote, s.text) >= 0.45 and s.text != " ".join(quote.split()):
                out.append((i, s, quote))
    return out[:limit]


def llm_says_contradict(answer: str) -> bool:
    """'no' (they cannot both be true) means a contradiction; anything unclear does not."""
    words = re.findall(r"[a-z]+", answer.lower())
    return bool(words) and words[0] == "no"


def with_contradictions(claim: Claim, extra: Sequence[Citation], reason: str) -> Claim:
    """The claim with more contradicting evidence, its confidence recomputed."""
    contra = list(claim.contradicting) + [c for c in extra if all(
        (c.chunk_id, c.start) != (x.chunk_id, x.start) for x in claim.contradicting)]
    value, factors = confidence(claim.confidence_factors, [c.document_id for c in claim.supporting], len(contra))
    flag = claim.flag_reason or f"contradicted ({reason})"
    return claim.model_copy(update={"contradicting": contra, "confidence": value, "confidence_factors": factors,
                                    "flagged": True, "flag_reason": flag})
