"""Mode `scene` through the server: objects streamed as they finish, masks inline and as
multipart parts, bad objects as 4xx naming `objects[i].<field>`, partial results kept."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image
from server_helpers import FAST, LiveServer, final, follow, start_server

from acetate.api.config import ServerConfig
from acetate.client import ServerError
from acetate.protocol import JobEvent

pytestmark = pytest.mark.asyncio

DISC = np.zeros((40, 50), dtype=np.uint8)
_yy, _xx = np.mgrid[:40, :50]
DISC[(_yy - 20) ** 2 / 400 + (_xx - 25) ** 2 / 625 <= 1.0] = 255
OBJECTS: list[dict[str, Any]] = [
    {"prompt": "a crow", "region": {"left": 8, "top": 8, "width": 70, "height": 50}},
    {"prompt": "a lantern", "region": {"left": 50, "top": 30, "width": 60, "height": 60}},
    {"prompt": "a moon", "region": {"left": 120, "top": 10}},
]


def scene(**fields: Any) -> dict[str, Any]:
    return {
        "mode": "scene",
        "model": "tiny-sd15",
        "prompt": "a street",
        "width": 192,
        "height": 128,
        "objects": OBJECTS,
        **FAST,
        **fields,
    }


def png_b64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


async def test_objects_stream_one_by_one_with_a_mask_part(server: LiveServer) -> None:
    client = server.client()
    # raw multipart: the third object's mask is the part `objects.2.mask`
    created = await client.submit(scene(), {"objects.2.mask": DISC})
    messages = await follow(client, created.id)
    done = final(messages)
    assert done.type is JobEvent.done, done.fields
    record = done.result
    assert [layer.file for layer in record.layers] == [
        "background.png",
        "object_0.png",
        "object_1.png",
        "object_2.png",
        "blended.png",
    ]
    assert [layer.name for layer in record.layers][1:4] == ["a crow", "a lantern", "a moon"]
    # object 0 is announced before object 1's first denoising step (steps 2, one stage each)
    order = [
        (m.type, m.layer.file if m.type is JobEvent.layer_ready else m.fields.get("step"))
        for m in messages
    ]
    first_step_of_object_1 = FAST["steps"] * 2 + 1
    assert order.index((JobEvent.layer_ready, "object_0.png")) < order.index(
        (JobEvent.progress, first_step_of_object_1)
    )
    totals = {m.fields["total"] for m in messages if m.type is JobEvent.progress}
    assert totals == {FAST["steps"] * 4}
    moon = record.layers[3]
    raw = await client.layer_rgba(created.id, "object_2.png")
    assert (raw.left, raw.top) == (moon.left, moon.top)
    alpha = np.zeros((128, 192), np.uint8)
    alpha[moon.top : moon.top + moon.height, moon.left : moon.left + moon.width] = raw.pixels[
        ..., 3
    ]
    inside_disc = np.zeros((128, 192), bool)
    inside_disc[10:50, 120:170] = DISC > 0
    assert alpha[~inside_disc].max() == 0


async def test_an_inline_mask_in_json_matches_the_part(server: LiveServer) -> None:
    client = server.client()
    objects = [
        OBJECTS[0],
        {**OBJECTS[2], "region": {**OBJECTS[2]["region"], "mask": png_b64(DISC)}},
    ]
    inline = await client.submit(scene(objects=objects))
    parted = await client.submit(scene(objects=[OBJECTS[0], OBJECTS[2]]), {"objects.1.mask": DISC})
    first, second = [final(await follow(client, job.id)) for job in (inline, parted)]
    assert first.type is JobEvent.done and second.type is JobEvent.done
    a = await client.layer_png(inline.id, "object_1.png")
    b = await client.layer_png(parted.id, "object_1.png")
    assert a == b
    mask = first.result.parameters["objects"][1]["region"]["mask"]
    assert (mask["width"], mask["height"]) == (50, 40) and "sha256" in mask


@pytest.mark.parametrize(
    ("objects", "images", "field"),
    [
        ([{"prompt": "x", "region": {"left": 180, "top": 0, "width": 60, "height": 10}}], {},
         "objects[0].region"),
        ([OBJECTS[0], {"prompt": "x", "region": {"left": 0, "top": 0}}], {}, "objects[1].region"),
        ([{"prompt": "x", "region": {"left": 0, "top": 0, "width": 9, "height": 9}}],
         {"objects.0.mask": DISC}, "objects[0].region.mask"),
        ([OBJECTS[0]] * 17, {}, "objects"),
        ([OBJECTS[0]], {"objects.4.mask": DISC}, "objects.4.mask"),
    ],
)  # fmt: skip
async def test_bad_objects_are_4xx_naming_the_field(
    server: LiveServer, objects: list[dict[str, Any]], images: dict[str, Any], field: str
) -> None:
    client = server.client()
    with pytest.raises(ServerError) as caught:
        await client.submit(scene(objects=objects), images)
    assert 400 <= caught.value.status < 500
    assert caught.value.field == field, caught.value.message


async def test_a_failing_last_object_keeps_the_finished_layers(
    make_config: Callable[..., ServerConfig],
    engine: Any,
    model_store: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import acetate.engine.pipelines.scene as scene_module

    real = scene_module.object_layer

    def failing_last(ctx: Any, item: Any, *args: Any) -> Any:
        if item.index == 2:
            raise ZeroDivisionError("a bug in the last object")
        return real(ctx, item, *args)

    monkeypatch.setattr(scene_module, "object_layer", failing_last)
    live = await start_server(make_config(), engine, model_store)
    try:
        client = live.client()
        created = await client.submit(scene(objects=[OBJECTS[0], OBJECTS[1], OBJECTS[0]]))
        end = final(await follow(client, created.id))
        assert end.type is JobEvent.error
        assert end.fields["field"] == "objects[2]" and end.fields["code"] == "internal_error"
        assert [layer["file"] for layer in end.fields["result"]["layers"]] == [
            "background.png",
            "object_0.png",
            "object_1.png",
        ]
        record = await client.job(created.id)
        assert record.status == "error" and record.result is not None
        assert record.error is not None and record.error.field == "objects[2]"
        # finished layers stay downloadable; the ones never made answer 409
        png = await client.layer_png(created.id, "object_1.png")
        assert png.startswith(b"\x89PNG")
        raw = await client.layer_rgba(created.id, "object_0.png")
        assert raw.pixels.shape[2] == 4
        for missing in ("object_2.png", "blended.png"):
            with pytest.raises(ServerError) as caught:
                await client.layer_png(created.id, missing)
            assert caught.value.status == 409
    finally:
        await live.stop()


async def test_a_cancel_after_an_object_keeps_the_finished_layers(server: LiveServer) -> None:
    client = server.client()
    created = await client.submit(scene(objects=OBJECTS[:2], steps=8))
    cancelled_after: str | None = None
    end = None
    async for message in client.events([created.id]):
        ready = message.type is JobEvent.layer_ready
        if ready and cancelled_after is None and message.layer.file == "object_0.png":
            cancelled_after = message.layer.file
            await client.cancel(created.id)
        if message.type in (JobEvent.done, JobEvent.error, JobEvent.cancelled):
            end = message
            break
    assert end is not None and end.type is JobEvent.cancelled
    files = [layer["file"] for layer in end.fields["result"]["layers"]]
    assert files[:2] == ["background.png", "object_0.png"] and "blended.png" not in files
    record = await client.job(created.id)
    assert record.status == "cancelled" and record.result is not None
    assert (await client.layer_png(created.id, "object_0.png")).startswith(b"\x89PNG")
