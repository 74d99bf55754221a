"""Pure parts of research: fusion, planning, contradictions, confidence, synthesis."""
from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from activities.research.confidence import confidence
from activities.research.contradictions import contradiction
from activities.research.fusion import fuse, merge_subquestion_hits
from activities.research.planning import deterministic_plan, parse_llm_plan
from activities.research.llm.synthesis import verify_claims
from activities.research.synthesis import extractive, locate, sentence_spans, verify_citation
from stratmaster.contracts.knowledge import SearchHit
from stratmaster.contracts.research import ResearchInput


def sentence_embed():
    """Research's sentence encoder (the real model, installed by scripts/install_models.sh), as
    synthesis gets it: confidence reads its similarities, so claims without it score ~0."""
    from activities.ingest.sentence_encoder import get_sentence_encoder
    from activities.research.sentence_vectors import SentenceVectors
    from stratmaster.settings import Settings

    return SentenceVectors().for_mission("unit", get_sentence_encoder(Settings(_env_file=None)))


def hit(cid, score, source="bm25", text="x", doc=None, start=0):
    return SearchHit(chunk_id=cid, document_id=doc or f"d-{cid}", text=text, start=start, end=start + len(text),
                     score=score, source=source)


# ---------------------------------------------------------------- fusion

def test_minmax_fusion_normalises_and_keeps_per_retriever_scores():
    bm25 = [hit("a", 12.0), hit("b", 6.0), hit("c", 2.0)]
    dense = [hit("b", 0.9, "dense"), hit("d", 0.5, "dense"), hit("a", 0.1, "dense")]
    out = fuse({"bm25": bm25, "dense": dense}, "minmax", top_k=10)
    by = {h.chunk_id: h for h in out}
    # b: 0.5*0.4 + 0.5*1 = 0.7 ; a: 0.5*1 + 0 = 0.5 ; d: 0.5*0.5 = 0.25 ; c: 0
    assert [h.chunk_id for h in out] == ["b", "a", "d", "c"]
    assert by["b"].score == pytest.approx(0.7)
    assert by["b"].scores["bm25"] == 6.0 and by["b"].scores["dense"] == 0.9
    assert by["d"].scores == {"dense": 0.5, "minmax": pytest.approx(0.25)}
    assert all(0 <= h.score <= 1 for h in out) and by["b"].source == "hybrid"


def test_rrf_fusion_ranks_by_reciprocal_rank():
    bm25 = [hit("a", 12.0), hit("b", 6.0)]
    dense = [hit("b", 0.9, "dense"), hit("c", 0.5, "dense")]
    out = fuse({"bm25": bm25, "dense": dense}, "rrf", top_k=2)
    assert [h.chunk_id for h in out] == ["b", "a"]
    assert out[0].scores["rrf"] == pytest.approx(0.5 / 62 + 0.5 / 61)
    assert out[0].score <= 1.0
    with pytest.raises(ValueError):
        fuse({"bm25": bm25}, "borda")


def test_merge_keeps_best_score_per_chunk():
    merged = merge_subquestion_hits([[hit("a", 0.2), hit("b", 0.9)], [hit("a", 0.8)]], limit=5)
    assert [(h.chunk_id, h.score) for h in merged] == [("b", 0.9), ("a", 0.8)]
    # each retriever's best score across the sub-questions, not only the best-fused one's: a
    # chunk found by BM25 for one sub-question and by its meaning for another keeps both
    by_words = hit("a", 0.9).model_copy(update={"scores": {"bm25": 9.5, "dense": 0.21}})
    by_meaning = hit("a", 0.6).model_copy(update={"scores": {"bm25": 1.3, "dense": 0.72}})
    [a] = merge_subquestion_hits([[by_words], [by_meaning]], limit=5)
    assert a.score == 0.9 and a.scores == {"bm25": 9.5, "dense": 0.72}


# ---------------------------------------------------------------- planning

def test_deterministic_plan_splits_conjunctions_and_keeps_query_first():
    q = "What is the effect of wing sweep on drag, and how does boundary layer suction change lift?"
    subs = deterministic_plan(q, 4)
    assert subs[0] == q and len(subs) <= 4 and len(set(s.lower() for s in subs)) == len(subs)
    assert any("wing sweep" in s and "suction" not in s for s in subs[1:])
    assert any("boundary layer suction" in s and "sweep" not in s for s in subs[1:])
    assert deterministic_plan("heat transfer", 4)[0] == "heat transfer"


