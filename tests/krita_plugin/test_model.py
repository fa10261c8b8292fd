"""The docker's model: inputs per mode, form → request, and whole jobs on the real server.

The document is an in-memory fake of the model's `Document` port (pure-logic tests only);
the same paths run on real Krita documents in test_krita_e2e.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp_transport import AiohttpTransport
from server_process import ServerProcess, free_port

from acetate_krita.client import TOO_OLD
from acetate_krita.inputs import (
    LayoutItem,
    Placement,
    UserError,
    collect_images,
    collect_layout,
    generatable,
    layout_lists,
)
from acetate_krita.model import Model
from acetate_krita.pixels import LayerPixels, Rect
from acetate_krita.protocol import LayerRecord, ModeInfo, ModelsInfo, ModesInfo, WireImage

WIDTH, HEIGHT = 80, 48
MODES_JSON = Path(__file__).resolve().parents[1] / "data" / "modes.json"


MODES = ModesInfo.from_json(json.loads(MODES_JSON.read_text()))
#: Pixels for placement tests, which only look at where layers go.
NO_PIXELS = LayerPixels(b"")


@dataclass
class Node:
    id: str
    name: str
    children: list[Node] = field(default_factory=list)
    layer: LayerRecord | None = None
    pixels: LayerPixels | None = None
    visible: bool = True
    #: A layout child: its painted pixels.
    item: LayoutItem | None = None
    group: bool = False


@dataclass
class FakeDocument:
    """Top-level nodes bottom → top; groups hold layers bottom → top; one "undo step" each."""

    selection: Rect | None = None
    name: str = "fake"
    color_depth: str = "U8"
    nodes: list[Node] = field(default_factory=lambda: [Node("layer-1", "artwork")])
    steps: list[str] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(2))
    active: str = "layer-1"
    #: What the canvas reads were ("canvas", or "canvas without <id>").
    reads: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        return True

    def read_canvas(self) -> WireImage:
        self.reads.append("canvas")
        return WireImage(bytes([10, 20, 30, 255]) * (WIDTH * HEIGHT), WIDTH, HEIGHT)

    def read_canvas_without(self, node_id: str) -> WireImage:
        self.reads.append(f"canvas without {node_id}")
        return WireImage(bytes([1, 2, 3, 255]) * (WIDTH * HEIGHT), WIDTH, HEIGHT)

    def _node(self, node_id: str) -> Node | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def active_group_id(self) -> str | None:
        node = self._node(self.active)
        return node.id if node is not None and node.group else None

    def groups(self) -> list[tuple[str, str]]:
        return [(n.id, n.name) for n in self.nodes if n.group]

    def read_layout(self, group: str) -> list[LayoutItem]:
        node = self._node(group)
        assert node is not None
        return [c.item for c in node.children if c.visible and c.item is not None]

    def visible(self, node_id: str) -> bool:
        node = self._node(node_id)
        return node is not None and node.visible

    def set_visible(self, node_id: str, visible: bool) -> None:
        node = self._node(node_id)
        assert node is not None
        node.visible = visible

    def add_layout(self, name: str, items: Sequence[tuple[str, Rect]]) -> str:
        """A top-level layout group whose children are painted boxes; it becomes active."""
        group = Node(f"layout-{len(self.nodes)}", name, group=True)
        for title, rect in items:
            mask = WireImage(b"\xff" * (rect.width * rect.height), rect.width, rect.height)
            item = LayoutItem(title, mask, rect.left, rect.top)
            group.children.append(Node(f"{group.id}-{len(group.children)}", title, item=item))
        self.nodes.append(group)
        self.active = group.id
        return group.id

    def read_layer(self) -> WireImage:
        return WireImage(bytes([200, 0, 0, 128]) * (WIDTH * HEIGHT), WIDTH, HEIGHT)

    def read_selection(self, crop: bool) -> tuple[WireImage, Rect] | None:
        if self.selection is None:
            return None
        rect = self.selection
        if crop:
            return WireImage(b"\xff" * (rect.width * rect.height), rect.width, rect.height), rect
        mask = bytes(
            255 if rect.left <= x < rect.right and rect.top <= y < rect.bottom else 0
            for y in range(HEIGHT)
            for x in range(WIDTH)
        )
        return WireImage(mask, WIDTH, HEIGHT), rect

    def active_layer_id(self) -> str | None:
        return self.active

    def visible_layer_ids(self) -> list[str]:
        return [n.id for n in self.nodes if n.visible]

    def top_layer_id(self) -> str | None:
        return self.nodes[-1].id if self.nodes else None

    def _new(
        self, name: str, layer: LayerRecord | None = None, pixels: LayerPixels | None = None
    ) -> Node:
        return Node(f"n{next(self._ids)}", name, layer=layer, pixels=pixels)

    def insert_group(
        self, name: str, layers: Sequence[tuple[LayerRecord, LayerPixels]], above: str | None
    ) -> str:
        group = self._new(name)
        group.children = [self._new(layer.name, layer, pixels) for layer, pixels in layers]
        index = next((i for i, n in enumerate(self.nodes) if n.id == above), len(self.nodes) - 1)
        self.nodes.insert(index + 1, group)
        self.steps.append(f"add group {name}")
        return group.id

    def insert_layer(self, group: str, layer: LayerRecord, pixels: LayerPixels, above: str) -> str:
        parent = next(n for n in self.nodes if n.id == group)
        index = next(i for i, n in enumerate(parent.children) if n.id == above)
        node = self._new(layer.name, layer, pixels)
        parent.children.insert(index + 1, node)
        self.steps.append(f"add {layer.name}")
        return node.id

    def child_ids(self, group: str) -> list[str]:
        return [c.id for c in next(n for n in self.nodes if n.id == group).children]

    def exists(self, node_id: str) -> bool:
        return any(n.id == node_id for n in self.nodes)

    def remove(self, node_ids: Sequence[str]) -> int:
        before = len(self.nodes)
        self.nodes = [n for n in self.nodes if n.id not in node_ids]
        return before - len(self.nodes)

    def tree(self) -> list[tuple[str, list[str]]]:
        return [(n.name, [c.name for c in n.children]) for n in self.nodes]

    def shown(self) -> list[tuple[str, bool]]:
        return [(n.name, n.visible) for n in self.nodes]


@dataclass
class FakeDocuments:
    document: FakeDocument | None = None
    opened: list[str] = field(default_factory=list)

    def active(self) -> FakeDocument | None:
        return self.document

    def open(self, path: str) -> None:
        self.opened.append(path)


@pytest.mark.parametrize("mode", MODES.names)
def test_each_mode_reads_only_what_it_needs(mode: str) -> None:
    document = FakeDocument(selection=Rect(8, 4, 16, 12))
    info = MODES.get(mode)
    assert info is not None
    images, bounds = collect_images(info, document, {"control": "none"})
    expected = {
        "fg": set(),
        "joint": set(),
        "fg2bg": {"fg"},
        "bg2fg": {"bg"},
        "img2img": {"image", "mask"},
        "inpaint": {"image", "mask"},
        "layer_on_artwork": {"canvas", "selection"},
        "upscale": {"image"},
        # the canvas as the scene's background (objects come from a layout group)
        "scene": {"bg"},
        # the active layer, and only the selected part of it is split
        "decompose": {"image", "selection"},
    }[mode]
    assert set(images) == expected
    if mode == "layer_on_artwork":
        assert bounds == Rect(8, 4, 16, 12)
        assert (images["selection"].width, images["selection"].height) == (16, 12)
    else:
        assert bounds is None
    if "mask" in images:
        assert (images["mask"].width, images["mask"].height) == (WIDTH, HEIGHT)
    # control_image only goes with control (the docker reads it from its structure layer).
    with_control, _ = collect_images(info, document, {"control": "canny"})
    takes_control = any(image.field == "control_image" for image in info.inputs)
    assert set(with_control) == expected | ({"control_image"} if takes_control else set())


def test_no_selection_means_the_whole_canvas() -> None:
    document = FakeDocument(selection=None)
    mode = MODES.get
    images, bounds = collect_images(mode("layer_on_artwork"), document)  # type: ignore[arg-type]
    assert set(images) == {"canvas"} and bounds is None
    images, _ = collect_images(mode("inpaint"), document)  # type: ignore[arg-type]
    assert images["mask"].data == b"\xff" * (WIDTH * HEIGHT)
    images, _ = collect_images(mode("img2img"), document)  # type: ignore[arg-type]
    assert "mask" not in images


DUMMY = ModeInfo.from_json(
    {
        "name": "dummy_parts",
        "label": "Parts",
        "layers": [
            {"name": "part_{i}", "count_from": "parts"},
            {"name": "blended", "visible": False},
        ],
    }
)


def layer(name: str, batch_index: int = 0) -> LayerRecord:
    suffix = "" if batch_index == 0 else f"_{batch_index}"
    return LayerRecord(name, batch_index, f"{name}{suffix}.png", 1, 2, 3, 4, name != "blended")


def test_layers_stack_in_declared_order_whatever_the_arrival_order() -> None:
    document = FakeDocument()
    placement = Placement(document, DUMMY, "", {"parts": 3}, "layer-1")
    assert placement.add(layer("part_0", 1), NO_PIXELS)  # item 1 first: its group goes in at once
    assert not placement.add(layer("blended"), NO_PIXELS)  # item 0: waits for its lowest layer
    assert not placement.add(layer("part_2"), NO_PIXELS)
    assert placement.add(layer("part_0"), NO_PIXELS)  # the group, with everything that waited
    assert placement.add(layer("part_1"), NO_PIXELS)
    assert placement.add(layer("blended", 1), NO_PIXELS)
    assert placement.add(layer("part_2", 1), NO_PIXELS)
    assert not placement.add(layer("part_1"), NO_PIXELS)  # already in
    placement.finish()
    assert document.tree() == [
        ("artwork", []),
        ("Parts #1", ["part_0", "part_1", "part_2", "blended"]),
        ("Parts #2", ["part_0", "part_2", "blended"]),
    ]
    assert document.steps == [
        "add group Parts #2", "add group Parts #1", "add part_1", "add blended", "add part_2",
    ]  # fmt: skip
    blended = document.nodes[1].children[-1].layer
    assert blended is not None and not blended.visible
    assert placement.group_ids == [document.nodes[1].id, document.nodes[2].id]


def test_a_group_whose_lowest_layer_never_came_goes_in_at_the_end() -> None:
    document = FakeDocument()
    placement = Placement(document, DUMMY, "a cat", {"parts": 1}, None)
    assert not placement.add(layer("blended"), NO_PIXELS)
    placement.finish()
    assert document.tree() == [("artwork", []), ("a cat #1", ["blended"])]


def make_model(documents: FakeDocuments, http: AiohttpTransport, store: Any = None) -> Model:
    return Model(documents, http, asyncio.ensure_future, store)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[AiohttpTransport]:
    transport = AiohttpTransport()
    yield transport
    await transport.close()


BASES = [
    {"name": "xl", "family": "sdxl", "modes": {"fg": []}, "unsupported_modes": {"joint": "no"}},
    {"name": "sd", "family": "sd15", "modes": {"fg": [], "joint": []}},
]


def connected_model(http: AiohttpTransport, store: Any = None) -> Model:
    """A model that has the server's answers (modes.json, two bases) without a server."""
    model = make_model(FakeDocuments(), http, store)
    model.modes = MODES
    model.models = ModelsInfo.from_json({"default_base": "xl", "bases": BASES})
    return model


