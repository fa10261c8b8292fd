"""Mode `decompose` through the server on the tiny Qwen-Image-Layered model: layers streamed,
the PSD in stacking order, `metrics` in the record, selection-only placement, bad input as
4xx naming the field, and the model and mode listings."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from psd_tools import PSDImage
from server_helpers import LiveServer, final, follow

from acetate.client import ServerError
from acetate.protocol import JobEvent

pytestmark = pytest.mark.asyncio

STEPS = 2
_rows, _cols = np.mgrid[0:60, 0:90]
FLAT = np.zeros((60, 90, 4), dtype=np.uint8)
FLAT[...] = (40, 90, 200, 255)
FLAT[(_rows - 30) ** 2 + (_cols - 45) ** 2 < 18**2] = (230, 40, 30, 255)


def decompose(**fields: Any) -> dict[str, Any]:
    return {"mode": "decompose", "prompt": "a red disc", "steps": STEPS, "seed": 2, **fields}


async def test_layers_stream_and_the_psd_stacks_them(server: LiveServer) -> None:
    client = server.client()
    created = await client.submit(decompose(layer_count=3), {"image": FLAT})
    messages = await follow(client, created.id)
    done = final(messages)
    assert done.type is JobEvent.done, done.fields
    record = done.result
    assert record.model == "tiny-qwen-image-layered"
    files = ["layer_1.png", "layer_2.png", "layer_3.png", "blended.png"]
    assert [layer.file for layer in record.layers] == files
    assert [layer.visible for layer in record.layers] == [True, True, True, False]
    announced = [m.layer.file for m in messages if m.type is JobEvent.layer_ready]
    assert sorted(announced) == sorted(files)
    totals = {m.fields["total"] for m in messages if m.type is JobEvent.progress}
    assert totals == {STEPS}
    assert record.canvas.width == 90 and record.canvas.height == 60
    assert record.parameters["resolution"] == 64 and record.parameters["layer_count"] == 3
    (metrics,) = record.metrics
    assert metrics["batch_index"] == 0 and 0 < metrics["psnr_db"] <= 100
    psd = PSDImage.open(io.BytesIO(await client.psd(created.id)))
    (group,) = list(psd)
    assert group.name == "a red disc #1"
    assert [layer.name for layer in group] == ["layer_1", "layer_2", "layer_3", "blended"]
    assert not list(group)[-1].visible


async def test_selection_only_layers_sit_at_the_selection(server: LiveServer) -> None:
    client = server.client()
    selection = np.zeros((20, 30), dtype=np.uint8)
    selection[2:18, 3:27] = 255
    bounds = {"left": 40, "top": 25, "width": 30, "height": 20}
    created = await client.submit(
        decompose(layer_count=2, selection_bounds=bounds), {"image": FLAT, "selection": selection}
    )
    done = final(await follow(client, created.id))
    assert done.type is JobEvent.done, done.fields
    for layer in done.result.layers:
        assert layer.left >= 43 and layer.left + layer.width <= 67
        assert layer.top >= 27 and layer.top + layer.height <= 43
    raw = await client.layer_rgba(created.id, "layer_2.png")
    second = done.result.layers[1]
    assert (raw.left, raw.top, raw.pixels.shape[1]) == (second.left, second.top, second.width)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"strength": 0.5}, "strength"),  # options decompose does not read
        ({"scheduler": "euler"}, "scheduler"),
        ({"control": "canny"}, "control"),
        ({"layer_weight": 1.2}, "layer_weight"),
        ({"layer_count": 11}, "layer_count"),
        ({"resolution": 512}, "resolution"),  # not a bucket
        ({"model": "tiny-sdxl"}, "model"),  # a LayerDiffusion base
    ],
)
async def test_bad_input_is_a_4xx_naming_the_field(
    server: LiveServer, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(ServerError) as error:
        await server.client().submit(decompose(**fields), {"image": FLAT})
    assert 400 <= error.value.status < 500 and error.value.field == field


async def test_too_small_an_image_and_a_qwen_base_for_fg_are_refused(server: LiveServer) -> None:
    client = server.client()
    with pytest.raises(ServerError) as error:
        await client.submit(decompose(), {"image": FLAT[:10, :10]})
    assert error.value.status == 400 and error.value.field == "image"
    with pytest.raises(ServerError) as error:
        await client.submit({"mode": "fg", "prompt": "a cat", "model": "tiny-qwen-image-layered"})
    assert error.value.status == 400 and error.value.field == "model"


async def test_models_and_modes_list_the_qwen_family(server: LiveServer) -> None:
    client = server.client()
    models = await client.models()
    qwen = next(b for b in models["bases"] if b["name"] == "tiny-qwen-image-layered")
    assert qwen["family"] == "qwen_layered" and qwen["tiny"]
    assert qwen["modes"] == {"decompose": []}
    assert models["default_bases"]["decompose"] == "tiny-qwen-image-layered"
    assert models["default_bases"]["fg"] != "tiny-qwen-image-layered"
    spec = next(m for m in (await client.modes())["modes"] if m["name"] == "decompose")
    assert spec["strict_options"] and spec["frame"] == "image"
    assert spec["layers"][0] == {
        "name": "layer_{i}",
        "label": "Layer",
        "visible": True,
        "keeps_alpha": True,
        "count_from": "layer_count",
        "first": 1,
    }
    options = {option["name"]: option for option in spec["options"]}
    assert set(options) == {
        "layer_count",
        "resolution",
        "negative_prompt",
        "steps",
        "cfg",
        "bit_depth",
    }
    assert (options["layer_count"]["minimum"], options["layer_count"]["maximum"]) == (2, 10)
    families = {f["family"]: f["supported"] for f in spec["families"]}
    assert families == {"qwen_layered": True, "sdxl": False, "sd15": False}