def test_llm_plan_parsing_accepts_json_or_lists_and_rejects_junk():
    q = "why do wings stall"
    assert parse_llm_plan('```json\n["stall angle of attack", "flow separation on wings"]\n```', q, 4) == [
        q, "stall angle of attack", "flow separation on wings"]
    assert parse_llm_plan("1. stall mechanisms\n2. separation", q, 4) == [q, "stall mechanisms", "separation"]
    assert parse_llm_plan("I cannot help with that", q, 4) is None


def test_input_is_plain_json_with_defaults():
    req = ResearchInput.model_validate(json.loads('{"mission": "demo", "query": "  what   is lift "}'))
    assert req.query == "what is lift" and req.fusion == "minmax" and req.top_k == 8 and not req.use_web
    with pytest.raises(ValidationError):
        ResearchInput(mission="Bad/Mission", query="x")
    with pytest.raises(ValidationError):
        ResearchInput(mission="demo", query="x", fusion="borda")


# ---------------------------------------------------------------- contradictions / confidence

@pytest.mark.parametrize("a,b,why", [
    ("The new alloy increases fatigue life of turbine blades.", "The new alloy does not increase fatigue life of turbine blades.", "negation"),
    ("The drag coefficient of the model was 0.32 at Mach 2.", "The drag coefficient of the model was 0.45 at Mach 2.", "numbers"),
    ("Sales of the product rose sharply in 2023 across Europe.", "Sales of the product fell sharply in 2023 across Europe.", "antonyms"),
])
def test_contradictions_detected(a, b, why):
    reason = contradiction(a, b)
    assert reason and why[:5] in reason.replace("different numbers", "numbers")


def test_no_contradiction_between_unrelated_or_agreeing_sentences():
    assert contradiction("The alloy increases fatigue life.", "Rainfall was not measured in Spain.") is None
    assert contradiction("The drag coefficient was 0.32 at Mach 2.", "At Mach 2 the drag coefficient was 0.32.") is None


FEATURES = {"sim": 0.7, "window": 0.7, "cover": 0.8, "passage": 0.9, "key": 1.0, "kind": 1.0, "beside": 1.0,
            "retrieval": 0.6, "margin": 0.0}


def test_confidence_rises_with_independent_support_and_falls_with_contradiction():
    one, _ = confidence(FEATURES, ["d1"], 0)
    three, _ = confidence(FEATURES, ["d1", "d2", "d3"], 0)
    same_doc, _ = confidence(FEATURES, ["d1", "d1", "d1"], 0)
    contested, f = confidence(FEATURES, ["d1", "d2", "d3"], 2)
    assert 0 <= one == same_doc < three <= 1  # independent documents count, repeats of one do not
    assert contested < three and f["agreement"] == pytest.approx(0.6)
    assert confidence(FEATURES, [], 0)[0] == 0.0


def test_confidence_falls_when_the_evidence_is_not_about_the_question():
    good, _ = confidence(FEATURES, ["d1"], 0)
    for name, value in (("key", 0.0), ("sim", 0.2), ("kind", 0.0), ("margin", -3.0)):
        worse, _ = confidence({**FEATURES, name: value}, ["d1"], 0)
        assert worse < good, name


# ---------------------------------------------------------------- synthesis

DOC_A = ("Intro text here. The XR-7 battery retains 90 percent of its capacity after 1000 charge cycles. "
         "It was tested in a lab.")
DOC_B = "Field report. The XR-7 battery retains 60 percent of its capacity after 1000 charge cycles."
DOC_C = "Another lab confirmed the XR-7 battery retains 90 percent of its capacity after 1000 charge cycles in tests."


def test_sentence_spans_are_exact_offsets():
    text = "  First one. Second, e.g. with an abbreviation! Third?\n\nFourth"
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans] == ["First one.", "Second, e.g. with an abbreviation!", "Third?", "Fourth"]


def test_extractive_claims_cite_exact_spans_and_carry_contradictions():
    hits = [hit("a", 0.9, "hybrid", DOC_A, "docA", start=100), hit("b", 0.7, "hybrid", DOC_B, "docB", start=0),
            hit("c", 0.6, "hybrid", DOC_C, "docC", start=5)]
    claims = extractive("demo", "How many charge cycles does the XR-7 battery survive?", hits, embed=sentence_embed())
    assert claims
    texts = {h.chunk_id: h for h in hits}
    for c in claims:
        for cit in c.supporting + c.contradicting:
            h = texts[cit.chunk_id]
            assert verify_citation(cit, h.text, h.start)
    top = claims[0]
    assert "90 percent" in top.text
    assert {c.document_id for c in top.supporting} == {"docA", "docC"}
    assert [c.document_id for c in top.contradicting] == ["docB"] and top.flagged
    assert 0 < top.confidence <= 1


