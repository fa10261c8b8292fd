"""`scene`: a background and N transparent objects, each generated on the scene below it.

The background is the `bg` image, or is generated first with the plain base model. Then, bottom
to top, each object is generated as `layer_on_artwork` generates a layer into a selection: its
region plus a context margin is cut from the current composite, scaled to a model size, used as
the background of a background→foreground run (SDXL: bg→blend then bg+blend→fg; SD1.5: bg2fg
attention sharing), and the foreground is scaled back and limited to the feathered region. The
object is composited (straight-alpha "over") into the composite the next object sees, cropped to
its alpha's bounds and yielded at once. Each object's seed derives from the request seed and its
index, so an object depends only on the background, the objects below it and its own fields.
Result sets of a batch repeat the whole scene one after another, each with its own seeds.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from acetate.bitdepth import to_depth, to_uint8
from acetate.engine import framing
from acetate.engine.outputs import LayerImage
from acetate.engine.pipelines.common import (
    decode_rgb_layers,
    denoise_stage,
    frame_generators,
    prompt_rows,
)
from acetate.engine.pipelines.context import ModeContext
from acetate.engine.pipelines.layered import generate_conditional
from acetate.errors import GenerationCancelled, InputError, tag_field
from acetate.protocol import Region, item_image_key

#: The list input holding the objects, and the stage the objects' bg→fg stages start at.
OBJECTS = "objects"
FIRST_OBJECT_STAGE = 1


@dataclass(frozen=True)
class SceneObject:
    """One object of the request, its region resolved to a canvas-sized mask."""

    index: int
    prompt: str
    negative_prompt: str | None
    seed: int | None
    mask: np.ndarray  # canvas-sized uint8, 255 inside the region

    @property
    def field(self) -> str:
        return f"{OBJECTS}[{self.index}]"


def run_scene(ctx: ModeContext) -> Iterator[LayerImage]:
    """Background (given or generated), then each object as it finishes, then the composite."""
    objects = scene_objects(ctx)
    for b in range(ctx.params.batch):
        # 1. The background: the given image, or generated with the plain base model
        given = ctx.images.get("bg")
        if given is None:
            background = _generate_background(ctx, ctx.seed + b)
            yield LayerImage("background", b, background)
        else:
            background = to_depth(given, ctx.params.bit_depth).copy()
        composite = background
        # the background is opaque, whatever its own alpha
        composite[..., 3] = np.iinfo(composite.dtype).max
        # 2. Each object on the composite so far, bottom → top
        for item in objects:
            try:
                layer, composite = object_layer(
                    ctx, item, composite, object_seed(item, ctx.seed, b), b
                )
            except GenerationCancelled:
                raise
            except BaseException as error:
                tag_field(error, item.field)
                raise
            yield layer
        # 3. The blended scene
        yield LayerImage("blended", b, composite, visible=False)


def scene_objects(ctx: ModeContext) -> list[SceneObject]:
    """The request's objects with their region masks (regions were checked on submit)."""
    height, width = _canvas_shape(ctx)
    items: Sequence[Any] = getattr(ctx.params, OBJECTS, None) or []
    objects = []
    for index, item in enumerate(items):
        region: Region = item.region
        mask = np.zeros((height, width), dtype=np.uint8)
        pixels = ctx.images.get(item_image_key(OBJECTS, index))
        if pixels is None:
            if region.width is None or region.height is None:
                raise InputError("give a box or a mask", field=f"{OBJECTS}[{index}].region")
            pixels = np.full((region.height, region.width), 255, dtype=np.uint8)
        rows, cols = pixels.shape
        mask[region.top : region.top + rows, region.left : region.left + cols] = pixels
        objects.append(SceneObject(index, item.prompt or "", item.negative_prompt, item.seed, mask))
    return objects


