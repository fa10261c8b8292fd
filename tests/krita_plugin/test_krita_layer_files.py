"""The docker's form against the real server: every option of every mode has a control, every
part with a choice of LayerDiffusion files has a picker, and a picked (trained) file reaches the
request and comes back in the result record. The server runs on a copy of the tiny store with
a trained SD1.5 decoder (tests/support/trained.py)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp_transport import AiohttpTransport
from server_process import ServerProcess, start_server
from support.trained import SD15_DECODER, TRAINED_NAME, models_with_trained_decoder, sha256_of
from test_model import FakeDocument, FakeDocuments

from acetate_krita.choices import BY_STRUCTURE
from acetate_krita.form import (
    FILE,
    LORAS,
    REQUEST_FIELD_CONTROLS,
    STRUCTURE,
    covered_by,
    editor_kind,
    file_key,
    mode_controls,
)
from acetate_krita.inputs import layout_lists
from acetate_krita.insertion import DOCUMENT_OPTIONS
from acetate_krita.layer_files import file_label, file_parts
from acetate_krita.loras import takes_loras
from acetate_krita.model import Model
from acetate_krita.protocol import BaseModelInfo, ModelsInfo, ModesInfo

OFFICIAL = f"{SD15_DECODER}.safetensors"


@pytest.fixture(scope="module")
def trained_models(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("krita-trained") / "models"
    models_with_trained_decoder(tiny_models_dir, root)
    return root


@pytest.fixture(scope="module")
def trained_server(
    trained_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = start_server(trained_models, tmp_path_factory.mktemp("krita-trained-server"))
    yield server
    server.stop()


def get(server: ServerProcess, path: str) -> Any:
    with urllib.request.urlopen(server.url + path, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def published(trained_server: ServerProcess) -> tuple[ModesInfo, ModelsInfo]:
    return (
        ModesInfo.from_json(get(trained_server, "/api/modes")),
        ModelsInfo.from_json(get(trained_server, "/api/models")),
    )


class Store:
    def __init__(self, stored: dict[str, str] | None = None) -> None:
        self.stored = dict(stored or {})

    def read(self, name: str) -> str:
        return self.stored.get(name, "")

    def write(self, name: str, value: str) -> None:
        self.stored[name] = value


@pytest_asyncio.fixture
async def http() -> AsyncIterator[AiohttpTransport]:
    transport = AiohttpTransport()
    yield transport
    await transport.close()


def offline_model(
    http: AiohttpTransport, published: tuple[ModesInfo, ModelsInfo], store: Store
) -> Model:
    """A model holding the server's answers, without connecting (form logic only)."""
    model = Model(FakeDocuments(), http, asyncio.ensure_future, store)
    model.modes, model.models = published
    return model


#: Request fields the docker's fixed controls fill (mode, model, prompt, seed, batch) or the
#: plugin itself (the selection's bounds, the client id): no per-mode control.
FIXED_FIELDS = {"mode", "model", "prompt", "seed", "batch", "selection_bounds", "client_id"}


def test_every_option_and_file_part_of_every_mode_has_a_control(
    published: tuple[ModesInfo, ModelsInfo], trained_server: ServerProcess
) -> None:
    modes, models = published
    assert modes.modes and models.bases
    # Every request field has a home: a fixed control, a mode's option, list or image, or a
    # control of its own (layer files, LoRAs), checked per mode below.
    request = get(trained_server, "/api/openapi.json")["components"]["schemas"]
    declared = {
        name
        for mode in modes.modes
        for name in (
            *(o.name for o in mode.options),
            *(s.field for s in mode.lists),
            *(i.field for i in mode.inputs),
        )
    }
    homeless = set(request["GenerateRequest"]["properties"]) - FIXED_FIELDS - declared
    assert homeless <= set(REQUEST_FIELD_CONTROLS), f"request fields without a control: {homeless}"
    hidden = set(BY_STRUCTURE)
    pickers = set()
    for mode in modes.modes:
        for base in models.bases:
            parts = file_parts(mode, base, models.layer_files)
            loras = takes_loras(mode, base)
            controls = {control.key: control for control in mode_controls(mode, parts, loras)}
            # LoRAs change the UNet of any mode that runs on the base's family.
            family = mode.family(base.family)
            if family is not None and family.supported:
                lora_rows = controls.get(LORAS)
                assert lora_rows is not None, f"{mode.name} on {base.name}: no LoRA rows"
                assert lora_rows.kind == REQUEST_FIELD_CONTROLS["loras"]
            for option in mode.options:
                if option.name in DOCUMENT_OPTIONS:
                    # Filled from the document, never a control (the reason is the value).
                    assert option.name not in controls, DOCUMENT_OPTIONS[option.name]
                    continue
                if option.name in hidden or option.depends_on in hidden:
                    # Edited in the Structure section (a layer steers the result).
                    assert option.name not in controls and covered_by(option) == STRUCTURE
                    assert controls[STRUCTURE].kind == STRUCTURE, mode.name
                    continue
                control = controls.get(option.name)
                assert control is not None, f"{mode.name}: no control for {option.name}"
                assert editor_kind(option) is not None, f"{mode.name}.{option.name}: {option.type}"
                assert control.advanced == option.advanced
            layouts = {spec.field for spec in layout_lists(mode)}
            for spec in mode.lists:
                for option in spec.item_options:
                    # A layout list's regions come from the layers of a group, not a control.
                    if not (spec.field in layouts and option.type == "region"):
                        assert editor_kind(option) is not None, f"{spec.field}.{option.name}"
            family = mode.family(base.family)
            for part in parts:
                assert family is not None and part.part in family.files
                control = controls.get(file_key(part.part))
                if len(part.files) > 1:
                    assert control is not None and control.kind == FILE and control.advanced
                    pickers.add((mode.name, base.name, part.part))
                else:
                    assert control is None  # one file (or none): nothing to choose
            declared = family.files if family is not None and family.supported else {}
            assert {part.part for part in parts} == set(declared)
    # The trained decoder gives every SD1.5 mode with a decoder a choice; SDXL modes with a
    # transparency patch choose between its official kinds.
    assert ("fg", "tiny-sd15", "decoder") in pickers
    assert ("bg2fg", "tiny-sd15", "decoder") in pickers
    assert ("fg", "tiny-sdxl", "unet_patch") in pickers
    assert ("fg", "tiny-sd15", "attention_sharing") not in pickers
    # Every option filled from the document is one the server declares (no stale exception).
    assert set(DOCUMENT_OPTIONS) <= {o.name for mode in modes.modes for o in mode.options}


