"""The plugin's client against the real server (`acetate serve` on the tiny models).

Inside Krita the client runs on Qt's network stack; here on aiohttp (same `Http` port).
The real-Krita test covers the Qt transport.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer
from aiohttp_transport import AiohttpTransport
from PIL import Image
from server_process import ServerProcess, free_port, start_server

from acetate_krita.client import AcetateClient, EventStream, ServerError
from acetate_krita.pixels import Rect
from acetate_krita.protocol import Event, JobEvent, Parameters, ResultRecord, WireImage

FAST: dict[str, Any] = {"model": "tiny-sdxl", "seed": 11, "options": {"steps": 1, "decode": "fast"}}


@pytest_asyncio.fixture
async def http() -> AsyncIterator[AiohttpTransport]:
    transport = AiohttpTransport()
    yield transport
    await transport.close()


async def follow(stream: EventStream, job_id: str, timeout: float = 120) -> list[Event]:
    queue = stream.subscribe(job_id)
    events: list[Event] = []
    while not (events and events[-1].final):
        events.append(await asyncio.wait_for(queue.get(), timeout))
    stream.unsubscribe(job_id)
    return events


@pytest_asyncio.fixture
async def stream(
    acetate_server: ServerProcess, http: AiohttpTransport
) -> AsyncIterator[EventStream]:
    events = EventStream(AcetateClient(http, acetate_server.url))
    task = asyncio.ensure_future(events.run())
    await asyncio.wait_for(events.connected.wait(), 30)
    yield events
    task.cancel()


def artwork(width: int, height: int) -> WireImage:
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    return WireImage(rgba.tobytes(), width, height)


@pytest.mark.asyncio
async def test_health_and_models(acetate_server: ServerProcess, http: AiohttpTransport) -> None:
    client = AcetateClient(http, acetate_server.url + "/")
    assert (await client.health())["version"]
    models = await client.models()
    xl = models.base("tiny-sdxl")
    assert xl is not None and xl.tiny and xl.family == "sdxl"
    assert models.mode_problem("tiny-sdxl", "fg") is None
    assert "SD1.5" in (models.mode_problem("tiny-sdxl", "joint") or "")
    modes = await client.modes()
    assert modes.api_version >= 2 and {"fg", "layer_on_artwork"} <= set(modes.names)
    loa = modes.get("layer_on_artwork")
    assert loa is not None and [i.field for i in loa.inputs][:2] == ["canvas", "selection"]


@pytest.mark.asyncio
async def test_layer_on_artwork_round_trip(
    acetate_server: ServerProcess, http: AiohttpTransport, stream: EventStream
) -> None:
    client = stream.client
    canvas = artwork(96, 64)
    bounds = Rect(40, 8, 32, 24)
    selection = WireImage(b"\xff" * (bounds.width * bounds.height), bounds.width, bounds.height)
    params = Parameters(
        mode="layer_on_artwork", prompt="a red ball", selection_bounds=bounds, **FAST
    )
    job_id = await client.submit(params, {"canvas": canvas, "selection": selection})
    events = await follow(stream, job_id)
    types = [event.type for event in events]
    assert types[-1] is JobEvent.done, events[-1].fields
    assert JobEvent.progress in types and JobEvent.layer_ready in types
    previews = [event for event in events if event.type is JobEvent.preview]
    assert previews and all(event.binary and event.binary[:2] == b"\xff\xd8" for event in previews)

    record = ResultRecord.from_json(events[-1].fields["result"])
    sent = record.parameters
    assert sent["canvas"]["sha256"] == hashlib.sha256(canvas.data).hexdigest()
    assert sent["selection"]["sha256"] == hashlib.sha256(selection.data).hexdigest()
    (layer,) = record.layers
    assert (layer.name, layer.rect) == ("foreground", bounds)
    rgba = await client.layer_pixels(job_id, layer)
    png = await http.request("GET", f"{client.url}/api/jobs/{job_id}/layers/{layer.file}", {})
    expected = np.asarray(Image.open(io.BytesIO(png.body)).convert("RGBA"))
    assert rgba == expected.tobytes()
    assert (await client.psd(job_id))[:4] == b"8BPS"


@pytest.mark.asyncio
async def test_errors_in_plain_words(stream: EventStream, http: AiohttpTransport) -> None:
    client = stream.client
    with pytest.raises(ServerError) as missing_input:
        await client.submit(Parameters(mode="fg2bg", prompt="x", **FAST), {})
    assert missing_input.value.field == "fg" and missing_input.value.status == 400
    assert "fg" in missing_input.value.message
    # A model the server does not have is refused at submit, in words that say what to get.
    with pytest.raises(ServerError) as missing_model:
        await client.submit(Parameters(mode="fg", prompt="x", model="no-such-model"), {})
    assert missing_model.value.field == "model" and missing_model.value.status == 400
    shown = missing_model.value.message
    assert shown.startswith("Model file missing: ") and "no-such-model" in shown
    dead = AcetateClient(http, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ServerError) as unreachable:
        await dead.health()
    assert unreachable.value.code == "unreachable"
    assert "Cannot reach the Acetate server" in unreachable.value.message
    with pytest.raises(ServerError) as bad_url:
        AcetateClient(http, "127.0.0.1:7865")
    assert bad_url.value.code == "bad_url"


@pytest.mark.asyncio
async def test_cancel_a_running_job(stream: EventStream) -> None:
    client = stream.client
    options = {"steps": 60, "decode": "fast", "width": 64, "height": 64}
    params = Parameters(mode="fg", prompt="x", model="tiny-sdxl", options=options)
    job_id = await client.submit(params, {})
    queue = stream.subscribe(job_id)
    while (event := await asyncio.wait_for(queue.get(), 120)).type is not JobEvent.progress:
        assert not event.final, event
    await client.cancel(job_id)
    while not event.final:
        event = await asyncio.wait_for(queue.get(), 60)
    assert event.type is JobEvent.cancelled


@pytest.mark.asyncio
async def test_stream_reconnects_and_subscribes_again(http: AiohttpTransport) -> None:
    """The first socket dies after the subscription; the second one gets it again."""
    connections: list[list[str]] = []

    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        seen: list[str] = []
        connections.append(seen)
        async for message in socket:
            if message.type is WSMsgType.TEXT:
                seen.append(message.data)
                if len(connections) == 1:
                    await socket.close()
                else:
                    job = json.loads(message.data)["jobs"][0]
                    await socket.send_json({"type": "queued", "job_id": job, "position": 1})
                    await socket.send_json({"type": "preview", "job_id": job, "width": 1})
                    await socket.send_bytes(b"\xff\xd8jpeg")
                    await socket.send_json({"type": "cancelled", "job_id": job})
        return socket

    app = web.Application()
    app.router.add_get("/api/ws", ws)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    statuses: list[bool] = []
    stream = EventStream(
        AcetateClient(http, f"http://127.0.0.1:{server.port}"),
        lambda connected, error: statuses.append(connected),
        max_delay=0.1,
    )
    task = asyncio.ensure_future(stream.run())
    try:
        await asyncio.wait_for(stream.connected.wait(), 10)
        queue = stream.subscribe("j_1")
        events = [await asyncio.wait_for(queue.get(), 10) for _ in range(3)]
    finally:
        task.cancel()
        await server.close()
    assert [event.type for event in events] == [
        JobEvent.queued,
        JobEvent.preview,
        JobEvent.cancelled,
    ]
    assert events[1].binary == b"\xff\xd8jpeg"
    assert len(connections) == 2
    assert all('"subscribe"' in c[0] and "j_1" in c[0] for c in connections)
    assert statuses[:3] == [True, False, True]


@pytest.mark.asyncio
async def test_token_goes_with_every_request(
    tiny_models_dir: Path, tmp_path: Path, http: AiohttpTransport
) -> None:
    server = start_server(tiny_models_dir, tmp_path, "--token", "s3cret-token")
    try:
        with pytest.raises(ServerError) as refused:
            await AcetateClient(http, server.url).health()
        assert refused.value.status == 401 and "token" in refused.value.message
        statuses: list[tuple[bool, str | None]] = []
        stream = EventStream(
            AcetateClient(http, server.url, " wrong "), lambda *status: statuses.append(status)
        )
        task = asyncio.ensure_future(stream.run())
        await asyncio.wait_for(_until(lambda: bool(statuses)), 10)
        task.cancel()
        assert statuses[0][0] is False and "token" in (statuses[0][1] or "")
        client = AcetateClient(http, server.url, " s3cret-token ")
        assert (await client.health())["version"]
        stream = EventStream(client)
        task = asyncio.ensure_future(stream.run())
        await asyncio.wait_for(stream.connected.wait(), 10)
        task.cancel()
    finally:
        server.stop()


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_a_server_without_modes_is_too_old(http: AiohttpTransport) -> None:
    """Health without api_version, or no /api/modes (404): "Server too old"."""
    versions: list[dict[str, Any]] = [{"version": "0.1.0", "device": "cpu"}]

    async def health(request: web.Request) -> web.Response:
        return web.json_response(versions[-1])

    app = web.Application()
    app.router.add_get("/api/health", health)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = AcetateClient(http, f"http://127.0.0.1:{server.port}")
    try:
        with pytest.raises(ServerError) as old_health:
            await client.health()
        versions.append({"version": "0.2.0", "device": "cpu", "api_version": 2})
        assert (await client.health())["api_version"] == 2
        with pytest.raises(ServerError) as no_modes:
            await client.modes()
    finally:
        await server.close()
    for error in (old_health.value, no_modes.value):
        assert error.code == "too_old" and error.message.startswith("Server too old — update")
