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

import numpy as np
import torch

from acetate.engine import framing
from acetate.engine.outputs import LayerImage
from acetate.engine.pipelines.common import (
    control_input,
    decode_rgb_layers,
    decode_transparent_layers,
    encode_condition,
    frame_generators,
    patched_unet,
    prompt_rows,
    shared_attention,
    switch_step,
)
from acetate.engine.pipelines.context import ModeContext
from acetate.engine.pipelines.sampler import ControlInput, DenoiseSpec
from acetate.engine.schedulers import sampling_defaults, second_stage_defaults

#: Layers each SD1.5 attention-sharing model generates, in frame order.
SD15_FRAMES: dict[str, tuple[str, ...]] = {
    "fg2bg": ("background", "blended"),
    "bg2fg": ("foreground", "blended"),
    "joint": ("foreground", "background", "blended"),
}


def run_fg2bg(ctx: ModeContext) -> list[LayerImage]:
    """A background (and the blend) that fits the given transparent foreground."""
    return _run_conditional(ctx, "fg", "background")


def run_bg2fg(ctx: ModeContext) -> list[LayerImage]:
    """A transparent foreground (and the blend) that fits the given background."""
    return _run_conditional(ctx, "bg", "foreground")


def _run_conditional(ctx: ModeContext, given: str, wanted: str) -> list[LayerImage]:
    image = ctx.images[given]
    frame_h, frame_w = image.shape[:2]
    width, height = framing.model_size(frame_w, frame_h, ctx.native_size)
    # Exact resize both ways (no crop) so the generated layer aligns with the given one.
    resized = framing.resize_rgba(image, width, height)
    layers = generate_conditional(ctx, resized, given, width, height)
    return [
        LayerImage(
            layer.name,
            layer.batch_index,
            framing.resize_rgba(layer.pixels, frame_w, frame_h),
            visible=layer.visible,
        )
        for layer in layers
    ]


def generate_conditional(
    ctx: ModeContext, image: np.ndarray, given: str, width: int, height: int
) -> list[LayerImage]:
    """fg2bg / bg2fg at model size `width`×`height` (`image` already at that size)."""
    control = control_input(ctx, image, width, height)
    if ctx.sampler.family == "sdxl":
        return _sdxl_two_step(ctx, image, given, width, height, control)
    mode = "fg2bg" if given == "fg" else "bg2fg"
    condition = framing.grey_composite(image)
    return _sd15_frames(ctx, mode, width, height, condition, control)


def run_joint(ctx: ModeContext) -> list[LayerImage]:
    """Foreground, background and blend generated together (SD1.5)."""
    settings = ctx.settings
    control = control_input(ctx, None, settings.width, settings.height)
    return _sd15_frames(ctx, "joint", settings.width, settings.height, None, control)


def _sdxl_two_step(
    ctx: ModeContext,
    image: np.ndarray,
    given: str,
    width: int,
    height: int,
    control: ControlInput | None,
) -> list[LayerImage]:
    settings, sampler = ctx.settings, ctx.sampler
    batch = settings.batch
    # 1. Encode the given layer (over grey) as the condition latent
    condition = encode_condition(ctx, image, width, height).expand(batch, -1, -1, -1)
    embeds = prompt_rows(ctx, [settings.prompt] * batch, (width, height))
    # 2. Stage one: the blended image from the given layer
    first_scheduler = settings.scheduler or sampling_defaults("sdxl", settings.mode).scheduler
    blend_latents = _sdxl_stage(
        ctx,
        ctx.models.blend_patch,
        condition,
        embeds,
        first_scheduler,
        None,
        width,
        height,
        control,
    )
    blend_rgb = sampler.vae_decode(blend_latents)
    # 3. Stage two: the missing layer from the given layer + the blend (re-encoded, as the
    #    official two-step workflow feeds the blended image back in)
    blend_condition = sampler.vae_encode(blend_rgb)
    kind = ctx.models.kinds.get("unet_patch", "")
    second_scheduler, second_stop = second_stage_defaults(kind)
    stop_at = settings.stop_at if settings.stop_at is not None else second_stop
    result_latents = _sdxl_stage(
        ctx,
        ctx.models.unet_patch,
        torch.cat([condition, blend_condition], dim=1),
        embeds,
        settings.scheduler or second_scheduler,
        stop_at,
        width,
        height,
        control,
    )
    # 4. Decode: a generated foreground is transparent, a background is plain RGB
    if given == "fg":
        result = decode_rgb_layers(ctx, result_latents)
        wanted = "background"
    else:
        result = decode_transparent_layers(ctx, result_latents)
        wanted = "foreground"
    blend = decode_rgb_layers(ctx, blend_latents)
    layers = []
    for b in range(batch):
        layers.append(LayerImage(wanted, b, result[b]))
        layers.append(LayerImage("blended", b, blend[b], visible=False))
    return layers


