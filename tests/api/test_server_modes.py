"""Every mode end to end through a real server and the real engine on the tiny models."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from ora_reader import read_ora
from PIL import Image
from psd_tools import PSDImage
from sample_images import rgba
from server_helpers import FAST, LiveServer, final, follow, mask

from acetate.client import AcetateClient, ServerError, run_job
from acetate.modes import MODES
from acetate.protocol import JobEvent, ResultRecord

pytestmark = pytest.mark.asyncio

CASES: dict[str, tuple[dict[str, Any], dict[str, np.ndarray], str]] = {
    # mode: (request fields, images, image encoding)
    "fg": ({"width": 128, "height": 64}, {}, "json"),
    "fg2bg": ({}, {"fg": rgba(96, 80)}, "raw"),
    "bg2fg": ({}, {"bg": rgba(96, 80, opaque=True)}, "png"),
    "joint": ({"model": "tiny-sd15", "width": 64, "height": 64}, {}, "json"),
    "img2img": ({"strength": 0.5}, {"image": rgba(80, 72)}, "json"),
    "inpaint": ({}, {"image": rgba(80, 72), "mask": mask(80, 72)}, "raw"),
    "layer_on_artwork": (
        {"selection_bounds": {"left": 40, "top": 30, "width": 64, "height": 48}, "margin": 8},
        {"canvas": rgba(160, 120, opaque=True), "selection": np.full((48, 64), 255, np.uint8)},
        "png",
    ),
    "upscale": ({"scale": 2.0, "prompt": ""}, {"image": rgba(48, 40)}, "raw"),
}


def frame(mode: str, fields: dict[str, Any], images: dict[str, np.ndarray]) -> tuple[int, int]:
    """The canvas (width, height) the result must report."""
    source = {"fg2bg": "fg", "bg2fg": "bg", "layer_on_artwork": "canvas"}.get(mode, "image")
    if mode in ("fg", "joint"):
        return fields["width"], fields["height"]
    height, width = images[source].shape[:2]
    scale = fields.get("scale", 1) if mode == "upscale" else 1
    return round(width * scale), round(height * scale)


def png_rgba(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGBA"))


@pytest.mark.parametrize("mode", list(CASES))
async def test_mode_end_to_end(server: LiveServer, mode: str) -> None:
    fields, images, encoding = CASES[mode]
    client = server.client()
    request = {"mode": mode, "prompt": "a glass bottle", **FAST, **fields}
    created = await client.submit(request, images, encoding=encoding)  # type: ignore[arg-type]
    assert created.position == 0
    messages = await follow(client, created.id)
    types = [m.type for m in messages]
    assert types[-1] is JobEvent.done, messages[-1]
    assert JobEvent.started in types and JobEvent.progress in types
    assert types.index(JobEvent.started) < types.index(JobEvent.progress)
    steps = [m.fields["step"] for m in messages if m.type is JobEvent.progress]
    assert (
        steps == sorted(steps)
        and steps[-1] == messages[types.index(JobEvent.progress)].fields["total"]
    )

    previews = [m for m in messages if m.type is JobEvent.preview]
    assert previews, "the first step always sends a preview"
    for preview in previews:
        assert preview.fields["format"] == "jpeg" and preview.binary is not None
        with Image.open(io.BytesIO(preview.binary)) as jpeg:
            assert jpeg.format == "JPEG"
            assert jpeg.size == (preview.fields["width"], preview.fields["height"])
            assert max(jpeg.size) <= 256

    result = final(messages).fields["result"]
    assert result["id"] == created.id and result["mode"] == mode
    assert result["model"].startswith("tiny-")
    width, height = frame(mode, fields, images)
    assert result["canvas"] == {"width": width, "height": height}
    assert [layer["name"] for layer in result["layers"]] == MODES[mode].layer_names({})
    ready = [m.fields["layer"] for m in messages if m.type is JobEvent.layer_ready]
    assert sorted(ready, key=lambda x: x["file"]) == sorted(
        result["layers"], key=lambda x: x["file"]
    )
    for image_field in images:
        assert set(result["parameters"][image_field]) == {"width", "height", "sha256"}

    record = await client.job(created.id)
    assert record.status == "done" and record.result is not None
    assert record.result.model_dump() == result

    for layer in record.result.layers:
        png = png_rgba(await client.layer_png(created.id, layer.file))
        raw = await client.layer_rgba(created.id, layer.file)
        assert png.shape == (layer.height, layer.width, 4)
        assert np.array_equal(raw.pixels, png)
        assert (raw.left, raw.top) == (layer.left, layer.top)
        # placement in canvas coordinates
        assert layer.left >= 0 and layer.left + layer.width <= width
        assert layer.top >= 0 and layer.top + layer.height <= height
    if mode == "layer_on_artwork":
        [layer] = record.result.layers
        # the layer covers the selection (cropped to it plus context, never the whole canvas)
        assert layer.left <= 40 and layer.top <= 30
        assert layer.left + layer.width >= 104 and layer.top + layer.height >= 78


async def test_batch_files_psd_and_listing(server: LiveServer) -> None:
    client = server.client()
    request = {"prompt": "apple", "width": 64, "height": 64, "batch": 2, "client_id": "krita"}
    created = await client.submit({**FAST, **request})
    messages = await follow(client, created.id)
    files = [layer["file"] for layer in final(messages).fields["result"]["layers"]]
    assert files == ["foreground.png", "foreground_1.png"]
    assert final(messages).fields["result"]["psd"] is None  # built on first request

    psd = PSDImage.open(io.BytesIO(await client.psd(created.id)))
    pixel_layers = [layer for layer in psd.descendants() if layer.kind == "pixel"]
    assert len(pixel_layers) == 2
    assert [group.name for group in psd if group.is_group()] == ["apple #1", "apple #2"]
    assert (await client.job(created.id)).result.psd == "layers.psd"  # type: ignore[union-attr]
    # The OpenRaster document likewise, its layers byte-exact with the layer downloads.
    ora = read_ora(await client.ora(created.id))
    assert [group for group, _ in ora.groups] == ["apple #2", "apple #1"]
    for read, file in zip(ora.layers, files, strict=True):
        raw = await client.layer_rgba(created.id, file)
        assert np.array_equal(read.pixels, raw.pixels) and (read.x, read.y) == (raw.left, raw.top)
    assert (await client.job(created.id)).result.ora == "layers.ora"  # type: ignore[union-attr]

    assert [job.id for job in await client.jobs("krita")] == [created.id]
    assert await client.jobs("photoshop") == []
    assert created.id in [job.id for job in await client.jobs()]


async def test_run_job_writes_a_result_folder(server: LiveServer, tmp_path) -> None:
    seen: list[JobEvent] = []
    record = await run_job(
        server.url,
        None,
        {"mode": "bg2fg", "prompt": "cat", **FAST},
        {"bg": rgba(72, 64, opaque=True)},
        tmp_path / "result",
        lambda message: seen.append(message.type),
        psd=True,
    )
    assert seen[-1] is JobEvent.done
    folder = tmp_path / "result"
    assert sorted(p.name for p in folder.iterdir()) == [
        "blended.png",
        "foreground.png",
        "layers.psd",
        "result.json",
    ]
    assert record.psd == "layers.psd"
    assert ResultRecord.model_validate_json((folder / "result.json").read_bytes()) == record
    for layer in record.layers:
        assert png_rgba((folder / layer.file).read_bytes()).shape == (64, 72, 4)


async def test_a_missing_model_is_refused_before_queuing(server: LiveServer) -> None:
    client: AcetateClient = server.client()
    with pytest.raises(ServerError) as refused:
        await client.submit({"prompt": "x", "model": "no-such-model", **FAST})
    assert refused.value.status == 400
    assert refused.value.field == "model" and refused.value.code == "model_not_found"
    assert (await client.health())["queue_length"] == 0
