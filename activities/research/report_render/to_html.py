"""The HTML rendering of a research report: one self-contained page, every untrusted string
entity-escaped, links only to http(s) URLs, no script and a Content-Security-Policy that
forbids any."""
from __future__ import annotations

import html
import re
from datetime import datetime, timezone

from activities.research.report_render.model import Cite, ReportDoc, clean, quote_count

def h(text) -> str:
    return html.escape(clean(text), quote=True)


def _safe_url(url: str | None) -> str | None:
    return url if isinstance(url, str) and re.match(r"^https?://[^\s\"'<>]+$", url) else None


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;
color:#1d2733;line-height:1.5}
h1{font-size:1.5rem;margin-bottom:.3rem}h2{font-size:1.15rem;border-bottom:1px solid #d5dbe1;padding-bottom:.2rem;
margin-top:2rem}h3{font-size:1rem;margin:1.4rem 0 .3rem}
.meta{color:#56626e;font-size:.85rem}.meta dt{font-weight:600;float:left;clear:left;width:7.5rem}.meta dd{margin-left:8rem}
.answer{font-size:1.05rem;background:#f3f6f9;border-left:4px solid #2f6fae;padding:.6rem .9rem}
.conf{font-weight:600}.badge{display:inline-block;font-size:.75rem;padding:0 .4rem;border-radius:.6rem;
background:#fde2e1;color:#8a1c17;margin-left:.3rem}
blockquote{margin:.5rem 0 .8rem;padding:.3rem .8rem;border-left:3px solid #b8c4cf;color:#3b4652}
blockquote.contra{border-left-color:#d1453b}
mark{background:#fff0a0;color:#1d2733;font-weight:600;padding:0 .1rem}
.cite{display:block;font-size:.8rem;color:#56626e;margin-top:.2rem}
ol.sources li,ul li{margin:.2rem 0}.muted{color:#56626e}
"""


def _html_cite(c: Cite, contra: bool = False) -> str:
    link = _safe_url(c.url)
    src = f'<a href="{h(link)}" rel="noopener noreferrer nofollow">{h(c.source)}</a>' if link else h(c.source)
    where = f"[{c.n}] {h(c.title)}" + (f" ({src})" if c.source and c.source != c.title else "") + f", {h(c.location)}"
    return (f'<blockquote class="{"contra" if contra else "support"}">{h(c.before)}<mark>{h(c.quote)}</mark>'
            f'{h(c.after)}<span class="cite">— {where}</span></blockquote>')


def render_html(doc: ReportDoc) -> str:
    p: list[str] = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        # no script, no remote anything: the report is self-contained and inert
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:; base-uri 'none'; form-action 'none'\">",
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Research report: {h(doc.query)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Research report: {h(doc.query)}</h1>",
        '<dl class="meta">', *(f"<dt>{label}</dt><dd>{h(value)}</dd>" for label, value in doc.meta), "</dl>",
        "<h2>Answer</h2>",
    ]
    if doc.answer:
        badge = '<span class="badge">contested</span>' if doc.outcome == "contested" else ""
        conf = (f'<p class="conf">Confidence {doc.answer_confidence:.2f}{badge}</p>'
                if doc.answer_confidence is not None else "")
        p += [f'<p class="answer">{h(doc.answer)}</p>', conf]
        if doc.answer_cites:
            p += ['<p class="muted">Cited:</p>'] + [_html_cite(c) for c in doc.answer_cites]
    else:
        p.append("<p class=\"answer\"><em>The documents do not say: no finding clears this mission's quality bar."
                 "</em></p>")
    p.append("<h2>Findings</h2>")
    if not doc.findings:
        p.append("<p><em>No finding clears this mission's quality bar.</em></p>")
    for f in doc.findings:
        flag = f'<span class="badge">contradicted</span> {h(f.why_contested)}' if f.contested else ""
        p += [f"<h3>{f.n}. {h(f.text)}</h3>",
              f'<p class="muted"><span class="conf">Confidence {f.confidence:.2f}</span> · {f.sources} '
              f'source{"s" if f.sources != 1 else ""} {flag}</p>']
        p += [_html_cite(c) for c in f.supporting]
        if f.contradicting:
            p.append('<p class="muted">Contradicting evidence:</p>')
            p += [_html_cite(c, contra=True) for c in f.contradicting]
    if doc.contradictions:
        p += ["<h2>Contradictions</h2>", "<ul>"]
        p += [f"<li>Finding {f.n}: {h(f.why_contested)} ({quote_count(len(f.contradicting))})</li>" for f in doc.contradictions]
        p.append("</ul>")
    if doc.closest:
        p += ["<h2>Closest evidence (not an answer)</h2>"] + [_html_cite(c) for c in doc.closest]
    if doc.subquestions:
        p += ["<h2>Sub-questions</h2>", "<ol>"]
        for q, a in doc.subquestions:
            p.append(f"<li>{h(q)}" + (f' <span class="muted">— {h(a)}</span>' if a else
                                       (' <span class="muted">— not answered by the documents</span>' if a == "" else ""))
                     + "</li>")
        p.append("</ol>")
    if doc.below_bar:
        p += [f"<h2>Below this mission's quality bar ({doc.below_bar_total})</h2>", "<ul>"]
        p += [f'<li>{h(f.text)} <span class="muted">— {h(f.below_text)}</span></li>' for f in doc.below_bar]
        p.append("</ul>")
    p += ["<h2>Sources</h2>", '<ol class="sources">']
    for s in doc.sources:
        link = _safe_url(s.url)
        src = f'<a href="{h(link)}" rel="noopener noreferrer nofollow">{h(s.source)}</a>' if link else h(s.source)
        p.append(f'<li value="{s.n}">{h(s.title)}' + (f" — {src}" if s.source and s.source != s.title else "")
                 + (f' <span class="muted">(document {h(s.document_id)})</span>' if s.document_id else "") + "</li>")
    p.append("</ol>")
    if doc.notes:
        p += ["<h2>Notes</h2>", "<ul>"] + [f"<li>{h(n)}</li>" for n in doc.notes] + ["</ul>"]
    p.append(f'<p class="muted">Generated by StratMaster on {h(_now())}.</p></body></html>')
    return "\n".join(x for x in p if x) + "\n"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
