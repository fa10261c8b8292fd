"""Transparent foreground generation: `fg`, `img2img`, `inpaint`, `upscale`.

All four run the same core — the base model with the foreground layer model (SDXL UNet patch
or SD1.5 attention sharing, one frame) and the transparency decoder — differing only in where
the latents start: pure noise (`fg`), a transparent image encoded with the transparency encoder
(`img2img`), the same with a mask keeping the rest on its original trajectory (`inpaint`), or
an encoded layer enlarged in latent space (`upscale`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import numpy as np
import torch
import torch.nn.functional as F

from acetate.engine import framing
from acetate.engine.nets.transparency_codec import encode_transparent, rgba_uint8_to_tensor
from acetate.engine.outputs import LayerImage
from acetate.engine.pipelines.common import (
    control_input,
    decode_transparent_layers,
    frame_generators,
    patched_unet,
    prompt_rows,
    shared_attention,
    switch_step,
)
from acetate.engine.pipelines.context import ModeContext
from acetate.engine.pipelines.sampler import ControlInput, DenoiseSpec, InpaintInput
from acetate.engine.schedulers import sampling_defaults

#: Upscale works at most at this multiple of the native pixel count; the rest is resampling.
UPSCALE_MAX_AREA = 4.0


def transparent_latents(
    ctx: ModeContext,
    width: int,
    height: int,
    *,
    init: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    strength: float = 1.0,
    control: ControlInput | None = None,
) -> torch.Tensor:
    """Denoise `batch` foreground latents at `width`×`height` with the foreground layer model."""
    settings, sampler = ctx.settings, ctx.sampler
    batch = settings.batch
    # 1. Prompt (the foreground layer prompt folds into the main prompt for one-frame models)
    embeds = prompt_rows(ctx, [settings.prompt_for("foreground")] * batch, (width, height))
    # 2. Timesteps and starting latents
    scheduler_name = settings.scheduler or sampling_defaults(sampler.family, "fg").scheduler
    scheduler, timesteps = sampler.timesteps(scheduler_name, settings.steps, strength)
    generators = frame_generators(settings.seed, batch, 1)
    noise = sampler.noise(generators, height, width)
    if init is not None:
        init = init.expand(batch, -1, -1, -1).to(sampler.device)
    latents = sampler.start_latents(scheduler, timesteps, noise, init)
    inpaint = None
    if mask is not None and init is not None:
        inpaint = InpaintInput(init, noise, mask.expand(batch, -1, -1, -1).to(sampler.device))
    # 3. Denoise with the layer model applied (switched off after `stop_at`)
    with _foreground_model(ctx, batch) as remove:
        spec = DenoiseSpec(
            latents=latents,
            scheduler=scheduler,
            timesteps=timesteps,
            prompt=embeds,
            cfg=settings.cfg,
            control=control,
            inpaint=inpaint,
            switch_at=switch_step(settings.stop_at, len(timesteps)),
            on_switch=remove,
            generator=generators,
        )
        return sampler.denoise(spec, ctx.progress.hook)


def _foreground_model(ctx: ModeContext, batch: int) -> AbstractContextManager:
    if ctx.sampler.family == "sdxl":
        return patched_unet(ctx, ctx.models.unet_patch)
    rows = 2 if ctx.settings.cfg > 1.0 else 1
    return shared_attention(ctx, [None], rows, batch)


def run_fg(ctx: ModeContext) -> list[LayerImage]:
    """Text → transparent foreground layers."""
    settings = ctx.settings
    control = control_input(ctx, None, settings.width, settings.height)
    latents = transparent_latents(ctx, settings.width, settings.height, control=control)
    rgba = decode_transparent_layers(ctx, latents)
    return [LayerImage("foreground", b, rgba[b]) for b in range(settings.batch)]


def run_img2img(ctx: ModeContext) -> list[LayerImage]:
    """A transparent image (optionally masked) re-generated at `strength`, kept transparent."""
    settings = ctx.settings
    image = ctx.images["image"]
    frame_h, frame_w = image.shape[:2]
    width, height = framing.model_size(frame_w, frame_h, ctx.native_size)
    init = _encode(ctx, framing.resize_rgba(image, width, height))
    mask_pixels = ctx.images.get("mask") if settings.mode == "inpaint" else None
    latent_mask = None
    if mask_pixels is not None:
        latent_mask = _latent_mask(framing.resize_mask(mask_pixels, width, height))
    control = control_input(ctx, image, width, height)
    latents = transparent_latents(
        ctx,
        width,
        height,
        init=init,
        mask=latent_mask,
        strength=settings.strength,
        control=control,
    )
    rgba = decode_transparent_layers(ctx, latents)
    layers = []
    for b in range(settings.batch):
        result = framing.resize_rgba(rgba[b], frame_w, frame_h)
        if mask_pixels is not None:
            soft = framing.feather_mask(mask_pixels, settings.feather)
            result = blend_rgba(image, result, soft)
        layers.append(LayerImage("foreground", b, result))
    return layers


def run_upscale(ctx: ModeContext) -> list[LayerImage]:
    """A transparent layer enlarged by `scale`: latent upscale + a low-strength transparent pass."""
    settings = ctx.settings
    image = ctx.images["image"]
    frame_h, frame_w = image.shape[:2]
    out_w = max(1, round(frame_w * settings.scale))
    out_h = max(1, round(frame_h * settings.scale))
    # Work at the output size (multiples of 64), capped in area; encode at that ÷ scale.
    width, height = framing.fit_area(out_w, out_h, ctx.native_size**2 * UPSCALE_MAX_AREA)
    base_w, base_h = framing.fit_area(width / settings.scale, height / settings.scale)
    small = _encode(ctx, framing.resize_rgba(image, base_w, base_h))
    init = F.interpolate(small, size=(height // 8, width // 8), mode="bicubic", align_corners=False)
    control = control_input(ctx, image, width, height)
    latents = transparent_latents(
        ctx, width, height, init=init, strength=settings.strength, control=control
    )
    rgba = decode_transparent_layers(ctx, latents)
    return [
        LayerImage("foreground", b, framing.resize_rgba(rgba[b], out_w, out_h))
        for b in range(settings.batch)
    ]


def _encode(ctx: ModeContext, rgba: np.ndarray) -> torch.Tensor:
    """RGBA uint8 → scaled latents with the transparency offset (the official img2img input)."""
    if ctx.models.encoder is None:
        raise RuntimeError("transparency encoder not loaded")
    tensor = rgba_uint8_to_tensor(rgba).to(ctx.sampler.device)
    with torch.inference_mode():
        return encode_transparent(
            ctx.sampler.vae, ctx.models.encoder, tensor, ctx.models.encoder_offset_scale
        ).float()


def _latent_mask(mask: np.ndarray) -> torch.Tensor:
    """Pixel mask → [1,1,h/8,w/8] in [0,1]; any selected pixel in a cell regenerates it."""
    tensor = torch.from_numpy(mask).float()[None, None] / 255.0
    return F.max_pool2d(tensor, kernel_size=8)


def blend_rgba(original: np.ndarray, generated: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Straight-alpha mix `original·(1−m) + generated·m`, computed premultiplied."""
    m = mask.astype(np.float32)[..., None] / 255.0
    a = original.astype(np.float32) / 255.0
    b = generated.astype(np.float32) / 255.0
    alpha = a[..., 3:4] * (1.0 - m) + b[..., 3:4] * m
    colour = a[..., :3] * a[..., 3:4] * (1.0 - m) + b[..., :3] * b[..., 3:4] * m
    colour = np.where(alpha > 1e-6, colour / np.maximum(alpha, 1e-6), 0.0)
    out = np.concatenate([np.clip(colour, 0.0, 1.0), alpha], axis=2)
    mixed = np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
    # Outside the mask the original is kept byte for byte (nothing lost).
    untouched = mask == 0
    mixed[untouched] = original[untouched]
    return mixed
