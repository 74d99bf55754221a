"""The API for the fairness load test: the real app (uvicorn, its own process) with a stub token
verifier, so each load-test user is a principal of its own ("Bearer user:mission:<m>:writer").
Settings come from the STRATMASTER_* environment run.py sets."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import uvicorn  # noqa: E402

from starters.api.application import create_app  # noqa: E402
from tests.api_support import StubVerifier  # noqa: E402

if __name__ == "__main__":
    uvicorn.run(create_app(verifier=StubVerifier()), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
