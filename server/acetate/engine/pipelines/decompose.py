"""`decompose`: a flat image (or its selected part) split into N transparent layers.

The region is the whole image, or the selection's bounding rectangle with the alpha outside the
selection cleared. Qwen-Image-Layered denoises the N layers at the request's bucket
(`acetate.engine.pipelines.qwen_loop`), each layer is resized back into the region (alpha
outside the selection cleared again, colour under alpha 0 zeroed), cropped to its alpha's
bounding box with its exact offset and yielded; the hidden `blended` recomposite of each result
set follows (one premultiplied pass over its layers), with the PSNR of the recomposite against
the input inside the region. Cropping only drops fully transparent pixels, so the layers placed
at their offsets composite to exactly the full-frame layers (`tests/engine/test_decompose.py`).

Without a prompt the model first describes the region itself (Qwen2.5-VL captioning, the
progress stage `caption`, "Describing the image"), and decomposes with that caption, which each
result set's `metrics` record as `caption` (`tests/engine/test_decompose_caption.py`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from acetate.bitdepth import full_scale
from acetate.engine import framing
from acetate.engine.framing import Rect
from acetate.engine.outputs import LayerImage
from acetate.engine.pipelines.context import ModeContext
from acetate.engine.pipelines.qwen_loop import (
    LayeredRun,
    caption_image,
    decode_layers,
    decompose,
    to_pixels,
)
from acetate.errors import InputError

if TYPE_CHECKING:
    from acetate.modes import Family

#: Reported instead of an infinite PSNR (a recomposite identical to the input).
MAX_PSNR_DB = 100.0
#: The captioning stage (an empty prompt), as progress events name it.
CAPTION_STAGE = ("caption", "Describing the image")
#: A progress event every this many caption tokens (and one as captioning starts).
CAPTION_REPORT_TOKENS = 32


@dataclass(frozen=True)
class Region:
    """The part of the input that is split: a rectangle and, for a selection, its mask there."""

    rect: Rect
    mask: np.ndarray | None  # rect-sized uint8, None: the whole rectangle

    def limit(self, rgba: np.ndarray) -> np.ndarray:
        """`rgba` (rect-sized) with alpha outside the selection cleared, colour under alpha 0
        zeroed (nothing hidden behind transparent pixels)."""
        out = rgba.copy()
        if self.mask is not None:
            framing.limit_alpha(out, self.mask)
        out[out[..., 3] == 0, :3] = 0
        return out


def run_decompose(ctx: ModeContext) -> Iterator[LayerImage]:
    """Each layer as soon as its result set is decoded, bottom → top, then `blended`."""
    params = ctx.params
    image = ctx.images["image"]
    region = decompose_region(ctx, image)
    source = region.limit(image[region.rect.slices()])
    pipe = ctx.sampler.pipe
    bucket = int(params.resolution or 0)
    # 0. Without a prompt: the model describes the region itself
    prompt = params.prompt
    caption = None
    if not prompt.strip():
        caption = caption_region(ctx, pipe, source, bucket)
        prompt = caption
    # 1. Denoise every result set's layers together (seed + b each)
    stage = ctx.request.spec.stages(cast("Family", ctx.request.family))[0]
    ctx.progress.enter_stage(stage.name, stage.label)
    run = LayeredRun(
        image=source,
        prompts=[prompt] * params.batch,
        negative_prompt=params.negative_prompt,
        cfg=ctx.cfg,
        layers=params.layer_count,
        steps=ctx.steps,
        bucket=bucket,
        generators=[torch.Generator("cpu").manual_seed(ctx.seed + b) for b in range(params.batch)],
    )
    # Previews only for a listener (unpacking the frame every step costs a little).
    previews = ctx.progress.callback is not None
    decomposed = decompose(pipe, run, ctx.progress.hook, previews=previews)
    for b in range(params.batch):
        ctx.progress.check_cancel()
        # 2. Back into the region, one layer at a time, bottom → top
        layers = decode_layers(pipe, decomposed, b)
        placed_layers = []
        for index in range(run.layers):
            placed = placed_layer(to_pixels(layers[index], params.bit_depth), region)
            placed_layers.append(placed)
            yield cropped_layer(f"layer_{index + 1}", b, placed, region.rect)
        # 3. The recomposite, hidden, with its fidelity to the input
        composite = recomposite(placed_layers)
        psnr = region_psnr(composite, source, region.mask)
        yield LayerImage(
            "blended",
            b,
            composite,
            region.rect.left,
            region.rect.top,
            visible=False,
            metrics={"psnr_db": psnr} if caption is None else {"psnr_db": psnr, "caption": caption},
        )


def caption_region(ctx: ModeContext, pipe: object, source: np.ndarray, bucket: int) -> str:
    """The model's description of the region, as the progress stage `caption` (an event as it
    starts and every few tokens; cancel is honoured between tokens)."""
    if getattr(pipe, "vl_processor", None) is None:
        from acetate.engine.store.qwen import no_caption_message

        problem = "the model loaded without its processor"
        raise InputError(no_caption_message(problem), field="prompt")
    progress = ctx.progress
    progress.enter_stage(*CAPTION_STAGE)
    progress.report()

    def on_token(tokens: int) -> None:
        if tokens % CAPTION_REPORT_TOKENS == 0:
            progress.report()  # raises when cancelled
        else:
            progress.check_cancel()

    return caption_image(pipe, source, bucket, on_token)


def decompose_region(ctx: ModeContext, image: np.ndarray) -> Region:
    """The whole image, or the selection's bounds and mask (checked non-empty on submit)."""
    height, width = image.shape[:2]
    selection = ctx.images.get("selection")
    if selection is None:
        return Region(Rect(0, 0, width, height), None)
    mask = framing.place_mask(selection, ctx.selection_bounds, width, height)
    rect = framing.selection_rect(mask) or Rect(0, 0, width, height)
    return Region(rect, np.ascontiguousarray(mask[rect.slices()]))