def test_locate_tolerates_whitespace_but_not_invention():
    text = "The  wing\nstalls at 15 degrees."
    s, e = locate("The wing stalls at 15 degrees", text)
    assert text[s:e].startswith("The  wing\nstalls")
    assert locate("The wing stalls at 20 degrees", text) is None


def test_llm_contradiction_candidates_and_verdicts():
    from activities.research.synthesis import contradiction_candidates, llm_says_contradict, with_contradictions

    a = "Safety summary. The XR-7 battery passed the crash tests conducted in 2022 by the agency."
    b = "Recall notice. The XR-7 battery is unsafe in the crash tests conducted in 2022 by the agency."
    hits = [hit("a", 0.9, "hybrid", a, "docA"), hit("b", 0.8, "hybrid", b, "docB")]
    answer = json.dumps({"claims": [{"text": "The XR-7 battery passed the crash tests in 2022.", "evidence": [1],
                                     "quote": "The XR-7 battery passed the crash tests conducted in 2022 by the agency."}]})
    claims, _ = verify_claims("demo", "Is the XR-7 safe?", answer, hits, embed=sentence_embed())
    assert claims and not claims[0].contradicting  # the heuristics miss this pair
    pairs = contradiction_candidates(claims, hits)
    assert [(i, s.hit.chunk_id) for i, s, _ in pairs] == [(0, "b")]
    assert llm_says_contradict("No.") and not llm_says_contradict("Yes, both can be true") and not llm_says_contradict("")
    judged = with_contradictions(claims[0], [pairs[0][1].citation()], "LLM judged")
    assert judged.flagged and judged.confidence < claims[0].confidence
    assert verify_citation(judged.contradicting[0], b, 0)


def test_a_model_claim_is_ranked_against_everything_retrieved():
    """The model sees a few hits; its claim's confidence is still its quote's rank among all
    the run retrieved, as the extractive path ranks it: a weak pick stays weak."""
    weak = "Some battery reports mention the XR-7 in passing among other products."
    strong = "The XR-7 battery retains 90 percent of its capacity after 1000 charge cycles."
    seen = [hit("w", 0.9, "hybrid", weak, "docW")]
    everything = seen + [hit("s", 0.8, "hybrid", strong, "docS")]
    answer = json.dumps({"claims": [{"text": "Reports mention the XR-7.", "evidence": [1], "quote": weak}]})
    q = "How much capacity does the XR-7 retain after 1000 cycles?"
    alone, _ = verify_claims("demo", q, answer, seen, embed=sentence_embed())
    ranked, _ = verify_claims("demo", q, answer, seen, embed=sentence_embed(), ranked_hits=everything)
    assert alone[0].confidence_factors["margin"] == 0.0
    assert ranked[0].confidence_factors["margin"] < 0 and ranked[0].confidence < alone[0].confidence
    best = extractive("demo", q, everything, embed=sentence_embed())
    assert best[0].text == strong and best[0].confidence > ranked[0].confidence
    # overlapping chunks of one document keep a shared sentence once, under the first chunk: a quote
    # cited from the second is still scored as that unit (with the sentence before it), not alone
    doc = "The XR-7 report covers capacity. " + strong
    first, second = hit("c1", 0.9, "hybrid", doc, "docX"), hit("c2", 0.8, "hybrid", strong, "docX", start=33)
    cited = json.dumps({"claims": [{"text": "The XR-7 keeps 90 percent.", "evidence": [1], "quote": strong}]})
    via_second, _ = verify_claims("demo", q, cited, [second], embed=sentence_embed(), ranked_hits=[first, second])
    as_unit = extractive("demo", q, [first, second], embed=sentence_embed())
    assert via_second[0].confidence_factors["window"] == as_unit[0].confidence_factors["window"]


def test_same_sentence_in_two_documents_is_two_supports_but_overlap_is_one():
    s = "Laminar flow over the swept wing separates at twelve degrees of incidence."
    hits = [hit("a1", 0.9, "hybrid", "Report A. " + s, "docA"), hit("a2", 0.8, "hybrid", s + " More text here now.", "docA", start=10),
            hit("b", 0.7, "hybrid", s, "docB")]
    claims = extractive("demo", "When does laminar flow separate on a swept wing?", hits, embed=None)
    assert claims[0].text == s
    assert sorted(c.document_id for c in claims[0].supporting) == ["docA", "docB"]  # chunk overlap in docA counted once


