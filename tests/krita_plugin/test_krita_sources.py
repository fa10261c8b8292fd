"""Chosen source layers, masks from a layer's alpha, LoRA rows and embeddings: the docker's
logic (sources.py, loras.py, the model) against the real server's declarations and jobs.
Real Krita runs the same paths in scenarios/sources.py (test_krita_e2e.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from aiohttp_transport import AiohttpTransport
from server_process import ServerProcess, start_server
from support.loras import store_with_loras
from test_model import HEIGHT, MODES, WIDTH, FakeDocument, FakeDocuments, make_model

from acetate_krita.form import SOURCE, mode_controls, source_key
from acetate_krita.inputs import UserError, collect_images
from acetate_krita.loras import (
    MAX_LORAS,
    MAX_STRENGTH,
    MIN_STRENGTH,
    LoraRow,
    dropped_note,
    format_rows,
    insert_name,
    parse_rows,
    request_loras,
)
from acetate_krita.model import Model
from acetate_krita.pixels import Rect
from acetate_krita.protocol import ModelsInfo, WireImage
from acetate_krita.sources import choice_key, layer_inputs, mask_inputs, picked_layers


def gradient(seed: int) -> bytes:
    """A layer whose every pixel differs (alpha graded, some fully transparent)."""
    rng = np.random.default_rng(seed)
    rgba = rng.integers(0, 256, (HEIGHT, WIDTH, 4), np.uint8)
    rgba[:, : WIDTH // 4, 3] = 0  # the left quarter unpainted
    return rgba.tobytes()


@dataclass
class LayeredDocument(FakeDocument):
    """The fake document with real per-layer pixels: `pixels` by node id (active: layer-1)."""

    pixels: dict[str, bytes] = field(
        default_factory=lambda: {"layer-1": gradient(1), "ink": gradient(2), "wash": gradient(3)}
    )

    def layers(self) -> list[tuple[str, str]]:
        return [(node_id, node_id.upper()) for node_id in self.pixels]

    def read_node(self, node_id: str) -> WireImage | None:
        data = self.pixels.get(node_id)
        return WireImage(data, WIDTH, HEIGHT) if data is not None else None

    def read_layer(self) -> WireImage:
        return WireImage(self.pixels[self.active], WIDTH, HEIGHT)


class Store:
    def __init__(self) -> None:
        self.stored: dict[str, str] = {}

    def read(self, name: str) -> str:
        return self.stored.get(name, "")

    def write(self, name: str, value: str) -> None:
        self.stored[name] = value


# -- which inputs get a picker ------------------------------------------------------------


def test_the_main_image_of_each_editing_mode_takes_any_layer() -> None:
    layer = {mode.name: [i.field for i in layer_inputs(mode)] for mode in MODES.modes}
    masks = {mode.name: [i.field for i in mask_inputs(mode)] for mode in MODES.modes}
    expected = {"fg2bg": ["fg"], "bg2fg": ["bg"], "img2img": ["image"], "inpaint": ["image"]}
    expected |= {"upscale": ["image"], "layer_on_artwork": ["canvas"]}
    assert {name: fields for name, fields in layer.items() if fields} == expected
    # fg/joint read nothing; scene's background is generated or the canvas; decompose's image
    # already has its own source choice (it decides what the result replaces).
    assert not layer["scene"] and not layer["decompose"] and not layer["fg"]
    assert masks["inpaint"] == ["mask"] and masks["img2img"] == ["mask"]
    assert masks["layer_on_artwork"] == ["selection"] and masks["decompose"] == ["selection"]
    for mode in MODES.modes:
        keys = {c.key for c in mode_controls(mode) if c.kind == SOURCE}
        assert keys == {source_key(f) for f in (*layer[mode.name], *masks[mode.name])}


# -- reading ------------------------------------------------------------------------------


def test_a_picked_layer_is_read_instead_of_the_active_one() -> None:
    document = LayeredDocument()
    fg2bg = MODES.get("fg2bg")
    assert fg2bg is not None
    images, _ = collect_images(fg2bg, document, layers={"fg": "ink"})
    assert images["fg"].data == document.pixels["ink"] != document.pixels["layer-1"]
    # The same as reading it while it is the active layer.
    document.active = "ink"
    active, _ = collect_images(fg2bg, document)
    assert active["fg"] == images["fg"]


def test_the_active_layer_instead_of_the_canvas_follows_the_active_layer() -> None:
    bg2fg = MODES.get("bg2fg")
    assert bg2fg is not None
    choices = {choice_key("bg2fg", "bg"): "layer"}
    assert picked_layers(bg2fg, choices, "wash") == {"bg": "wash"}
    assert picked_layers(bg2fg, {}, "wash") == {}  # the declared source: the canvas
    document = LayeredDocument(active="wash")
    images, _ = collect_images(bg2fg, document, layers=picked_layers(bg2fg, choices, "wash"))
    assert images["bg"].data == document.pixels["wash"] and document.reads == []


def test_a_mask_from_a_layers_alpha_is_that_alpha_exactly() -> None:
    document = LayeredDocument(selection=Rect(8, 4, 16, 12))
    inpaint = MODES.get("inpaint")
    assert inpaint is not None
    images, bounds = collect_images(inpaint, document, layers={"mask": "wash"})
    alpha = document.pixels["wash"][3::4]
    assert images["mask"] == WireImage(alpha, WIDTH, HEIGHT)  # canvas-sized, graded
    assert len(set(alpha)) > 2 and bounds is None  # not the selection's


def test_a_mask_placed_on_the_canvas_is_cropped_to_the_layers_painted_pixels() -> None:
    document = LayeredDocument()
    artwork = MODES.get("layer_on_artwork")
    assert artwork is not None
    images, bounds = collect_images(artwork, document, layers={"selection": "ink"})
    # The left quarter is unpainted: the mask starts right of it, like a cropped selection.
    assert bounds == Rect(WIDTH // 4, 0, WIDTH - WIDTH // 4, HEIGHT)
    alpha = np.frombuffer(document.pixels["ink"], np.uint8).reshape(HEIGHT, WIDTH, 4)[..., 3]
    expected = alpha[:, WIDTH // 4 :].tobytes()
    assert images["selection"] == WireImage(expected, WIDTH - WIDTH // 4, HEIGHT)


def test_a_picked_layer_that_is_gone_is_an_error_naming_the_input() -> None:
    document = LayeredDocument()
    fg2bg, inpaint = MODES.get("fg2bg"), MODES.get("inpaint")
    assert fg2bg is not None and inpaint is not None
    with pytest.raises(UserError, match="Foreground is no longer in the document"):
        collect_images(fg2bg, document, layers={"fg": "deleted"})
    document.pixels["empty"] = bytes(WIDTH * HEIGHT * 4)
    images, _ = collect_images(inpaint, document, layers={"mask": "empty"})
    assert images["mask"].data == bytes(WIDTH * HEIGHT)  # uncropped: an empty mask is sent
    artwork = MODES.get("layer_on_artwork")
    assert artwork is not None
    with pytest.raises(UserError, match="no painted pixels"):
        collect_images(artwork, document, layers={"selection": "empty"})


@pytest.mark.asyncio
async def test_choices_are_remembered_per_mode(http: AiohttpTransport) -> None:
    store = Store()
    model = make_model(FakeDocuments(LayeredDocument()), http, store)
    model.modes = MODES
    model.mode = "fg2bg"
    model.set_source_choice("fg", "ink")
    model.mode = "inpaint"
    assert model.source_choice("image") == ""  # another mode: still the active layer
    model.set_source_choice("mask", "wash")
    assert store.stored == {"source.fg2bg.fg": "ink", "source.inpaint.mask": "wash"}
    again = make_model(FakeDocuments(LayeredDocument()), http, store)
    again.modes = MODES
    again.mode = "fg2bg"
    assert again.source_choice("fg") == "ink"
    again.mode = "inpaint"
    assert again.source_choice("mask") == "wash" and again.source_choice("image") == ""


@pytest_asyncio.fixture
async def http() -> AsyncIterator[AiohttpTransport]:
    transport = AiohttpTransport()
    yield transport
    await transport.close()


# -- LoRAs and embeddings -----------------------------------------------------------------


def test_rows_survive_the_store_and_garbage_does_not_break_them() -> None:
    rows = (LoraRow("a", 0.5), LoraRow("sub/b", -2.0))
    assert parse_rows(format_rows(rows)) == rows
    assert parse_rows("") == () and parse_rows("{not json") == () and parse_rows('{"a": 1}') == ()
    odd = '[{"name": "a", "strength": 9}, {"name": ""}, 3, {"name": "c", "strength": "x"}]'
    assert parse_rows(odd) == (LoraRow("a", MAX_STRENGTH), LoraRow("c", 1.0))
    many = json.dumps([{"name": f"l{i}"} for i in range(MAX_LORAS + 3)])
    assert len(parse_rows(many)) == MAX_LORAS


def test_the_request_names_each_listed_lora_once() -> None:
    rows = [LoraRow("a", 0.5), LoraRow("gone"), LoraRow("a", 2.0), LoraRow("b", MIN_STRENGTH)]
    assert request_loras(rows, ["a", "b"]) == [
        {"name": "a", "strength": 0.5},
        {"name": "b", "strength": MIN_STRENGTH},
    ]
    assert dropped_note(["gone"]) == "Left out: gone is no longer on the server for this model."
    assert dropped_note([]) == ""


def test_an_embedding_goes_in_at_the_cursor_spaced_from_its_neighbours() -> None:
    assert insert_name("a cat", 5, "emb") == ("a cat emb", 9)
    assert insert_name("a cat", 1, "emb") == ("a emb cat", 5)
    assert insert_name("a,cat", 2, "emb") == ("a, emb cat", 6)
    assert insert_name("", 3, "emb") == ("emb", 3)


def get(server: ServerProcess, path: str) -> Any:
    with urllib.request.urlopen(server.url + path, timeout=30) as response:
        return json.loads(response.read())


def layer_rgba(server: ServerProcess, job_id: str, file: str) -> bytes:
    url = f"{server.url}/api/jobs/{job_id}/layers/{file}?format=rgba"
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read())


@pytest.fixture(scope="module")
def lora_server(
    acetate_server: ServerProcess, tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The shared server when its store has LoRAs for both tiny bases (the tiny store's
    `tiny-style-*`), else one on a copy of the store with test LoRAs."""
    families = {
        (lora["family"], lora["tiny"]) for lora in get(acetate_server, "/api/models")["loras"]
    }
    if {("sd15", True), ("sdxl", True)} <= families:
        yield acetate_server
        return
    models = tmp_path_factory.mktemp("krita-loras") / "models"
    store_with_loras(tiny_models_dir, models)
    server = start_server(models, tmp_path_factory.mktemp("krita-lora-server"))
    yield server
    server.stop()


