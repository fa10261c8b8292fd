"""`layer_on_artwork`: a transparent layer generated into a selection of existing artwork.

The selection's bounds plus a context margin are cut from the canvas, scaled to a model size,
used as the background of a background→foreground generation, and the foreground is scaled
back, limited to the (feathered) selection and cropped to the selection's bounds — a layer that
lands exactly on the selection, in canvas coordinates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from acetate.engine import framing
from acetate.engine.outputs import LayerImage
from acetate.engine.pipelines.context import ModeContext
from acetate.engine.pipelines.layered import generate_conditional
from acetate.errors import InputError


def run_layer_on_artwork(ctx: ModeContext) -> Iterator[LayerImage]:
    params = ctx.params
    canvas = ctx.images["canvas"]
    canvas_h, canvas_w = canvas.shape[:2]
    # 1. The selection as a canvas-sized mask and its bounds (no selection: the whole canvas)
    selection = ctx.images.get("selection")
    if selection is None:
        mask = np.full((canvas_h, canvas_w), 255, dtype=np.uint8)
    else:
        mask = framing.place_mask(selection, ctx.selection_bounds, canvas_w, canvas_h)
    bounds = framing.selection_rect(mask)
    if bounds is None:
        raise InputError("the selection is empty", field="selection")
    # 2. The context crop around it, at a model size
    crop = framing.expand_rect(bounds, params.margin, canvas_w, canvas_h)
    width, height = framing.model_size(crop.width, crop.height, ctx.native_size)
    background = framing.resize_rgba(canvas[crop.slices()], width, height)
    background[..., 3] = 255  # the artwork is the background, whatever its own alpha
    # 3. Background → foreground on the crop; a structure image sent in the canvas frame is
    #    cropped the same way, so its strokes stay where they are on the canvas
    control = ctx.images.get("control_image")
    if control is not None and control.shape[:2] == (canvas_h, canvas_w):
        images = {**ctx.images, "control_image": np.ascontiguousarray(control[crop.slices()])}
        ctx = dataclasses.replace(ctx, images=images)
    generated = generate_conditional(ctx, background, "bg", width, height, blended=False)
    # 4. Back to canvas pixels: scale, limit to the feathered selection, crop to its bounds
    soft = framing.feather_mask(mask, params.feather)[crop.slices()]
    inner = framing.Rect(
        bounds.left - crop.left, bounds.top - crop.top, bounds.width, bounds.height
    )
    for layer in generated:
        pixels = framing.resize_rgba(layer.pixels, crop.width, crop.height)
        framing.limit_alpha(pixels, soft)
        yield LayerImage(
            "foreground",
            layer.batch_index,
            np.ascontiguousarray(pixels[inner.slices()]),
            left=bounds.left,
            top=bounds.top,
        )