@pytest.mark.asyncio
async def test_form_to_request_fields(http: AiohttpTransport) -> None:
    model = connected_model(http)
    model.mode, model.prompt = "fg", "  a cat  "
    fg = MODES.get("fg")
    assert fg is not None
    params = model.parameters(fg)
    assert params.prompt == "a cat" and params.seed is None
    data = params.to_json()
    # Only what the user set is sent; the form shows the server's defaults for the rest.
    assert data == {"mode": "fg", "prompt": "a cat", "batch": 1, "model": "xl"}
    assert (model.option_value("width"), model.option_value("steps")) == (1024, 20)
    assert model.option_value("scheduler") == "dpm++_2m_sde_karras"
    model.set_option("width", 512)
    model.set_option("control_strength", 0.5)
    data = model.parameters(fg).to_json()
    assert data["width"] == 512 and "control_strength" not in data  # only with a layer
    model.random_seed, model.seed = False, 2**32 - 1
    model.set_option("steps", 7)
    model.set_option("cfg", 4.5)
    model.set_option("layer_prompts", {"foreground": " glass ", "background": ""})
    data = model.parameters(fg).to_json()
    assert (data["seed"], data["steps"], data["cfg"]) == (2**32 - 1, 7, 4.5)
    assert data["layer_prompts"] == {"foreground": "glass"}
    bg2fg = MODES.get("bg2fg")
    assert bg2fg is not None
    model.mode = "bg2fg"
    data = model.parameters(bg2fg).to_json()
    assert "width" not in data and data["steps"] == 7 and data["cfg"] == 4.5
    assert set(data) - {"mode", "prompt", "batch", "model", "seed"} <= {
        option.name for option in bg2fg.options
    }


