"""Pure parts of ingestion: embedder, parsing, chunking offsets, entity extraction, contracts."""
from __future__ import annotations

import random

import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from activities.ingest.chunking import chunk_id, chunk_spans, chunk_text, document_id
from activities.ingest.embedding import get_embedder
from activities.ingest.entities import extract, extract_from_text
from activities.ingest.parsing import detect_kind, page_of, parse_document, safe_filename
from stratmaster.contracts.ingestion import DocumentRef, IngestInput, default_batch_id, workflow_id_for
from tests.ingestion_support import SAMPLES, write_bad_documents


@pytest.fixture(scope="module")
def embedder(settings):
    return get_embedder(settings)


# ---------------------------------------------------------------- embedder

def test_embedder_is_local_cached_normalised_and_batched(settings, embedder):
    assert get_embedder(settings) is embedder
    assert embedder.dim == 384
    texts = [f"battery storage note number {i}" for i in range(7)]
    small = get_embedder(settings.model_copy(update={"embedding_batch_size": 3}))
    assert small is not embedder and small.batch_size == 3
    a, b = embedder.embed(texts), small.embed(texts)
    assert len(a) == len(b) == 7 and all(len(v) == 384 for v in a)
    for u, v in zip(a, b):
        assert abs(sum(x * x for x in u) - 1.0) < 1e-4
        assert max(abs(x - y) for x, y in zip(u, v)) < 1e-4
    # semantically closer texts are closer vectors
    q, near, far = embedder.embed(["lithium battery prices", "cost of lithium-ion batteries", "a recipe for pancakes"])
    assert sum(x * y for x, y in zip(q, near)) > sum(x * y for x, y in zip(q, far))
    assert embedder.embed([]) == []


def test_a_question_is_embedded_once_while_remembered(embedder, monkeypatch):
    """A research run needs its question's vector for the answer cache and for retrieval: the
    embedder computes it once, and hands out copies (a caller's edit changes nothing)."""
    q = "what does the global interpreter lock protect?"
    real = embedder.embed
    calls: list[list[str]] = []
    embedder.forget_queries()
    monkeypatch.setattr(embedder, "embed", lambda texts: calls.append(list(texts)) or real(texts))
    a = embedder.embed_query(q)
    a[0] = 99.0
    b = embedder.embed_query(q)
    assert calls == [[q]] and b[0] != 99.0
    assert max(abs(x - y) for x, y in zip(b, real([q])[0])) < 1e-6
    embedder.forget_queries()
    embedder.embed_query(q)
    assert calls == [[q], [q]]
    embedder.forget_queries()


def test_tokenizer_is_the_models_own_and_counts_without_truncation(embedder):
    tok = embedder.tokenizer
    assert tok.is_fast and tok.vocab_size == 30522
    long = "energy storage " * 500
    assert embedder.count_tokens(long) == 1000  # tokenizer.json ships truncation=128: must be off
    assert embedder.count_tokens("Hello world") == len(tok("Hello world", add_special_tokens=False)["input_ids"])


# ---------------------------------------------------------------- chunking

def _random_text(seed: int) -> str:
    rnd = random.Random(seed)
    words = ["storage", "Grid", "café", "naïve", "LFP", "12.5%", "—", "über", "東京", "emoji🙂", "x" * 40,
             "kWh", "(note)", "U.S.", "e-mail", "\t", "  "]
    parts = []
    for _ in range(rnd.randint(50, 1500)):
        w = rnd.choice(words)
        parts.append(w)
        r = rnd.random()
        parts.append(". " if r < 0.08 else "\n\n" if r < 0.1 else "\n" if r < 0.12 else " ")
    return "".join(parts)


@pytest.mark.parametrize("seed", range(12))
def test_chunks_are_exact_slices_within_token_budget_with_overlap(embedder, seed):
    text = _random_text(seed)
    offsets = embedder.token_offsets(text)
    max_tokens, overlap = random.Random(seed).choice([(200, 40), (64, 16), (32, 0), (10, 5)])
    spans = chunk_spans(text, offsets, max_tokens, overlap)
    assert spans and spans[0].start == offsets[0][0] and spans[-1].end == offsets[-1][1]
    for a, b in zip(spans, spans[1:]):
        assert a.start < b.start and (b.start <= a.end or not text[a.end:b.start].strip())  # no text lost
        if overlap:
            assert b.start < a.end  # consecutive chunks share text
    for sp in spans:
        chunk = text[sp.start:sp.end]
        assert 0 < sp.token_count <= max_tokens
        # re-tokenising the exact slice gives (about) the same number of word pieces
        assert embedder.count_tokens(chunk) <= max_tokens + 2
    assert [s.ordinal for s in spans] == list(range(len(spans)))


def test_chunks_prefer_paragraph_boundaries(embedder):
    paras = [" ".join(f"word{i}{j}" for j in range(30)) + "." for i in range(6)]
    text = "\n\n".join(paras)
    spans = chunk_text(text, embedder.token_offsets, 120, 20)
    assert len(spans) > 1
    assert all(text[s.end:s.end + 2] == "\n\n" or s.end == len(text) for s in spans)


