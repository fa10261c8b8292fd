"""Issue 19 item 4: no secret in any log. A hostile session (tokens in queries with encoded
keys and values, malformed requests quoting their request line, wrong tokens, tickets) and then
every log line — messages and tracebacks, every logger — and the job store are grepped."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
import pytest
import websockets
from server_helpers import FAST, http_request, raw_http, start_server

from acetate.api.config import ServerConfig

pytestmark = pytest.mark.asyncio

TOKEN = secrets.token_urlsafe(32)


def encoded(text: str) -> str:
    """Every character percent-encoded."""
    return "".join(f"%{byte:02X}" for byte in text.encode())


async def test_a_hostile_session_leaves_no_token_in_any_log(
    make_config: Callable[..., ServerConfig],
    engine: Any,
    model_store: Any,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    live = await start_server(make_config(token=TOKEN), engine, model_store)
    port = live.port
    ws = f"ws://127.0.0.1:{port}/api/ws"
    try:
        # the WebSocket with the token in the query, the key and value in several encodings
        for query in (
            f"token={TOKEN}",
            f"tok%65n={TOKEN}",
            f"%74oken={encoded(TOKEN)}",
            f"x=1&token={quote(TOKEN)}&y=2",
        ):
            async with websockets.connect(f"{ws}?{query}") as socket:
                await socket.send('{"type": "subscribe", "jobs": []}')
        for query in (f"TOKEN={TOKEN}", f"token={TOKEN}x", f"ticket={TOKEN}"):
            with pytest.raises(websockets.InvalidStatus):
                async with websockets.connect(f"{ws}?{query}"):
                    pass
        # HTTP with the token where it does not belong
        async with aiohttp.ClientSession() as http:
            for url in (
                f"{live.url}/api/health?token={TOKEN}",
                f"{live.url}/api/jobs/{TOKEN}",
                f"{live.url}/api/nowhere?access_token={TOKEN}",
            ):
                async with http.get(url) as response:
                    assert response.status in (401, 404)
            headers = {"Authorization": f"Bearer {TOKEN}"}
            body = {"prompt": "x", **FAST, "width": 64, "height": 64, "client_id": "c1"}
            async with http.post(f"{live.url}/api/jobs", json=body, headers=headers) as response:
                job = (await response.json())["id"]
            async with http.post(
                f"{live.url}/api/jobs", data=b"[" * 5000, headers=headers
            ) as response:
                assert response.status in (400, 415)
        # malformed requests whose errors quote the raw request line or headers
        for raw in (
            f"GET /api/ws?token={TOKEN} HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n",
            f"GET /api/ws?tok%65n={TOKEN} HTTP/9.9\r\nHost: x\r\n\r\n",
            f"GE\x01T /api/ws?token={TOKEN} HTTP/1.1\r\n\r\n",
            f"GET /api/ws?token={TOKEN}\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
            f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Length: x{TOKEN}\r\n\r\n",
            f"POST /api/jobs?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Transfer-Encoding: chunked\r\n\r\nzz\r\n",
            f"GET /{'a' * 9000}?token={TOKEN} HTTP/1.1\r\n\r\n",
        ):
            await raw_http(port, raw.encode("latin-1"), timeout=10)
        await raw_http(
            port,
            http_request(
                port,
                "GET",
                f"/api/jobs/{job}",
                headers={"Authorization": f"Bearer {TOKEN}", "X-Note": f"token={TOKEN}"},
            ),
        )
        async with live.client() as client:
            await client.cancel(job)
            await asyncio.sleep(0.3)
    finally:
        await live.stop()

    records = caplog.records
    assert any(r.name == "aiohttp.access" for r in records)
    assert any(r.name == "aiohttp.server" for r in records), "no malformed-request log seen"
    lines = caplog.text.splitlines() + [r.getMessage() for r in records]
    lines += [r.exc_text or "" for r in records]
    leaks = [line for line in lines if TOKEN in line or TOKEN in unquote(line)]
    assert not leaks, leaks[:5]
    assert any("token=[redacted]" in line for line in lines)
    assert any("tok%65n=[redacted]" in line for line in lines), [
        line for line in lines if "tok%65n" in line
    ]
    for file in Path(live.config.output_dir).rglob("*"):
        if file.is_file():
            assert TOKEN.encode() not in file.read_bytes(), file