def _sdxl_stage(
    ctx: ModeContext,
    patch: object,
    concat: torch.Tensor,
    embeds,
    scheduler_name: str,
    stop_at: float | None,
    width: int,
    height: int,
    control: ControlInput | None,
) -> torch.Tensor:
    settings, sampler = ctx.settings, ctx.sampler
    scheduler, timesteps = sampler.timesteps(scheduler_name, settings.steps)
    generators = frame_generators(settings.seed, settings.batch, 1)
    latents = sampler.start_latents(scheduler, timesteps, sampler.noise(generators, height, width))
    with patched_unet(ctx, patch) as remove:
        spec = DenoiseSpec(
            latents=latents,
            scheduler=scheduler,
            timesteps=timesteps,
            prompt=embeds,
            cfg=settings.cfg,
            concat=concat.to(sampler.device),
            control=control,
            switch_at=switch_step(stop_at, len(timesteps)),
            on_switch=remove,
            generator=generators,
        )
        return sampler.denoise(spec, ctx.progress.hook)


def _sd15_frames(
    ctx: ModeContext,
    mode: str,
    width: int,
    height: int,
    condition_rgb: np.ndarray | None,
    control: ControlInput | None,
) -> list[LayerImage]:
    settings, sampler = ctx.settings, ctx.sampler
    names = SD15_FRAMES[mode]
    frames, batch = len(names), settings.batch
    rows = frames * batch
    # 1. Prompts: the main prompt on every row; a layer's own prompt overrides its frame
    embeds = prompt_rows(ctx, [settings.prompt] * rows, (width, height))
    frame_prompts = [
        sampler.encode_texts([settings.prompt_for(name)])
        if settings.layer_prompts.get(name)
        else None
        for name in names
    ]
    # 2. Noise: one independent stream per frame of every result set
    scheduler_name = settings.scheduler or sampling_defaults("sd15", mode).scheduler
    scheduler, timesteps = sampler.timesteps(scheduler_name, settings.steps)
    generators = frame_generators(settings.seed, batch, frames)
    latents = sampler.start_latents(scheduler, timesteps, sampler.noise(generators, height, width))
    # 3. Denoise with shared attention across the frames of each result set
    cfg_rows = 2 if settings.cfg > 1.0 else 1
    with shared_attention(ctx, frame_prompts, cfg_rows, rows, condition_rgb) as detach:
        spec = DenoiseSpec(
            latents=latents,
            scheduler=scheduler,
            timesteps=timesteps,
            prompt=embeds,
            cfg=settings.cfg,
            control=control,
            switch_at=switch_step(settings.stop_at, len(timesteps)),
            on_switch=detach,
            generator=generators,
        )
        latents = sampler.denoise(spec, ctx.progress.hook)
    # 4. Decode: the foreground frame through the transparency decoder, the rest plain
    layers = []
    for index, name in enumerate(names):
        frame_latents = latents[index::frames]
        if name == "foreground":
            pixels = decode_transparent_layers(ctx, frame_latents)
        else:
            pixels = decode_rgb_layers(ctx, frame_latents)
        for b in range(batch):
            layers.append(LayerImage(name, b, pixels[b], visible=name != "blended"))
    return sorted(layers, key=lambda layer: layer.batch_index)
