"""HTML: one iterative pass over the tree, page chrome dropped, blocks on their own lines,
headings and definition lists reported as blocks (spans of the extracted text).

Structure is marked while the text is written: a private-use character opens an element
and another closes it. The whitespace normalisation carries the marks along (they move to
the end of a run of whitespace they sit in, so they never split or keep a run), and the
last step removes them, recording where each element starts and ends.
"""
from __future__ import annotations

import re

from activities.ingest.converters.base import Block, ParsedDocument, decode_text, tidy

_HTML_DROP = frozenset(("script", "style", "noscript", "nav", "template", "svg", "iframe", "form", "button"))
# page chrome rarely carries content worth citing
_HTML_DROP_ROLES = frozenset(("navigation", "banner", "contentinfo"))
_HTML_BLOCKS = frozenset(("p", "div", "section", "article", "li", "tr", "br", "h1", "h2", "h3", "h4", "h5", "h6",
                          "table", "ul", "ol", "blockquote", "pre", "header", "footer", "main", "dd", "dt"))


# elements reported as blocks, and the character that marks each; the closing mark is _CLOSE
_MARKED = {"h1": "\ue001", "h2": "\ue002", "h3": "\ue003", "h4": "\ue004", "h5": "\ue005", "h6": "\ue006",
           "dt": "\ue007", "dd": "\ue008", "dl": "\ue009"}
_KINDS = {"dt": "term", "dd": "definition", "dl": "dlist"}
_KIND = {v: _KINDS.get(k, k) for k, v in _MARKED.items()}
_CLOSE = "\ue000"
_MARKS = "\ue000-\ue009"
_PRIVATE = re.compile(f"[{_MARKS}]")  # the document's own private-use characters there are dropped
_LEAD = re.compile(f"^[\\s{_MARKS}]*")
_TRAIL = re.compile(f"[\\s{_MARKS}]*\\Z")
_MARKS_LINE = re.compile(f"\\n([{_MARKS}]+)\\n")


def _marks(text: str) -> str:
    return "".join(_PRIVATE.findall(text))


def _collapse(pattern: str, repl: str, text: str) -> str:
    """re.sub that keeps the marks inside each match, after the replacement."""
    return re.sub(pattern, lambda m: repl + _marks(m.group(0)), text)


def _strip(text: str) -> str:
    """text.strip(), the marks in the stripped ends kept (at the ends)."""
    lead = _LEAD.match(text).group(0)  # type: ignore[union-attr]  # matches the empty string at least
    rest = text[len(lead):]
    trail = _TRAIL.search(rest).group(0)  # type: ignore[union-attr]
    return _marks(lead) + rest[:len(rest) - len(trail)] + _marks(trail)


def _normalise(text: str) -> str:
    """The old whitespace rules (runs of blanks, "|" at line ends, line.strip(), blank-line runs,
    text.strip()) on text holding marks; the marks end up where the removed whitespace was."""
    ws = f"[ \\t\u00a0{_MARKS}]"
    text = _collapse(f"{ws}*[ \\t\u00a0]{ws}*", " ", text)
    text = _collapse(f"[ {_MARKS}]*\\|[ {_MARKS}]*\\n", "\n", text)
    text = "\n".join(_strip(line) for line in text.split("\n"))
    # a line left with marks only is an empty line: its marks move to the start of the next line
    while (moved := _MARKS_LINE.sub(lambda m: "\n\n" + m.group(1), text)) != text:
        text = moved
    text = re.sub(r"\n{3,}", "\n\n", text)
    return _strip(text)


def _blocks(marked: str) -> tuple[str, list[Block]]:
    """The text without marks, and the marked elements as spans of it (whitespace trimmed)."""
    out: list[str] = []
    blocks: list[tuple[int, Block]] = []  # (the order it opened in, the block)
    opened: list[tuple[str, int, int]] = []
    n = seq = 0
    for part in re.split(f"([{_MARKS}])", marked):
        if not part:
            continue
        if part == _CLOSE:
            if opened:
                kind, start, order = opened.pop()
                blocks.append((order, Block(start, n, kind)))
        elif part in _KIND:
            opened.append((_KIND[part], n, seq))
            seq += 1
        else:
            out.append(part)
            n += len(part)
    text = "".join(out)
    trimmed = []
    for order, b in blocks:
        start, end = b.start, b.end
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            trimmed.append((order, Block(start, end, b.kind)))
    # document order; of two blocks on one span (a <dd> holding only a <dl>), the outer first
    trimmed.sort(key=lambda ob: (ob[1].start, -ob[1].end, ob[0]))
    return text, [b for _, b in trimmed]


def _html_dropped(tag) -> bool:
    if tag.name in _HTML_DROP:
        return True
    role = tag.get("role")
    return isinstance(role, str) and role in _HTML_DROP_ROLES


def _html_strings(root, kinds):
    """The kept strings under `root` in document order, skipping dropped subtrees. Iterative:
    a document nested 100,000 deep must not hit the recursion limit."""
    from bs4 import Tag

    stack = [iter(root.contents)]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
        elif isinstance(node, Tag):
            if not _html_dropped(node):
                stack.append(iter(node.contents))
        elif type(node) in kinds:
            yield node


def parse_html(data: bytes) -> ParsedDocument:
    """One pass over the tree: dropped elements are skipped, block elements are
    surrounded by newlines and table cells followed by " | " as the text is written
    (editing the tree instead, with insert_before/after, is quadratic in bs4)."""
    written, title = _write(data, marks=True)
    text, blocks = _blocks(_normalise(written))
    if text != tidy(text):  # the marks disturbed the layout somewhere: the text wins, its structure unknown
        return ParsedDocument(tidy(text), "html", title=title)
    return ParsedDocument(text, "html", title=title, blocks=blocks)


def _write(data: bytes, marks: bool) -> tuple[str, str | None]:
    """The document's text as written by the walk (before whitespace rules), and its title;
    `marks`: with the structure marks (without: what the text is made of, for a check)."""
    from bs4 import BeautifulSoup, CData, NavigableString, Tag

    kinds = (NavigableString, CData)  # what get_text() keeps: no comments, scripts, doctypes
    soup = BeautifulSoup(decode_text(data), "html.parser")
    out: list[str] = []
    title = h1 = None
    # (children iterator, text to write when the element closes)
    stack: list[tuple] = [(iter(soup.contents), None)]
    while stack:
        node = next(stack[-1][0], None)
        if node is None:
            _, closing = stack.pop()
            if closing:
                out.append(closing)
        elif isinstance(node, Tag):
            if _html_dropped(node):
                continue
            name = node.name
            if name == "title" and title is None:
                title = " ".join(t for t in (s.strip() for s in _html_strings(node, kinds)) if t)
                continue  # the first <title> is the title, not text
            if name == "h1" and h1 is None:
                h1 = " ".join(t for t in (s.strip() for s in _html_strings(node, kinds)) if t)
            if marks and name in _MARKED:
                nl = "\n" if name in _HTML_BLOCKS else ""  # a <dl> itself is no block: its items are
                out.append(nl + _MARKED[name])
                stack.append((iter(node.contents), _CLOSE + nl))
            elif name in _HTML_BLOCKS:
                out.append("\n")
                stack.append((iter(node.contents), "\n"))
            else:
                stack.append((iter(node.contents), " | " if name in ("td", "th") else None))
        elif type(node) in kinds:
            out.append(_PRIVATE.sub("", node))
    return "".join(out), title or h1 or None
