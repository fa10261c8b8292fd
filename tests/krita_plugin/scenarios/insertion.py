"""Inside real Krita: how result layers go in — the alpha as an editable transparency mask, and
16-bit pixels for a 16-bit document (8-bit documents as before).

Run by scenarios/e2e.py after its own scenarios (MORE_SCENARIOS), sharing its Krita. Each job is
a tiny fg layer (64×64, tiny SDXL, one step) made through the docker's widgets; the records
hold raw dumps of the inserted layer and of its mask, which insertion_checks.py compares with
the server's own pixels.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from e2e import FAST, docker, generate, make_document, set_url, tree, until
from krita import Krita

#: The sRGB profile Krita ships for every depth (its default for U16 is the linear one).
SRGB_PROFILE = "sRGB-elle-V2-srgbtrc.icc"
FG = {**FAST, "random_seed": False, "seed": 21, "width": 64, "height": 64}


async def on_main_server(ctx: Any) -> None:
    """Talk to the test's main server again (earlier scenarios switch to others)."""
    model = docker().model
    url = ctx.params["url"]
    if model.client is None or model.client.url != url:
        set_url(url)
    await until(
        lambda: model.connected and model.client is not None and model.client.url == url,
        60,
        "the main server",
    )
    await until(lambda: bool(model.models.bases), 30, "the model list")


def set_alpha_mask(on: bool) -> str:
    """Tick the docker's "Alpha as editable mask" like a user; returns what kritarc holds."""
    docker().alpha_mask_check.setChecked(on)
    return str(Krita.instance().readSetting("acetate", "alpha_mask", ""))


def dump_masks(ctx: Any, scenario: str, doc: Any, layers: list[dict[str, Any]]) -> None:
    """For each dumped layer: its child masks (type, name, pixel format, raw pixels over the
    layer's rectangle) added to its entry."""
    groups = {node.name(): node for node in doc.topLevelNodes() if node.type() == "grouplayer"}
    for entry in layers:
        node = next(c for c in groups[entry["group"]].childNodes() if c.name() == entry["name"])
        left, top, width, height = entry["rect"]
        entry["masks"] = []
        for index, mask in enumerate(node.childNodes()):
            path = ctx.workdir / f"{scenario}-{entry['name']}-mask{index}.raw"
            path.write_bytes(bytes(mask.pixelData(left, top, width, height)))
            entry["masks"].append(
                {
                    "type": mask.type(),
                    "name": mask.name(),
                    "format": [mask.colorModel(), mask.colorDepth()],
                    "dump": str(path),
                }
            )


async def fg_into(ctx: Any, scenario: str, doc: Any, prompt: str) -> dict[str, Any]:
    """An fg job into `doc` through the docker; its record, dumps and the document after."""
    result = await generate(ctx, scenario, doc, mode="fg", prompt=prompt, **FG)
    dump_masks(ctx, scenario, doc, result["layers"])
    result["document"] = [doc.colorModel(), doc.colorDepth(), doc.colorProfile()]
    return result


async def alpha_mask(ctx: Any) -> dict[str, Any]:
    """Mask mode on an 8-bit document; the first mask of the session comes from the template
    PSD, opened with Krita's batch mode off so any dialog it raised would be seen."""
    await on_main_server(ctx)
    app = Krita.instance()
    doc = await make_document("mask-u8", 96, 64, "U8")
    stored = set_alpha_mask(True)
    modals, documents = len(ctx.results["modals"]), len(app.documents())
    app.setBatchmode(False)
    try:
        result = await fg_into(ctx, "mask-u8", doc, "smoke")
    finally:
        app.setBatchmode(True)
        set_alpha_mask(False)  # later scenarios insert as usual
    await asyncio.sleep(0.5)  # the modal killer looks every 0.3 s
    result["modals"] = ctx.results["modals"][modals:]
    result["kritarc"] = stored
    result["documents"] = [documents, len(app.documents())]  # the template PSD was closed
    result["undo_text"] = app.action("edit_undo").text()
    app.action("edit_undo").trigger()
    doc.waitForDone()
    await asyncio.sleep(0.3)
    result["after_undo"] = tree(doc)
    return result


async def sixteen_bit_exact(ctx: Any) -> dict[str, Any]:
    """A 16-bit sRGB document: a plain job, then one with the alpha as a mask."""
    await on_main_server(ctx)
    doc = await make_document("exact-u16", 96, 64, "U16", profile=SRGB_PROFILE)
    set_alpha_mask(False)
    plain = await fg_into(ctx, "u16-plain", doc, "glass")
    set_alpha_mask(True)
    try:
        masked = await fg_into(ctx, "u16-mask", doc, "smoke")
    finally:
        set_alpha_mask(False)
    return {"plain": plain, "masked": masked}


async def half_float(ctx: Any) -> dict[str, Any]:
    """A 16-bit float document (Krita's default, linear profile): floats from 16-bit values."""
    await on_main_server(ctx)
    doc = await make_document("exact-f16", 96, 64, "F16")
    set_alpha_mask(False)
    return await fg_into(ctx, "f16-plain", doc, "glass")


async def eight_bit_exact(ctx: Any) -> dict[str, Any]:
    """An 8-bit document without the mask option: as before 16-bit results existed."""
    await on_main_server(ctx)
    doc = await make_document("exact-u8", 96, 64, "U8")
    set_alpha_mask(False)
    return await fg_into(ctx, "u8-plain", doc, "glass")


SCENARIOS: list[Callable[[Any], Awaitable[dict[str, Any]]]] = [
    alpha_mask,
    sixteen_bit_exact,
    half_float,
    eight_bit_exact,
]
