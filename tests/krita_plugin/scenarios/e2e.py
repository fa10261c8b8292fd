"""Inside real Krita: drive the installed Acetate plugin through its docker, record what happens.

Every scenario fills the docker's widgets like a user, clicks its buttons (so the plugin's own
generate path runs: docker → model → client on QNetworkAccessManager + WebSocket → document),
then records the document tree, pixel dumps and the docker's texts. pytest (the host side of
test_krita_e2e.py) makes the assertions. A failing scenario records its traceback and the
next one still runs.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import time
import traceback
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

from artwork import (
    CANVAS_SIZE,
    DECOMPOSE_SIZE,
    SCENE_SIZE,
    SELECTION,
    STRUCTURE_SIZE,
    artwork,
    gray_artwork,
    painted,
    scene_layout,
    sketch,
)
from krita import Krita, Selection

JOB_TIMEOUT = 150.0


def docker() -> Any:
    return next(d for d in Krita.instance().dockers() if d.objectName() == "acetate")


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        await asyncio.sleep(0.05)


def set_url(url: str) -> None:
    edit = docker().url_edit
    edit.setText(url)
    edit.editingFinished.emit()


def fill_form(**values: Any) -> None:
    """Set docker widgets the way a user would (bindings carry the values to the model).

    Mode and model first: the mode's controls are built from its declaration, and a model of
    another family resets the size. Options go through the controls built for them.
    """
    d = docker()
    combos = {"mode": d.mode_combo, "model": d.model_combo}
    spins = {"batch": d.batch_spin, "seed": d.seed_spin}
    ordered = sorted(values.items(), key=lambda item: (item[0] not in combos, item[0] != "mode"))
    for name, value in ordered:
        if name in combos:
            index = combos[name].findData(value)
            assert index >= 0, (name, value)
            combos[name].setCurrentIndex(index)
        elif name in spins:
            spins[name].setValue(value)
        elif name == "prompt":
            d.prompt_edit.setPlainText(value)
        elif name == "random_seed":
            d.random_check.setChecked(value)
        elif d.model.mode_info is not None and d.model.mode_info.option(name) is None:
            continue  # the mode does not read it (FAST sets decode, which fg2bg lacks)
        elif name in d.option_editors:
            editor = d.option_editors[name]
            if hasattr(editor, "spin"):
                editor.spin.setValue(value)
            elif hasattr(editor, "combo"):
                index = editor.combo.findData(value)
                assert index >= 0, (name, value)
                editor.combo.setCurrentIndex(index)
            else:
                raise KeyError(name)
        else:
            raise KeyError(name)


async def click_and_wait(button: Any) -> Any:
    d = docker()
    d.task = None
    button.click()
    assert d.task is not None, "the button started no task"
    return await asyncio.wait_for(d.task, JOB_TIMEOUT)


async def activate(doc: Any, name: str) -> None:
    """Make a layer the active one (Krita applies it once events are processed)."""
    doc.setActiveNode(doc.nodeByName(name))
    await until(lambda: doc.activeNode().name() == name, 10, f"{name} to become active")


async def make_document(
    name: str,
    width: int,
    height: int,
    depth: str,
    opaque: bool = True,
    model: str = "RGBA",
    profile: str = "",
) -> Any:
    """Background, an `artwork` layer (active) and an empty `top` layer above it; `profile`:
    the colour profile ("": Krita's default for the depth)."""
    app = Krita.instance()
    doc = app.createDocument(width, height, name, model, depth, profile, 72.0)
    app.activeWindow().addView(doc)
    background = doc.topLevelNodes()[0]
    art = doc.createNode("artwork", "paintlayer")
    doc.rootNode().addChildNode(art, background)
    if model == "GRAYA":
        pixels = gray_artwork(width, height)
    else:
        pixels = artwork(width, height, depth, opaque=opaque)
    art.setPixelData(pixels, 0, 0, width, height)
    top = doc.createNode("top", "paintlayer")
    doc.rootNode().addChildNode(top, art)
    await asyncio.sleep(0.2)  # adding a layer activates it, a little later
    await activate(doc, "artwork")
    doc.refreshProjection()
    doc.waitForDone()
    doc.setModified(False)
    return doc


def select(doc: Any, x: int, y: int, w: int, h: int) -> None:
    selection = Selection()
    selection.select(x, y, w, h, 255)
    doc.setSelection(selection)


def tree(doc: Any) -> list[dict[str, Any]]:
    """Top-level nodes bottom → top, with their children."""

    def describe(node: Any) -> dict[str, Any]:
        return {
            "name": node.name(),
            "type": node.type(),
            "visible": node.visible(),
            "children": [describe(child) for child in node.childNodes()],
        }

    return [describe(node) for node in doc.topLevelNodes()]


def dump_result(ctx: Any, scenario: str, doc: Any, record: Any) -> list[dict[str, Any]]:
    """Each inserted layer of `record`: where it is, what it looks like, its raw pixels."""
    groups = {node.name(): node for node in doc.topLevelNodes() if node.type() == "grouplayer"}
    layers = []
    for group_name, records in record.groups(docker().model.modes.get(record.mode)):
        group = groups[group_name]
        nodes = group.childNodes()
        for index, layer in enumerate(records):
            node = nodes[index]
            rect = layer.rect
            raw = bytes(node.pixelData(rect.left, rect.top, rect.width, rect.height))
            path = ctx.workdir / f"{scenario}-{group_name[-2:].strip('#')}-{layer.name}.raw"
            path.write_bytes(raw)
            bounds = node.bounds()
            layers.append(
                {
                    "group": group_name,
                    "name": node.name(),
                    "file": layer.file,
                    "visible": node.visible(),
                    "type": node.type(),
                    "model": node.colorModel(),
                    "depth": node.colorDepth(),
                    "profile": node.colorProfile(),
                    "rect": [rect.left, rect.top, rect.width, rect.height],
                    "bounds": [bounds.x(), bounds.y(), bounds.width(), bounds.height()],
                    "dump": str(path),
                }
            )
    return layers


def record_json(record: Any) -> dict[str, Any]:
    return {
        "id": record.id,
        "mode": record.mode,
        "parameters": record.parameters,
        "canvas": [record.canvas_width, record.canvas_height],
        "layers": [layer.__dict__ for layer in record.layers],
    }


def docker_state() -> dict[str, Any]:
    d = docker()
    return {
        "status": d.status_label.text(),
        "error": d.error_label.text() if d.error_label.isVisible() else "",
        "connection": d.connection_label.text(),
        "progress": d.progress_bar.value(),
        "generate_enabled": d.generate_button.isEnabled(),
        "cancel_enabled": d.cancel_button.isEnabled(),
        "history": d.history_list.count(),
        "preview": d.preview_label.pixmap() is not None and not d.preview_label.pixmap().isNull(),
        "busy": d.model.busy,
        "undo_result_visible": d.undo_result_button.isVisible(),
    }


async def generate(ctx: Any, scenario: str, doc: Any, **form: Any) -> dict[str, Any]:
    fill_form(**form)
    record = await click_and_wait(docker().generate_button)
    assert record is not None, docker_state()
    doc.waitForDone()
    ctx.state["last_record"] = record
    return {
        "record": record_json(record),
        "layers": dump_result(ctx, scenario, doc, record),
        "tree": tree(doc),
        "modified": doc.modified(),
        "docker": docker_state(),
    }


FAST = {"model": "tiny-sdxl", "steps": 1, "decode": "fast", "random_seed": True, "batch": 1}

# -- scenarios (run in this order, sharing one Krita) --------------------------------------


async def server_down(ctx: Any) -> dict[str, Any]:
    set_url(ctx.params["dead_url"])
    model = docker().model
    await until(lambda: "Cannot reach" in model.connection_text, 20, "the status to say so")
    await make_document("down", 64, 48, "U8")
    fill_form(prompt="anything")
    await click_and_wait(docker().generate_button)
    return {"docker": docker_state(), "dot": docker().status_dot.styleSheet()}


async def connect(ctx: Any) -> dict[str, Any]:
    set_url(ctx.params["url"])
    model = docker().model
    await until(lambda: model.connected and bool(model.models.bases), 60, "the connection")
    combo = docker().model_combo
    pickers = {
        part: [picker.combo.itemText(i) for i in range(picker.combo.count())]
        for part, picker in docker().file_pickers.items()
    }
    return {
        "docker": docker_state(),
        "models": [combo.itemText(i) for i in range(combo.count())],
        "dot": docker().status_dot.styleSheet(),
        "mode": model.mode,
        "model_name": model.model_name,
        "pickers": pickers,
    }


async def layer_on_artwork(ctx: Any) -> dict[str, Any]:
    width, height = CANVAS_SIZE
    doc = await make_document("artwork-u8", width, height, "U8")
    ctx.state["doc_a"] = doc
    select(doc, *SELECTION)
    result = await generate(ctx, "loa", doc, mode="layer_on_artwork", prompt="a red ball", **FAST)
    ctx.state["loa_item"] = docker().model.history[0]
    result["undo_text"] = Krita.instance().action("edit_undo").text()
    result["timeline"] = list(docker().model.timeline)
    Krita.instance().action("edit_undo").trigger()
    doc.waitForDone()
    result["after_undo"] = tree(doc)
    await activate(doc, "artwork")
    await click_and_wait(docker().insert_button)
    doc.waitForDone()
    result["after_insert_again"] = tree(doc)
    result["docker_after"] = docker_state()
    return result


async def open_psd(ctx: Any) -> dict[str, Any]:
    d = docker()
    d.history_list.setCurrentRow(0)
    app = Krita.instance()
    before = len(app.documents())
    path = await click_and_wait(d.psd_button)
    psd = app.activeDocument()
    result = {
        "path": path,
        "documents": [before, len(app.documents())],
        "tree": tree(psd),
        "size": [psd.width(), psd.height()],
        "docker": docker_state(),
    }
    psd.setModified(False)
    psd.close()
    return result


async def fg_batch(ctx: Any) -> dict[str, Any]:
    """Two groups; then what one Ctrl+Z does, and the docker's "Undo whole result"."""
    doc = ctx.state["doc_a"]
    app = Krita.instance()
    app.setActiveDocument(doc)
    app.action("deselect").trigger()
    await activate(doc, "artwork")
    form = {**FAST, "batch": 2}
    result = await generate(
        ctx, "fg", doc, mode="fg", prompt="a tiny star", width=64, height=64, **form
    )
    result["undo_text"] = app.action("edit_undo").text()
    app.action("edit_undo").trigger()
    doc.waitForDone()
    await asyncio.sleep(0.3)
    result["after_one_undo"] = tree(doc)
    app.action("edit_redo").trigger()
    doc.waitForDone()
    await asyncio.sleep(0.3)
    result["after_redo"] = tree(doc)
    result["undo_button_visible"] = docker().undo_result_button.isVisible()
    docker().undo_result_button.click()
    doc.waitForDone()
    await asyncio.sleep(0.3)
    result["after_undo_result"] = tree(doc)
    result["undo_text_after_undo_result"] = app.action("edit_undo").text()
    result["docker_after"] = docker_state()
    return result


async def bg2fg(ctx: Any) -> dict[str, Any]:
    doc = await make_document("bg2fg-u8", 96, 64, "U8")
    ctx.state["doc_b"] = doc
    return await generate(ctx, "bg2fg", doc, mode="bg2fg", prompt="a bird", **FAST)


async def sixteen_bit(ctx: Any) -> dict[str, Any]:
    doc = await make_document("artwork-u16", 96, 64, "U16")
    select(doc, 20, 12, 40, 30)
    result = await generate(ctx, "u16", doc, mode="layer_on_artwork", prompt="a cup", **FAST)
    result["document"] = [doc.colorModel(), doc.colorDepth(), doc.colorProfile()]
    return result


async def float_fg2bg(ctx: Any) -> dict[str, Any]:
    doc = await make_document("layer-f32", 80, 64, "F32", opaque=False)
    result = await generate(ctx, "f32", doc, mode="fg2bg", prompt="a beach", **FAST)
    result["document"] = [doc.colorModel(), doc.colorDepth(), doc.colorProfile()]
    return result


async def gray_document(ctx: Any) -> dict[str, Any]:
    """A colour space pixels.py does not handle: Krita's colour engine converts both ways."""
    from acetate_krita.document import Document

    doc = await make_document("gray", 64, 48, "U8", model="GRAYA")
    sent = Document(doc).read_canvas()
    (ctx.workdir / "gray-canvas.rgba").write_bytes(sent.data)
    result = await generate(ctx, "gray", doc, mode="layer_on_artwork", prompt="fog", **FAST)
    result["canvas_dump"] = str(ctx.workdir / "gray-canvas.rgba")
    return result


async def scene(ctx: Any) -> dict[str, Any]:
    """Scene mode from a layout group of three overlapping objects, on tiny SD1.5."""
    return await _scene(ctx, "scene", "tiny-sd15")


async def scene_sdxl(ctx: Any) -> dict[str, Any]:
    """The same scene on tiny SDXL (bg→blend then bg+blend→fg per object)."""
    return await _scene(ctx, "scene-sdxl", "tiny-sdxl")


async def _scene(ctx: Any, name: str, model_name: str) -> dict[str, Any]:
    """A layout group of three overlapping objects over painted artwork → a scene job."""
    from acetate_krita.document import Document

    app = Krita.instance()
    width, height = SCENE_SIZE
    doc = await make_document(name, width, height, "U8")
    layout = doc.createGroupLayer("layout")
    colours = ((0, 0, 200), (0, 200, 0), (200, 0, 0))
    below = None
    for (prompt, mask), colour in zip(scene_layout(width, height), colours, strict=True):
        child = doc.createNode(prompt, "paintlayer")
        child.setPixelData(painted(mask, colour), 0, 0, width, height)
        layout.addChildNode(child, below)
        below = child
    doc.rootNode().addChildNode(layout, doc.nodeByName("artwork"))
    doc.refreshProjection()
    doc.waitForDone()
    await asyncio.sleep(0.2)
    await activate(doc, "layout")
    doc.setModified(False)
    art = doc.nodeByName("artwork")
    art_before = bytes(art.pixelData(0, 0, width, height))
    # Reading the canvas without the layout leaves no trace: no undo step, not modified.
    undo_before = app.action("edit_undo").text()
    group_id = layout.uniqueId().toString()
    without = Document(doc).read_canvas_without(group_id)
    read = {
        "undo_changed": app.action("edit_undo").text() != undo_before,
        "modified": doc.modified(),
        "layout_visible": layout.visible(),
        "bytes": len(without.data),
    }
    (ctx.workdir / f"{name}-without.rgba").write_bytes(without.data)
    form = {**FAST, "model": model_name, "random_seed": False, "seed": 5}
    result = await generate(ctx, name, doc, mode="scene", prompt="a street", **form)
    model = docker().model
    result["read"] = read
    result["timeline"] = list(model.timeline)
    result["insert_seconds"] = dict(model.insert_seconds)
    result["layout_visible"] = layout.visible()
    result["artwork_unchanged"] = bytes(art.pixelData(0, 0, width, height)) == art_before
    result["without_dump"] = str(ctx.workdir / f"{name}-without.rgba")
    return result


async def open_ora(ctx: Any) -> dict[str, Any]:
    """The last scene's `result.ora` from the server, opened by Krita's own ORA import."""
    record = ctx.state["last_record"]
    path = ctx.workdir / f"{record.id}.ora"
    url = f"{ctx.params['url']}/api/jobs/{record.id}/result.ora"
    with urllib.request.urlopen(url, timeout=60) as response:
        path.write_bytes(response.read())
    app = Krita.instance()
    doc = app.openDocument(str(path))
    await asyncio.sleep(0.2)
    doc.waitForDone()
    result = {
        "record": record_json(record),
        "layers": dump_result(ctx, "ora", doc, record),
        "tree": tree(doc),
        "size": [doc.width(), doc.height()],
        "model": [doc.colorModel(), doc.colorDepth()],
    }
    doc.setModified(False)
    doc.close()
    return result


async def decompose(ctx: Any) -> dict[str, Any]:
    """Split the active layer (artwork) into two layers on the tiny Qwen-Image-Layered model
    (its smallest bucket, 2 steps): the group lands right above it and the artwork is hidden;
    "Undo whole result" removes the group and shows the artwork again."""
    from acetate_krita.document import Document

    app = Krita.instance()
    width, height = DECOMPOSE_SIZE
    doc = await make_document("decompose", width, height, "U8")
    art = doc.nodeByName("artwork")
    # Reading the source layer leaves no trace: no undo step, not modified.
    undo_before = app.action("edit_undo").text()
    sent = Document(doc).read_layer()
    read = {
        "undo_changed": app.action("edit_undo").text() != undo_before,
        "modified": doc.modified(),
        "bytes": len(sent.data),
    }
    form = {
        "model": "tiny-qwen-image-layered",
        "steps": 2,
        "layer_count": 2,
        "random_seed": False,
        "seed": 3,
    }
    result = await generate(ctx, "decompose", doc, mode="decompose", prompt="a landscape", **form)
    combo = docker().source_combos.get("image")
    result["sources"] = [combo.itemText(i) for i in range(combo.count())] if combo else []
    result["read"] = read
    result["undo_text"] = app.action("edit_undo").text()
    result["artwork_visible"] = art.visible()
    result["undo_button_visible"] = docker().undo_result_button.isVisible()
    docker().undo_result_button.click()
    doc.waitForDone()
    await asyncio.sleep(0.3)
    result["after_undo_result"] = tree(doc)
    return result


async def cancel(ctx: Any) -> dict[str, Any]:
    doc = ctx.state["doc_b"]
    Krita.instance().setActiveDocument(doc)
    before = tree(doc)
    d = docker()
    fill_form(mode="fg", prompt="never finished", width=64, height=64, **{**FAST, "steps": 80})
    d.task = None
    d.generate_button.click()
    task = d.task
    await until(lambda: d.model.status.startswith("Step"), JOB_TIMEOUT, "the first step")
    during = docker_state()
    d.cancel_button.click()
    outcome = await asyncio.wait_for(task, 60)
    return {
        "outcome": outcome,
        "during": during,
        "docker": docker_state(),
        "unchanged": tree(doc) == before,
    }


async def screenshot(ctx: Any) -> dict[str, Any]:
    """The window after the layer-on-artwork job, Layers and Acetate docked right (README).

    The canvas shows what the tiny test model makes: noise (random weights), not a ball.
    """
    from PyQt5.QtCore import Qt

    app = Krita.instance()
    doc = ctx.state["doc_a"]
    window = app.activeWindow()
    view = next(v for v in window.views() if v.document() == doc)
    window.showView(view)
    qwindow = window.qwindow()
    keep: dict[str, Any] = {}
    for dock in app.dockers():
        if dock.objectName() in ("acetate", "KisLayerBox"):
            keep[dock.objectName()] = dock
        else:
            dock.hide()
    layers, acetate = keep["KisLayerBox"], keep["acetate"]
    for dock in (layers, acetate):
        qwindow.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        dock.setFloating(False)
        dock.show()
    qwindow.resize(1280, 1000)
    qwindow.resizeDocks([layers, acetate], [360, 360], Qt.Orientation.Horizontal)
    qwindow.resizeDocks([layers, acetate], [200, 760], Qt.Orientation.Vertical)
    acetate.history_list.setCurrentRow(0)
    await asyncio.sleep(1.0)
    qwindow.grab().save(str(ctx.workdir / "window.png"))
    acetate.grab().save(str(ctx.workdir / "docker.png"))
    return {"size": [acetate.width(), acetate.height()]}


async def server_killed(ctx: Any) -> dict[str, Any]:
    """The server dies while a job runs: the docker must say so, not hang."""
    set_url(ctx.params["kill_url"])
    d = docker()
    model = d.model
    url = ctx.params["kill_url"]
    await until(
        lambda: model.connected and model.client is not None and model.client.url == url,
        60,
        "the second server",
    )
    doc = await make_document("killed", 64, 48, "U8")
    fill_form(mode="fg", prompt="lost", width=64, height=64, **{**FAST, "steps": 80})
    d.task = None
    d.generate_button.click()
    task = d.task
    await until(lambda: model.job_id is not None and model.status != "Sending…", 60, "the job")
    os.kill(int(ctx.params["kill_pid"]), signal.SIGKILL)
    killed = time.monotonic()
    await asyncio.wait_for(task, 60)
    return {
        "seconds_to_error": time.monotonic() - killed,
        "docker": docker_state(),
        "tree": tree(doc),
    }


async def dummy_parts(ctx: Any) -> dict[str, Any]:
    """A mode this plugin has never heard of (loaded into the server from the test suite):
    its controls, list input and layers all come from the server's declaration."""
    url = ctx.params["dummy_url"]
    set_url(url)
    d = docker()
    model = d.model
    await until(
        lambda: model.connected and model.client is not None and model.client.url == url,
        60,
        "the dummy-mode server",
    )
    await until(lambda: model.modes.get("dummy_parts") is not None, 10, "the dummy mode")
    doc = await make_document("parts", 96, 64, "U8")
    fill_form(mode="dummy_parts", prompt="", **FAST)
    combo_modes = [d.mode_combo.itemData(i) for i in range(d.mode_combo.count())]
    model.set_list("parts", [{"prompt": "a hat", "seed": 1}, {"prompt": "a scarf", "seed": 2}])
    controls = {
        "options": sorted(d.option_editors),
        "lists": sorted(d.list_boxes),
        "list_rows": len(d.list_boxes["parts"].rows) if "parts" in d.list_boxes else None,
    }
    result = await generate(ctx, "dummy", doc, **{})
    result["timeline"] = list(model.timeline)
    result["modes"] = combo_modes
    result["controls"] = controls
    result["mode_label"] = model.modes.get("dummy_parts").label
    return result


async def structure(ctx: Any) -> dict[str, Any]:
    """fg on tiny SDXL steered by a sketch layer (canny), then the same job without it."""
    width, height = STRUCTURE_SIZE
    doc = await make_document("structure", width, height, "U8")
    layer = doc.createNode("sketch", "paintlayer")
    doc.rootNode().addChildNode(layer, doc.nodeByName("top"))
    layer.setPixelData(sketch(width, height), 0, 0, width, height)
    doc.refreshProjection()
    doc.waitForDone()
    await activate(doc, "artwork")
    form = {"model": "tiny-sdxl", "steps": 2, "decode": "fast", "random_seed": False}
    form |= {"seed": 11, "batch": 1, "width": width, "height": height}
    fill_form(mode="fg", prompt="a house", **form)
    box = docker().structure_box
    assert box is not None, "fg has no Structure section"
    box.refresh_button.click()
    layers = [box.layer_combo.itemText(i) for i in range(box.layer_combo.count())]
    controlnets = [box.controlnet_combo.itemText(i) for i in range(box.controlnet_combo.count())]
    box.layer_combo.setCurrentIndex(box.layer_combo.findText("sketch"))
    box.kind_combo.setCurrentIndex(box.kind_combo.findData("canny"))
    with_structure = await generate(ctx, "structure", doc)
    box.layer_combo.setCurrentIndex(0)  # None
    without = await generate(ctx, "nostructure", doc)
    return {
        "with": with_structure,
        "without": without,
        "layers": layers,
        "controlnets": controlnets,
        "form": form,
    }


SCENARIOS: list[Callable[[Any], Awaitable[dict[str, Any]]]] = [
    server_down,
    connect,
    layer_on_artwork,
    screenshot,
    open_psd,
    fg_batch,
    bg2fg,
    sixteen_bit,
    float_fg2bg,
    gray_document,
    scene,
    scene_sdxl,
    open_ora,
    decompose,
    # before dummy_parts, which leaves the plugin connected to the dummy-mode server
    structure,
    cancel,
]

#: Scenario modules beside this one whose `SCENARIOS` run after these, imported when the run
#: starts (they import their helpers from this module).
MORE_SCENARIOS = ("insertion", "sources")

#: Last of all: they leave the plugin on other servers, and the settings test reads the URL
#: the final one saved.
FINAL_SCENARIOS: list[Callable[[Any], Awaitable[dict[str, Any]]]] = [dummy_parts, server_killed]


async def run(ctx: Any) -> None:
    ctx.state = {}
    ctx.results["scenarios"] = {}
    docker().show()
    only = ctx.params.get("only")
    scenarios = list(SCENARIOS)
    for module in MORE_SCENARIOS:
        scenarios += importlib.import_module(module).SCENARIOS
    scenarios += FINAL_SCENARIOS
    for scenario in scenarios:
        name = scenario.__name__
        if only and name not in only:
            continue
        ctx.log(f"start {name}")
        try:
            outcome = await scenario(ctx)
        except Exception:
            outcome = {"failed": traceback.format_exc(), "docker": docker_state()}
        ctx.results["scenarios"][name] = outcome
        ctx.log(f"end {name}")