def test_deterministic_ids():
    d = document_id("demo", "ab" * 32)
    assert d == document_id("demo", "ab" * 32) != document_id("other", "ab" * 32)
    assert chunk_id(d, 0) == chunk_id(d, 0) != chunk_id(d, 1)


# ---------------------------------------------------------------- parsing

def test_every_sample_type_parses_with_a_title():
    kinds = {}
    for p in sorted(SAMPLES.iterdir()):
        doc = parse_document(p.name, p.read_bytes())
        kinds[p.suffix] = doc.kind
        assert doc.text.strip() and doc.title, p.name
    assert kinds == {".csv": "csv", ".txt": "txt", ".docx": "docx", ".html": "html", ".pdf": "pdf",
                     ".json": "json", ".md": "md"}


def test_html_drops_scripts_nav_and_chrome():
    doc = parse_document("n.html", (SAMPLES / "industry_news.html").read_bytes())
    assert doc.title == "Storage boom slows as analysts trim growth forecasts"
    for junk in ("dataLayer", "Subscribe", "font-family", "All rights reserved", "pageview"):
        assert junk not in doc.text
    assert "Helios Power AG | Munich | Utility-scale integration" in doc.text


def test_pdf_pages_docx_tables_csv_records_json_paths():
    pdf = parse_document("o.pdf", (SAMPLES / "market_outlook_2025.pdf").read_bytes())
    assert len(pdf.page_starts) == 2 and page_of(pdf, 0) == 1
    assert page_of(pdf, pdf.text.index("European competitive landscape")) == 2
    docx = parse_document("c.docx", (SAMPLES / "competitor_briefing.docx").read_bytes())
    assert "Voltaris Energy Storage | 9% | Baltic Energy Analytics" in docx.text
    csv_doc = parse_document("b.csv", (SAMPLES / "battery_costs.csv").read_bytes())
    assert "year: 2024; chemistry: LFP; pack_price_usd_per_kwh: 104" in csv_doc.text
    js = parse_document("p.json", (SAMPLES / "product_specs.json").read_bytes())
    assert "products[1].round_trip_efficiency_pct: 92" in js.text and js.title.startswith("Voltaris VoltStack")


def test_samples_agree_and_contradict():
    texts = {p.name: parse_document(p.name, p.read_bytes()).text for p in SAMPLES.iterdir()}
    assert sum("115 per kWh" in t or "pack_price_usd_per_kwh: 115" in t for t in texts.values()) >= 3
    assert "21%" in texts["market_outlook_2025.pdf"] and "9% a year" in texts["industry_news.html"]
    assert "14% market share" in texts["voltaris_strategy_2025.md"] and "9% market share" in texts["competitor_briefing.docx"]


def test_bad_documents_raise_readable_non_retryable_errors(tmp_path):
    for path, reason_type in write_bad_documents(tmp_path).items():
        if reason_type == "Oversized":
            continue  # a size limit, enforced when reading
        data = open(path, "rb").read()
        with pytest.raises(ApplicationError) as info:
            parse_document(path.rsplit("/", 1)[-1], data)
        assert info.value.type == reason_type and info.value.non_retryable, (path, info.value)


def test_type_sniffing_without_or_with_wrong_extension():
    pdf = (SAMPLES / "market_outlook_2025.pdf").read_bytes()
    assert detect_kind("download", pdf) == "pdf"
    assert detect_kind("report.txt", pdf) == "pdf"  # content wins over a text extension
    assert detect_kind("page", b"<!DOCTYPE html><html><body>x</body></html>") == "html"
    assert detect_kind("data", b'{"a": [1, 2]}') == "json"
    assert detect_kind("README", "plain words, ünïcode".encode()) == "txt"
    assert parse_document("latin.txt", "caf\xe9 cr\xe8me".encode("latin-1")).text == "café crème"
    assert safe_filename("../../etc/pass wd?.pdf") == "pass_wd_.pdf"


# ---------------------------------------------------------------- entities

