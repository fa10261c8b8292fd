"""Property-based fuzzing of the live server from its own OpenAPI document: never a 5xx.

Schemathesis generates requests (valid and invalid) for every operation in the document the
server serves at `/api/openapi.json`; the server runs in a thread with the real engine on the
tiny models.
Accepted jobs are cancelled at once so the CPU stays free. Bounded to stay well under 60 s in
`make test`; `make fuzz` sets `ACETATE_FUZZ_EXAMPLES` (examples per operation) for the long run
and prints the figures.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from server_helpers import LiveServer, start_server

from acetate import __version__
from acetate.api.config import ServerConfig
from acetate.api.openapi import build_openapi

#: Examples per operation (`make fuzz` raises it; CI keeps the short run).
MAX_EXAMPLES = int(os.environ.get("ACETATE_FUZZ_EXAMPLES", "25"))
LONG_RUN = "ACETATE_FUZZ_EXAMPLES" in os.environ
#: status → count, per operation; printed at the end of the module.
FIGURES: collections.Counter[tuple[str, int]] = collections.Counter()


class ThreadedServer:
    """A live server on its own event loop in a background thread (schemathesis is sync)."""

    def __init__(self, config: ServerConfig, engine: Any, store: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        started = asyncio.run_coroutine_threadsafe(start_server(config, engine, store), self.loop)
        self.live: LiveServer = started.result(60)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.live.stop(), self.loop).result(120)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory, engine: Any, model_store: Any
) -> Iterator[ThreadedServer]:
    from server_helpers import free_port

    config = ServerConfig(
        output_dir=tmp_path_factory.mktemp("fuzz"), port=free_port(), max_queued_per_client=2
    )
    server = ThreadedServer(config, engine, model_store)
    yield server
    server.stop()


# The document the server serves (checked below to be the same), loaded at collection time.
schema = schemathesis.openapi.from_dict(build_openapi(__version__))
started_at: list[float] = []


def test_the_served_document_is_the_fuzzed_one(fuzz_server: ThreadedServer) -> None:
    served = requests.get(f"{fuzz_server.live.url}/api/openapi.json", timeout=30).json()
    assert served == build_openapi(__version__)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: Any, fuzz_server: ThreadedServer) -> None:
    started_at.append(time.monotonic())
    response = case.call(base_url=fuzz_server.live.url, timeout=30)
    FIGURES[(f"{case.method} {case.path}", response.status_code)] += 1
    assert response.status_code < 500, (case.method, case.path, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert set(body["error"]) == {"code", "message", "field"}, body
    if case.method == "POST" and response.status_code == 202:
        job_id = response.json()["id"]
        requests.delete(f"{fuzz_server.live.url}/api/jobs/{job_id}", timeout=30)


def test_server_still_healthy_and_fuzzing_was_bounded(fuzz_server: ThreadedServer) -> None:
    health = requests.get(f"{fuzz_server.live.url}/api/health", timeout=30)
    assert health.status_code == 200
    total = sum(FIGURES.values())
    errors = sum(count for (_, status), count in FIGURES.items() if status >= 500)
    print(f"\nHTTP fuzz: {total} cases, {errors} responses >= 500")
    for operation in sorted({op for op, _ in FIGURES}):
        statuses = {s: c for (op, s), c in sorted(FIGURES.items()) if op == operation}
        print(f"  {operation}: {statuses}")
    assert errors == 0
    if started_at and not LONG_RUN:
        assert time.monotonic() - started_at[0] < 60