def test_the_plugins_lora_limits_are_the_servers(lora_server: ServerProcess) -> None:
    schemas = get(lora_server, "/api/openapi.json")["components"]["schemas"]
    field_schema = schemas["GenerateRequest"]["properties"]["loras"]["anyOf"][0]
    assert field_schema["maxItems"] == MAX_LORAS
    strength = schemas["LoraRequest"]["properties"]["strength"]
    assert (strength["minimum"], strength["maximum"]) == (MIN_STRENGTH, MAX_STRENGTH)


def test_embeddings_menu_only_when_the_server_lists_them(http: AiohttpTransport) -> None:
    base = {"name": "sd", "family": "sd15", "modes": {"fg": []}}
    model = make_model(FakeDocuments(), http)
    model.modes, model.model_name = MODES, "sd"
    model.models = ModelsInfo.from_json({"bases": [base]})
    assert model.embedding_names() is None
    items = [{"name": "e-sd", "family": "sd15"}, {"name": "e-xl", "family": "sdxl"}]
    model.models = ModelsInfo.from_json({"bases": [base], "embeddings": items})
    assert model.embedding_names() == ["e-sd"]


async def connected(server: ServerProcess, http: AiohttpTransport, store: Store) -> Model:
    model = make_model(FakeDocuments(LayeredDocument()), http, store)
    model.server_url = server.url
    assert await model.connect()
    return model


