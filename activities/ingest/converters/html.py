"""HTML: one iterative pass over the tree, page chrome dropped, blocks on their own lines."""
from __future__ import annotations

import re

from activities.ingest.converters.base import ParsedDocument, decode_text, tidy

_HTML_DROP = frozenset(("script", "style", "noscript", "nav", "template", "svg", "iframe", "form", "button"))
# page chrome rarely carries content worth citing
_HTML_DROP_ROLES = frozenset(("navigation", "banner", "contentinfo"))
_HTML_BLOCKS = frozenset(("p", "div", "section", "article", "li", "tr", "br", "h1", "h2", "h3", "h4", "h5", "h6",
                          "table", "ul", "ol", "blockquote", "pre", "header", "footer", "main", "dd", "dt"))


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
            if name in _HTML_BLOCKS:
                out.append("\n")
                stack.append((iter(node.contents), "\n"))
            else:
                stack.append((iter(node.contents), " | " if name in ("td", "th") else None))
        elif type(node) in kinds:
            out.append(node)
    text = "".join(out)
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    text = re.sub(r" *\| *\n", "\n", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return ParsedDocument(tidy(text), "html", title=title or h1 or None)
