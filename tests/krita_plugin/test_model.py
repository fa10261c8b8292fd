"""The docker's model: inputs per mode, form → request, and whole jobs on the real server.

The document is an in-memory fake of the model's `Document` port (pure-logic tests only);
the same paths run on real Krita documents in test_krita_e2e.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from aiohttp_transport import AiohttpTransport
from server_process import ServerProcess, free_port

from acetate_krita.inputs import collect_images
from acetate_krita.model import Model
from acetate_krita.pixels import Rect
from acetate_krita.protocol import MODES, ModelsInfo, ResultRecord, WireImage

WIDTH, HEIGHT = 80, 48


@dataclass
class FakeDocument:
    selection: Rect | None = None
    inserted: list[tuple[ResultRecord, dict[str, bytes], str | None]] = field(default_factory=list)
    name: str = "fake"

    def alive(self) -> bool:
        return True

    def read_canvas(self) -> WireImage:
        return WireImage(bytes([10, 20, 30, 255]) * (WIDTH * HEIGHT), WIDTH, HEIGHT)

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
        return "layer-1"

    def insert(
        self, record: ResultRecord, layer_pixels: Mapping[str, bytes], above: str | None
    ) -> None:
        self.inserted.append((record, dict(layer_pixels), above))


@dataclass
class FakeDocuments:
    document: FakeDocument | None = None
    opened: list[str] = field(default_factory=list)

    def active(self) -> FakeDocument | None:
        return self.document

    def open(self, path: str) -> None:
        self.opened.append(path)


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_reads_only_what_it_needs(mode: str) -> None:
    document = FakeDocument(selection=Rect(8, 4, 16, 12))
    images, bounds = collect_images(mode, document)
    expected = {
        "fg": set(),
        "joint": set(),
        "fg2bg": {"fg"},
        "bg2fg": {"bg"},
        "img2img": {"image", "mask"},
        "inpaint": {"image", "mask"},
        "layer_on_artwork": {"canvas", "selection"},
        "upscale": {"image"},
    }[mode]
    assert set(images) == expected
    if mode == "layer_on_artwork":
        assert bounds == Rect(8, 4, 16, 12)
        assert (images["selection"].width, images["selection"].height) == (16, 12)
    else:
        assert bounds is None
    if "mask" in images:
        assert (images["mask"].width, images["mask"].height) == (WIDTH, HEIGHT)


def test_no_selection_means_the_whole_canvas() -> None:
    document = FakeDocument(selection=None)
    images, bounds = collect_images("layer_on_artwork", document)
    assert set(images) == {"canvas"} and bounds is None
    images, _ = collect_images("inpaint", document)
    assert images["mask"].data == b"\xff" * (WIDTH * HEIGHT)
    images, _ = collect_images("img2img", document)
    assert "mask" not in images


def make_model(documents: FakeDocuments, http: AiohttpTransport) -> Model:
    return Model(documents, http, asyncio.ensure_future)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[AiohttpTransport]:
    transport = AiohttpTransport()
    yield transport
    await transport.close()


@pytest.mark.asyncio
async def test_form_to_request_fields(http: AiohttpTransport) -> None:
    model = make_model(FakeDocuments(), http)
    model.mode, model.prompt, model.steps, model.cfg = "fg", "  a cat  ", 0, 0.0
    params = model.parameters()
    assert params.prompt == "a cat" and params.seed is None
    assert params.steps is None and params.cfg is None  # "Auto": the server's defaults
    model.random_seed, model.seed, model.steps, model.cfg = False, 2**32 - 1, 7, 4.5
    params = model.parameters()
    assert (params.seed, params.steps, params.cfg) == (2**32 - 1, 7, 4.5)
    assert params.to_json()["width"] == 1024
    model.mode = "bg2fg"
    assert "width" not in model.parameters().to_json()


@pytest.mark.asyncio
async def test_choosing_a_model_sets_its_native_size(http: AiohttpTransport) -> None:
    model = make_model(FakeDocuments(), http)
    bases = [
        {"name": "xl", "family": "sdxl", "modes": {"fg": []}, "unsupported_modes": {"joint": "no"}},
        {"name": "sd", "family": "sd15", "modes": {"fg": [], "joint": []}},
    ]
    model.models = ModelsInfo.from_json({"default_base": "sd", "bases": bases})
    assert model.model_name == "sd" and (model.width, model.height) == (512, 512)
    model.model_name = "xl"
    assert (model.width, model.height) == (1024, 1024)
    model.mode = "joint"
    assert model.mode_problem == "no"
    model.model_name = "sd"
    assert model.mode_problem == ""


@pytest.mark.asyncio
async def test_generate_inserts_the_servers_layers(
    acetate_server: ServerProcess, http: AiohttpTransport
) -> None:
    document = FakeDocument(selection=Rect(30, 10, 24, 16))
    documents = FakeDocuments(document)
    model = make_model(documents, http)
    model.server_url = acetate_server.url
    model.mode, model.prompt, model.steps, model.decode = "layer_on_artwork", "a ball", 1, "fast"
    model.model_name = "tiny-sdxl"
    record = await asyncio.wait_for(model.generate(), 120)
    assert model.error == "" and record is not None and not model.busy
    assert model.status.startswith("Done") and model.progress == 1.0
    ((inserted, layer_pixels, above),) = document.inserted
    assert inserted == record and above == "layer-1"
    (layer,) = record.layers
    assert layer.rect == Rect(30, 10, 24, 16)
    assert len(layer_pixels[layer.file]) == 4 * 24 * 16
    assert model.seed == record.parameters["seed"]  # random seed shown after the job
    (item,) = model.history
    assert item.thumbnail is not None and item.record == record
    path = await model.open_psd(item)
    assert path is not None and documents.opened == [path]
    with open(path, "rb") as file:
        assert file.read(4) == b"8BPS"
    await model.insert_again(item)
    assert len(document.inserted) == 2 and model.error == ""
    assert model.history == (item,)  # inserting again is not a new result
    model.close()


@pytest.mark.asyncio
async def test_cancel_ends_the_job_without_inserting(
    acetate_server: ServerProcess, http: AiohttpTransport
) -> None:
    document = FakeDocument()
    model = make_model(FakeDocuments(document), http)
    model.server_url = acetate_server.url
    model.mode, model.prompt, model.steps, model.decode = "fg", "x", 60, "fast"
    model.model_name, model.width, model.height = "tiny-sdxl", 64, 64
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
    assert model.status == "Cancelled" and model.error == "" and not document.inserted
    model.close()


@pytest.mark.asyncio
async def test_user_and_server_problems_end_up_in_error(http: AiohttpTransport) -> None:
    documents = FakeDocuments()
    model = make_model(documents, http)
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