# ---------------------------------------------------------------- answerability, gates, answers

def test_rare_question_terms_weigh_more_and_must_be_in_the_evidence():
    from activities.research.answerability import features, question_weights

    assert question_weights("How much capacity does the XR-7 keep after 1000 cycles?")["xr-7"] > \
        question_weights("How much capacity does the XR-7 keep after 1000 cycles?")["capacity"] > 0
    w = question_weights("How much capacity does the XR-7 keep?")
    assert "the" not in w
    about = features("How much capacity does the XR-7 keep?", w, "The XR-7 keeps 90 percent of its capacity.", "",
                     "XR-7 lab report", 0.7, 0.5)
    other = features("How much capacity does the XR-7 keep?", w, "The Z-9 keeps 90 percent of its capacity.", "",
                     "Z-9 lab report", 0.7, 0.5)
    assert about["key"] == 1.0 and other["key"] == 0.0 and about["cover"] > other["cover"]
    assert about["kind"] == 1.0  # "how much" wants a figure, and the sentence has one
    assert features("What is the default limit?", question_weights("What is the default limit?"),
                    "Sets the planner's estimate of the limit.", "", "", 0.7, 0.5)["kind"] == 0.0


def test_a_possessive_is_its_word():
    """"the tutorial's advice" asks about the tutorial: kept whole, "tutorial'" was a rare
    key term no passage contains (3 answerable bench questions abstained on it)."""
    from activities.research.answerability import features, question_weights

    q = "According to the tutorial's style advice, how long may a line be?"
    w = question_weights(q)
    assert "tutorial" in w and not any("'" in t for t in w)
    assert features(q, w, "Wrap lines so that they don't exceed 79 characters.", "",
                    "Python tutorial: coding style", 0.6, 0.5)["key"] == 1.0


def test_a_named_identifier_is_a_key_term_matched_whole():
    """"the -X lazy_imports option" names something: tokens split it into "lazy" and
    "imports", everyday words every import page has; whole, a passage that never names it
    does not answer (the QA bench's u16 was answered from the import system's pages)."""
    from activities.research.answerability import features, question_weights

    q = "What does the -X lazy_imports interpreter option do?"
    w = question_weights(q)
    near = features(q, w, "-X frozen_modules determines whether frozen modules are ignored by imports.", "",
                    "Command line: -X options, lazy imports of modules", 0.6, 0.5)
    named = features(q, w, "-X lazy_imports makes every import lazy.", "", "Command line", 0.6, 0.5)
    assert near["key"] == 0.0 and named["key"] == 1.0
    assert features("When is Py_BuildValue used?", question_weights("When is Py_BuildValue used?"),
                    "Call Py_BuildValue() to build a tuple.", "", "Extending", 0.6, 0.5)["key"] == 1.0


def test_a_sentence_through_a_displayed_code_line_is_one_sentence():
    from activities.research.synthesis import claimable, passage_units, split_hits

    text = ("and put a Shebang line at the top of the script. A good choice is\nusually\n\n"
            "#!/usr/bin/env python3\n\nwhich searches for the Python interpreter in the whole PATH.\n\n"
            "CPython must then be configured with the --with-dtrace option:\n\nchecking for --with-dtrace... yes\n\n"
            "On macOS, you can list the probes.\n\nFor example:\n\n$ ls\n\nDone.")
    units = [u for _, u in passage_units(text)]
    assert "A good choice is usually #!/usr/bin/env python3 which searches for the Python interpreter in the whole PATH." in units
    # a colon ending a full sentence leads into its example: a statement; a colon after a lead-in is not
    assert "CPython must then be configured with the --with-dtrace option:" in units and "On macOS, you can list the probes." in units
    sents = {x.text: x for x in split_hits([hit("a", 1.0, text=text)])}
    assert claimable(sents["CPython must then be configured with the --with-dtrace option:"])
    assert "For example:" not in sents or not claimable(sents["For example:"])
    # a shell pipeline between two parts is no displayed code line to read through (nor a table)
    piped = [u for _, u in passage_units("Run it like this,\n\n$ cat f | grep x | wc -l\n\nwhich prints the count.")]
    assert not any("grep" in u for u in piped) and "which prints the count." in piped
    # a console line, the sentence after it and the command's output are three units, not one read-through
    console = [u for _, u in passage_units("or:\n\n$ sudo apt-get install systemtap-sdt-dev\n\n"
                                           "CPython must then be configured with the --with-dtrace option:\n\n"
                                           "checking for --with-dtrace... yes")]
    assert "CPython must then be configured with the --with-dtrace option:" in console, console
    # the quote is still the exact text at its span
    good = sents["A good choice is usually #!/usr/bin/env python3 which searches for the Python interpreter in the whole PATH."]
    assert text[good.local_start:good.local_end].startswith("A good choice is\nusually\n\n#!/usr/bin/env")


