"""DESIGN.md security rules on HTTP and on the WebSocket upgrade, against a live server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import websockets
from server_helpers import LiveServer, start_server

from acetate.api.config import ServerConfig
from acetate.errors import InputError

TOKEN = "correct-horse-battery"


@pytest_asyncio.fixture
async def guarded(
    make_config: Callable[..., ServerConfig], engine: Any, model_store: Any
) -> AsyncIterator[LiveServer]:
    config = make_config(token=TOKEN, allowed_origins=("http://tool.example",))
    live = await start_server(config, engine, model_store)
    yield live
    await live.stop()


async def status_of(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        body = await response.json() if response.content_type == "application/json" else {}
        return response.status, body


def hosts(port: int) -> list[tuple[str, int]]:
    return [
        (f"127.0.0.1:{port}", 200),
        (f"localhost:{port}", 200),
        (f"LOCALHOST:{port}", 200),
        (f"[::1]:{port}", 200),
        (f"evil.example:{port}", 403),
        ("evil.example", 403),
        (f"127.0.0.1:{port + 1}", 403),
        ("127.0.0.1", 403),
        (f"127.0.0.1.evil.example:{port}", 403),
        ("", 403),
    ]


@pytest.mark.asyncio
async def test_host_allow_list(server: LiveServer) -> None:
    for host, expected in hosts(server.port):
        status, body = await status_of(f"{server.url}/api/health", {"Host": host})
        assert status == expected, host
        if expected == 403:
            assert body["error"]["field"] == "Host"


def origins(port: int) -> list[tuple[dict[str, str], int]]:
    return [
        ({}, 200),
        ({"Origin": f"http://127.0.0.1:{port}"}, 200),
        ({"Origin": f"http://localhost:{port}"}, 200),
        ({"Origin": f"https://[::1]:{port}"}, 200),
        ({"Origin": "uxp://com.acetate.photoshop"}, 200),  # non-web scheme: allowed, logged
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": f"http://evil.example:{port}"}, 403),
        ({"Origin": f"http://127.0.0.1:{port + 1}"}, 403),
        ({"Origin": "http://127.0.0.1"}, 403),
        ({"Origin": "null"}, 403),
        ({"Origin": "garbage"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "cross-site", "Origin": f"http://127.0.0.1:{port}"}, 403),
        ({"Sec-Fetch-Site": "same-origin", "Origin": f"http://127.0.0.1:{port}"}, 200),
    ]


@pytest.mark.asyncio
async def test_origin_policy_on_http(server: LiveServer) -> None:
    for headers, expected in origins(server.port):
        status, body = await status_of(f"{server.url}/api/health", headers)
        assert status == expected, headers
        if expected == 403:
            assert body["error"]["code"] == "forbidden_origin"


@pytest.mark.asyncio
async def test_origin_and_host_policy_on_the_websocket_upgrade(server: LiveServer) -> None:
    uri = f"ws://127.0.0.1:{server.port}/api/ws"
    for headers, expected in origins(server.port):
        if expected == 200:
            async with websockets.connect(uri, additional_headers=headers) as ws:
                await ws.send('{"type": "subscribe", "jobs": []}')
        else:
            with pytest.raises(websockets.InvalidStatus) as caught:
                async with websockets.connect(uri, additional_headers=headers):
                    pass
            assert caught.value.response.status_code == 403, headers
    async with aiohttp.ClientSession() as http:
        for host, expected in hosts(server.port):
            if expected == 200:
                continue
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(f"{server.url}/api/ws", headers={"Host": host})
            assert refused.value.status == 403


@pytest.mark.asyncio
async def test_token_on_http(guarded: LiveServer) -> None:
    url = f"{guarded.url}/api/health"
    assert (await status_of(url, {}))[0] == 401
    assert (await status_of(url, {"Authorization": "Bearer wrong-token-here"}))[0] == 401
    assert (await status_of(url, {"Authorization": f"Basic {TOKEN}"}))[0] == 401
    assert (await status_of(f"{url}?token={TOKEN}", {}))[0] == 401  # query only for the WS
    assert (await status_of(url, {"Authorization": f"Bearer {TOKEN}"}))[0] == 200
    assert (await status_of(url, {"Authorization": f"bearer {TOKEN}"}))[0] == 200
    _, body = await status_of(url, {})
    assert body["error"]["code"] == "unauthorized"
    # the exact --allow-origin value passes; the token is still needed
    headers = {"Origin": "http://tool.example", "Authorization": f"Bearer {TOKEN}"}
    assert (await status_of(url, headers))[0] == 200
    assert (await status_of(url, {"Origin": "http://tool.example"}))[0] == 401


@pytest.mark.asyncio
async def test_a_non_utf8_token_is_just_wrong(guarded: LiveServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded.port)
    writer.write(
        b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Authorization: Bearer \xfc\r\nConnection: close\r\n\r\n" % guarded.port
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"401", status_line


@pytest.mark.asyncio
async def test_token_on_the_websocket(guarded: LiveServer) -> None:
    uri = f"ws://127.0.0.1:{guarded.port}/api/ws"
    for bad in (uri, f"{uri}?token=wrong", f"{uri}?token="):
        with pytest.raises(websockets.InvalidStatus) as caught:
            async with websockets.connect(bad):
                pass
        assert caught.value.response.status_code == 401
    async with websockets.connect(f"{uri}?token={TOKEN}") as ws:
        await ws.send('{"type": "subscribe", "jobs": []}')
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with websockets.connect(uri, additional_headers=headers) as ws:
        await ws.send('{"type": "subscribe", "jobs": []}')
    async with guarded.client() as client:  # the Python client sends the bearer header
        assert (await client.health())["queue_length"] == 0


@pytest.mark.asyncio
async def test_tokens_never_reach_the_access_log(
    guarded: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    async with websockets.connect(f"ws://127.0.0.1:{guarded.port}/api/ws?token={TOKEN}"):
        pass
    await status_of(f"{guarded.url}/api/health?token={TOKEN}&x=1", {})
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any("token=[redacted]" in line for line in lines), lines
    assert not any(TOKEN in line for line in caplog.messages)


@pytest.mark.parametrize(
    "fields",
    [{"listen": True}, {"host": "0.0.0.0"}, {"host": "192.168.1.20"}, {"host": "::"}],
)
def test_exposed_binds_need_a_token(tmp_path: Any, fields: dict[str, Any]) -> None:
    config = ServerConfig(output_dir=tmp_path, **fields)
    with pytest.raises(InputError) as caught:
        config.check()
    assert caught.value.field == "token"
    ServerConfig(output_dir=tmp_path, token=TOKEN, **fields).check()
    ServerConfig(output_dir=tmp_path, host="127.0.0.2").check()  # loopback: no token needed


def test_a_non_loopback_host_is_allowed_as_host(tmp_path: Any) -> None:
    config = ServerConfig(
        output_dir=tmp_path, host="192.168.1.20", token=TOKEN, allowed_hosts=("studio-pc",)
    )
    assert {"192.168.1.20", "studio-pc", "localhost", "127.0.0.1", "::1"} <= config.host_names()
    assert "0.0.0.0" not in ServerConfig(output_dir=tmp_path, listen=True).host_names()