@pytest.mark.asyncio
async def test_model_family_sets_the_default_size(http: AiohttpTransport) -> None:
    model = connected_model(http)
    assert model.model_name == "xl" and model.option_value("width") == 1024
    model.set_option("width", 640)
    model.set_option("strength", 0.5)
    assert model.option_value("width") == 640
    model.model_name = "sd"
    assert model.option_value("width") == 512  # the family changed: size follows it
    assert model.option_value("strength") == 0.5
    model.mode = "joint"
    assert model.mode_problem == ""
    model.model_name = "xl"
    assert model.mode_problem == "no"


@pytest.mark.asyncio
async def test_option_values_persist_in_the_store(http: AiohttpTransport) -> None:
    stored = {"steps": "0", "cfg": "6.5", "strength": "0.3", "decode": "fast", "scale": "99"}
    written: dict[str, str] = {}

    class Store:
        def read(self, name: str) -> str:
            return stored.get(name, "")

        def write(self, name: str, value: str) -> None:
            written[name] = value

    model = connected_model(http, Store())
    assert model.option_value("steps") == 20  # "0" was "Auto" before /api/modes
    assert model.option_value("cfg") == 6.5 and model.option_value("decode") == "fast"
    model.mode = "upscale"
    assert model.option_value("strength") == 0.3 and model.option_value("scale") == 2.0
    model.set_option("steps", 9)
    model.set_option("scheduler", None)
    assert written == {"steps": "9", "scheduler": ""}


