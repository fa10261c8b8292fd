"""`GET /metrics` (Prometheus text) on the local backend, and who may read it."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from server_helpers import FAST, LiveServer, final, follow, start_server

from acetate.api.config import ServerConfig
from acetate.protocol import JobEvent

pytestmark = pytest.mark.asyncio

SAMPLE = re.compile(r'^([a-z_]+)(\{[a-z]+="[^"]*"\})? (-?[0-9.e+]+)$')


async def scrape(live: LiveServer, token: str | None = None) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{live.url}/metrics", headers=headers) as response,
    ):
        return response.status, response.headers.get("Content-Type", ""), await response.text()


def samples(text: str) -> dict[str, float]:
    """`name{label}` → value; every non-comment line must be a valid sample."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        match = SAMPLE.match(line)
        assert match, line
        found[(match[1] + (match[2] or ""))] = float(match[3])
    return found


async def test_metrics_count_jobs_by_state_owner_and_duration(server: LiveServer) -> None:
    client = server.client()
    job = await client.submit({"prompt": "x", **FAST, "width": 64, "height": 64})
    assert final(await follow(client, job.id)).type is JobEvent.done
    status, content_type, text = await scrape(server)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    values = samples(text)
    assert values['acetate_jobs{status="done"}'] == 1
    assert values['acetate_jobs_finished_total{status="done"}'] == 1
    assert values["acetate_queue_waiting"] == 0
    assert values["acetate_job_duration_seconds_count"] == 1
    assert values['acetate_job_duration_seconds_bucket{le="+Inf"}'] == 1
    assert values["acetate_job_duration_seconds_sum"] > 0
    assert values['acetate_backend_replicas{backend="local"}'] == 1
    assert values['acetate_owner_jobs_submitted_total{owner="local"}'] == 1
    # Histogram buckets are cumulative.
    buckets = [v for k, v in values.items() if k.startswith("acetate_job_duration_seconds_bucket")]
    assert buckets == sorted(buckets)


async def test_metrics_need_an_admin_token_in_lan_mode(
    make_config: Callable[..., ServerConfig], engine: Any, model_store: Any, tmp_path: Path
) -> None:
    anna, boss = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    path = tmp_path / "tokens.txt"
    path.write_text(f"anna {anna}\nboss {boss} admin\n")
    path.chmod(0o600)
    live = await start_server(make_config(tokens_file=path), engine, model_store)
    try:
        assert (await scrape(live))[0] == 401
        status, _, text = await scrape(live, anna)
        assert status == 403 and '"field": "Authorization"' in text
        status, _, text = await scrape(live, boss)
        assert status == 200 and "acetate_queue_waiting 0" in text
    finally:
        await live.stop()
