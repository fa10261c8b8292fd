"""Which layer a mode's image inputs are read from, and where its mask comes from (Qt-free).

A mode's main image (fg2bg's foreground, bg2fg's background, the layer img2img, inpaint and
upscale work on, layer on artwork's artwork: a required RGBA input that frames the result,
read from the active layer or the canvas, `GET /api/modes` → `inputs`) may be read from any
layer of the document instead. The docker's picker lists the declared source first ("Active
layer", which follows the active layer, or "Whole canvas"), then the active layer for a canvas
input, then every layer (a group reads as its composite). A mask read from the selection may
come from a layer's alpha instead ("Alpha of <layer>").

Choices are remembered per mode and input (`source.<mode>.<field>`: "" the declared source,
`layer` the active layer, else a layer's node id); a chosen layer no longer in the document is
an error when generating (inputs.py), never a silent fallback.

A chosen layer is read like the active layer: over the whole canvas frame. Its alpha as a mask
is that frame's alpha channel as it is (graded, not thresholded); where a selection would be
cropped to its bounds (a mask placed on a canvas input), it is cropped to the layer's painted
pixels, which then are the `selection_bounds`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .pixels import Rect, painted_mask
from .protocol import CANVAS, LAYER, SELECTION, ImageInputInfo, ModeInfo, ModesInfo, WireImage

#: Settings keys of the choices start with this (`source.<mode>.<field>`).
KEY_PREFIX = "source"
#: The choice that reads an input from its declared source.
DECLARED = ""
#: How the picker names a source.
SOURCE_LABELS = {LAYER: "Active layer", CANVAS: "Whole canvas", SELECTION: "Selection"}


def layer_inputs(mode: ModeInfo | None) -> tuple[ImageInputInfo, ...]:
    """The inputs of `mode` any layer can fill: required RGBA inputs framing the result, read
    from the active layer or the canvas, with no other sources of their own (decompose's
    image, whose source picker also decides what the result replaces)."""
    if mode is None:
        return ()
    return tuple(
        image
        for image in mode.inputs
        if image.kind == "rgba"
        and image.required
        and image.frame
        and image.source in (LAYER, CANVAS)
        and not image.other_sources
        and not image.replaced
    )


def mask_inputs(mode: ModeInfo | None) -> tuple[ImageInputInfo, ...]:
    """The masks of `mode` read from the selection: a layer's alpha can be the mask instead."""
    if mode is None:
        return ()
    return tuple(
        image for image in mode.inputs if image.kind == "mask" and image.source == SELECTION
    )


def pickable(mode: ModeInfo | None) -> tuple[ImageInputInfo, ...]:
    """Every input of `mode` with a source picker: the layer inputs, then the masks."""
    return (*layer_inputs(mode), *mask_inputs(mode))


def choice_key(mode: str, field: str) -> str:
    return f"{KEY_PREFIX}.{mode}.{field}"


def fixed_entries(image: ImageInputInfo) -> tuple[tuple[str, str], ...]:
    """(label, choice) of the picker's entries before the layers: the declared source first
    (the default), then the active layer for an input declared on the canvas."""
    entries = [(SOURCE_LABELS.get(image.source, image.source), DECLARED)]
    if image.kind == "rgba" and image.source == CANVAS:
        entries.append((SOURCE_LABELS[LAYER], LAYER))
    return tuple(entries)


def layer_entry(image: ImageInputInfo, name: str) -> str:
    """The picker's text for a layer: its name, or "Alpha of <name>" for a mask."""
    return f"Alpha of {name}" if image.kind == "mask" else name


def stored_choices(modes: ModesInfo, read: Callable[[str], str]) -> dict[str, str]:
    """Every remembered choice of the modes' pickers (`read`: the settings store)."""
    choices = {}
    for mode in modes.modes:
        for image in pickable(mode):
            key = choice_key(mode.name, image.field)
            value = read(key)
            if value:
                choices[key] = value
    return choices


def picked_layers(
    mode: ModeInfo, choices: Mapping[str, str], active_layer: str | None
) -> dict[str, str]:
    """Input field → the node id it is read from, for inputs not on their declared source
    (the active layer, when a canvas input is set to it, is `active_layer`)."""
    out = {}
    for image in pickable(mode):
        choice = choices.get(choice_key(mode.name, image.field), DECLARED)
        if choice == LAYER and image.kind == "rgba" and image.source == CANVAS:
            if active_layer is not None:
                out[image.field] = active_layer
        elif choice not in (DECLARED, LAYER, CANVAS, SELECTION):
            out[image.field] = choice
    return out


def alpha_mask(layer: WireImage, crop: bool) -> tuple[WireImage, Rect | None] | None:
    """A layer's alpha channel as a mask in the layer's frame; with `crop`, cut to its painted
    pixels, returned with their bounds (None: nothing is painted)."""
    alpha = layer.data[3::4]
    if not crop:
        return WireImage(alpha, layer.width, layer.height), None
    found = painted_mask(layer.data, layer.width, layer.height)
    if found is None:
        return None
    bounds = found[1]
    rows = (
        alpha[y * layer.width + bounds.left : y * layer.width + bounds.right]
        for y in range(bounds.top, bounds.bottom)
    )
    return WireImage(b"".join(rows), bounds.width, bounds.height), bounds
