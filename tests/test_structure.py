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


def _old_rules(text: str) -> str:
    """The converter's whitespace rules before structure was kept (the reference)."""
    import re

    from activities.ingest.converters.base import tidy

    text = re.sub(r"[ \t\u00a0]+", " ", text)
    text = re.sub(r" *\| *\n", "\n", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return tidy(text)


def test_marks_never_change_the_text():
    """Differential: on random documents, the text with structure kept is the text the converter
    gave before (same words, same line and paragraph breaks), and every block is a span of it."""
    import random

    from activities.ingest.converters.html import _write

    rng = random.Random(11)
    tags = ["p", "div", "dl", "dt", "dd", "h2", "span", "b", "li", "ul", "td", "tr", "table", "br"]
    words = ["x", "y z", " ", "  ", "\t", "\u00a0", "\u3000w", "v\u2009", "\n", "a | b", "q\u2028"]

    def tree(depth: int) -> str:
        parts = []
        for _ in range(rng.randint(0, 4)):
            if depth < 4 and rng.random() < 0.5:
                t = rng.choice(tags)
                parts.append(f"<{t}>{tree(depth + 1)}</{t}>")
            else:
                parts.append(rng.choice(words))
        return "".join(parts)

    checked = 0
    for _ in range(3000):
        data = tree(0).encode()
        doc = parse_html(data)
        assert doc.text == _old_rules(_write(data, marks=False)[0]), data
        for b in doc.blocks or []:
            span = doc.text[b.start:b.end]
            assert span and span == span.strip(), (data, b)
        checked += doc.blocks is not None
    assert checked > 2500  # structure kept for almost every document, not dropped to pass


def test_terms_stay_in_their_list():
    """An orphan description in a later list gets no term; after a nested list the outer list's
    next description is its own term's."""
    doc = parse_html(b"<dl><dt>password</dt><dd>The secret one.</dd></dl><p>Between.</p>"
                     b"<dl><dd>An orphan description here.</dd></dl>"
                     b"<dl><dt>a</dt><dd>First of a. <dl><dt>b</dt><dd>Inner of b.</dd></dl> Second of a.</dd></dl>")
    from activities.ingest.structure import definitions

    defs = {doc.text[d.start:d.end].split(".")[0]: d.term for d in definitions(doc.text, doc.blocks)}
    assert defs == {"The secret one": "password", "First of a": "a", "Inner of b": "b"}
    meta = DocumentStructure(doc).for_chunk(0, len(doc.text))
    units = dict((t.split(": ", 1)[1], t.split(": ", 1)[0]) for _, t in passage_units(doc.text, meta) if ": " in t)
    assert units.get("Second of a.") == "a" and "An orphan description here." not in units


def test_a_heading_is_found_where_it_is_not_where_it_is_mentioned():
    from activities.ingest.converters.text import parse_md

    doc = parse_md(b"# Project\n\nContents:\n\n- [Installation](#installation)\n- [License](#license)\n\n"
                   b"See Installation below.\n\n## Installation\n\npip install it.\n\n## License\n\nMIT licensed.\n")
    structure = DocumentStructure(doc)
    assert structure.section(doc.text.index("pip install")) == "Project > Installation"
    assert structure.section(doc.text.index("See Installation")) == "Project"
    assert structure.section(doc.text.index("MIT")) == "Project > License"


def test_markdown_sections_reach_research():
    """A Markdown chunk's heading path is read with its hits (not only HTML's)."""
    from activities.ingest.converters.text import parse_md

    doc = parse_md(b"# Guide\n\n## Setup\n\nRun the installer first.\n")
    start = doc.text.index("Run")
    meta = DocumentStructure(doc).for_chunk(start, len(doc.text))
    hit = with_structure(SearchHit(chunk_id="c", document_id="d", text=doc.text[start:], start=start,
                                   end=len(doc.text), score=1.0, source="bm25"), meta)
    assert hit.section == "Guide > Setup" and hit.structured is False


def test_a_description_holding_only_a_list_keeps_its_term():
    """<dd> whose whole text is a nested <dl> (a table of contents): the outer term describes it,
    the nested list's terms describe their own descriptions."""
    from activities.ingest.structure import definitions

    doc = parse_html(b"<dl><dt>17. Installation</dt><dd><dl><dt>17.1. Short Version</dt>"
                     b"<dd>Build and install in four commands.</dd></dl></dd></dl>")
    terms = {doc.text[d.start:d.end]: d.term for d in definitions(doc.text, doc.blocks)}
    assert terms["Build and install in four commands."] == "17.1. Short Version"
    assert "17. Installation" in terms.values()
