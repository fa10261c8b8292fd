"""Multi-layer modes: `fg2bg`, `bg2fg` (SDXL two-step, SD1.5 one-step) and `joint` (SD1.5).

SDXL: two conditional UNet patches run one after the other, each taking its condition as
extra latent channels — first the blend from the given layer (`fg2ble` / `bg2ble`), then the
missing layer from the given layer plus that blend (`fgble2bg` / `bgble2fg`), the second one
optionally switched back to the plain UNet after `stop_at`.
SD1.5: one attention-sharing model generates every layer of a result set as frames of one batch
— `[background, blended]` from a foreground control signal, `[foreground, blended]` from a
background, or `[foreground, background, blended]` jointly.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from acetate.engine import framing
from acetate.engine.nets.unet_patch import UNetPatch
from acetate.engine.outputs import LayerImage
from acetate.engine.pipelines.common import (
    control_input,
    decode_rgb_layers,
    decode_transparent_layers,
    denoise_stage,
    encode_condition,
    frame_generators,
    patched_unet,
    prompt_rows,
    rgb_to_layers,
    shared_attention,
)
from acetate.engine.pipelines.context import ModeContext
from acetate.engine.pipelines.sampler import ControlInput

#: Layers each SD1.5 attention-sharing model generates, in frame order.
SD15_FRAMES: dict[str, tuple[str, ...]] = {
    "fg2bg": ("background", "blended"),
    "bg2fg": ("foreground", "blended"),
    "joint": ("foreground", "background", "blended"),
}


def run_fg2bg(ctx: ModeContext) -> Iterator[LayerImage]:
    """A background (and the blend) that fits the given transparent foreground."""
    return _run_conditional(ctx, "fg")


def run_bg2fg(ctx: ModeContext) -> Iterator[LayerImage]:
    """A transparent foreground (and the blend) that fits the given background."""
    return _run_conditional(ctx, "bg")


def _run_conditional(ctx: ModeContext, given: str) -> Iterator[LayerImage]:
    image = ctx.images[given]
    frame_h, frame_w = image.shape[:2]
    width, height = framing.model_size(frame_w, frame_h, ctx.native_size)
    # Exact resize both ways (no crop) so the generated layer aligns with the given one.
    resized = framing.resize_rgba(image, width, height)
    for layer in generate_conditional(ctx, resized, given, width, height):
        pixels = framing.resize_rgba(layer.pixels, frame_w, frame_h)
        yield LayerImage(layer.name, layer.batch_index, pixels, visible=layer.visible)


def generate_conditional(
    ctx: ModeContext,
    image: np.ndarray,
    given: str,
    width: int,
    height: int,
    *,
    blended: bool = True,
) -> Iterator[LayerImage]:
    """fg2bg / bg2fg at model size `width`×`height` (`image` already at that size); with
    `blended=False` the blended image is not decoded into a layer."""
    control = control_input(ctx, image, width, height)
    if ctx.sampler.family == "sdxl":
        return _sdxl_two_step(ctx, image, given, width, height, control, blended)
    mode = "fg2bg" if given == "fg" else "bg2fg"
    condition = framing.grey_composite(image)
    return _sd15_frames(ctx, mode, width, height, condition, control, blended)


def run_joint(ctx: ModeContext) -> Iterator[LayerImage]:
    """Foreground, background and blend generated together (SD1.5)."""
    width, height = ctx.size
    control = control_input(ctx, None, width, height)
    return _sd15_frames(ctx, "joint", width, height, None, control, True)


def _sdxl_two_step(
    ctx: ModeContext,
    image: np.ndarray,
    given: str,
    width: int,
    height: int,
    control: ControlInput | None,
    blended: bool,
) -> Iterator[LayerImage]:
    sampler, batch = ctx.sampler, ctx.params.batch
    # 1. Encode the given layer (over grey) as the condition latent
    condition = encode_condition(ctx, image, width, height).expand(batch, -1, -1, -1)
    embeds = prompt_rows(ctx, [ctx.params.prompt] * batch, (width, height))

    def stage(index: int, patch: UNetPatch | None, concat: torch.Tensor) -> torch.Tensor:
        return denoise_stage(
            ctx,
            index,
            patched_unet(ctx, patch),
            prompt=embeds,
            generators=frame_generators(ctx.seed, batch, 1),
            width=width,
            height=height,
            concat=concat,
            control=control,
        )

    # 2. Stage one: the blended image from the given layer; it is a layer as soon as it exists
    blend_latents = stage(0, ctx.models.blend_patch, condition)
    blend_rgb = sampler.vae_decode(blend_latents)
    if blended:
        blend = rgb_to_layers(blend_rgb, ctx.params.bit_depth)
        for b in range(batch):
            yield LayerImage("blended", b, blend[b], visible=False)
    # 3. Stage two: the missing layer from the given layer + the blend (re-encoded, as the
    #    official two-step workflow feeds the blended image back in)
    blend_condition = sampler.vae_encode(blend_rgb)
    result_latents = stage(1, ctx.models.unet_patch, torch.cat([condition, blend_condition], 1))
    # 4. Decode: a generated foreground is transparent, a background is plain RGB
    if given == "fg":
        result, wanted = decode_rgb_layers(ctx, result_latents), "background"
    else:
        result, wanted = decode_transparent_layers(ctx, result_latents), "foreground"
    for b in range(batch):
        yield LayerImage(wanted, b, result[b])


def _sd15_frames(
    ctx: ModeContext,
    mode: str,
    width: int,
    height: int,
    condition_rgb: np.ndarray | None,
    control: ControlInput | None,
    blended: bool,
) -> Iterator[LayerImage]:
    sampler = ctx.sampler
    names = SD15_FRAMES[mode]
    frames, batch = len(names), ctx.params.batch
    rows = frames * batch
    # 1. Prompts: the main prompt on every row; a layer's own prompt overrides its frame
    embeds = prompt_rows(ctx, [ctx.params.prompt] * rows, (width, height))
    frame_prompts = [
        sampler.encode_texts([ctx.prompt_for(name)]) if ctx.has_layer_prompt(name) else None
        for name in names
    ]
    # 2. Denoise with shared attention across the frames of each result set, one independent
    #    noise stream per frame
    cfg_rows = 2 if ctx.cfg > 1.0 else 1
    latents = denoise_stage(
        ctx,
        0,
        shared_attention(ctx, frame_prompts, cfg_rows, rows, condition_rgb),
        prompt=embeds,
        generators=frame_generators(ctx.seed, batch, frames),
        width=width,
        height=height,
        control=control,
    )
    # 3. Decode: the foreground frame through the transparency decoder, the rest plain
    decoded: dict[str, np.ndarray] = {}
    for index, name in enumerate(names):
        if name == "blended" and not blended:
            continue
        frame_latents = latents[index::frames]
        if name == "foreground":
            decoded[name] = decode_transparent_layers(ctx, frame_latents)
        else:
            decoded[name] = decode_rgb_layers(ctx, frame_latents)
    for b in range(batch):
        for name, pixels in decoded.items():
            yield LayerImage(name, b, pixels[b], visible=name != "blended")
