"""A light deterministic entity/relation extractor (no model, no network).

Finds, per chunk:
  ORGANIZATION  capitalised names ending in a company suffix (Inc, Ltd, GmbH, Group, ...)
  PERSON        capitalised names after an honorific/role (Dr, CEO, ...) or starting with a common first name
  CONCEPT       known domain terms (case-insensitive) and other capitalised multi-word names
  <custom>      cartridge-defined types: keywords {"TECHNOLOGY": ["solid-state battery", ...]}
                and regular expressions {"REGULATION": [re.compile(r"\b[A-Z]{2,5} Directive ...")]}

Relations: MENTIONS document -> entity (weight = chunks mentioning it) and
RELATES_TO between entities co-occurring in a chunk (weight = such chunks).
Ids are deterministic, so re-extracting a document upserts the same graph.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from itertools import combinations
from typing import Iterable, Mapping, Sequence

from stratmaster.contracts.knowledge import Entity, Relation

ORG_SUFFIXES = {
    "inc", "inc.", "ltd", "ltd.", "llc", "plc", "gmbh", "ag", "sa", "s.a.", "nv", "bv", "corp", "corp.",
    "corporation", "company", "co", "co.", "group", "holdings", "partners", "technologies", "systems",
    "labs", "industries", "agency", "association", "institute", "university", "ministry", "council",
    "commission", "authority", "analytics", "bank", "capital", "ventures", "energy", "power", "utilities", "motors",
}
HONORIFICS = {"dr", "dr.", "mr", "mr.", "mrs", "mrs.", "ms", "ms.", "prof", "prof.", "sir", "dame"}
ROLES = {"ceo", "cfo", "cto", "coo", "chair", "chairman", "chairwoman", "president", "director", "analyst",
         "founder", "minister", "head", "vp", "manager", "lead", "researcher", "professor"}
FIRST_NAMES = {
    "james", "john", "robert", "michael", "william", "david", "richard", "joseph", "thomas", "charles",
    "mary", "patricia", "jennifer", "linda", "elizabeth", "barbara", "susan", "jessica", "sarah", "karen",
    "anna", "maria", "laura", "emma", "olivia", "sophie", "lena", "eva", "julia", "clara", "ingrid",
    "peter", "paul", "mark", "daniel", "matthew", "andrew", "lucas", "henrik", "lars", "erik", "jan",
    "hans", "klaus", "pierre", "jean", "marco", "luca", "carlos", "miguel", "ahmed", "ali", "wei", "li",
    "yuki", "hiro", "kenji", "raj", "priya", "amit", "fatima", "omar", "nina", "tom", "ben", "sam",
    "alex", "chris", "kate", "helen", "grace", "rachel", "rebecca", "victoria", "diana", "marta", "elena",
    "sofia", "isabel", "ana", "jorge", "diego", "felix", "max", "oliver", "noah", "liam", "ethan",
}
# Generic strategy / market vocabulary; cartridges add their own terms.
DEFAULT_CONCEPTS = (
    "market share", "market size", "revenue", "gross margin", "operating margin", "pricing", "price war",
    "supply chain", "competitor", "competition", "customer acquisition", "churn", "growth rate", "cagr",
    "regulation", "subsidy", "subsidies", "tariff", "tariffs", "capacity", "demand", "forecast", "investment",
    "partnership", "acquisition", "merger", "joint venture", "patent", "innovation", "risk", "strategy",
    "battery storage", "energy storage", "grid storage", "lithium-ion", "lithium iron phosphate", "lfp",
    "sodium-ion", "solid-state battery", "flow battery", "pumped hydro", "hydrogen", "renewable energy",
    "solar", "wind", "electric vehicles", "grid", "frequency regulation", "peak shaving", "levelized cost",
    "cost per kilowatt-hour", "cycle life", "round-trip efficiency", "degradation", "recycling",
    "cobalt", "nickel", "lithium", "gigafactory", "utility-scale", "behind-the-meter", "virtual power plant",
)
# Capitalised words that start sentences or headings without naming anything.
STOPWORDS = {
    "the", "a", "an", "this", "that", "these", "those", "in", "on", "at", "by", "for", "from", "to", "of",
    "and", "or", "but", "if", "as", "our", "we", "it", "its", "their", "there", "when", "while", "with",
    "after", "before", "during", "since", "however", "although", "according", "also", "all", "some", "each",
    "most", "many", "more", "less", "new", "table", "figure", "section", "page", "summary", "overview",
    "introduction", "conclusion", "appendix", "note", "notes", "source", "sources", "key", "total",
    "q1", "q2", "q3", "q4", "january", "february", "march", "april", "may", "june", "july", "august",
    "september", "october", "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday",
}
CONNECTORS = {"of", "and", "&", "de", "van", "von", "der", "la", "du", "for"}

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'’\-]*\.?|&")
_CAP = re.compile(r"^(?:[A-Z][a-z0-9'’\-]+|[A-Z]{2,6}s?|[A-Z][a-z]*[A-Z][A-Za-z]*)\.?$")


def normalise(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip().strip(".,;:")).lower()


def entity_id(type_: str, name: str) -> str:
    """32 hex chars (fits a NebulaGraph FIXED_STRING(32) vid)."""
    return hashlib.sha1(f"{type_}|{normalise(name)}".encode()).hexdigest()[:32]


def document_entity(document_id: str, title: str | None) -> Entity:
    return Entity(entity_id=document_id.replace("-", "")[:32], name=title or document_id, type="DOCUMENT")


@dataclass
class Extraction:
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)


def _strip_word(w: str) -> str:
    return w[:-1] if w.endswith(".") and w.lower() not in ORG_SUFFIXES | HONORIFICS else w


def _capitalised_runs(text: str) -> Iterable[tuple[list[str], str | None]]:
    """Runs of capitalised words (connectors allowed inside) separated only by
    spaces (a newline, comma, colon, bracket or dash ends a run), with the word before the run."""
    matches = list(_WORD.finditer(text))
    words = [m.group(0) for m in matches]

    def joined(a: int, b: int) -> bool:  # nothing but spaces between word a and word b
        gap = text[matches[a].end():matches[b].start()]
        return gap != "" and gap.strip(" \t") == ""

    i = 0
    while i < len(words):
        w = words[i]
        if _CAP.match(w) and w.lower().rstrip(".") not in STOPWORDS:
            run = [w]
            j = i + 1
            while j < len(words) and joined(j - 1, j):
                nxt = words[j]
                if run[-1].endswith(".") and run[-1].lower() not in ORG_SUFFIXES | HONORIFICS:
                    break  # sentence end
                if _CAP.match(nxt) and nxt.lower().rstrip(".") not in STOPWORDS:
                    run.append(nxt)
                elif (nxt.lower() in CONNECTORS and j + 1 < len(words) and joined(j, j + 1)
                      and _CAP.match(words[j + 1])):
                    run.append(nxt)
                else:
                    break
                j += 1
            before = words[i - 1] if i > 0 and text[matches[i - 1].end():matches[i].start()].strip(" \t,:") == "" else None
            yield run, before
            i = j
        else:
            i += 1


def _classify(run: list[str], before: str | None) -> tuple[str, str] | None:
    words = [_strip_word(w) for w in run]
    while words and words[-1].lower() in CONNECTORS:
        words.pop()
    if not words:
        return None
    prev = (before or "").lower().rstrip(".,")
    # a leading role word ("CEO Thomas Brandt") is context, not part of the name
    while len(words) > 1 and words[0].lower().rstrip(".") in ROLES:
        prev = words.pop(0).lower()
    lower = [w.lower() for w in words]
    if lower[-1] in ORG_SUFFIXES and len(words) >= 2:
        return " ".join(words), "ORGANIZATION"
    if lower[0] in HONORIFICS and len(words) >= 2:
        return " ".join(words[1:]), "PERSON"
    if 2 <= len(words) <= 3 and all(w[:1].isupper() and w[1:].islower() for w in words):
        if lower[0] in FIRST_NAMES or prev in ROLES or prev in HONORIFICS:
            return " ".join(words), "PERSON"
    if len(words) >= 2 and len(words) <= 5:
        return " ".join(words), "CONCEPT"
    return None


def extract_from_text(text: str, concepts: Sequence[str] = DEFAULT_CONCEPTS,
                      custom: Mapping[str, Sequence[str]] | None = None,
                      patterns: Mapping[str, Sequence[re.Pattern]] | None = None) -> list[Entity]:
    # one type per name: cartridge types > PERSON/ORGANIZATION > CONCEPT
    found: dict[str, tuple[int, Entity]] = {}

    def add(name: str, type_: str, rank: int) -> None:
        key = normalise(name)
        if key not in found or rank > found[key][0]:
            found[key] = (rank, Entity(entity_id=entity_id(type_, name), name=name, type=type_))

    for run, before in _capitalised_runs(text):
        hit = _classify(run, before)
        if hit:
            add(hit[0], hit[1], 0 if hit[1] == "CONCEPT" else 1)
    lowered = text.lower()
    for type_, terms, rank in [("CONCEPT", concepts, 0), *((t, v, 2) for t, v in (custom or {}).items())]:
        for term in terms:
            t = term.lower()
            if re.search(r"(?<![a-z0-9])" + re.escape(t) + r"(?![a-z0-9])", lowered):
                add(term.lower() if type_ == "CONCEPT" else term, type_, rank)
    for type_, regexes in (patterns or {}).items():
        for rx in regexes:
            for m in rx.finditer(text):
                if m.group(0).strip():
                    add(m.group(0).strip(), type_, 2)
    # named entities first, so a per-chunk cap drops generic concepts before names
    return sorted((e for _, e in found.values()), key=lambda e: (e.type == "CONCEPT", e.type, e.name))


def extract(document_id: str, title: str | None, chunk_texts: Sequence[str],
            concepts: Sequence[str] = DEFAULT_CONCEPTS, custom: Mapping[str, Sequence[str]] | None = None,
            patterns: Mapping[str, Sequence[re.Pattern]] | None = None,
            max_entities_per_chunk: int = 30) -> Extraction:
    """Entities and relations of one document, aggregated over its chunks."""
    doc = document_entity(document_id, title)
    entities: dict[str, Entity] = {doc.entity_id: doc}
    mentions: dict[str, int] = {}
    pairs: dict[tuple[str, str], int] = {}
    context: dict[str, str] = {}
    for text in chunk_texts:
        ents = extract_from_text(text, concepts, custom, patterns)[:max_entities_per_chunk]
        for e in ents:
            entities.setdefault(e.entity_id, e)
            mentions[e.entity_id] = mentions.get(e.entity_id, 0) + 1
            context.setdefault(e.entity_id, _snippet(text, e.name))
        for a, b in combinations(sorted({e.entity_id for e in ents}), 2):
            pairs[(a, b)] = pairs.get((a, b), 0) + 1
    relations = [Relation(source_id=doc.entity_id, target_id=eid, type="MENTIONS", weight=float(n),
                          context=context.get(eid, ""))
                 for eid, n in sorted(mentions.items())]
    relations += [Relation(source_id=a, target_id=b, type="RELATES_TO", weight=float(n))
                  for (a, b), n in sorted(pairs.items())]
    return Extraction(entities=sorted(entities.values(), key=lambda e: e.entity_id), relations=relations)


def _snippet(text: str, name: str, width: int = 120) -> str:
    i = text.lower().find(name.lower())
    if i < 0:
        return text[:width].strip()
    lo = max(0, i - width // 2)
    return text[lo:lo + width].replace("\n", " ").strip()