@pytest.mark.asyncio
async def test_list_inputs_stay_within_their_limits(http: AiohttpTransport) -> None:
    parts = {
        "name": "dummy_parts",
        "label": "Parts",
        "prompt_required": False,
        "lists": [
            {
                "field": "parts",
                "label": "Parts",
                "min_items": 1,
                "max_items": 2,
                "item_options": [
                    {"name": "prompt", "type": "text", "default": ""},
                    {"name": "seed", "type": "int", "minimum": 0},
                ],
            }
        ],
        "layers": [{"name": "part_{i}", "count_from": "parts"}],
    }
    model = make_model(FakeDocuments(), http)
    model.modes = ModesInfo.from_json({"api_version": 2, "modes": [parts]})
    assert model.mode == "dummy_parts"
    assert model.list_items("parts") == ({"prompt": "", "seed": None},)
    model.remove_item("parts", 0)
    assert len(model.list_items("parts")) == 1  # min_items
    model.add_item("parts")
    model.add_item("parts")
    assert len(model.list_items("parts")) == 2  # max_items
    model.set_item("parts", 1, "prompt", "a hat")
    model.set_item("parts", 1, "seed", 4)
    mode = model.mode_info
    assert mode is not None
    assert model.parameters(mode).to_json()["parts"] == [
        {"prompt": ""},
        {"prompt": "a hat", "seed": 4},
    ]


@pytest.mark.asyncio
async def test_a_server_without_modes_is_too_old(http: AiohttpTransport) -> None:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"version": "0.1.0", "device": "cpu"})

    app = web.Application()
    app.router.add_get("/api/health", health)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    documents = FakeDocuments(FakeDocument())
    model = make_model(documents, http)
    try:
        model.server_url = f"http://127.0.0.1:{server.port}"
        model.prompt = "x"
        await model.generate()
    finally:
        model.close()
        await server.close()
    assert model.server_too_old and model.connection_text == TOO_OLD
    assert model.error == TOO_OLD and TOO_OLD.startswith("Server too old — update Acetate")