def test_a_short_sentence_that_states_a_value_is_evidence():
    """"What is the default ...?" is answered by "The default is 4.0.", four words."""
    from activities.research.synthesis import split_hits

    text = ("Sets the planner's estimate of the cost of a random page fetch. The default is 4.0. "
            "If it is not set, the default is “3”. Use PyTuple_Pack() instead. See the notes. Read it all.")
    got = [x.text for x in split_hits([hit("a", 1.0, text=text)])]
    assert {"The default is 4.0.", "If it is not set, the default is “3”.", "Use PyTuple_Pack() instead."} <= set(got)
    assert "See the notes." not in got and "Read it all." not in got  # short, and no value stated
    # a call names a value: "use auto() for the values" answers "which helper ...?"
    from activities.research.answerability import names_a_value
    assert names_a_value("Use auto() for the values.") and not names_a_value("Use it for the values.")


def test_an_answer_names_something_new_beside_what_the_question_asks_about():
    from activities.research.answerability import named_beside, question_weights

    q = "What is the name of the ported version of curses for Windows?"
    w = question_weights(q)
    assert named_beside(q, w, "A ported version called UniCurses is available.") == 1.0
    assert named_beside(q, w, "The Windows version of Python doesn't include the curses module.") == 0.0  # restates
    # a new name far from anything the question asks about is not where the answer is
    assert named_beside(q, w, "Curses is widely used; the Timsort paper and many other texts, said a colleague, "
                              "cite it.") == 0.0
    q = "Which helper fills in member values?"
    assert named_beside(q, question_weights(q), "You can use auto() for the values:") == 1.0
    # a question term as written ("sys.path") counts; a figure is new unless the question has it
    q = "What does sys.path contain?"
    assert named_beside(q, question_weights(q), "The sys.path list holds PYTHONPATH entries.") == 1.0
    q = "What changed in 3.13?"
    assert named_beside(q, question_weights(q), "Release 3.13 changed 1 module.") == 1.0
    assert named_beside(q, question_weights(q), "Release 3.13 changed modules.") == 0.0
    # "how fast is the market growing?" is asked about by "growth"
    q = "How fast is the energy storage market growing?"
    assert named_beside(q, question_weights(q), "Analysts expect a compound annual growth rate (CAGR) of 21%.") == 1.0


def test_a_definition_list_term_joins_its_description():
    from activities.research.synthesis import claimable, passage_units, split_hits

    text = ("Known implementations include:\n\nCPython\n\nThis is the original implementation of Python, written in C.\n\n"
            "Jython\n\nPython implemented in Java. This implementation can be used as a scripting language.\n\n"
            "Introduction\n\nThe text goes on.")
    units = dict((u, span) for span, u in passage_units(text))
    assert "Jython: Python implemented in Java." in units
    assert "This implementation can be used as a scripting language." in units
    assert "CPython: This is the original implementation of Python, written in C." in units
    s, e = units["Jython: Python implemented in Java."]
    assert text[s:e] == "Jython\n\nPython implemented in Java."  # the quote is the text as it stands
    # a common word on its own line is a heading, not a term
    assert "Introduction" in units and "The text goes on." in units
    sents = {x.text: x for x in split_hits([hit("a", 1.0, text=text)])}
    assert claimable(sents["Jython: Python implemented in Java."])
    # headings are no terms: common words, one heading alone, a chunk starting mid-word, a title line
    for other in ("Intro.\n\nSUMMARY\n\nRevenue grew 5% in 2023.\n\nOVERVIEW\n\nThe market grew.",
                  "Intro.\n\nChangelog\n\nVersion 2.0 removed the legacy API.",
                  "lation\n\nThe package installs with pip.\n\nJython\n\nPython implemented in Java.",
                  "Intro.\n\nCPython\n\nOverview\nThe original one.\n\nJython\n\nPython implemented in Java."):
        assert not any(":" in u for _, u in passage_units(other)), passage_units(other)
    # a lone name between two tables does not carry the first table's header into the second
    tables = "| Company | Share |\n|---|---|\n| Acme | 5% |\n\nEMEA\n\n| Region | Growth |\n|---|---|\n| Germany | 3% |"
    assert "Germany: growth 3%." in [u for _, u in passage_units(tables)]


