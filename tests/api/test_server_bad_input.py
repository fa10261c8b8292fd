"""Every kind of bad input → 4xx with `{"error": {"code", "message", "field"}}`, server healthy."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image
from sample_images import rgba
from server_helpers import FAST, LiveServer, mask, start_server

from acetate.api.config import ServerConfig

pytestmark = pytest.mark.asyncio


def png(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG of a huge size that compresses to almost nothing (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    rows = zlib.compress(b"\x00" * (width + 1) * 8)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


async def error_of(response: aiohttp.ClientResponse) -> dict[str, Any]:
    assert response.content_type == "application/json", await response.text()
    body = await response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}
    assert body["error"]["message"]
    return dict(body["error"])


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


GOOD = {"mode": "fg", "prompt": "x", **FAST, "width": 64, "height": 64}
IMAGE = rgba(40, 32)

JSON_CASES: list[tuple[str, Any, int, str | None]] = [
    # (case, body, status, field)
    ("missing prompt", {"mode": "fg"}, 400, "prompt"),
    ("empty prompt", {"mode": "fg", "prompt": "   "}, 400, "prompt"),
    ("wrong type", {**GOOD, "steps": "many"}, 400, "steps"),
    (
        "wrong nested type",
        {**GOOD, "layer_prompts": {"foreground": 3}},
        400,
        "layer_prompts.foreground",
    ),
    ("unknown mode", {**GOOD, "mode": "paint"}, 400, "mode"),
    ("unknown field", {**GOOD, "colour": "red"}, 400, "colour"),
    ("out of range", {**GOOD, "batch": 99}, 400, "batch"),
    ("not a multiple of 64", {**GOOD, "width": 100}, 400, "width"),
    ("not an object", [GOOD], 400, "body"),
    ("missing image", {"mode": "img2img", "prompt": "x"}, 400, "image"),
    ("image the mode does not use", {**GOOD, "canvas": png(IMAGE)}, 400, "canvas"),
    (
        "non-PNG image",
        {"mode": "img2img", "prompt": "x", "image": base64.b64encode(b"GIF89a....").decode()},
        400,
        "image",
    ),
    ("invalid base64", {"mode": "img2img", "prompt": "x", "image": "%%%"}, 400, "image"),
    (
        "raw of the wrong length",
        {
            "mode": "img2img",
            "prompt": "x",
            "image": {"rgba": base64.b64encode(b"1234").decode(), "width": 4, "height": 4},
        },
        400,
        "image",
    ),
    (
        "raw over the side limit",
        {"mode": "img2img", "prompt": "x", "image": {"rgba": "", "width": 9000, "height": 1}},
        400,
        "image",
    ),
    (
        "PNG over the side limit",
        {
            "mode": "img2img",
            "prompt": "x",
            "image": base64.b64encode(png_header_only(8193, 8)).decode(),
        },
        413,
        "image",
    ),
    (
        "PNG over 64 MP",
        {
            "mode": "img2img",
            "prompt": "x",
            "image": base64.b64encode(png_header_only(8192, 8200)).decode(),
        },
        413,
        "image",
    ),
    (
        "mask size differs",
        {"mode": "inpaint", "prompt": "x", "image": png(IMAGE), "mask": png(mask(20, 20))},
        400,
        "mask",
    ),
    (
        "selection size differs",
        {
            "mode": "layer_on_artwork",
            "prompt": "x",
            "canvas": png(rgba(64, 64)),
            "selection": png(mask(32, 32)),
        },
        400,
        "selection",
    ),
    (
        "selection_bounds outside",
        {
            "mode": "layer_on_artwork",
            "prompt": "x",
            "canvas": png(rgba(64, 64)),
            "selection": png(mask(32, 32)),
            "selection_bounds": {"left": 40, "top": 0, "width": 32, "height": 32},
        },
        400,
        "selection_bounds",
    ),
    ("control image without control", {**GOOD, "control_image": png(IMAGE)}, 400, "control"),
    ("unknown model", {**GOOD, "model": "no-such-model"}, 400, "model"),
    ("joint on an SDXL base", {**GOOD, "mode": "joint", "model": "tiny-sdxl"}, 400, "mode"),
    (
        "unknown ControlNet",
        {**GOOD, "control": "image", "controlnet": "nope", "control_image": png(IMAGE)},
        400,
        "controlnet",
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "field"), JSON_CASES, ids=[case[0] for case in JSON_CASES]
)
async def test_bad_json_requests(
    server: LiveServer,
    session: aiohttp.ClientSession,
    case: str,
    body: Any,
    status: int,
    field: str | None,
) -> None:
    async with session.post(f"{server.url}/api/jobs", json=body) as response:
        error = await error_of(response)
        assert response.status == status, error
    assert error["field"] == field, error
    async with session.get(f"{server.url}/api/health") as response:
        assert response.status == 200 and (await response.json())["queue_length"] == 0


async def test_malformed_bodies(server: LiveServer, session: aiohttp.ClientSession) -> None:
    url = f"{server.url}/api/jobs"
    async with session.post(url, data=b"{nope", headers={"Content-Type": "application/json"}) as r:
        assert (r.status, (await error_of(r))["field"]) == (400, "body")
    async with session.post(url, data=b"mode=fg", headers={"Content-Type": "text/plain"}) as r:
        assert (r.status, (await error_of(r))["field"]) == (415, "Content-Type")


def form(request: dict[str, Any] | None, *parts: tuple[str, bytes | str, str]) -> aiohttp.FormData:
    data = aiohttp.FormData()
    if request is not None:
        data.add_field("request", json.dumps(request), content_type="application/json")
    for name, value, content_type in parts:
        data.add_field(name, value, content_type=content_type, filename=name)
    return data


MULTIPART_CASES: list[tuple[str, Callable[[], aiohttp.FormData], str]] = [
    ("no request part", lambda: form(None, ("image", b"x", "image/png")), "request"),
    ("request not JSON", lambda: form(None, ("request", b"{", "application/json")), "request"),
    ("unknown part", lambda: form(GOOD, ("picture", b"x", "image/png")), "picture"),
    (
        "raw without size",
        lambda: form(
            {"mode": "img2img", "prompt": "x"},
            ("image", IMAGE.tobytes(), "application/octet-stream"),
        ),
        "image_width",
    ),
    (
        "raw size not a number",
        lambda: form(
            {"mode": "img2img", "prompt": "x"},
            ("image", IMAGE.tobytes(), "application/octet-stream"),
            ("image_width", "wide", "text/plain"),
            ("image_height", "32", "text/plain"),
        ),
        "image_width",
    ),
    (
        "raw of the wrong length",
        lambda: form(
            {"mode": "img2img", "prompt": "x"},
            ("image", b"1234", "application/octet-stream"),
            ("image_width", "40", "text/plain"),
            ("image_height", "32", "text/plain"),
        ),
        "image",
    ),
    (
        "non-PNG part",
        lambda: form(
            {"mode": "img2img", "prompt": "x"}, ("image", b"\xff\xd8\xff\xe0JFIF", "image/png")
        ),
        "image",
    ),
    (
        "unsupported part type",
        lambda: form({"mode": "img2img", "prompt": "x"}, ("image", b"x", "image/jpeg")),
        "image",
    ),
    (
        "image twice",
        lambda: form(
            {"mode": "img2img", "prompt": "x", "image": png(IMAGE)},
            ("image", base64.b64decode(png(IMAGE)), "image/png"),
        ),
        "image",
    ),
    (
        "mask size differs",
        lambda: form(
            {"mode": "inpaint", "prompt": "x"},
            ("image", base64.b64decode(png(IMAGE)), "image/png"),
            ("mask", mask(8, 8).tobytes(), "application/octet-stream"),
            ("mask_width", "8", "text/plain"),
            ("mask_height", "8", "text/plain"),
        ),
        "mask",
    ),
]


@pytest.mark.parametrize(
    ("case", "make", "field"), MULTIPART_CASES, ids=[case[0] for case in MULTIPART_CASES]
)
async def test_bad_multipart_requests(
    server: LiveServer,
    session: aiohttp.ClientSession,
    case: str,
    make: Callable[[], aiohttp.FormData],
    field: str,
) -> None:
    async with session.post(f"{server.url}/api/jobs", data=make()) as response:
        error = await error_of(response)
        assert 400 <= response.status < 500
    assert error["field"] == field, error


async def test_huge_bodies_are_refused_before_reading(
    make_config: Callable[..., ServerConfig], engine: Any, model_store: Any
) -> None:
    live = await start_server(make_config(max_body_bytes=1 << 20), engine, model_store)
    try:
        # declared too large: refused from Content-Length alone
        reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
        writer.write(
            f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 300000000\r\n\r\n".encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.read(4096), 10)
        writer.close()
        assert head.startswith(b"HTTP/1.1 413") and b'"field": "body"' in head

        # streamed without a length, JSON and multipart: cut off at the limit
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(40):
                yield b" " * 65536

        async with aiohttp.ClientSession() as http:
            for content_type in ("application/json", "multipart/form-data; boundary=xyz"):
                headers = {"Content-Type": content_type}
                async with http.post(
                    f"{live.url}/api/jobs", data=chunks(), headers=headers
                ) as response:
                    assert response.status in (400, 413)
                    assert (await error_of(response))["field"] in ("body", "request")
            big = form(
                {"mode": "img2img", "prompt": "x"},
                ("image", b"\x00" * (2 << 20), "application/octet-stream"),
            )
            async with http.post(f"{live.url}/api/jobs", data=big) as response:
                assert response.status == 413
                assert (await error_of(response))["field"] == "body"
            async with http.get(f"{live.url}/api/health") as response:
                assert response.status == 200
    finally:
        await live.stop()


PATH_IDS = [
    "..",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "j_..",
    "j_" + "0" * 31 + "%00",
    "J_" + "0" * 32,
    "j_" + "0" * 32 + ".json",
    "~root",
    "%5C..%5Cwindows",
]


@pytest.mark.parametrize("job_id", PATH_IDS)
async def test_path_like_job_ids(
    server: LiveServer, session: aiohttp.ClientSession, job_id: str
) -> None:
    for method, suffix in (
        ("GET", ""),
        ("DELETE", ""),
        ("GET", "/result.psd"),
        ("GET", "/result.ora"),
        ("GET", "/layers/foreground.png"),
    ):
        url = f"{server.url}/api/jobs/{job_id}{suffix}"
        async with session.request(method, aiohttp.client.URL(url, encoded=True)) as response:
            assert response.status in (400, 404), (method, url, response.status)
            error = await error_of(response)
            assert error["code"] in ("bad_job_id", "not_found")


async def test_path_like_layer_files(server: LiveServer, session: aiohttp.ClientSession) -> None:
    client = server.client()
    created = await client.submit(GOOD)
    await client.wait(created.id)
    base = f"{server.url}/api/jobs/{created.id}/layers/"
    for name in (
        "result.json",
        "..%2F" + created.id + ".json",
        "%2e%2e",
        "..",
        "foreground.png%00",
        "FOREGROUND.PNG",
        "background.png",
        "foreground_1.png",
        "%2Fetc%2Fpasswd",
    ):
        async with session.get(aiohttp.client.URL(base + name, encoded=True)) as response:
            assert response.status in (400, 404), (name, response.status)
            error = await error_of(response)
            assert error["field"] in ("file", None), error
    async with session.get(base + "foreground.png", params={"format": "tiff"}) as response:
        assert response.status == 400 and (await error_of(response))["field"] == "format"
    async with session.get(base + "foreground.png") as response:
        assert response.status == 200 and response.content_type == "image/png"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_unknown_routes_and_methods_are_json(
    server: LiveServer, session: aiohttp.ClientSession
) -> None:
    async with session.get(f"{server.url}/api/nothing") as response:
        assert response.status == 404 and (await error_of(response))["code"] == "not_found"
    async with session.put(f"{server.url}/api/jobs") as response:
        assert response.status == 405
        assert (await error_of(response))["code"] == "method_not_allowed"


async def test_bad_websocket_messages(server: LiveServer, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(f"{server.url}/api/ws") as ws:
        for bad in (
            "nope",
            "[]",
            '{"type": "subscribe"}',
            '{"type": "subscribe", "jobs": [1]}',
            '{"type": "subscribe", "jobs": ["../x"]}',
        ):
            await ws.send_str(bad)
            reply = await ws.receive_json(timeout=10)
            assert reply["type"] == "error" and reply["code"] in ("bad_message", "not_found")
        await ws.send_bytes(b"\x00")
        assert (await ws.receive_json(timeout=10))["code"] == "bad_message"
        # over the 16 MiB message limit: the server closes as soon as it sees the length
        with contextlib.suppress(ConnectionError):
            await ws.send_str(" " * (16 * 1024 * 1024 + 1))
        closing = await ws.receive(timeout=10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code in (1009, 1006, None) and ws.closed
    async with session.get(f"{server.url}/api/health") as response:
        assert response.status == 200