@pytest.mark.asyncio
async def test_generate_inserts_the_servers_layers(
    acetate_server: ServerProcess, http: AiohttpTransport
) -> None:
    document = FakeDocument(selection=Rect(30, 10, 24, 16))
    documents = FakeDocuments(document)
    model = make_model(documents, http)
    model.server_url = acetate_server.url
    assert await model.connect()
    model.mode, model.prompt, model.model_name = "layer_on_artwork", "a ball", "tiny-sdxl"
    model.set_option("steps", 1)
    model.set_option("decode", "fast")
    record = await asyncio.wait_for(model.generate(), 120)
    assert model.error == "" and record is not None and not model.busy
    assert model.status.startswith("Done") and model.progress == 1.0
    assert document.tree() == [("artwork", []), ("a ball #1", ["foreground"])]
    assert model.timeline == ["inserted foreground.png", "done"]  # as soon as it was ready
    (layer,) = record.layers
    assert layer.rect == Rect(30, 10, 24, 16)
    inserted = document.nodes[1].children[0]
    assert inserted.layer == layer and inserted.pixels is not None
    assert (inserted.pixels.bits, len(inserted.pixels.data)) == (8, 4 * 24 * 16)
    sent = record.parameters
    assert sent["steps"] == 1 and sent["decode"] == "fast" and sent["margin"] == 64
    assert model.seed == record.parameters["seed"]  # random seed shown after the job
    (item,) = model.history
    assert item.thumbnail is not None and item.record == record
    path = await model.open_psd(item)
    assert path is not None and documents.opened == [path]
    with open(path, "rb") as file:
        assert file.read(4) == b"8BPS"
    await model.insert_again(item)
    assert model.error == "" and len(document.nodes) == 3
    assert model.history == (item,)  # inserting again is not a new result
    assert model.can_undo_result and model.undo_result() == 1
    assert len(document.nodes) == 2 and not model.can_undo_result
    model.close()


@pytest.mark.asyncio
async def test_cancel_ends_the_job_without_inserting(
    acetate_server: ServerProcess, http: AiohttpTransport
) -> None:
    document = FakeDocument()
    model = make_model(FakeDocuments(document), http)
    model.server_url = acetate_server.url
    assert await model.connect()
    model.mode, model.prompt, model.model_name = "fg", "x", "tiny-sdxl"
    for name, value in (("steps", 60), ("decode", "fast"), ("width", 64), ("height", 64)):
        model.set_option(name, value)
    task = asyncio.ensure_future(model.generate())
    for _ in range(600):
        if model.status.startswith("Step"):
            break
        await asyncio.sleep(0.1)
    assert model.status.startswith("Step"), (model.status, model.error)
    cancelling = model.cancel()
    assert cancelling is not None
    await cancelling
    assert await asyncio.wait_for(task, 60) is None
    assert model.status == "Cancelled" and model.error == ""
    assert document.tree() == [("artwork", [])]
    model.close()


@pytest.mark.asyncio
async def test_user_and_server_problems_end_up_in_error(http: AiohttpTransport) -> None:
    documents = FakeDocuments()
    model = connected_model(http)
    model.documents = documents
    model.prompt = "x"
    await model.generate()
    assert model.error == "Open or create a document first."
    documents.document = FakeDocument()
    model.prompt = " "
    await model.generate()
    assert model.error == "Type a prompt first."
    model.prompt = "x"
    model.server_url = f"http://127.0.0.1:{free_port()}"
    await model.generate()
    assert model.error.startswith("Cannot reach the Acetate server")
    assert model.connection_text == model.error and not model.connected and not model.busy
    model.close()


SCENE = MODES.get("scene")
LAYOUT = [
    ("a crow", Rect(4, 6, 30, 20)),
    ("a lantern", Rect(20, 10, 24, 30)),
    ("", Rect(50, 2, 8, 8)),
]


def test_a_layout_group_fills_a_list_whose_items_have_a_region() -> None:
    assert SCENE is not None
    assert [spec.field for spec in layout_lists(SCENE)] == ["objects"]
    assert [spec.field for spec in layout_lists(DUMMY)] == []
    document = FakeDocument()
    group = document.add_layout("layout", LAYOUT)
    lists, masks = collect_layout(SCENE, document, group)
    assert lists == {
        "objects": [
            {"prompt": "a crow", "region": {"left": 4, "top": 6}},
            {"prompt": "a lantern", "region": {"left": 20, "top": 10}},
            {"prompt": "", "region": {"left": 50, "top": 2}},
        ]
    }
    assert list(masks) == ["objects.0.mask", "objects.1.mask", "objects.2.mask"]
    assert (masks["objects.1.mask"].width, masks["objects.1.mask"].height) == (24, 30)
    assert masks["objects.1.mask"].channels == 1
    # an empty layout, or more layers than the list takes, is the user's to fix
    with pytest.raises(UserError, match="no visible layers"):
        collect_layout(SCENE, document, document.add_layout("empty", []))
    many = document.add_layout("many", [(f"o{i}", Rect(i, 0, 1, 1)) for i in range(17)])
    with pytest.raises(UserError, match="at most 16"):
        collect_layout(SCENE, document, many)


