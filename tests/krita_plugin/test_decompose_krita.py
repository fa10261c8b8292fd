"""Mode `decompose` from the Krita plugin's model (fake Krita document, real server on the tiny
Qwen-Image-Layered model): the selected part of the active layer is split and its layers land
as one group right above that layer, bottom → top, each at its record's rectangle inside the
selection; the layer is hidden (not deleted) and "Undo whole result" shows it again."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp_transport import AiohttpTransport
from server_process import ServerProcess
from test_model import MODES, FakeDocument, FakeDocuments, Node, http, make_model

from acetate_krita.inputs import collect_images, replaced_nodes, source_of
from acetate_krita.pixels import Rect

__all__ = ["http"]  # the transport fixture, shared with test_model.py


@pytest.mark.asyncio
async def test_decompose_the_selection_into_a_group(
    acetate_server: ServerProcess, http: AiohttpTransport
) -> None:
    selection = Rect(30, 10, 24, 16)
    document = FakeDocument(selection=selection)
    document.nodes.append(Node("layer-top", "top"))  # the result goes below it
    model = make_model(FakeDocuments(document), http)
    model.server_url = acetate_server.url
    assert await model.connect()
    decompose = model.modes.get("decompose")
    assert decompose is not None and {o.name for o in decompose.options} >= {"layer_count"}
    model.mode, model.prompt = "decompose", "a ball on a table"
    model.model_name = "tiny-qwen-image-layered"
    model.set_option("steps", 2)
    model.set_option("layer_count", 2)
    record = await asyncio.wait_for(model.generate(), 120)
    assert model.error == "" and record is not None, model.error
    assert record.parameters["layer_count"] == 2
    group = ("a ball on a table #1", ["layer_1", "layer_2", "blended"])
    assert document.tree() == [("artwork", []), group, ("top", [])]
    # the split layer is hidden, not deleted; the hidden "blended" is the record's
    assert document.shown() == [("artwork", False), (group[0], True), ("top", True)]
    assert [(layer.name, layer.visible) for layer in record.layers] == [
        ("layer_1", True),
        ("layer_2", True),
        ("blended", False),
    ]
    for layer in record.layers:
        assert selection.left <= layer.rect.left and layer.rect.left + layer.rect.width <= 54
        assert selection.top <= layer.rect.top and layer.rect.top + layer.rect.height <= 26
    # "Undo whole result" removes the group and shows the split layer again
    assert model.can_undo_result and model.undo_result() == 1
    assert document.shown() == [("artwork", True), ("top", True)]
    model.close()


@pytest.mark.asyncio
async def test_decompose_the_whole_canvas_hides_every_visible_layer(
    acetate_server: ServerProcess, http: AiohttpTransport
) -> None:
    document = FakeDocument()
    document.nodes += [Node("layer-off", "sketch", visible=False), Node("layer-top", "ink")]
    model = make_model(FakeDocuments(document), http)
    model.server_url = acetate_server.url
    assert await model.connect()
    decompose = model.modes.get("decompose")
    assert decompose is not None
    image = next(image for image in decompose.inputs if image.field == "image")
    assert image.replaced and image.sources == ("layer", "canvas")
    model.mode, model.prompt = "decompose", "ink over a wash"
    model.model_name = "tiny-qwen-image-layered"
    model.set_option("steps", 2)
    model.set_option("layer_count", 2)
    model.set_input_source("image", "canvas")
    record = await asyncio.wait_for(model.generate(), 120)
    assert model.error == "" and record is not None, model.error
    # the canvas was read (not the active layer), the selection-less request has no bounds
    assert document.reads == ["canvas"] and record.parameters.get("selection_bounds") is None
    # the result goes above the topmost visible layer; what the canvas showed is hidden
    assert [name for name, _ in document.tree()] == [
        "artwork",
        "sketch",
        "ink",
        "ink over a wash #1",
    ]
    assert document.shown() == [
        ("artwork", False),
        ("sketch", False),
        ("ink", False),
        ("ink over a wash #1", True),
    ]
    # undo shows again exactly what the result hid: the sketch was hidden before and stays so
    assert model.undo_result() == 1
    assert document.shown() == [("artwork", True), ("sketch", False), ("ink", True)]
    model.close()


def test_replaced_nodes_follow_the_chosen_source() -> None:
    mode = MODES.get("decompose")
    assert mode is not None
    document = FakeDocument(
        nodes=[Node("a", "paper"), Node("b", "off", visible=False), Node("c", "ink")]
    )
    document.active = "a"
    images, bounds = collect_images(mode, document)
    assert set(images) == {"image"} and bounds is None  # no selection: the whole layer
    assert replaced_nodes(mode, document, images) == ["a"]
    assert replaced_nodes(mode, document, images, {"image": "canvas"}) == ["a", "c"]
    # a source the input does not offer falls back to its declared one
    assert source_of(mode.inputs[0], {"image": "selection"}) == "layer"
    assert replaced_nodes(mode, document, images, {"image": "selection"}) == ["a"]
    # nothing replaced when the input is not sent, or for a mode without `replaced`
    assert replaced_nodes(mode, document, []) == []
    fg2bg = MODES.get("fg2bg")
    assert fg2bg is not None and replaced_nodes(fg2bg, document, ["fg"]) == []
