"""Web search through SearxNG's JSON API (`GET /search?q=...&format=json`).

Used only when settings.searxng_url is set. Each result becomes a SearchHit with
source "web": the snippet is the hit's text (offsets 0..len), ids derive from the
URL, so citations of web evidence point at exactly what was retrieved.
"""
from __future__ import annotations

import uuid

import httpx

from stratmaster.contracts.knowledge import SearchHit
from stratmaster.errors import ServiceUnavailable

WEB_NS = uuid.UUID("0b6f0d0e-2a57-4c8e-9f3a-5e1d2c7a4b90")


def web_hit(result: dict, rank: int) -> SearchHit | None:
    url = str(result.get("url") or "").strip()
    text = " ".join(str(result.get("content") or "").split())
    title = " ".join(str(result.get("title") or "").split()) or None
    if not url or not (text or title):
        return None
    if not text:
        text = title or ""
    doc = str(uuid.uuid5(WEB_NS, url))
    score = result.get("score")
    return SearchHit(
        chunk_id=str(uuid.uuid5(WEB_NS, f"{url}#0")), document_id=doc, text=text, start=0, end=len(text),
        score=float(score) if isinstance(score, (int, float)) else 1.0 / rank, source="web", title=title, url=url,
        scores={"web": float(score) if isinstance(score, (int, float)) else 1.0 / rank},
    )


async def search_web(base_url: str, query: str, limit: int = 10, timeout: float = 15.0,
                     client: httpx.AsyncClient | None = None) -> list[SearchHit]:
    params: dict[str, str | int] = {"q": query, "format": "json", "pageno": 1}
    headers = {"User-Agent": "StratMaster Research Agent", "Accept": "application/json"}
    own = client is None
    client = client or httpx.AsyncClient(timeout=timeout)
    try:
        resp = await client.get(base_url.rstrip("/") + "/search", params=params, headers=headers)
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"SearxNG unreachable at {base_url}: {exc}") from exc
    finally:
        if own:
            await client.aclose()
    if resp.status_code != 200:
        raise ServiceUnavailable(f"SearxNG at {base_url} answered {resp.status_code}: {resp.text[:200]}")
    try:
        results = resp.json().get("results") or []
    except ValueError as exc:
        raise ServiceUnavailable(f"SearxNG at {base_url} did not return JSON (is `json` in search.formats?)") from exc
    hits, seen = [], set()
    for rank, r in enumerate(results, start=1):
        h = web_hit(r, rank) if isinstance(r, dict) else None
        if h and h.url not in seen:
            seen.add(h.url)
            hits.append(h)
        if len(hits) >= limit:
            break
    return hits


async def probe(base_url: str) -> str:
    """Health probe: one JSON search; raises ServiceUnavailable when SearxNG is down."""
    hits = await search_web(base_url, "stratmaster health check", limit=1, timeout=5.0)
    return f"searxng ok ({len(hits)} result{'s' if len(hits) != 1 else ''})"
