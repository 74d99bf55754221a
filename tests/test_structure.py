"""Structure kept from the source: the HTML converter reports headings and definition lists,
chunks carry their heading path and terms, and research reads a description's sentences
with the term they describe."""
from __future__ import annotations

from activities.ingest.converters.html import parse_html
from activities.ingest.structure import DocumentStructure
from activities.research.synthesis import hit_units, passage_units, with_structure
from stratmaster.contracts.knowledge import SearchHit

PAGE = b"""<html><head><title>Server Configuration</title></head><body>
<h1>Server Configuration</h1><div><h2>20.4. Resource Consumption</h2><h3>20.4.1. Memory</h3>
<dl class="variablelist">
<dt id="guc-shared-buffers"><code>shared_buffers</code> (<code>integer</code>)</dt>
<dd><p>Sets the amount of memory the database server uses for shared memory buffers.
 The default is typically 128 megabytes (<code>128MB</code>).</p></dd>
<dt><code>work_mem</code> (<code>integer</code>)</dt>
<dd><p>Sets the base maximum amount of memory to be used by a query operation.
 If this value is specified without units, it is taken as kilobytes. The default value is four megabytes
 (<code>4MB</code>).</p>
 <dl><dt>nested</dt><dd><p>An inner description that says something useful here.</p></dd></dl>
 <p>Back in the outer description of this setting again.</p></dd>
</dl><h2>20.5. Write Ahead Log</h2><p>Plain paragraph under another heading.</p></div></body></html>"""


def test_html_reports_headings_and_definitions():
    doc = parse_html(PAGE)
    kinds = [(b.kind, doc.text[b.start:b.end]) for b in doc.blocks]
    assert ("term", "shared_buffers (integer)") in kinds
    assert ("h3", "20.4.1. Memory") in kinds
    definition = next(t for k, t in kinds if k == "definition" and t.startswith("Sets the base"))
    assert definition.endswith("outer description of this setting again.")


def test_html_text_unchanged_by_marks():
    """The marks that carry structure through the whitespace rules leave the text as before."""
    doc = parse_html(b"<p>a  <b>b</b>\t c</p><dl><dt> x </dt><dd>  y  </dd></dl><table><tr><td>1</td><td>2</td></tr></table>")
    assert doc.text == "a b c\n\nx\n\ny\n\n1 | 2"
    assert "\ue000" not in doc.text and all(doc.text[b.start:b.end].strip() == doc.text[b.start:b.end] for b in doc.blocks)


def test_document_private_use_characters_cannot_forge_structure():
    doc = parse_html("<p>\ue007fake term\ue000</p><p>text</p>".encode())
    assert doc.blocks == [] and "fake term" in doc.text and "\ue007" not in doc.text


def test_chunk_metadata_and_units_read_each_sentence_with_its_term():
    doc = parse_html(PAGE)
    structure = DocumentStructure(doc)
    start = doc.text.index("work_mem")
    meta = structure.for_chunk(start, len(doc.text))
    assert meta["structured"] is True
    assert meta["section"] == "Server Configuration > 20.4. Resource Consumption > 20.4.1. Memory"
    texts = [t for _, t in passage_units(doc.text[start:], meta)]
    assert "work_mem (integer): The default value is four megabytes (4MB)." in texts
    assert "nested: An inner description that says something useful here." in texts
    assert "work_mem (integer): Back in the outer description of this setting again." in texts
    # the heading path follows the document: a later chunk is under the later heading
    assert structure.section(doc.text.index("Plain paragraph")) == "Server Configuration > 20.5. Write Ahead Log"


def test_units_quote_the_source_verbatim():
    doc = parse_html(PAGE)
    meta = DocumentStructure(doc).for_chunk(0, len(doc.text))
    hit = with_structure(SearchHit(chunk_id="c", document_id="d", text=doc.text, start=0, end=len(doc.text),
                                   score=1.0, source="bm25"), meta)
    for u in hit_units(hit):
        quote = hit.text[u.local_start:u.local_end]
        assert " ".join(quote.split()) in u.text  # the unit adds its term; the quote is the source's own


def test_unstructured_text_keeps_the_guess():
    """Plain text has no converter structure: the definition-list guess still applies there."""
    text = "Several implementations exist.\nJython\n\nPython implemented in Java.\n\nIronPython\n\nPython implemented for .NET."
    texts = [t for _, t in passage_units(text)]
    assert "Jython: Python implemented in Java." in texts
    structured = [t for _, t in passage_units(text, {"structured": True})]
    assert "Jython: Python implemented in Java." not in structured


def test_markdown_reports_its_headings_not_a_hash_in_code():
    from activities.ingest.converters.text import parse_md

    doc = parse_md(b"# Guide\n\nIntro text.\n\n```\n# not a heading\n```\n\nSetup\n-----\n\nStep one.\n\n## Options\n\nMore.")
    heads = [(b.kind, doc.text[b.start:b.end]) for b in doc.blocks]
    assert heads == [("h1", "Guide"), ("h2", "Setup"), ("h2", "Options")]
    structure = DocumentStructure(doc)
    assert structure.section(doc.text.index("More.")) == "Guide > Options"
    meta = structure.for_chunk(doc.text.index("Step one"), len(doc.text))
    assert meta == {"section": "Guide > Setup"}  # headings, but no definition lists: research may still guess those


def test_docx_reports_heading_styles():
    import io

    import docx

    from activities.ingest.converters.docx import parse_docx

    d = docx.Document()
    d.add_heading("Annual report", level=1)
    d.add_paragraph("Annual report figures follow in the sections below.")
    d.add_heading("Revenue", level=2)
    d.add_paragraph("Revenue grew 12% in the year.")
    buf = io.BytesIO()
    d.save(buf)
    doc = parse_docx(buf.getvalue())
    assert [(b.kind, doc.text[b.start:b.end]) for b in doc.blocks] == [("h1", "Annual report"), ("h2", "Revenue")]
    assert DocumentStructure(doc).section(doc.text.index("Revenue grew")) == "Annual report > Revenue"
