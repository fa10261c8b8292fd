"""Issue 19 item 1: what probing as an attacker or a buggy client found, each against a live
server (raw sockets where aiohttp's client would normalise the request)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from PIL import Image
from sample_images import rgba
from server_helpers import (
    FAST,
    BlockingEngine,
    LiveServer,
    body_of_raw,
    http_request,
    raw_http,
    start_server,
    status_of_raw,
)
from test_server_bad_input import png_header_only

from acetate.api.config import ServerConfig
from acetate.api.startup import server_urls
from acetate.export.result import ResultWriter, write_psd_for_result

pytestmark = pytest.mark.asyncio

GOOD = {"mode": "fg", "prompt": "x", **FAST, "width": 64, "height": 64}
DEEP = b"[" * 100_000


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def multipart(parts: list[tuple[str, str, bytes]], boundary: str = "XyZ") -> tuple[bytes, str]:
    chunks = []
    for name, content_type, data in parts:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


async def post(port: int, body: bytes, content_type: str = "application/json") -> bytes:
    return await raw_http(
        port, http_request(port, "POST", "/api/jobs", body, {"Content-Type": content_type})
    )


# -- JSON nesting --------------------------------------------------------------------------


async def test_deeply_nested_json_is_a_400_everywhere(server: LiveServer) -> None:
    cases = [
        (DEEP, "application/json", "body"),
        (b'{"prompt": "x", "layer_prompts": ' + DEEP + b"}", "application/json", "body"),
        (*multipart([("request", "application/json", DEEP)]), "request"),
    ]
    for body, content_type, field in cases:
        answer = await post(server.port, body, content_type)
        assert status_of_raw(answer) == 400, answer[:300]
        error = body_of_raw(answer)["error"]
        assert error["field"] == field and "nested" in error["message"], error
    # 32 levels are fine as JSON (and then refused by the schema, as any wrong value)
    answer = await post(server.port, b'{"prompt": "x", "layer_prompts": ' + b"[" * 30 + b"]" * 30)
    assert status_of_raw(answer) == 400
    assert "nested" not in body_of_raw(answer)["error"]["message"]


async def test_deeply_nested_websocket_frame_gets_an_error_and_keeps_the_socket(
    server: LiveServer,
) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{server.url}/api/ws") as ws:
        await ws.send_str(DEEP.decode())
        error = await ws.receive_json(timeout=10)
        assert error["type"] == "error" and error["code"] == "bad_message"
        assert "nested" in error["message"]
        await ws.send_str('{"type": "subscribe", "jobs": ["j_' + "0" * 32 + '"]}')
        reply = await ws.receive_json(timeout=10)
        assert reply["code"] == "not_found"  # the same socket still answers
        assert not ws.closed


# -- decompression bombs -------------------------------------------------------------------


async def test_decompression_bombs_are_413_image_too_large(server: LiveServer) -> None:
    bomb = png_header_only(50_000, 50_000)
    request = json.dumps({"mode": "img2img", "prompt": "x"}).encode()
    body, content_type = multipart(
        [("request", "application/json", request), ("image", "image/png", bomb)]
    )
    answer = await post(server.port, body, content_type)
    assert status_of_raw(answer) == 413, answer[:300]
    assert body_of_raw(answer)["error"] == {
        "code": "image_too_large",
        "message": body_of_raw(answer)["error"]["message"],
        "field": "image",
    }
    as_json = {"mode": "img2img", "prompt": "x", "image": base64.b64encode(bomb).decode()}
    answer = await post(server.port, json.dumps(as_json).encode())
    assert status_of_raw(answer) == 413
    assert body_of_raw(answer)["error"]["code"] == "image_too_large"


# -- disconnects and timeouts ---------------------------------------------------------------


async def test_a_client_disconnecting_mid_body_is_logged_as_such(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for content_type in ("application/json", "multipart/form-data; boundary=XyZ"):
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        head = http_request(
            server.port,
            "POST",
            "/api/jobs",
            headers={"Content-Type": content_type},
            content_length=1_000_000,
        )
        writer.write(head + b'{"mode": "fg", "prompt": "' + b"x" * 1000)
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.close()
        await asyncio.sleep(0.5)
    async with server.client() as client:  # still serving
        assert (await client.health())["queue_length"] == 0
    messages = [record.getMessage() for record in caplog.records]
    assert sum("disconnected while sending POST /api/jobs" in m for m in messages) == 2, messages
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], messages
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert not any('" 500 ' in line for line in access), access


async def test_body_and_header_timeouts(
    make_config: Callable[..., ServerConfig], engine: Any, model_store: Any
) -> None:
    live = await start_server(
        make_config(body_timeout_s=0.5, header_timeout_s=0.7), engine, model_store
    )
    try:
        # a stalled body: 408 body_timeout after 0.5 s, the connection closed
        reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
        head = http_request(
            live.port,
            "POST",
            "/api/jobs",
            headers={"Content-Type": "application/json"},
            content_length=10_000,
        )
        started = time.monotonic()
        writer.write(head + b'{"prompt":')
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 15)
        writer.close()
        assert status_of_raw(answer) == 408, answer[:300]
        assert body_of_raw(answer)["error"]["code"] == "body_timeout"
        assert time.monotonic() - started < 10
        # a stalled request head: the connection is dropped
        reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
        started = time.monotonic()
        writer.write(f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n".encode())
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 15) == b""
        assert 0.5 < time.monotonic() - started < 10
        writer.close()
        # a normal request still works
        async with live.client() as client:
            assert (await client.health())["queue_length"] == 0
    finally:
        await live.stop()


# -- strict JSON types ---------------------------------------------------------------------


async def test_json_types_are_strict(server: LiveServer) -> None:
    for field, value in (("steps", "5"), ("batch", True), ("seed", 1.5), ("width", "64")):
        answer = await post(server.port, json.dumps({**GOOD, field: value}).encode())
        assert status_of_raw(answer) == 400, (field, answer[:300])
        assert body_of_raw(answer)["error"]["field"] == field
    # integers are fine where floats are expected
    answer = await post(server.port, json.dumps({**GOOD, "cfg": 5}).encode())
    assert status_of_raw(answer) == 202, answer[:300]
    async with server.client() as client:
        await client.cancel(body_of_raw(answer)["id"])


# -- queue bounds --------------------------------------------------------------------------


async def test_queue_bounds_per_client_id_per_address_and_global(
    make_config: Callable[..., ServerConfig], engine: Any, model_store: Any
) -> None:
    blocking = BlockingEngine(engine)
    live = await start_server(
        make_config(max_queued_per_client=2, max_queued_per_peer=3, max_queued_total=100),
        blocking,
        model_store,
    )
    try:
        async with aiohttp.ClientSession() as http:

            async def submit(client_id: str | None) -> tuple[int, dict[str, Any]]:
                body = {**GOOD, "client_id": client_id} if client_id else GOOD
                async with http.post(f"{live.url}/api/jobs", json=body) as response:
                    return response.status, await response.json()

            assert (await submit("a"))[0] == 202  # starts running (blocked): not queued
            assert (await submit("a"))[0] == 202
            assert (await submit("a"))[0] == 202
            status, body = await submit("a")
            assert status == 429 and body["error"]["field"] == "client_id"
            # rotating the self-declared client id does not escape the per-address bound
            assert (await submit("b"))[0] == 202
            status, body = await submit("c")
            assert status == 429 and "address" in body["error"]["message"], body
    finally:
        blocking.gate.set()
        await live.stop()
    # the global bound, whoever asks
    blocking = BlockingEngine(engine)
    live = await start_server(
        make_config(max_queued_per_client=10, max_queued_per_peer=10, max_queued_total=2),
        blocking,
        model_store,
    )
    try:
        async with live.client() as client:
            for name in "xyz":
                await client.submit({**GOOD, "client_id": name})
            async with aiohttp.ClientSession() as http:
                body = {**GOOD, "client_id": "w"}
                async with http.post(f"{live.url}/api/jobs", json=body) as response:
                    assert response.status == 429
                    assert "server" in (await response.json())["error"]["message"]
    finally:
        blocking.gate.set()
        await live.stop()


# -- usable URLs ---------------------------------------------------------------------------


async def test_all_interface_binds_print_urls_the_host_check_accepts(
    make_config: Callable[..., ServerConfig], engine: Any, model_store: Any
) -> None:
    config = make_config(host="0.0.0.0", token="a-long-enough-token")
    urls = server_urls(config)
    assert urls[0] == f"http://127.0.0.1:{config.port}"
    assert not any("0.0.0.0" in url for url in urls)
    live = await start_server(config, engine, model_store)
    try:
        async with aiohttp.ClientSession() as http:
            for url in urls:
                host = url.split("://", 1)[1]
                headers = {"Host": host, "Authorization": "Bearer a-long-enough-token"}
                async with http.get(f"{live.url}/api/health", headers=headers) as response:
                    assert response.status == 200, url
    finally:
        await live.stop()
    named = ServerConfig(output_dir=config.output_dir, host="192.168.7.7", token="x" * 10)
    assert server_urls(named) == ["http://192.168.7.7:7865"]


# -- no server paths in errors -------------------------------------------------------------


async def test_errors_never_show_server_paths(server: LiveServer, tiny_models_dir: Path) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/api/jobs", json={**GOOD, "model": "no-such-model"}) as response,
    ):
        body = await response.json()
    assert response.status == 400 and body["error"]["code"] == "model_not_found", body
    message = body["error"]["message"]
    assert str(tiny_models_dir) not in message and str(server.config.output_dir) not in message
    assert " at 0x" not in message
    assert "/tmp/" not in message and "/home/" not in message, message


# -- output frame limits; own files read back without input limits -------------------------


async def test_upscale_output_frame_is_checked_at_submit(server: LiveServer) -> None:
    body = {
        "mode": "upscale",
        "image": base64.b64encode(png_bytes(rgba(2100, 16))).decode(),
        "scale": 4,
        **FAST,
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/api/jobs", json=body) as response,
    ):
        error = (await response.json())["error"]
    assert response.status == 413 and error["code"] == "image_too_large", error
    assert error["field"] == "scale" and "8400" in error["message"]


async def test_a_result_psd_is_built_from_layers_over_the_input_limits(tmp_path: Path) -> None:
    from acetate.engine.outputs import LayerImage

    writer = ResultWriter(tmp_path, mode="upscale", parameters={"prompt": ""})
    pixels = np.zeros((4, 8400, 4), np.uint8)  # wider than any input may be
    pixels[..., 3] = 255
    writer.add(LayerImage(name="foreground", batch_index=0, pixels=pixels))
    record = writer.finish(
        job_id="j_" + "1" * 32, model="m", canvas=(8400, 4), warnings=[], psd=False
    )
    assert write_psd_for_result(tmp_path, record).stat().st_size > 0


# -- cancelled jobs ------------------------------------------------------------------------


async def test_layers_of_a_cancelled_job_answer_409(
    make_config: Callable[..., ServerConfig], engine: Any, model_store: Any
) -> None:
    blocking = BlockingEngine(engine)
    live = await start_server(make_config(), blocking, model_store)
    try:
        async with live.client() as client:
            running = await client.submit(GOOD)
            queued = await client.submit(GOOD)
            await client.cancel(queued.id)
            await client.cancel(running.id)
            for _ in range(200):
                if (await client.job(running.id)).status == "cancelled":
                    break
                await asyncio.sleep(0.05)
            async with aiohttp.ClientSession() as http:
                for job in (queued, running):
                    for query in ("", "?format=rgba"):
                        url = f"{live.url}/api/jobs/{job.id}/layers/foreground.png{query}"
                        async with http.get(url) as response:
                            assert response.status == 409, (job.id, query)
                            assert (await response.json())["error"]["code"] == "not_ready"
    finally:
        blocking.gate.set()
        await live.stop()