def test_the_background_can_be_generated_instead_of_read() -> None:
    assert SCENE is not None
    ((image, layer),) = generatable(SCENE)
    assert (image.field, layer.name) == ("bg", "background")
    document = FakeDocument()
    group = document.add_layout("layout", LAYOUT)
    images, _ = collect_images(SCENE, document, {}, without=group)
    assert set(images) == {"bg"} and document.reads == [f"canvas without {group}"]
    images, _ = collect_images(SCENE, document, {}, skip={"bg"}, without=group)
    assert images == {}
    assert generatable(MODES.get("bg2fg")) == []  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_scene_from_a_layout_group(http: AiohttpTransport) -> None:
    """The form's request: objects from the layout, not from list rows; errors in plain words."""
    assert SCENE is not None
    document = FakeDocument()
    model = connected_model(http)
    model.documents = FakeDocuments(document)
    model.mode, model.prompt = "scene", "a street"
    assert "objects" not in model.parameters(SCENE).to_json()  # filled when generating
    await model.generate()
    assert model.error.startswith("Select the layout group")
    group = document.add_layout("layout", LAYOUT)
    document.active = "layer-1"
    model.layout_group = group  # picked in the docker instead of being the active layer
    assert model.layout_group_id(document) == group
    model.layout_group = "gone"
    document.active = group
    assert model.layout_group_id(document) == group
    model.close()


@pytest.mark.asyncio
async def test_generate_a_scene_from_a_layout_group(
    acetate_server: ServerProcess, http: AiohttpTransport
) -> None:
    document = FakeDocument()
    group = document.add_layout("layout", LAYOUT)
    model = make_model(FakeDocuments(document), http)
    model.server_url = acetate_server.url
    assert await model.connect()
    model.mode, model.prompt, model.model_name = "scene", "a street", "tiny-sd15"
    model.random_seed, model.seed = False, 7
    model.set_option("steps", 1)
    model.set_option("decode", "fast")
    record = await asyncio.wait_for(model.generate(), 120)
    assert model.error == "" and record is not None, model.error
    sent = record.parameters["objects"]
    assert [o["prompt"] for o in sent] == ["a crow", "a lantern", ""]
    assert [(o["region"]["left"], o["region"]["top"]) for o in sent] == [(4, 6), (20, 10), (50, 2)]
    assert record.parameters["bg"]["sha256"]  # the canvas without the layout
    assert document.reads == [f"canvas without {group}"]
    # the result goes right above the layout group, which is hidden, not deleted
    (_, layout), (group_name, names) = document.tree()[1:]
    assert layout == ["a crow", "a lantern", ""] and group_name == "a street #1"
    assert names == [layer.name for layer in record.layers]  # bottom → top
    assert names[:2] == ["a crow", "a lantern"] and names[-1] == "blended"
    assert document.shown()[1] == ("layout", False)
    assert model.timeline[:3] == ["inserted object_0.png", "inserted object_1.png",
                                  "inserted object_2.png"]  # fmt: skip
    assert set(model.insert_seconds) >= {"object_0.png", "object_1.png", "object_2.png"}
    for layer in record.layers:
        if layer.key and layer.key.startswith("object_"):
            index = int(layer.key.removeprefix("object_"))
            region = LAYOUT[index][1]
            # each object lies inside its region
            assert region.left <= layer.left and layer.left + layer.width <= region.right
            assert region.top <= layer.top and layer.top + layer.height <= region.bottom
    # "Undo whole result" removes the group and shows the layout again
    assert model.undo_result() == 1
    assert document.shown()[1:] == [("layout", True)]
    # generated background: no bg sent, a background layer comes back
    model.set_generated("bg", True)
    record = await asyncio.wait_for(model.generate(), 120)
    assert model.error == "" and record is not None, model.error
    assert "bg" not in record.parameters
    assert document.tree()[2][1][0] == "background"
    model.close()