def test_the_picker_lists_fitting_files_and_marks_trained_ones(
    published: tuple[ModesInfo, ModelsInfo],
) -> None:
    modes, models = published
    fg, sd15, sdxl = modes.get("fg"), models.base("tiny-sd15"), models.base("tiny-sdxl")
    assert fg is not None and sd15 is not None and sdxl is not None
    parts = {part.part: part for part in file_parts(fg, sd15, models.layer_files)}
    decoder = parts["decoder"]
    assert [f.name for f in decoder.files] == [OFFICIAL, TRAINED_NAME]  # official first
    assert [file_label(f) for f in decoder.files] == [
        SD15_DECODER,
        "studio-sd15-transparent-decoder (trained, 7 steps)",
    ]
    assert decoder.label == "Decoder file"
    # A file fits only its own family (and tiny files only tiny bases).
    xl_parts = file_parts(fg, sdxl, models.layer_files)
    assert all(f.family == "sdxl" and f.tiny for p in xl_parts for f in p.files)
    assert not any(f.name == TRAINED_NAME for p in xl_parts for f in p.files)
    real = BaseModelInfo(name="real-sd15", family="sd15", tiny=False, missing={}, unsupported={})
    assert all(part.files == () for part in file_parts(fg, real, models.layer_files))


@pytest.mark.asyncio
async def test_the_choice_is_sent_remembered_per_mode_and_dropped_when_it_no_longer_fits(
    published: tuple[ModesInfo, ModelsInfo], http: AiohttpTransport
) -> None:
    store = Store()
    model = offline_model(http, published, store)
    model.mode, model.model_name, model.prompt = "fg", "tiny-sd15", "glass"
    fg = model.mode_info
    assert fg is not None
    assert "layer_files" not in model.parameters(fg).to_json()  # all Default: nothing sent
    model.set_layer_file("decoder", TRAINED_NAME)
    assert store.stored == {"layer_file.fg.sd15.decoder": TRAINED_NAME}
    assert model.layer_file("decoder") == TRAINED_NAME
    assert model.parameters(fg).to_json()["layer_files"] == [TRAINED_NAME]
    # Another base: the SD1.5 file does not fit, Default silently (and nothing is sent).
    model.model_name = "tiny-sdxl"
    assert model.layer_file("decoder") is None
    assert "layer_files" not in model.parameters(fg).to_json()
    model.model_name = "tiny-sd15"
    assert model.layer_file("decoder") == TRAINED_NAME  # remembered for this base's family
    # Per mode: bg2fg has its own choice.
    model.mode = "bg2fg"
    bg2fg = model.mode_info
    assert bg2fg is not None and model.layer_file("decoder") is None
    assert "layer_files" not in model.parameters(bg2fg).to_json()
    model.set_layer_file("decoder", OFFICIAL)
    assert model.parameters(bg2fg).to_json()["layer_files"] == [OFFICIAL]
    model.set_layer_file("decoder", None)  # back to Default
    assert store.stored["layer_file.bg2fg.sd15.decoder"] == ""
    assert "layer_files" not in model.parameters(bg2fg).to_json()
    # Remembered across sessions (kritarc), but only while the server still lists the file.
    again = offline_model(http, published, Store(store.stored))
    again.mode, again.model_name = "fg", "tiny-sd15"
    assert again.layer_file("decoder") == TRAINED_NAME
    models = published[1]
    without = [f for f in models.layer_files if f.name != TRAINED_NAME]
    again.models = ModelsInfo(models.bases, models.default, layer_files=tuple(without))
    assert again.layer_file("decoder") is None
    assert "layer_files" not in again.parameters(fg).to_json()
    assert not any(p.choosable for p in again.file_parts() if p.part == "decoder")


@pytest.mark.asyncio
async def test_a_picked_trained_file_runs_and_the_record_names_it(
    trained_server: ServerProcess, trained_models: Path, http: AiohttpTransport
) -> None:
    document = FakeDocument()
    model = Model(FakeDocuments(document), http, asyncio.ensure_future, Store())
    model.server_url = trained_server.url
    assert await model.connect()
    model.mode, model.prompt, model.model_name = "fg", "glass", "tiny-sd15"
    model.random_seed, model.seed = False, 7
    for name, value in (("steps", 1), ("decode", "fast"), ("width", 64), ("height", 64)):
        model.set_option(name, value)
    model.set_layer_file("decoder", TRAINED_NAME)
    record = await asyncio.wait_for(model.generate(), 120)
    assert model.error == "" and record is not None, model.error
    assert record.parameters["layer_files"] == [TRAINED_NAME]
    path = trained_models / "tiny" / "layer_model" / TRAINED_NAME
    assert record.files[SD15_DECODER] == {"name": TRAINED_NAME, "sha256": sha256_of(path)}
    assert document.tree() == [("artwork", []), ("glass #1", ["foreground"])]
    model.close()
