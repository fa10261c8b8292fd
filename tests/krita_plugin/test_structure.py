"""Structure from a layer: what the docker sends (fields and the control image) and which
ControlNets it offers; the logic here, a whole job on the real server at the end (real Krita:
the `structure` scenario of test_krita_e2e.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from aiohttp_transport import AiohttpTransport
from server_process import ServerProcess
from test_model import (
    HEIGHT,
    MODES,
    WIDTH,
    FakeDocument,
    FakeDocuments,
    connected_model,
    make_model,
)

from acetate_krita.form import STRUCTURE, mode_controls
from acetate_krita.protocol import ModelsInfo, WireImage
from acetate_krita.structure import fitting_controlnets, over_white, takes_structure

CONTROLNETS = [
    {"name": "cn-xl", "family": "sdxl", "tiny": False},
    {"name": "cn-sd", "family": "sd15", "tiny": False},
    {"name": "tiny-cn-xl", "family": "sdxl", "tiny": True},
]
#: A black stroke on a transparent layer (transparent pixels are black in RGB).
SKETCH = b"".join(
    bytes([0, 0, 0, 255] if 20 <= x < 24 else [0, 0, 0, 0])
    for _ in range(HEIGHT)
    for x in range(WIDTH)
)


@dataclass
class SketchDocument(FakeDocument):
    """The fake document with a `sketch` layer above its artwork."""

    def layers(self) -> list[tuple[str, str]]:
        return [("sketch-1", "sketch"), *((n.id, n.name) for n in reversed(self.nodes))]

    def read_node(self, node_id: str) -> WireImage | None:
        if node_id != "sketch-1":
            return None
        return WireImage(SKETCH, WIDTH, HEIGHT)


def test_over_white_keeps_opaque_pixels_and_whitens_transparent_ones() -> None:
    rgba = bytes([0, 0, 0, 255, 0, 0, 0, 0, 200, 100, 0, 128, 10, 20, 30, 255])
    assert over_white(rgba) == bytes([0, 0, 0, 255, 255, 255, 255, 255, 227, 177, 127, 255,
                                      10, 20, 30, 255])  # fmt: skip


def test_structure_control_for_every_mode_that_takes_a_control_image() -> None:
    for mode in MODES.modes:
        controls = {control.key for control in mode_controls(mode)}
        takes = any(image.field == "control_image" for image in mode.inputs)
        assert takes_structure(mode) == takes == (STRUCTURE in controls), mode.name
        assert not {"control", "controlnet", "control_strength"} & controls


def test_controlnets_fit_the_base_family_and_tininess() -> None:
    models = ModelsInfo.from_json(
        {
            "bases": [
                {"name": "xl", "family": "sdxl"},
                {"name": "sd", "family": "sd15"},
                {"name": "tiny-sdxl", "family": "sdxl", "tiny": True},
            ],
            "controlnets": CONTROLNETS,
        }
    )
    assert fitting_controlnets(models.controlnets, models.base("xl")) == ("cn-xl",)
    assert fitting_controlnets(models.controlnets, models.base("sd")) == ("cn-sd",)
    assert fitting_controlnets(models.controlnets, models.base("tiny-sdxl")) == ("tiny-cn-xl",)
    assert fitting_controlnets(models.controlnets, None) == ()


@pytest_asyncio.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    http = AiohttpTransport()
    yield http
    await http.close()


def structure_model(http: AiohttpTransport) -> Any:
    model = connected_model(http)
    model.models = ModelsInfo.from_json(
        {
            "default_base": "xl",
            "bases": [{"name": "xl", "family": "sdxl"}, {"name": "sd", "family": "sd15"}],
            "controlnets": CONTROLNETS,
        }
    )
    model.mode = "fg"
    return model


@pytest.mark.asyncio
async def test_nothing_about_structure_is_sent_without_a_layer(transport: AiohttpTransport) -> None:
    model = structure_model(transport)
    fg = MODES.get("fg")
    assert fg is not None
    model.set_option("control", "canny")
    model.set_option("control_strength", 0.5)
    assert not {"control", "control_strength", "controlnet"} & set(model.parameters(fg).to_json())
    model.set_structure_layer("sketch-1")
    model.set_option("control", "none")
    assert "control" not in model.parameters(fg).to_json()


@pytest.mark.asyncio
async def test_a_structure_layer_sends_its_fields(transport: AiohttpTransport) -> None:
    model = structure_model(transport)
    fg = MODES.get("fg")
    assert fg is not None
    assert model.controlnet_choices() == ("cn-xl",)
    model.set_structure_layer("sketch-1")  # kind none → canny
    data = model.parameters(fg).to_json()
    assert (data["control"], data["control_strength"]) == ("canny", 1.0)
    assert "controlnet" not in data  # "Default": the server picks by family
    model.set_option("control", "image")
    model.set_option("control_strength", 0.6)
    model.set_option("controlnet", "cn-xl")
    data = model.parameters(fg).to_json()
    assert (data["control"], data["control_strength"], data["controlnet"]) == (
        "image",
        0.6,
        "cn-xl",
    )
    model.model_name = "sd"  # cn-xl does not fit an SD1.5 base: back to the default
    assert model.controlnet_choices() == ("cn-sd",)
    assert "controlnet" not in model.parameters(fg).to_json()


@pytest.mark.asyncio
@pytest.mark.parametrize("layer", ["sketch-1", ""])
async def test_generate_sends_the_layer_over_white_as_control_image(
    acetate_server: ServerProcess, layer: str
) -> None:
    http = AiohttpTransport()
    document = SketchDocument()
    model = make_model(FakeDocuments(document), http)
    model.server_url = acetate_server.url
    sent: list[tuple[Any, dict[str, WireImage]]] = []
    try:
        assert await model.connect()
        assert model.client is not None
        submit = model.client.submit

        async def recording_submit(params: Any, images: dict[str, WireImage]) -> str:
            sent.append((params, dict(images)))
            return await submit(params, images)

        model.client.submit = recording_submit  # type: ignore[method-assign]
        model.mode, model.prompt, model.model_name = "fg", "a star", "tiny-sdxl"
        model.set_option("steps", 1)
        model.set_option("decode", "fast")
        model.set_option("width", 64)
        model.set_option("height", 64)
        model.set_option("control", "none")
        assert model.controlnet_choices() == ("tiny-controlnet-sdxl",)
        model.set_structure_layer(layer)
        record = await asyncio.wait_for(model.generate(), 120)
        assert model.error == "" and record is not None
    finally:
        model.close()
        await http.close()
    ((params, images),) = sent
    if not layer:
        assert "control_image" not in images and "control" not in params.options
        assert record.parameters["control"] == "none"
        return
    image = images["control_image"]
    assert (image.width, image.height) == (WIDTH, HEIGHT)  # the canvas frame
    pixels = np.frombuffer(image.data, np.uint8).reshape(HEIGHT, WIDTH, 4)
    assert (pixels[:, 20:24, :3] == 0).all() and (pixels[:, :20, :3] == 255).all()
    assert (pixels[..., 3] == 255).all()
    assert params.options["control"] == "canny"
    assert record.parameters["control"] == "canny"
    assert record.parameters["control_strength"] == 1.0
    # The server recorded the image it got: the same bytes as sent.
    recorded = record.parameters["control_image"]
    assert (recorded["width"], recorded["height"]) == (WIDTH, HEIGHT)