def object_seed(item: SceneObject, seed: int, batch_index: int) -> int:
    """Result set `batch_index`'s seed of an object: its own seed + the index, or one derived
    from the request seed + the index and the object's index (its own stream)."""
    if item.seed is not None:
        return (item.seed + batch_index) % 2**32
    text = f"acetate-scene:{seed + batch_index}:{item.index}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def object_layer(
    ctx: ModeContext, item: SceneObject, composite: np.ndarray, seed: int, batch_index: int
) -> tuple[LayerImage, np.ndarray]:
    """One object generated on `composite`: its layer (cropped to its alpha, placed exactly)
    and the composite with it on top."""
    canvas_h, canvas_w = composite.shape[:2]
    bounds = framing.selection_rect(item.mask)
    if bounds is None:
        raise InputError("the region is empty", field=f"{item.field}.region")
    # 1. The context crop around the region, at a model size
    crop = framing.expand_rect(bounds, ctx.params.margin, canvas_w, canvas_h)
    width, height = framing.model_size(crop.width, crop.height, ctx.native_size)
    # the model sees 8 bits; a 16-bit composite is rounded for it
    background = framing.resize_rgba(to_uint8(composite[crop.slices()]), width, height)
    background[..., 3] = 255
    # 2. Background → foreground on the crop, with the object's prompt and seed
    generated = list(
        generate_conditional(_object_context(ctx, item, seed), background, "bg", width, height,
                             blended=False)
    )  # fmt: skip
    foreground = next(layer.pixels for layer in generated if layer.name == "foreground")
    # 3. Back to canvas pixels, alpha limited to the feathered region
    soft = framing.feather_mask(item.mask, ctx.params.feather)[crop.slices()]
    pixels = framing.resize_rgba(foreground, crop.width, crop.height)
    framing.limit_alpha(pixels, soft)
    pixels[pixels[..., 3] == 0, :3] = 0  # nothing hidden behind alpha 0
    # 4. Into the composite the next object sees
    composite = composite.copy()
    composite[crop.slices()] = framing.over(composite[crop.slices()], pixels)
    # 5. The layer: cropped to its alpha's bounds
    name = f"object_{item.index}"
    used = framing.selection_rect(pixels[..., 3])
    if used is None:
        empty = np.zeros((1, 1, 4), dtype=pixels.dtype)
        warning = f"{item.field} ({item.prompt[:60]!r}) came out fully transparent"
        layer = LayerImage(name, batch_index, empty, bounds.left, bounds.top, warning=warning)
        return layer, composite
    layer = LayerImage(
        name,
        batch_index,
        np.ascontiguousarray(pixels[used.slices()]),
        left=crop.left + used.left,
        top=crop.top + used.top,
    )
    return layer, composite


def _object_context(ctx: ModeContext, item: SceneObject, seed: int) -> ModeContext:
    """The context bg→fg runs in for one object: its prompt (the scene's appended), negative
    prompt and seed, one result set, and the object stages."""
    params = ctx.params
    prompt = ", ".join(text for text in (item.prompt.strip(), params.prompt.strip()) if text)
    negative = params.negative_prompt if item.negative_prompt is None else item.negative_prompt
    update = {
        "prompt": prompt,
        "negative_prompt": negative,
        "seed": seed,
        "batch": 1,
        "layer_prompts": None,
    }
    request = ctx.request.model_copy(update={"parameters": params.model_copy(update=update)})
    return dataclasses.replace(ctx, request=request, stage_offset=FIRST_OBJECT_STAGE)


def _generate_background(ctx: ModeContext, seed: int) -> np.ndarray:
    """An opaque background from the background layer prompt (else the prompt), plain base."""
    width, height = ctx.size
    no_layer_model: nullcontext[Callable[[], None]] = nullcontext(lambda: None)
    latents = denoise_stage(
        ctx,
        0,
        no_layer_model,
        prompt=prompt_rows(ctx, [ctx.prompt_for("background")], (width, height)),
        generators=frame_generators(seed, 1, 1),
        width=width,
        height=height,
    )
    return decode_rgb_layers(ctx, latents)[0]


def _canvas_shape(ctx: ModeContext) -> tuple[int, int]:
    canvas = ctx.request.canvas
    return canvas.height, canvas.width