@pytest.mark.asyncio
async def test_lora_rows_per_mode_and_family_reach_the_request(
    lora_server: ServerProcess, http: AiohttpTransport
) -> None:
    store = Store()
    model = await connected(lora_server, http, store)
    try:
        model.mode, model.model_name = "fg", "tiny-sd15"
        assert model.takes_loras()
        sd15 = model.lora_names()
        infos = {lora.name: lora for lora in model.models.loras}
        assert sd15 and all(infos[n].family == "sd15" and infos[n].tiny for n in sd15)
        model.set_lora_rows([LoraRow(sd15[0], 0.75)])
        fg = model.mode_info
        assert fg is not None
        assert model.request_options(fg)["loras"] == [{"name": sd15[0], "strength": 0.75}]
        assert json.loads(store.stored["loras.fg.sd15"]) == [{"name": sd15[0], "strength": 0.75}]
        model.model_name = "tiny-sdxl"  # another family: its own rows (none yet)
        assert model.lora_rows() == ((), ()) and "loras" not in model.request_options(fg)
        assert set(model.lora_names()).isdisjoint(sd15)
        model.model_name = "tiny-sd15"
        assert model.lora_rows()[0] == (LoraRow(sd15[0], 0.75),)
        # A remembered LoRA the server no longer lists is left out, and said so.
        store.stored["loras.fg.sd15"] = format_rows([LoraRow("gone"), LoraRow(sd15[0])])
        again = await connected(lora_server, http, store)
        again.mode, again.model_name = "fg", "tiny-sd15"
        assert again.lora_rows() == ((LoraRow(sd15[0]),), ("gone",))
        assert again.request_options(fg)["loras"] == [{"name": sd15[0], "strength": 1.0}]
        again.close()
    finally:
        model.close()