def test_entity_extraction_is_deterministic_and_typed():
    text = ("Dr. Lena Hartmann, CEO of Voltaris Energy Storage, met Helios Power AG in Munich. "
            "CEO Thomas Brandt discussed lithium iron phosphate and market share.")
    ents = {(e.type, e.name) for e in extract_from_text(text)}
    assert ("PERSON", "Lena Hartmann") in ents and ("PERSON", "Thomas Brandt") in ents
    assert ("ORGANIZATION", "Helios Power AG") in ents
    assert ("CONCEPT", "lithium iron phosphate") in ents and ("CONCEPT", "market share") in ents
    custom = {(e.type, e.name) for e in extract_from_text(text, custom={"COMPANY": ["Voltaris Energy Storage"]})}
    assert ("COMPANY", "Voltaris Energy Storage") in custom and ("CONCEPT", "Voltaris Energy Storage") not in custom

    import re

    reg = {(e.type, e.name) for e in extract_from_text(
        "Under EU Directive 2023/1791 grids must report.", patterns={"REGULATION": [re.compile(r"\bEU Directive \d{4}/\d+")]})}
    assert ("REGULATION", "EU Directive 2023/1791") in reg

    a = extract("5f0b6c3e-8e6a-4f59-9a53-2b7d0c1e4a10", "t", [text, "Helios Power AG and lithium iron phosphate."])
    b = extract("5f0b6c3e-8e6a-4f59-9a53-2b7d0c1e4a10", "t", [text, "Helios Power AG and lithium iron phosphate."])
    assert a == b
    doc = next(e for e in a.entities if e.type == "DOCUMENT")
    mentions = [r for r in a.relations if r.type == "MENTIONS"]
    assert all(r.source_id == doc.entity_id for r in mentions)
    helios = next(e for e in a.entities if e.name == "Helios Power AG")
    assert next(r for r in mentions if r.target_id == helios.entity_id).weight == 2.0  # two chunks mention it
    assert any(r.type == "RELATES_TO" and helios.entity_id in (r.source_id, r.target_id) for r in a.relations)


# ---------------------------------------------------------------- contracts

def test_plain_json_input_and_business_key():
    raw = {"mission": "demo", "documents": [{"path": "/data/a.pdf"}, {"object_key": "documents/x.md"},
                                            {"name": "n.txt", "content_b64": "aGk="}]}
    req = IngestInput.model_validate(raw)
    reordered = IngestInput.model_validate({**raw, "documents": raw["documents"][::-1]})
    assert req.resolved_batch_id() == reordered.resolved_batch_id() == default_batch_id(req.documents)
    assert workflow_id_for("demo", "b1") == "ingest-demo-b1"
    assert IngestInput.model_validate({**raw, "batch_id": "b1"}).resolved_batch_id() == "b1"
    for bad in ({"path": "/a", "object_key": "documents/b"}, {}, {"content_b64": "aGk="}):
        with pytest.raises(ValidationError):
            DocumentRef.model_validate(bad)
    with pytest.raises(ValidationError):
        IngestInput.model_validate({**raw, "mission": "Bad/Mission"})
    with pytest.raises(ValidationError):
        IngestInput.model_validate({**raw, "documents": []})


def test_passage_embedding_adds_each_units_own_vector(settings, embedder):
    import numpy as np

    from activities.ingest.embedding import embed_passages
    from activities.ingest.sentence_encoder import get_sentence_encoder

    encoder = get_sentence_encoder(settings)
    texts = ["The default is 4.0. It sets the planner's estimate.", "Short one."]
    units = [["The default is 4.0.", "It sets the planner's estimate."], []]
    vectors, unit_vectors = embed_passages(embedder, encoder, texts, units)
    # the chunk vectors are the retrieval model's own (what embed() stores in the vector index)
    assert np.abs(np.array(vectors) - np.array(embedder.embed(texts))).max() < 1e-5
    assert [m.shape for m in unit_vectors] == [(2, encoder.dim), (0, encoder.dim)]
    assert unit_vectors[0].dtype == np.float16
    # each unit's vector is the one research's encoder gives it alone (float16 rows)
    assert float(unit_vectors[0][0].astype(np.float32) @ encoder.embed(units[0][:1])[0]) > 0.9999


def test_sentence_encoder_ranks_the_sentence_that_answers_a_query_first(settings):
    import numpy as np

    from activities.ingest.sentence_encoder import get_sentence_encoder

    encoder = get_sentence_encoder(settings)
    assert encoder is get_sentence_encoder(settings)  # loaded once per process
    q = encoder.embed([encoder.query_prefix + "What encoding does Python assume for source files?"])[0]
    sents = ["Be careful not to fall off!", "By default, Python source files are treated as encoded in UTF-8.",
             "The interpreter prints a welcome message stating its version number."]
    vecs = encoder.embed(sents)
    assert vecs.dtype == np.float32 and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-4)
    assert int(np.argmax(vecs @ q)) == 1
    # the same text embeds the same alone and among others (no batch-dependent quantization)
    assert np.abs(encoder.embed(sents[1:2])[0] - vecs[1]).max() < 1e-5
    assert encoder.embed([]).shape == (0, encoder.dim)


def test_a_missing_sentence_model_is_a_clear_error(settings, tmp_path):
    from activities.ingest.sentence_encoder import SentenceEncoder, SentenceModelMissing, get_sentence_encoder

    with pytest.raises(SentenceModelMissing, match="install_models.sh"):
        SentenceEncoder(tmp_path)
    # STRATMASTER_SENTENCE_MODEL_PATH is where the encoder is looked for
    with pytest.raises(SentenceModelMissing, match=str(tmp_path)):
        get_sentence_encoder(settings.model_copy(update={"sentence_model_path": tmp_path}))