"""End to end through the API (dev mode) with the real missions, ingestion,
research and maintenance workers in-process: activate a mission from a
cartridge, upload documents, run research to a cited result, cancel a research."""
from __future__ import annotations

import asyncio
import time
import uuid

from temporalio.client import WorkflowExecutionStatus

from stratmaster import queues
from tests.api_support import api_client, audit_rows, cartridge, dev, make_app, run_workers, wait_closed

DOCS = {
    "xr7-lab.md": "# XR-7 lab report\n\nThe XR-7 battery retains 90 percent of its capacity after 1000 charge cycles. "
                  "Charging the XR-7 battery takes about 45 minutes.\n",
    "xr7-field.md": "# XR-7 field study\n\nCold weather reduces the driving range of vans using the XR-7 battery "
                    "by about 30 percent in northern Europe.\n",
    "solar.md": "# Solar\n\nMonocrystalline solar panels convert about 22 percent of sunlight into electricity.\n",
}


async def test_activate_ingest_research_and_cancel(client, settings):
    mission = f"api_flow_{uuid.uuid4().hex[:6]}"
    async with api_client(make_app(dev(settings), client)) as api:
        # research submitted before any research worker polls, then cancelled: it ends cancelled
        async with run_workers(client, settings, [queues.MAINTENANCE, queues.MISSIONS, queues.INGESTION]):
            r = await api.post("/missions", json=cartridge(mission))
            assert r.status_code == 202, r.text
            assert await wait_closed(client, r.json()["workflow_id"]) == WorkflowExecutionStatus.COMPLETED

            files = [("files", (name, text.encode(), "text/markdown")) for name, text in DOCS.items()]
            r = await api.post(f"/missions/{mission}/documents", files=files)
            assert r.status_code == 202, r.text
            ingest = r.json()["workflow_id"]
            assert await wait_closed(client, ingest, timeout=180) == WorkflowExecutionStatus.COMPLETED
            info = (await api.get(f"/workflows/{ingest}")).json()
            assert info["type"] == "IngestDocumentsWorkflow" and info["status"] == "completed" and info["mission"] == mission

            doomed = (await api.post(f"/missions/{mission}/research", json={"query": "solar panels"})).json()["workflow_id"]
            r = await api.delete(f"/research/{doomed}")
            assert r.status_code == 202

        async with run_workers(client, settings, [queues.RESEARCH, queues.MAINTENANCE]):
            assert await wait_closed(client, doomed, timeout=60) == WorkflowExecutionStatus.CANCELED
            r = await api.get(f"/research/{doomed}")
            assert r.json()["status"] == "canceled"

            r = await api.post(f"/missions/{mission}/research",
                               json={"query": "How much capacity does the XR-7 battery retain after 1000 cycles?"})
            assert r.status_code == 202, r.text
            wid = r.json()["workflow_id"]
            deadline = time.monotonic() + 180
            while True:
                body = (await api.get(f"/research/{wid}")).json()
                if body["status"] != "running":
                    break
                if body.get("progress"):  # the workflow's `progress` query while it runs
                    assert body["progress"]["mission"] == mission
                assert time.monotonic() < deadline, body
                await asyncio.sleep(0.1)
            assert body["status"] == "completed", body
            result = body["result"]
            assert result["mission"] == mission and result["status"] == "completed" and result["claims"]
            cited = {c["title"] or "" for claim in result["claims"] for c in claim["supporting"]}
            assert any("XR-7" in t for t in cited), cited
            rows = await audit_rows(settings, wid)
            assert rows[0]["action"] == "research.start" and rows[0]["status"] == 202
