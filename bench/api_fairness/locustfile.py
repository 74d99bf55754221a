"""Load for bench/api_fairness/run.py (run by Locust, from its own venv).

Mission B's analysts ask their usual questions and wait for the answer (POST research with
?wait=30). Mission A floods: research starts, ingestions and event streams, as fast as it can,
from many principals. Every request is named by mission and kind in Locust's statistics."""
from __future__ import annotations

import base64
import json
import os
import random
import uuid

from locust import HttpUser, between, constant, task

A, B = os.environ["FAIR_MISSION_A"], os.environ["FAIR_MISSION_B"]
QUESTIONS = json.loads(os.environ["FAIR_QUESTIONS"])


def auth(user: str, mission: str) -> dict:
    return {"Authorization": f"Bearer {user}:mission:{mission}:writer"}


class Analyst(HttpUser):
    """Mission B: one question at a time, a think time between."""
    wait_time = between(1, 2)
    fixed_count = int(os.environ.get("FAIR_ANALYSTS", "0"))  # exactly these many; the other users flood

    def on_start(self):
        self.headers = auth(f"analyst-{uuid.uuid4().hex[:6]}", B)

    @task
    def ask(self):
        q = random.choice(QUESTIONS)
        with self.client.post(f"/missions/{B}/research?wait=30", json={"query": q, "cache": "off"},
                              headers=self.headers, name="B research", catch_response=True) as r:
            if r.status_code != 200 or r.json().get("status") != "completed":
                r.failure(f"{r.status_code} {r.text[:200]}")


class Flooder(HttpUser):
    """Mission A: research, ingestion and event streams without pause, from several principals."""
    wait_time = constant(0)

    def on_start(self):
        self.headers = auth(f"flooder-{uuid.uuid4().hex[:6]}", A)
        self.started: list[str] = []

    def _start(self, path: str, body: dict, name: str):
        with self.client.post(path, json=body, headers=self.headers, name=name, catch_response=True) as r:
            if r.status_code == 202:
                self.started.append(r.json()["workflow_id"])
                r.success()
            elif r.status_code == 429 and r.headers.get("Retry-After"):
                r.success()  # refused as it should be: counted apart below
                self.environment.events.request.fire(request_type="429", name=f"{name} 429", response_time=0,
                                                     response_length=0, exception=None, context={})
            else:
                r.failure(f"{r.status_code} {r.text[:200]}")

    @task(3)
    def research(self):
        self._start(f"/missions/{A}/research", {"query": random.choice(QUESTIONS), "cache": "off"}, "A research")

    @task(2)
    def ingest(self):
        text = f"# Note {uuid.uuid4().hex}\n\nThe flood note {uuid.uuid4().hex} says nothing of interest.\n"
        self._start(f"/missions/{A}/documents",
                    {"documents": [{"name": f"note-{uuid.uuid4().hex[:8]}.md",
                                    "content_b64": base64.b64encode(text.encode()).decode()}]}, "A ingest")

    @task(1)
    def stream(self):
        if not self.started:
            return
        wid = random.choice(self.started)
        path = f"/{'ingestions' if wid.startswith('ingest') else 'research'}/{wid}/events"
        with self.client.get(path, headers=self.headers, name="A stream", stream=True, catch_response=True,
                             timeout=30) as r:
            if r.status_code == 429:
                r.success()
                self.environment.events.request.fire(request_type="429", name="A stream 429", response_time=0,
                                                     response_length=0, exception=None, context={})
                return
            for _ in r.iter_lines():
                pass
