"""Shareable research reports (research worker): render a completed session's
stored report (report.json) with the cited chunks' context to Markdown, HTML, PDF
and DOCX (the activities/research/report_render/ package), and store them beside it
under the mission's prefix. The session is looked up by workflow id *within the mission*: a
research of another mission is "not found", exactly like one that does not exist."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid

from temporalio import activity

from activities.heartbeat import heartbeat
from activities.research import report_render
from activities.research.report_render.model import ReportDoc, build_report
from activities.resources import Resources
from activities.stores.base import ObjectNotFound, object_prefix
from activities.stores.tenants import require_mission
from stratmaster.contracts.reports import (
    CONTENT_TYPES, MAX_CONTENT_BYTES, REPORT_NOT_FOUND, RenderedReport, RenderReportInput, ReportArtifact, report_key,
)
from stratmaster.errors import bad_input


def _uuids(values) -> list[uuid.UUID]:
    out = []
    for v in values:
        try:
            out.append(uuid.UUID(str(v)))
        except ValueError:
            pass  # web citations have no stored chunk
    return out


def _citations(report: dict) -> list[dict]:
    cites = [c for key in ("claims", "below_bar") for cl in report.get(key) or []
             for c in (cl.get("supporting") or []) + (cl.get("contradicting") or [])]
    cites += report.get("closest_evidence") or []
    answer = report.get("answer") or {}
    cites += [c for s in answer.get("sentences") or [] for c in s.get("citations") or []]
    return [c for c in cites if isinstance(c, dict)]


# formats only this activity writes (report.md is also the research's own Markdown, written as it
# completes): a stored one is this rendering of a report that no longer changes
REUSABLE = frozenset({"html", "pdf", "docx"})


class ReportActivities:
    def __init__(self, resources: Resources):
        self.stores = resources.stores
        self.pool = resources.pool

    @activity.defn(name="research_render_report")
    async def render_report(self, req: RenderReportInput) -> RenderedReport:
        tenant_id = await require_mission(self.pool, req.mission)
        row = await self.pool.fetchrow(
            "SELECT id::text AS id, status, report_json_key FROM research_sessions WHERE workflow_id = $1 AND tenant_id = $2",
            req.workflow_id, tenant_id)
        if row is None:
            raise bad_input(f"mission {req.mission!r} has no research {req.workflow_id!r}", REPORT_NOT_FOUND)
        if row["status"] != "completed" or not row["report_json_key"]:
            raise bad_input(f"research {req.workflow_id!r} is {row['status']}: no report (only completed research "
                            "has one)", REPORT_NOT_FOUND)
        formats = list(dict.fromkeys([*req.formats, *([req.fetch] if req.fetch else [])]))
        stored: dict[str, bytes] = {}
        for fmt in formats if req.reuse else []:
            if fmt in REUSABLE:
                try:  # only a rendering by this renderer version
                    made_by = await self.stores.objects.get(req.mission, _version_key(row["id"], fmt))
                    if made_by.decode() == report_render.RENDERER_VERSION:
                        stored[fmt] = await self.stores.objects.get(req.mission, report_key(row["id"], fmt))
                except ObjectNotFound:
                    pass
        doc = await self._document(req.mission, tenant_id, row) if len(stored) < len(formats) else None
        artifacts, content = [], None
        for fmt in formats:
            if fmt in stored:
                data = stored[fmt]
                key = object_prefix(req.mission) + report_key(row["id"], fmt)
            else:
                data = await asyncio.to_thread(report_render.RENDERERS[fmt], doc)
                key = await self.stores.objects.put(req.mission, report_key(row["id"], fmt), data, CONTENT_TYPES[fmt])
                if fmt in REUSABLE:
                    await self.stores.objects.put(req.mission, _version_key(row["id"], fmt),
                                                  report_render.RENDERER_VERSION.encode(), "text/plain")
            artifacts.append(ReportArtifact(format=fmt, key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                                            content_type=CONTENT_TYPES[fmt]))
            if fmt == req.fetch:
                content = data
            heartbeat()
        omitted = None
        if content is not None and len(content) > MAX_CONTENT_BYTES:
            omitted = (f"the {req.fetch} report is {len(content)} bytes, over the {MAX_CONTENT_BYTES} a workflow result "
                       "may carry: read it from the object store")
            content = None
        return RenderedReport(mission=req.mission, workflow_id=req.workflow_id, session_id=row["id"],
                              artifacts=artifacts, fetch=req.fetch,
                              content_b64=base64.b64encode(content).decode() if content is not None else None,
                              content_omitted=omitted)

    async def _document(self, mission: str, tenant_id, row) -> ReportDoc:
        report = json.loads(await self.stores.objects.get(mission, row["report_json_key"]))
        cites = _citations(report)
        chunk_rows = await self.pool.fetch(
            "SELECT id::text AS id, text, char_start FROM chunks WHERE tenant_id = $1 AND id = ANY($2::uuid[])",
            tenant_id, _uuids({c.get("chunk_id") for c in cites}))
        doc_rows = await self.pool.fetch(
            "SELECT id::text AS id, title, source FROM documents WHERE tenant_id = $1 AND id = ANY($2::uuid[])",
            tenant_id, _uuids({c.get("document_id") for c in cites}))
        return build_report(
            report, {r["id"]: (r["text"], r["char_start"]) for r in chunk_rows},
            {r["id"]: (r["title"] or "", _display_source(r["source"])) for r in doc_rows})


def _version_key(session_id: str, fmt: str) -> str:
    return report_key(session_id, fmt) + ".renderer"


def _display_source(source: str | None) -> str:
    """A document's origin as shown in a report: its file name, not a server path."""
    s = (source or "").rstrip("/")
    if s.startswith("inline:"):  # uploaded content: its name
        s = s[len("inline:"):]
    return s.rsplit("/", 1)[-1] if "/" in s and not s.startswith(("http://", "https://")) else s