@pytest.mark.asyncio
async def test_a_lora_changes_the_result_and_is_recorded(
    lora_server: ServerProcess, http: AiohttpTransport
) -> None:
    model = await connected(lora_server, http, Store())
    try:
        model.mode, model.model_name, model.prompt = "fg", "tiny-sd15", "a bottle"
        for name, value in {"steps": 2, "width": 64, "height": 64, "decode": "fast"}.items():
            model.set_option(name, value)
        model.random_seed, model.seed = False, 5
        lora = model.lora_names()[0]
        model.set_lora_rows([LoraRow(lora, 1.5)])
        with_lora = await asyncio.wait_for(model.generate(), 120)
        assert model.error == "" and with_lora is not None, model.error
        assert with_lora.parameters["loras"] == [{"name": lora, "strength": 1.5}]
        model.set_lora_rows([])
        without = await asyncio.wait_for(model.generate(), 120)
        assert model.error == "" and without is not None and not without.parameters.get("loras")
        first, second = (
            layer_rgba(lora_server, record.id, record.layers[0].file)
            for record in (with_lora, without)
        )
        assert first != second  # same seed, same prompt: only the LoRA differs
    finally:
        model.close()


@pytest.mark.asyncio
async def test_inpaint_from_a_picked_layer_with_a_layers_alpha_as_mask(
    acetate_server: ServerProcess, http: AiohttpTransport
) -> None:
    """The server records the images it got ({width, height, sha256} of their bytes): the
    picked layer's pixels and the other layer's alpha, exactly."""
    document = LayeredDocument()
    model = make_model(FakeDocuments(document), http)
    model.server_url = acetate_server.url
    try:
        assert await model.connect()
        model.mode, model.model_name, model.prompt = "inpaint", "tiny-sdxl", "a star"
        model.set_option("steps", 1)
        model.random_seed, model.seed = False, 3
        model.set_source_choice("image", "ink")
        model.set_source_choice("mask", "wash")
        record = await asyncio.wait_for(model.generate(), 120)
        assert model.error == "" and record is not None, model.error
    finally:
        model.close()
    sent = record.parameters
    assert sent["image"]["sha256"] == hashlib.sha256(document.pixels["ink"]).hexdigest()
    alpha = document.pixels["wash"][3::4]
    assert sent["mask"] == {
        "width": WIDTH,
        "height": HEIGHT,
        "sha256": hashlib.sha256(alpha).hexdigest(),
    }
