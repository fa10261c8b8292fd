"""Transparent foreground generation: `fg`, `img2img`, `inpaint`, `upscale`.

All four run the same core — the base model with the foreground layer model (SDXL UNet patch
or SD1.5 attention sharing, one frame) and the transparency decoder — differing only in where
the latents start: pure noise (`fg`), a transparent image encoded with the transparency encoder
(`img2img`), the same with a mask keeping the rest on its original trajectory (`inpaint`), or
an encoded layer enlarged in latent space (`upscale`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from acetate.bitdepth import bit_depth_of, full_scale, to_depth, unit_to_pixels
from acetate.engine import framing
from acetate.engine.nets.transparency_codec import encode_transparent, rgba_uint8_to_tensor
from acetate.engine.outputs import LayerImage
from acetate.engine.pipelines.common import (
    LayerModel,
    control_input,
    decode_transparent_layers,
    denoise_stage,
    patched_unet,
    prompt_rows,
    shared_attention,
)
from acetate.engine.pipelines.context import ModeContext
from acetate.engine.pipelines.sampler import ControlInput

#: Upscale works at most at this multiple of the native pixel count; the rest is resampling.
UPSCALE_MAX_AREA = 4.0


def transparent_latents(
    ctx: ModeContext,
    width: int,
    height: int,
    *,
    stage: int = 0,
    prompts: list[str] | None = None,
    seeds: list[int] | None = None,
    init: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    strength: float = 1.0,
    control: ControlInput | None = None,
) -> torch.Tensor:
    """Denoise foreground latents at `width`×`height` with the foreground layer model: one row
    per result set (the foreground prompt, seed + b), or one per entry of `prompts`/`seeds`."""
    rows = prompts or [ctx.prompt_for("foreground")] * ctx.params.batch
    seeds = seeds or [ctx.seed + b for b in range(len(rows))]
    return denoise_stage(
        ctx,
        stage,
        _foreground_model(ctx, len(rows)),
        prompt=prompt_rows(ctx, rows, (width, height)),
        generators=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
        width=width,
        height=height,
        control=control,
        init=init,
        mask=mask,
        strength=strength,
    )


def _foreground_model(ctx: ModeContext, rows: int) -> LayerModel:
    if ctx.sampler.family == "sdxl":
        return patched_unet(ctx, ctx.models.unet_patch)
    cfg_rows = 2 if ctx.cfg > 1.0 else 1
    return shared_attention(ctx, [None], cfg_rows, rows)


def run_fg(ctx: ModeContext) -> Iterator[LayerImage]:
    """Text → transparent foreground layers."""
    width, height = ctx.size
    control = control_input(ctx, None, width, height)
    latents = transparent_latents(ctx, width, height, control=control)
    rgba = decode_transparent_layers(ctx, latents)
    for b in range(ctx.params.batch):
        yield LayerImage("foreground", b, rgba[b])


def run_img2img(ctx: ModeContext) -> Iterator[LayerImage]:
    """A transparent image (optionally masked) re-generated at `strength`, kept transparent."""
    params = ctx.params
    image = ctx.images["image"]
    frame_h, frame_w = image.shape[:2]
    width, height = framing.model_size(frame_w, frame_h, ctx.native_size)
    init = _encode(ctx, framing.resize_rgba(image, width, height))
    mask_pixels = ctx.images.get("mask")  # inpaint needs one; img2img may have one
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
        strength=params.strength,
        control=control,
    )
    rgba = decode_transparent_layers(ctx, latents)
    for b in range(params.batch):
        result = framing.resize_rgba(rgba[b], frame_w, frame_h)
        if mask_pixels is not None:
            soft = framing.feather_mask(mask_pixels, params.feather)
            result = blend_rgba(image, result, soft)
        yield LayerImage("foreground", b, result)


def run_upscale(ctx: ModeContext) -> Iterator[LayerImage]:
    """A transparent layer enlarged by `scale`: latent upscale + a low-strength transparent pass."""
    params = ctx.params
    image = ctx.images["image"]
    frame_h, frame_w = image.shape[:2]
    out_w = max(1, round(frame_w * params.scale))
    out_h = max(1, round(frame_h * params.scale))
    # Work at the output size (multiples of 64), capped in area; encode at that ÷ scale.
    width, height = framing.fit_area(out_w, out_h, ctx.native_size**2 * UPSCALE_MAX_AREA)
    base_w, base_h = framing.fit_area(width / params.scale, height / params.scale)
    small = _encode(ctx, framing.resize_rgba(image, base_w, base_h))
    init = F.interpolate(small, size=(height // 8, width // 8), mode="bicubic", align_corners=False)
    control = control_input(ctx, image, width, height)
    latents = transparent_latents(
        ctx, width, height, init=init, strength=params.strength, control=control
    )
    rgba = decode_transparent_layers(ctx, latents)
    for b in range(params.batch):
        yield LayerImage("foreground", b, framing.resize_rgba(rgba[b], out_w, out_h))


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
    """Straight-alpha mix `original·(1−m) + generated·m`, computed premultiplied, at
    `generated`'s depth (an 8-bit `original` is scaled by 257 into a 16-bit result)."""
    depth = bit_depth_of(generated)
    original = to_depth(original, depth)
    m = mask.astype(np.float32)[..., None] / 255.0
    a = original.astype(np.float32) / full_scale(generated)
    b = generated.astype(np.float32) / full_scale(generated)
    alpha = a[..., 3:4] * (1.0 - m) + b[..., 3:4] * m
    colour = a[..., :3] * a[..., 3:4] * (1.0 - m) + b[..., :3] * b[..., 3:4] * m
    # Fully transparent mixes keep the straight mix of the colours (hidden, but editable).
    hidden = a[..., :3] * (1.0 - m) + b[..., :3] * m
    colour = np.where(alpha > 1e-6, colour / np.maximum(alpha, 1e-6), hidden)
    out = np.concatenate([np.clip(colour, 0.0, 1.0), alpha], axis=2)
    mixed = unit_to_pixels(out, depth)
    # Outside the mask the original is kept byte for byte (nothing lost).
    untouched = mask == 0
    mixed[untouched] = original[untouched]
    return mixed