def test_code_and_see_also_pointers_are_no_claims():
    """The QA bench's "How many connections does requests keep ...?" was answered by a run of
    code, and "how many characters ... PEP 8?" by "See also PEP 498 ..."."""
    from activities.research.synthesis import claimable, split_hits

    code = ("def main(): fn = os.path.splitext(os.path.basename(__file__))[0] adhf = argparse.ArgumentDefaultsHelpFormatter "
            "ap = argparse.ArgumentParser(formatter_class=adhf) ap.add_argument('--pool', default=10, type=int) "
            "options = ap.parse_args() return options")
    text = (f"{code}\n\nSee also PEP 498 for the proposal that added formatted string literals.\n\n"
            ">>> from enum import auto, Flag, and more names.\n\n"
            "functools.reduce() takes the first two elements A and B and calculates func(A, B).")
    sents = {x.text: claimable(x) for x in split_hits([hit("a", 1.0, text=text)])}
    assert sents["functools.reduce() takes the first two elements A and B and calculates func(A, B)."]
    # prose with an aside in brackets or a function named in passing is no code
    prose = ("Voltaris holds 14% market share (2023 figures). The default is 4.0 (four seconds). "
             "The default is sys.maxsize (see below). Use PyTuple_Pack() or Py_BuildValue() instead.")
    assert all(claimable(x) for x in split_hits([hit("b", 1.0, text=prose)]))
    assert not any(ok for t, ok in sents.items() if t.startswith(("def main", "See also", ">>>"))), sents


def test_the_answer_cache_key_changes_with_how_answers_are_scored(monkeypatch):
    from activities.research import cache, confidence

    key = cache.entry_key("state", {"mode": "full"})
    assert key == cache.entry_key("state", {"mode": "full"}) != cache.entry_key("state", {"mode": "retrieve"})
    monkeypatch.setattr(confidence, "BIAS", confidence.BIAS + 1.0)  # a deploy with refitted weights
    assert cache.entry_key("state", {"mode": "full"}) != key


def test_a_question_for_a_date_wants_a_date_not_any_figure():
    from activities.research.answerability import kind_match

    q = "On what date was Python 3.11.0 released?"
    assert kind_match(q, "This means that Python 3.11 supports Windows 8.1 and newer.") == 0.0
    assert kind_match(q, "Python 3.11.0 was released on October 24, 2022.") == 1.0
    assert kind_match("What day is the review?", "The review is on 2025-03-14.") == 1.0
    assert kind_match("What day is the review?", "It is held every Monday.") == 1.0
    assert kind_match("How many cycles does it last?", "It lasts 1000 cycles.") == 1.0  # any figure still
    assert kind_match("Who wrote it?", "It was written in May.") == 0.5  # not asking for a kind


def test_gates_keep_below_bar_claims_with_the_reason():
    from activities.research.gates import apply_gates
    from stratmaster.contracts.research import Citation, Claim, Gates

    def claim(i, conf, docs, score=0.9, contra=0):
        cits = [Citation(chunk_id=f"c{i}{d}", document_id=f"d{d}", start=0, end=5, quote="quote", score=score)
                for d in range(docs)]
        return Claim(claim_id=str(i), ordinal=i, text=f"claim {i}", confidence=conf, supporting=cits,
                     contradicting=cits[:contra])

    gates = Gates(min_confidence=0.5, min_sources=2, min_retrieval_score=0.3, max_contradiction_ratio=0.4)
    findings, below, outcome = apply_gates(
        [claim(0, 0.9, 2), claim(1, 0.4, 2), claim(2, 0.9, 1), claim(3, 0.9, 2, score=0.1), claim(4, 0.8, 3)], gates)
    assert [c.text for c in findings] == ["claim 0", "claim 4"] and [c.ordinal for c in findings] == [0, 1]
    reasons = {c.text: c.below_bar_reason for c in below}
    assert "min_confidence 0.5" in reasons["claim 1"] and "min_sources 2" in reasons["claim 2"]
    assert "min_retrieval_score 0.3" in reasons["claim 3"] and outcome == "answered"
    assert apply_gates([claim(0, 0.2, 2)], gates)[2] == "insufficient_evidence"
    assert apply_gates([claim(0, 0.9, 2, contra=1), claim(1, 0.9, 2)], gates)[2] == "contested"  # 1/2 > 0.4


