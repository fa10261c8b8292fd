"""Issue 11 item 1 (server side): `Origin: null` only with proof of a native client — the
`X-Acetate-Client` header on HTTP, a single-use ticket on the WebSocket — and web pages still
cannot get in (no preflight is ever granted)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import websockets
from server_helpers import LiveServer, http_request, raw_http, start_server, status_of_raw

from acetate.api.config import ServerConfig

pytestmark = pytest.mark.asyncio

PANEL = {"X-Acetate-Client": "photoshop/0.3.0"}
TOKEN = "panel-token-0123456789"


async def call(
    server: LiveServer, method: str, path: str, headers: dict[str, str], **kwargs: Any
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{server.url}{path}", headers=headers, **kwargs) as r,
    ):
        body = await r.json() if r.content_type == "application/json" else None
        return r.status, body


async def ticket_of(server: LiveServer, headers: dict[str, str] | None = None) -> str:
    status, body = await call(server, "POST", "/api/ws-ticket", {**PANEL, **(headers or {})})
    assert status == 200, body
    assert body["expires_in"] == math.ceil(server.config.ws_ticket_ttl_s)
    assert len(body["ticket"]) >= 32
    return str(body["ticket"])


def ws_uri(server: LiveServer, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/api/ws{query}"


async def test_browser_like_null_origin_requests_are_refused(server: LiveServer) -> None:
    assert server.config.ws_ticket_ttl_s == 60
    null = {"Origin": "null"}
    # simple requests a sandboxed iframe can send without a preflight
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        status, body = await call(
            server, "POST", "/api/jobs", {**null, "Content-Type": content_type}, data=b"{}"
        )
        assert status == 403 and body["error"]["field"] == "Origin", content_type
    assert (await call(server, "GET", "/api/health", null))[0] == 403
    assert (await call(server, "GET", "/api/jobs", null))[0] == 403
    # a malformed client header proves nothing
    for value in ("", "photoshop", "photoshop/", "<script>/1"):
        assert (await call(server, "GET", "/api/health", {**null, "X-Acetate-Client": value}))[
            0
        ] == 403, value
    # every CORS preflight is refused, whatever it asks
    for origin in ("null", "http://evil.example", f"http://127.0.0.1:{server.port}"):
        headers = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-acetate-client, content-type",
        }
        for path in ("/api/jobs", "/api/ws-ticket", "/api/health"):
            status, body = await call(server, "OPTIONS", path, headers)
            assert status == 403, (origin, path)
            assert body["error"]["code"] == "forbidden_origin"
    # cross-site fetch metadata without the header
    headers = {"Origin": "null", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}
    assert (await call(server, "GET", "/api/health", headers))[0] == 403
    # a ticket can only be had with the header
    status, body = await call(server, "POST", "/api/ws-ticket", null)
    assert status == 403
    status, body = await call(server, "POST", "/api/ws-ticket", {})
    assert status == 403 and body["error"]["field"] == "X-Acetate-Client"
    # a web origin stays refused even with the header (it could only come after a preflight)
    assert (await call(server, "GET", "/api/health", {**PANEL, "Origin": "http://evil.example"}))[
        0
    ] == 403


async def test_browser_like_websockets_with_null_origin_are_refused(
    make_config: Callable[..., ServerConfig], engine: Any, model_store: Any
) -> None:
    live = await start_server(make_config(ws_ticket_ttl_s=0.5), engine, model_store)
    try:
        null = {"Origin": "null"}
        for query in ("", "?ticket=", "?ticket=made-up-ticket-value"):
            with pytest.raises(websockets.InvalidStatus) as caught:
                async with websockets.connect(ws_uri(live, query), additional_headers=null):
                    pass
            assert caught.value.response.status_code in (401, 403), query
        ticket = await ticket_of(live)
        async with websockets.connect(ws_uri(live, f"?ticket={ticket}"), additional_headers=null):
            pass
        with pytest.raises(websockets.InvalidStatus) as caught:  # replayed
            async with websockets.connect(
                ws_uri(live, f"?ticket={ticket}"), additional_headers=null
            ):
                pass
        assert caught.value.response.status_code == 401
        expired = await ticket_of(live)
        await asyncio.sleep(0.8)
        with pytest.raises(websockets.InvalidStatus) as caught:
            async with websockets.connect(
                ws_uri(live, f"?ticket={expired}"), additional_headers=null
            ):
                pass
        assert caught.value.response.status_code == 401
    finally:
        await live.stop()


@pytest.mark.parametrize(
    "origin", [None, "null", "file://", "uxp://com.acetate.photoshop", "UXP://panel"]
)
async def test_panel_like_requests_work(server: LiveServer, origin: str | None) -> None:
    headers = dict(PANEL)
    if origin is not None:
        headers["Origin"] = origin
    for site in (None, "cross-site", "none"):
        sent = {**headers, **({"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "cors"} if site else {})}
        status, body = await call(server, "GET", "/api/health", sent)
        assert status == 200, (origin, site, body)
        assert body["client_seen"] == {
            "origin": origin,
            "sec_fetch_site": site,
            "sec_fetch_mode": "cors" if site else None,
        }
        # The limits the panel checks documents against before reading any pixel.
        assert body["limits"] == {"max_side": 8192, "max_pixels": 64 * 1024 * 1024}
        status, body = await call(
            server, "POST", "/api/jobs", sent, json={"prompt": "x", "steps": 1, "width": 64,
                                                      "height": 64, "decode": "fast"}
        )  # fmt: skip
        assert status == 202, body
        await call(server, "DELETE", f"/api/jobs/{body['id']}", sent)
        ticket = await ticket_of(server, {"Origin": origin} if origin else {})
        ws_headers = {"Origin": origin} if origin else {}
        if site:
            ws_headers["Sec-Fetch-Site"] = site
        async with websockets.connect(
            ws_uri(server, f"?ticket={ticket}"), additional_headers=ws_headers
        ) as ws:
            await ws.send('{"type": "subscribe", "jobs": []}')


async def test_tickets_with_a_token_and_in_the_logs(
    make_config: Callable[..., ServerConfig],
    engine: Any,
    model_store: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    live = await start_server(make_config(token=TOKEN), engine, model_store)
    try:
        # the header alone is not enough: the token is needed to get a ticket
        status, _ = await call(live, "POST", "/api/ws-ticket", {**PANEL, "Origin": "null"})
        assert status == 401
        bearer = {"Authorization": f"Bearer {TOKEN}", "Origin": "null"}
        ticket = await ticket_of(live, bearer)
        # the ticket stands for the token on the socket (UXP cannot send headers there)
        async with websockets.connect(
            ws_uri(live, f"?ticket={ticket}"), additional_headers={"Origin": "null"}
        ) as ws:
            await ws.send('{"type": "subscribe", "jobs": []}')
        # with a ticket and a wrong token: refused
        ticket = await ticket_of(live, bearer)
        with pytest.raises(websockets.InvalidStatus) as caught:
            async with websockets.connect(
                ws_uri(live, f"?ticket={ticket}&token=wrong-token-0000000"),
                additional_headers={"Origin": "null"},
            ):
                pass
        assert caught.value.response.status_code == 401
        # a raw request line with a ticket, also percent-encoded
        await raw_http(live.port, http_request(live.port, "GET", f"/api/ws?t%69cket={ticket}"))
        answer = await raw_http(
            live.port, http_request(live.port, "GET", "/api/health", headers=PANEL)
        )
        assert status_of_raw(answer) == 401
    finally:
        await live.stop()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert ticket not in text and TOKEN not in text
    assert "ticket=[redacted]" in text
    # the panel's Origin / Sec-Fetch-* values are logged, once per distinct value
    seen = [m for m in caplog.messages if m.startswith("panel client 'photoshop/0.3.0' sent")]
    assert seen and len(seen) == len(set(seen)), seen
    assert any("Origin='null'" in line for line in seen)
