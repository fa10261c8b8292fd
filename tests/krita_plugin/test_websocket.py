"""The plugin's WebSocket client against a real aiohttp WebSocket server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from acetate_krita.websocket import (
    WebSocket,
    WebSocketClosed,
    WebSocketError,
    accept_key,
    encode_frame,
    mask,
)


def test_accept_key_of_the_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_masking_is_its_own_inverse_and_frames_carry_their_length() -> None:
    key = b"\x01\x02\x03\x04"
    payload = bytes(range(7))
    assert mask(mask(payload, key), key) == payload
    assert mask(payload, key)[:4] == bytes([0 ^ 1, 1 ^ 2, 2 ^ 3, 3 ^ 4])
    assert encode_frame(0x1, b"x" * 125, key)[:2] == bytes([0x81, 0x80 | 125])
    assert encode_frame(0x1, b"x" * 126, key)[:4] == bytes([0x81, 0x80 | 126, 0, 126])
    assert encode_frame(0x2, b"x" * 70_000, key)[:2] == bytes([0x82, 0x80 | 127])


async def echo(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Authorization") != "Bearer secret":
        return web.json_response({"error": {"code": "unauthorized"}}, status=401)
    ws = web.WebSocketResponse(heartbeat=0.05)
    await ws.prepare(request)
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            if message.data == "close please":
                await ws.close(code=4001, message=b"bye")
            elif message.data.startswith("binary "):
                await ws.send_bytes(message.data.encode())
            else:
                await ws.send_str(message.data)
    return ws


@pytest_asyncio.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_get("/ws", echo)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


def url(server: TestServer) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


AUTH = {"Authorization": "Bearer secret"}


@pytest.mark.asyncio
async def test_text_binary_and_large_messages_round_trip(server: TestServer) -> None:
    socket_ = await WebSocket.connect(url(server), AUTH)
    await socket_.send_text("hello")
    assert await socket_.receive() == "hello"
    await socket_.send_text("binary data")
    assert await socket_.receive() == b"binary data"
    big = "é" * 70_000
    await socket_.send_text(big)
    assert await socket_.receive() == big
    await socket_.close()
    assert socket_.closed


@pytest.mark.asyncio
async def test_pings_are_answered_so_the_server_keeps_the_connection(server: TestServer) -> None:
    socket_ = await WebSocket.connect(url(server), AUTH)
    receiving = asyncio.ensure_future(socket_.receive())
    await asyncio.sleep(0.5)  # ten heartbeats: aiohttp closes a socket that misses a pong
    assert not receiving.done()
    await socket_.send_text("still here")
    assert await receiving == "still here"
    await socket_.close()


@pytest.mark.asyncio
async def test_server_close_code_and_reason_reach_the_client(server: TestServer) -> None:
    socket_ = await WebSocket.connect(url(server), AUTH)
    await socket_.send_text("close please")
    with pytest.raises(WebSocketClosed) as closed:
        await socket_.receive()
    assert (closed.value.code, closed.value.reason) == (4001, "bye")


@pytest.mark.asyncio
async def test_a_refused_upgrade_reports_status_and_body(server: TestServer) -> None:
    with pytest.raises(WebSocketError) as refused:
        await WebSocket.connect(url(server), {"Authorization": "Bearer wrong"})
    assert refused.value.status == 401
    assert b"unauthorized" in refused.value.body


@pytest.mark.asyncio
async def test_nobody_listening_is_an_error_not_a_hang() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(WebSocketError) as error:
        await WebSocket.connect(f"ws://127.0.0.1:{port}/ws", timeout=5)
    assert error.value.status is None
    with pytest.raises(WebSocketError):
        await WebSocket.connect("http://127.0.0.1/ws")


@pytest.mark.asyncio
async def test_a_server_that_dies_ends_the_receive(server: TestServer) -> None:
    socket_ = await WebSocket.connect(url(server), AUTH)
    receiving = asyncio.ensure_future(socket_.receive())
    await asyncio.sleep(0.05)
    await server.close()
    with pytest.raises(WebSocketClosed):
        await asyncio.wait_for(receiving, 5)