def test_extractive_answer_is_the_best_findings_quote():
    from activities.research.answer import build_answer

    hits = [hit("a", 0.9, "hybrid", DOC_A, "docA", start=100), hit("c", 0.6, "hybrid", DOC_C, "docC", start=0)]
    claims = extractive("m", "How much capacity does the XR-7 battery retain after 1000 cycles?", hits, embed=None)
    answer = build_answer("q", claims)
    assert answer.sentences and answer.text.startswith(answer.sentences[0].text)
    first = answer.sentences[0]
    assert "90 percent" in first.text and all(" ".join(c.quote.split()) == first.text for c in first.citations)
    assert build_answer("q", []).text == "" and build_answer("q", []).confidence == 0.0


def test_planned_subquestions_not_about_the_question_are_discarded():
    """Sub-questions the bundled SmolLM2-135M wrote for the demo question: the junk one goes."""
    from activities.ingest.embedding import get_embedder
    from activities.research.activities import ResearchActivities
    from stratmaster.settings import Settings

    acts = ResearchActivities.__new__(ResearchActivities)  # on_topic needs only the (real, local) embedder
    acts.embedder = get_embedder(Settings(_env_file=None))
    q = "What market share does Voltaris hold and how fast is the energy storage market growing?"
    junk = "Market Share: How to find it, in 100 words or less (25% of the time), with bullet points (30%)"
    kept, discarded = acts.on_topic(q, [q, junk, "Voltaris market share 2025", "energy storage market growth rate",
                                        "best pizza recipes in Naples"])
    assert kept == [q, "Voltaris market share 2025", "energy storage market growth rate"]
    assert discarded == [junk, "best pizza recipes in Naples"]


def test_llm_claims_are_ranked_beside_the_extractive_ones():
    from activities.research.activities import merge_claims
    from stratmaster.contracts.research import Citation, Claim

    def claim(text, conf, chunk, start):
        cit = Citation(chunk_id=chunk, document_id="d", start=start, end=start + 5, quote="quote")
        return Claim(claim_id=text, ordinal=0, text=text, confidence=conf, supporting=[cit])

    llm_claims = [claim("model says A", 0.4, "c1", 0)]
    extracted = [claim("sentence A", 0.6, "c1", 0), claim("sentence B", 0.7, "c2", 10), claim("sentence C", 0.1, "c3", 0)]
    merged = merge_claims(llm_claims, extracted, 2)
    # the extractive claim citing the span the model already cites is the same claim; best first, limited
    assert [c.text for c in merged] == ["sentence B", "model says A"] and [c.ordinal for c in merged] == [0, 1]


def test_a_models_claim_never_turns_an_abstention_into_an_answer():
    from activities.research.activities import gate_with_llm
    from stratmaster.contracts.research import Citation, Claim, Gates

    def claim(text, conf, chunk):
        cit = Citation(chunk_id=chunk, document_id=chunk, start=0, end=5, quote="quote")
        return Claim(claim_id=text, ordinal=0, text=text, confidence=conf, supporting=[cit])

    gates = Gates(min_confidence=0.3, min_sources=1, max_contradiction_ratio=0.5, min_retrieval_score=0.0)
    weak = [claim("sentence A", 0.2, "c1"), claim("sentence B", 0.1, "c2")]
    findings, below, outcome = gate_with_llm([claim("model says C", 0.6, "c3")], weak, gates, 4)
    assert (findings, outcome) == ([], "insufficient_evidence")
    assert below[0].text == "model says C" and "on its own" in below[0].below_bar_reason
    # with deterministic evidence above the bar, the model's claim is a finding beside it
    strong = [claim("sentence A", 0.5, "c1")]
    findings, _, outcome = gate_with_llm([claim("model says C", 0.6, "c3")], strong, gates, 4)
    assert [c.text for c in findings] == ["model says C", "sentence A"] and outcome == "answered"


def test_a_compound_questions_answer_answers_each_part():
    from activities.research.answer import combine_answers
    from stratmaster.contracts.research import Answer, AnswerSentence, Citation

    def ans(q, text, conf):
        cit = Citation(chunk_id="c", document_id="d", start=0, end=len(text), quote=text)
        return Answer(question=q, text=text, sentences=[AnswerSentence(text=text, citations=[cit])], confidence=conf)

    whole = ans("A and how fast B?", "B is growing quickly.", 0.6)
    parts = [ans("A", "A holds 14%.", 0.5), ans("how fast is B growing", "B grows 21% a year.", 0.4),
             Answer(question="C", text="")]
    combined = combine_answers("A and how fast B?", whole, parts)
    assert [s.text for s in combined.sentences] == ["A holds 14%.", "B grows 21% a year.", "B is growing quickly."]
    assert combined.confidence == 0.4 and combined.text.startswith("A holds 14%.")
    assert combine_answers("q", whole, [Answer(question="C", text="")]) == whole