def placed_layer(layer: np.ndarray, region: Region) -> np.ndarray:
    """A bucket-sized layer resized into the region's rectangle and limited to its selection."""
    rect = region.rect
    return region.limit(framing.resize_rgba(layer, rect.width, rect.height))


def cropped_layer(name: str, batch_index: int, placed: np.ndarray, rect: Rect) -> LayerImage:
    """A region-sized layer cropped to its alpha's bounds, with canvas offsets."""
    used = framing.selection_rect(placed[..., 3])
    if used is None:
        empty = np.zeros((1, 1, 4), dtype=placed.dtype)
        warning = f"{name} came out fully transparent"
        return LayerImage(name, batch_index, empty, rect.left, rect.top, warning=warning)
    return LayerImage(
        name,
        batch_index,
        np.ascontiguousarray(placed[used.slices()]),
        left=rect.left + used.left,
        top=rect.top + used.top,
    )


def recomposite(layers: list[np.ndarray]) -> np.ndarray:
    """Same-sized straight-alpha RGBA layers (uint8 or uint16), bottom first, composited "over"
    in one premultiplied float pass (no rounding between layers) → straight RGBA, same dtype."""
    height, width = layers[0].shape[:2]
    scale = full_scale(layers[0])
    colour = np.zeros((height, width, 3), dtype=np.float32)
    alpha = np.zeros((height, width, 1), dtype=np.float32)
    for layer in layers:
        top_alpha = layer[..., 3:4].astype(np.float32) * (1.0 / scale)
        keep = 1.0 - top_alpha
        colour *= keep
        colour += layer[..., :3].astype(np.float32) * (top_alpha * (1.0 / scale))
        alpha *= keep
        alpha += top_alpha
    straight = colour / np.maximum(alpha, 1e-6)
    out = np.concatenate([straight, alpha], axis=2) * scale
    return np.clip(np.rint(out), 0, scale).astype(layers[0].dtype)


def region_psnr(composite: np.ndarray, source: np.ndarray, mask: np.ndarray | None) -> float:
    """PSNR (dB) of the recomposite against the input over the region's pixels, compared as
    premultiplied RGBA (colour under transparency does not count), in the 8-bit input's units
    (a 16-bit recomposite is divided by 257, unrounded)."""
    if composite.dtype == np.uint16:
        composite = composite.astype(np.float32) / 257.0

    def premultiplied(rgba: np.ndarray) -> np.ndarray:
        values = rgba.astype(np.float32)
        values[..., :3] *= values[..., 3:4] * (1.0 / 255.0)
        return values

    inside = np.ones(source.shape[:2], dtype=bool) if mask is None else mask > 0
    if not inside.any():
        return MAX_PSNR_DB
    error = (premultiplied(composite) - premultiplied(source))[inside]
    mse = float(np.mean(np.square(error, dtype=np.float64)))
    if mse == 0.0:
        return MAX_PSNR_DB
    return round(min(MAX_PSNR_DB, 10.0 * math.log10(255.0**2 / mse)), 3)
