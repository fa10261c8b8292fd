"""16-bit results through the real server: `bit_depth` in /api/modes, `?format=rgba16` (from
memory right after `layer_ready`, then from the 16-bit PNG), its 8-bit rounding under
`?format=rgba`, and the 400s for an 8-bit job and a bad `bit_depth`."""

from __future__ import annotations

from typing import Any

import aiohttp
import numpy as np
import pytest
from server_helpers import FAST, LiveServer

from acetate.api.keys import CACHE
from acetate.bitdepth import to_uint8
from acetate.export.png import decode_png16, png_bit_depth
from acetate.protocol import JobEvent

pytestmark = pytest.mark.asyncio

FG16 = {"prompt": "smoke", **FAST, "width": 64, "height": 128, "bit_depth": 16}


async def raw_layer(
    http: aiohttp.ClientSession, url: str, fmt: str
) -> tuple[int, dict[str, str], bytes]:
    async with http.get(url, params={"format": fmt}) as response:
        return response.status, dict(response.headers), await response.read()


def placement(headers: dict[str, str]) -> tuple[int, ...]:
    names = ("X-Acetate-Width", "X-Acetate-Height", "X-Acetate-Left", "X-Acetate-Top")
    return tuple(int(headers[name]) for name in names)


async def test_modes_publish_bit_depth_for_every_mode(server: LiveServer) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/api/modes") as response:
        document = await response.json()
    for mode in document["modes"]:
        options = {option["name"]: option for option in mode["options"]}
        assert options["bit_depth"]["default"] == 8, mode["name"]
        assert options["bit_depth"]["choices"] == [8, 16] and options["bit_depth"]["type"] == "int"


async def test_rgba16_from_memory_then_from_the_png(server: LiveServer) -> None:
    client = server.client()
    created = await client.submit(FG16)
    url = f"{server.url}/api/jobs/{created.id}/layers/foreground.png"
    from_memory: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:

        async def on_event(message: Any) -> None:
            # Fetched at `layer_ready`: the PNG may not be written yet, the cache has it.
            if message.type is JobEvent.layer_ready:
                from_memory["rgba16"] = await raw_layer(http, url, "rgba16")
                from_memory["rgba"] = await raw_layer(http, url, "rgba")

        record = (await client.wait(created.id, on_event)).result
        assert record is not None and record.parameters["bit_depth"] == 16
        png = await client.layer_png(created.id, "foreground.png")
        assert png_bit_depth(png) == 16
        pixels = decode_png16(png)
        assert pixels.shape == (128, 64, 4)
        status, headers, body = from_memory["rgba16"]
        assert status == 200 and headers["Content-Type"] == "application/octet-stream"
        assert headers["X-Acetate-Depth"] == "16" and placement(headers) == (64, 128, 0, 0)
        assert len(body) == 8 * 64 * 128
        assert body == pixels.astype("<u2").tobytes()
        status, headers, body = from_memory["rgba"]
        assert status == 200 and headers["X-Acetate-Depth"] == "8" and len(body) == 4 * 64 * 128
        assert body == to_uint8(pixels).tobytes()
        # Out of memory: read back from the 16-bit PNG, the same bytes.
        server.app[CACHE].drop(created.id)
        status, headers, body = await raw_layer(http, url, "rgba16")
        assert status == 200 and headers["X-Acetate-Depth"] == "16"
        assert body == pixels.astype("<u2").tobytes()
        status, _, body = await raw_layer(http, url, "rgba")
        assert status == 200 and body == to_uint8(pixels).tobytes()
    layer = await client.layer_rgba(created.id, "foreground.png", bit_depth=16)
    assert layer.pixels.dtype == np.dtype("<u2") and np.array_equal(layer.pixels, pixels)


async def test_rgba16_of_an_8_bit_job_is_a_400_naming_format(server: LiveServer) -> None:
    client = server.client()
    created = await client.submit({"prompt": "glass", **FAST, "width": 64, "height": 64})
    await client.wait(created.id)
    url = f"{server.url}/api/jobs/{created.id}/layers/foreground.png"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, params={"format": "rgba16"}) as response:
            assert response.status == 400
            error = (await response.json())["error"]
        assert error["field"] == "format" and "bit_depth: 16" in error["message"]
        status, headers, body = await raw_layer(http, url, "rgba")
        assert status == 200 and headers["X-Acetate-Depth"] == "8" and len(body) == 4 * 64 * 64
        async with http.get(url, params={"format": "rgba32"}) as response:
            assert response.status == 400
            assert (await response.json())["error"]["field"] == "format"


async def test_a_bad_bit_depth_is_refused_naming_the_field(server: LiveServer) -> None:
    async with aiohttp.ClientSession() as http:
        for value in (12, "sixteen", 32):
            body = {"prompt": "x", **FAST, "bit_depth": value}
            async with http.post(f"{server.url}/api/jobs", json=body) as response:
                assert response.status == 400, value
                assert (await response.json())["error"]["field"] == "bit_depth"