def test_a_part_with_a_finding_that_answers_it_is_never_not_answered():
    from activities.research.answer import build_answer, part_findings
    from stratmaster.contracts.research import Citation, Claim

    def claim(text, conf, contra=False):
        cit = Citation(chunk_id="c", document_id="d", start=0, end=len(text), quote=text)
        return Claim(claim_id=text, ordinal=0, text=text, confidence=conf, supporting=[cit],
                     contradicting=[Citation(chunk_id="x", document_id="e", start=0, end=2, quote="9%")] if contra else [])

    share = "Voltaris holds a 14% share of the market."
    findings = [claim("The market grows 21% a year.", 0.6), claim(share, 0.45, contra=True)]
    # the part's own claim missed the bar (contested on its own), but the run's findings state it
    candidates = [claim(share, 0.2, contra=True), claim("Voltaris was founded in 2012.", 0.1)]
    got = part_findings([], candidates, findings)
    assert [f.text for f in got] == [share] and got[0].confidence == 0.45 and got[0].contradicting
    assert build_answer("What market share does Voltaris hold", got).text == share
    # its own finding first; a part no finding states stays unanswered
    own = [claim("Voltaris holds 14%.", 0.5)]
    assert part_findings(own, candidates, findings) == own[:1]
    assert part_findings([], [claim("Something else.", 0.2)], findings) == []


def test_sentence_vectors_embed_each_mission_sentence_once_and_stay_bounded():
    from activities.research.sentence_vectors import SentenceVectors

    calls: list[list[str]] = []

    def embed(texts: list[str]) -> list[list[float]]:
        calls.append(list(texts))
        return [[float(len(t)), 1.0] for t in texts]

    from types import SimpleNamespace

    encoder = SimpleNamespace(embed=embed, query_prefix="q: ", near_duplicate=0.9)
    cache = SentenceVectors(max_entries=3)
    a = cache.for_mission("ma", encoder)
    assert (a.query_prefix, a.near_duplicate) == ("q: ", 0.9)  # what scoring embeds a question as
    assert [list(v) for v in a(["one", "three", "one"])] == [[3.0, 1.0], [5.0, 1.0], [3.0, 1.0]]
    a(["three", "four"])  # only the new text reaches the model
    assert calls == [["one", "three"], ["four"]]
    cache.for_mission("mb", encoder)(["one"])  # another mission's same sentence is its own entry
    assert calls[-1] == ["one"]
    assert len(cache._lru) == 3  # bounded: the least recently used ("ma", "one") went first
    a(["one"])
    assert calls[-1] == ["one"] and (cache.hits, cache.misses) == (2, 5)


def test_stored_sentence_vectors_round_trip_and_bad_rows_are_refused():
    import numpy as np

    from activities.research.sentence_vectors import pack, unpack

    text = "One sentence. Two sentences here."
    spans = [(0, 13), (14, 33)]
    m = np.eye(2, 4, dtype=np.float32)
    flat, blob = pack(spans, m, "enc-a")
    got = unpack(text, flat, blob, 4, "enc-a")
    assert got is not None and set(got) == set(spans) and np.allclose(got[(14, 33)], [0, 1, 0, 0])
    assert unpack(text, *pack([], np.zeros((0, 4)), "enc-a"), 4, "enc-a") == {}  # a chunk with nothing to read
    # another model's vectors (or ones stored before the stamp) are never read as this model's
    assert unpack(text, *pack(spans, m, "enc-b"), 4, "enc-a") is None
    assert unpack(text, flat, np.asarray(m, dtype="<f2").tobytes(), 4, "enc-a") is None
    # a restored backup may hold anything: each inconsistency means "compute them again"
    nan = pack(spans, np.full((2, 4), np.nan, dtype=np.float32), "enc-a")[1]
    for bad in [(None, blob), (flat, None), (flat[:3], blob), (flat, blob[:-2]), (flat, nan),
                ([0, 13, 14, 99], blob), ([5, 2, 14, 33], blob), ([], b"enc-a\x00\x00\x00")]:
        assert unpack(text, bad[0], bad[1], 4, "enc-a") is None, bad
