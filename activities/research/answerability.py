"""How well one evidence sentence answers a question: features in [0, 1].

  sim      : embedding similarity of question and sentence (absolute, not rank-normalised)
  cover    : share of the question's terms in the sentence and the one before it, each
             term weighted by its rarity in English (wordfreq): "XR-7" and
             "setrecursionlimit" weigh far more than "use" or "value"
  passage  : the same share over the whole retrieved passage and its title
  key      : share of the question's rare terms (names, codes, jargon) and of the
             identifiers it names ("lazy_imports", whole) anywhere in the passage; a
             question about something the passage never names is not answered by
             it, however close the rest
  beside   : the sentence names something the question does not (an identifier, a call,
             a CamelCase or ALL-CAPS name, a figure, a word English hardly uses) within
             three words of one of the question's terms: what an answer to "which ..." adds,
             where it adds it ("the Timsort algorithm", "a ported version called UniCurses").
             A new name anywhere in the sentence ranks worse, cross-validated on the
             research QA bench's sentences (bench/research_qa/tune.py)
  kind     : the sentence has what the question asks for (a figure for "how many",
             the word "default" for "what is the default ...": 1; missing: 0; no
             expectation: 0.5)
  retrieval: the passage's raw dense similarity to the query, when the dense retriever ran

These are absolute measures: unlike fused retrieval scores (min-max normalised per
query, so the best hit is always 1.0) they are low when nothing retrieved is
about the question, which is what lets a run abstain.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Mapping

from activities.research.planning import STOPWORDS, content_terms, stem, tokens

RARE_WEIGHT = 3.0  # weight at or above which a term is a key term (zipf frequency <= 3)

_NUMERIC_Q = re.compile(
    r"\b(how (many|much|long|often|big|large|old|far|deep|fast)"
    r"|what(?: is| are|'s)?(?: the| a)?(?: (?:maximum|minimum|max|min|largest|smallest|highest|lowest|default|total|exact))?"
    r" (?:number|percentage|percent|version|year|size|port|value|length|limit|count)"
    r"|which (version|year|port))\b", re.I)
_NUMBER = re.compile(r"\d|\b(once|twice|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|hundred|thousand)\b", re.I)
# a question for a date wants a date: a month or a year, not any figure ("supports Windows 8.1")
_DATE_Q = re.compile(r"\b(on |by |until )?(what|which) (date|day)\b", re.I)
_DATE = re.compile(r"\b(1[6-9]\d\d|20\d\d|January|February|March|April|May|June|July|August|September|October"
                   r"|November|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|Monday|Tuesday|Wednesday|Thursday"
                   r"|Friday|Saturday|Sunday)\b|\b\d{4}-\d\d-\d\d\b")
_DEFAULT_Q = re.compile(r"\bdefault\b", re.I)
_DEFAULT = re.compile(r"\bdefault", re.I)


@lru_cache(maxsize=100_000)
def term_weight(term: str) -> float:
    """1 for everyday words, up to 6 for words English hardly uses (names, codes, jargon)."""
    from wordfreq import zipf_frequency

    return 1.0 + max(0.0, 5.0 - zipf_frequency(term, "en"))


def question_weights(question: str) -> dict[str, float]:
    """The question's content terms (stemmed, as content_terms gives them), each weighted
    by the rarity of the word as written ("processes", not its stem "processe")."""
    out: dict[str, float] = {}
    for word in tokens(question):
        if word in STOPWORDS or len(word) < 2:
            continue
        out.setdefault(stem(word), term_weight(word))
    return out


_IDENT = re.compile(r"(?<![\w.])[A-Za-z_][\w.]*\(\)|[\w.]*[_.()][\w.()]*\w|\b[A-Z][a-z]+[A-Z]\w*|\b[A-Z]{2,}\w*|\d|/\w[\w/.-]*|(?<!\w)--?[A-Za-z][\w-]*")


def names_a_value(text: str) -> bool:
    """An identifier, a call ("auto()"), a CamelCase or ALL-CAPS name, a figure, a path or an option in the text."""
    return _IDENT.search(text) is not None


_WORD = re.compile(r"-{0,2}[A-Za-z_][\w.()-]*[\w)]|\d[\w.]*")
BESIDE = 3  # words between a new name and the question's term it answers


@lru_cache(maxsize=200_000)
def _word(word: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], str, bool]:
    """What named_beside needs of a word, once per distinct word: its content parts
    ("sys.path" -> sys, path), their stems, their four-letter prefixes (parts over four
    letters), the word as written (lower case, brackets and dots trimmed), and whether it
    is a name: an identifier, call, CamelCase or ALL-CAPS name or figure, or a word English
    hardly uses."""
    parts = tuple(t for t in tokens(word) if t not in STOPWORDS)
    named = bool(parts) and (_IDENT.match(word) is not None or any(term_weight(t) >= RARE_WEIGHT for t in parts))
    return (parts, tuple(stem(t) for t in parts), tuple(t[:4] for t in parts if len(t) > 4),
            word.strip(".()").lower(), named)


def _new_to(question_stems: Mapping[str, float], question_tokens: frozenset[str], word: tuple) -> bool:
    """A name (`_word`'s) the question does not use: "sys.path" is not new to a question naming
    it, "1" is new to one asking about 3.13."""
    parts, stems, _, written, named = word
    return named and written not in question_tokens and not all(
        t in question_tokens or s in question_stems for t, s in zip(parts, stems))


@lru_cache(maxsize=4096)
def _question_words(question: str) -> tuple[frozenset[str], frozenset[str]]:
    q_tokens = frozenset(tokens(question))
    return q_tokens, frozenset(t[:4] for t in q_tokens if len(t) > 4 and t not in STOPWORDS)


def named_beside(question: str, weights: Mapping[str, float], sentence: str) -> float:
    """1 when the sentence names something the question does not within BESIDE words of
    one of the question's terms ("sys.path", "range()" as written count as its terms, and a
    word sharing a term's first four letters: "growth" for "growing")."""
    q_tokens, prefixes = _question_words(question)
    words = _WORD.findall(sentence)
    infos = [_word(w) for w in words]
    asked = [any(s in weights for s in info[1]) or any(p in prefixes for p in info[2]) for info in infos]
    if not any(asked):
        return 0.0
    for i, info in enumerate(infos):
        if _new_to(weights, q_tokens, info) and any(asked[max(0, i - BESIDE):i] + asked[i + 1:i + 1 + BESIDE]):
            return 1.0
    return 0.0


def coverage(weights: Mapping[str, float], terms: frozenset[str]) -> float:
    total = sum(weights.values())
    return sum(w for t, w in weights.items() if t in terms) / total if total else 0.0


# a snake_case or dunder name ("lazy_imports", "Py_BuildValue", "__init_subclass__"): tokens()
# splits it into everyday words, so as a key term it is matched whole, as written
_SNAKE = re.compile(r"(?<![\w.])_*[A-Za-z][A-Za-z0-9]*(?:_+[A-Za-z0-9]+)+_*(?!\w)")


@lru_cache(maxsize=1024)
def named_identifiers(question: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(m.lower() for m in _SNAKE.findall(question)))


def key_coverage(weights: Mapping[str, float], terms: frozenset[str], identifiers: tuple[str, ...] = (),
                 text: str = "") -> float:
    """Share of the question's key terms (rare words; identifiers, found whole in `text`) present."""
    found = [t in terms for t, w in weights.items() if w >= RARE_WEIGHT]
    if identifiers:
        lowered = text.lower()
        found += [re.search(rf"(?<![\w.]){re.escape(i)}(?!\w)", lowered) is not None for i in identifiers]
    return sum(found) / len(found) if found else 1.0


def kind_match(question: str, sentence: str) -> float:
    checks = []
    if _NUMERIC_Q.search(question):
        checks.append(bool(_NUMBER.search(sentence)))
    if _DATE_Q.search(question):
        checks.append(bool(_DATE.search(sentence)))
    if _DEFAULT_Q.search(question):
        checks.append(bool(_DEFAULT.search(sentence)))
    return 0.5 if not checks else sum(checks) / len(checks)


@lru_cache(maxsize=16_384)
def terms_of(text: str) -> frozenset[str]:
    """Content terms of a text, cached: every sentence of a passage, for every (sub-)question, needs them."""
    return frozenset(content_terms(text))


def features(question: str, weights: Mapping[str, float], sentence: str, context: str, passage: str,
             sim: float, retrieval: float) -> dict[str, float]:
    sent_terms = terms_of(sentence) | terms_of(context)
    passage_terms = terms_of(passage) | sent_terms
    names = named_identifiers(question)  # mostly none: then no text to search them in
    return {
        "sim": round(max(0.0, sim), 4),
        "cover": round(coverage(weights, sent_terms), 4),
        "passage": round(coverage(weights, passage_terms), 4),
        "key": round(key_coverage(weights, passage_terms, names, f"{passage}\n{sentence}\n{context}" if names else ""), 4),
        "kind": kind_match(question, sentence),
        "beside": named_beside(question, weights, sentence),
        "retrieval": round(max(0.0, min(1.0, retrieval)), 4),
    }
