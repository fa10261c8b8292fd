"""Inside real Krita: an input read from a layer picked in the docker (not the active one), an
inpaint mask from a layer's alpha, and a LoRA picked in the docker's LoRA rows.

Run by scenarios/e2e.py after its own scenarios (MORE_SCENARIOS), sharing its Krita. Jobs are
tiny (64×64, tiny SDXL, one step, a fixed seed). The records hold what the server recorded of
the images it got ({width, height, sha256}) and raw dumps of the inserted layers;
sources_checks.py compares them with the pixels these scenarios painted.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from e2e import activate, docker, fill_form, generate, make_document
from insertion import on_main_server

from acetate_krita.qt import QtWidgets

SIZE = 64
FORM = {"model": "tiny-sdxl", "steps": 1, "random_seed": False, "seed": 17, "batch": 1}


def pattern(width: int, height: int, shift: int) -> bytes:
    """8-bit BGRA (Krita's U8 layout): colours and a graded alpha, some pixels transparent."""
    rows = (
        bytes(
            (
                (x * 7 + shift) % 256,
                (y * 5 + 2 * shift) % 256,
                (x * y + shift) % 256,
                0 if (x + y + shift) % 11 == 0 else (x * 4 + y * 3 + shift) % 256,
            )
        )
        for y in range(height)
        for x in range(width)
    )
    return b"".join(rows)


def rgba_sha(bgra: bytes) -> str:
    """sha256 of the pixels as the wire carries them (straight RGBA)."""
    rgba = bytearray(bgra)
    rgba[0::4], rgba[2::4] = bgra[2::4], bgra[0::4]
    return hashlib.sha256(bytes(rgba)).hexdigest()


async def add_layer(doc: Any, name: str, pixels: bytes) -> None:
    """A paint layer `name` with `pixels` on top; the artwork stays the active layer."""
    node = doc.createNode(name, "paintlayer")
    doc.rootNode().addChildNode(node, doc.nodeByName("top"))
    node.setPixelData(pixels, 0, 0, SIZE, SIZE)
    doc.refreshProjection()
    doc.waitForDone()
    await asyncio.sleep(0.2)  # adding a layer activates it, a little later
    await activate(doc, "artwork")


def pick(field: str, text: str) -> list[str]:
    """Pick `text` in the docker's source picker of `field` like a user (after listing the
    layers again); returns the picker's entries."""
    picker = docker().source_pickers[field]
    picker.layers.refresh_button.click()
    entries = [picker.combo.itemText(i) for i in range(picker.combo.count())]
    index = picker.combo.findText(text)
    assert index >= 0, (text, entries)
    picker.combo.setCurrentIndex(index)
    return entries


async def source_layer(ctx: Any) -> dict[str, Any]:
    """fg2bg with its foreground picked (`cutout`, while `artwork` is active); the same job
    from `cutout` as the active layer; and from `artwork` (the source must matter)."""
    await on_main_server(ctx)
    doc = await make_document("sources", SIZE, SIZE, "U8")
    cutout = pattern(SIZE, SIZE, 3)
    await add_layer(doc, "cutout", cutout)
    fill_form(mode="fg2bg", prompt="a beach", **FORM)
    entries = pick("fg", "cutout")
    picked = await generate(ctx, "source_picked", doc)
    remembered = docker().model.source_choice("fg")
    pick("fg", "Active layer")
    await activate(doc, "cutout")
    active = await generate(ctx, "source_active", doc)
    await activate(doc, "artwork")
    other = await generate(ctx, "source_other", doc)
    return {
        "picked": picked,
        "active": active,
        "other": other,
        "entries": entries,
        "remembered": remembered,
        "cutout_sha": rgba_sha(cutout),
    }


async def mask_from_alpha(ctx: Any) -> dict[str, Any]:
    """Inpaint the active layer (no selection) with the alpha of layer `stencil` as the mask."""
    await on_main_server(ctx)
    doc = await make_document("masks", SIZE, SIZE, "U8", opaque=False)
    stencil = pattern(SIZE, SIZE, 5)
    await add_layer(doc, "stencil", stencil)
    fill_form(mode="inpaint", prompt="a flower", **FORM)
    entries = pick("mask", "Alpha of stencil")
    result = await generate(ctx, "mask_from_alpha", doc)
    pick("mask", "Selection")  # back to the default for later scenarios
    result["entries"] = entries
    result["alpha_sha"] = hashlib.sha256(stencil[3::4]).hexdigest()
    return result


async def lora_rows(ctx: Any) -> dict[str, Any]:
    """fg with a LoRA added in the docker's LoRA rows, then the same seed without it."""
    await on_main_server(ctx)
    doc = await make_document("loras", SIZE, SIZE, "U8")
    fill_form(mode="fg", prompt="a vase", width=SIZE, height=SIZE, decode="fast", **FORM)
    box = docker().lora_box
    assert box is not None, "fg has no LoRA rows"
    box.add_button.click()
    await asyncio.sleep(0.1)
    _, combo, spin = box.rows[0]
    offered = [combo.itemText(i) for i in range(combo.count())]
    combo.setCurrentIndex(combo.findData("tiny-style-sdxl"))
    spin.setValue(1.25)
    with_lora = await generate(ctx, "with_lora", doc)
    box.rows[0][0].findChild(QtWidgets.QToolButton).click()  # the row's "−"
    await asyncio.sleep(0.1)
    without = await generate(ctx, "without_lora", doc)
    return {"with": with_lora, "without": without, "offered": offered, "rows": len(box.rows)}


SCENARIOS: list[Callable[[Any], Awaitable[dict[str, Any]]]] = [
    source_layer,
    mask_from_alpha,
    lora_rows,
]
