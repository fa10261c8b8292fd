"""Steps shared by several modes: applying layer models, seeds, control, decoding."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import numpy as np
import torch

from acetate.bitdepth import unit_to_pixels
from acetate.engine import framing
from acetate.engine.memory import release_unused_memory
from acetate.engine.nets.attention_sharing import AttentionSharing
from acetate.engine.nets.transparency_codec import (
    decode_rgba,
    rgba_tensor_to_uint8,
    rgba_tensor_to_uint16,
)
from acetate.engine.nets.unet_patch import UNetPatch, apply_unet_patch
from acetate.engine.pipelines.context import ModeContext, loaded
from acetate.engine.pipelines.sampler import ControlInput, DenoiseSpec, InpaintInput, PromptEmbeds
from acetate.errors import InputError

#: A layer model applied for one denoising run; it yields a function that removes it early.
LayerModel = AbstractContextManager[Callable[[], None]]


def switch_step(stop_at: float | None, steps: int) -> int | None:
    """Index of the first step run without the layer model, or None to keep it throughout."""
    if stop_at is None or stop_at >= 1.0:
        return None
    return max(1, min(steps, round(stop_at * steps)))


def denoise_stage(
    ctx: ModeContext,
    stage: int,
    layer_model: LayerModel,
    *,
    prompt: PromptEmbeds,
    generators: list[torch.Generator],
    width: int,
    height: int,
    concat: torch.Tensor | None = None,
    control: ControlInput | None = None,
    init: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    strength: float = 1.0,
) -> torch.Tensor:
    """One denoising run of stage `stage` (its scheduler and stop-at from the resolved request):
    noise (or `init` noised to `strength`), the layer model applied until stop-at, progress and
    cancel after every step. `mask` keeps the unmasked latents on `init`'s trajectory."""
    settings, sampler = ctx.stage(stage), ctx.sampler
    scheduler, timesteps = sampler.timesteps(settings.scheduler, ctx.steps, strength)
    noise = sampler.noise(generators, height, width)
    rows = len(generators)
    if init is not None:
        init = init.expand(rows, -1, -1, -1).to(sampler.device)
    latents = sampler.start_latents(scheduler, timesteps, noise, init)
    inpaint = None
    if mask is not None and init is not None:
        inpaint = InpaintInput(init, noise, mask.expand(rows, -1, -1, -1).to(sampler.device))
    with layer_model as remove:
        spec = DenoiseSpec(
            latents=latents,
            scheduler=scheduler,
            timesteps=timesteps,
            prompt=prompt,
            cfg=ctx.cfg,
            concat=None if concat is None else concat.to(sampler.device),
            control=control,
            inpaint=inpaint,
            switch_at=switch_step(settings.stop_at, len(timesteps)),
            on_switch=remove,
            generator=generators,
        )
        return sampler.denoise(spec, ctx.progress.hook)


@contextmanager
def patched_unet(ctx: ModeContext, patch: UNetPatch | None) -> Iterator[Callable[[], None]]:
    """Merge an SDXL layer patch into the UNet; yields a function that removes it early."""
    unet_patch = loaded(patch, "UNet patch")
    handle = apply_unet_patch(ctx.sampler.unet, unet_patch, ctx.params.layer_weight)
    release_unused_memory()  # the merge's per-tensor temporaries
    try:
        yield handle.remove
    finally:
        handle.remove()


@contextmanager
def shared_attention(
    ctx: ModeContext,
    frame_prompts: list[torch.Tensor | None],
    cfg_rows: int,
    rows_per_half: int,
    control_rgb: np.ndarray | None = None,
) -> Iterator[Callable[[], None]]:
    """Attach the SD1.5 attention-sharing model; yields a function that detaches it early.

    `cond_mark` marks the unconditional CFG rows (1) so per-layer prompts reach only the
    positive rows, as in the official implementation.
    """
    sharing: AttentionSharing = loaded(ctx.models.attention_sharing, "attention sharing")
    device = ctx.sampler.device
    cond_mark = torch.cat(
        [torch.ones(rows_per_half * (cfg_rows - 1)), torch.zeros(rows_per_half)]
    ).to(device)
    handle = sharing.attach(
        ctx.sampler.unet, strength=ctx.params.layer_weight, device=ctx.sampler.device
    )
    try:
        if sharing.use_control:
            if control_rgb is None:
                raise InputError("this layer model needs a condition image", field="image")
            signal = torch.from_numpy(control_rgb).permute(2, 0, 1)[None].float()
            sharing.set_control((signal * 2.0 - 1.0).to(device))
        sharing.set_frame_prompts(frame_prompts, cond_mark)
        yield handle.detach
    finally:
        handle.detach()


def frame_generators(seed: int, batch: int, frames: int) -> list[torch.Generator]:
    """One CPU generator per latent row: result set b uses seed + b, each frame its own stream."""
    generators = []
    for b in range(batch):
        root = torch.Generator("cpu").manual_seed(seed + b)
        if frames == 1:
            generators.append(root)
            continue
        for _ in range(frames):
            child = int(torch.randint(0, 2**62, (1,), generator=root))
            generators.append(torch.Generator("cpu").manual_seed(child))
    return generators


def prompt_rows(ctx: ModeContext, rows: list[str], size: tuple[int, int]) -> PromptEmbeds:
    negatives = [ctx.params.negative_prompt] * len(rows)
    return ctx.sampler.encode_prompt(rows, negatives, ctx.cfg, size)


def control_input(
    ctx: ModeContext, source: np.ndarray | None, width: int, height: int
) -> ControlInput | None:
    """The ControlNet input at the generation size, from `control_image` or the mode's image."""
    params = ctx.params
    if params.control == "none" or ctx.controlnet is None:
        return None
    image = ctx.images.get("control_image", source)
    if image is None:
        raise InputError(
            f"control={params.control} needs a control_image in mode {params.mode}",
            field="control_image",
        )
    if params.control == "canny":
        image = framing.canny(image)
    rgb = framing.fit_resize(np.ascontiguousarray(image[..., :3]), width, height)
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    return ControlInput(ctx.controlnet, tensor, params.control_strength)


def decode_transparent_layers(ctx: ModeContext, latents: torch.Tensor) -> np.ndarray:
    """Scaled latents → [B,H,W,4] straight RGBA via the transparency decoder, uint8 or (with
    `bit_depth` 16) uint16 from the decoder's float output."""
    ctx.progress.check_cancel()
    with torch.inference_mode():
        decoder = loaded(ctx.models.decoder, "transparency decoder")
        rgba = decode_rgba(ctx.sampler.vae, decoder, latents, ctx.params.decode)
    if ctx.params.bit_depth == 16:
        return rgba_tensor_to_uint16(rgba)
    return rgba_tensor_to_uint8(rgba)


def decode_rgb_layers(ctx: ModeContext, latents: torch.Tensor) -> np.ndarray:
    """Scaled latents → [B,H,W,4] opaque RGBA via the plain VAE, at the request's bit depth."""
    ctx.progress.check_cancel()
    return rgb_to_layers(ctx.sampler.vae_decode(latents), ctx.params.bit_depth)


def rgb_to_layers(rgb: torch.Tensor, bit_depth: int = 8) -> np.ndarray:
    """VAE output [B,3,H,W] in [0,1] → [B,H,W,4] opaque RGBA, uint8 or (16) uint16."""
    values = rgb.permute(0, 2, 3, 1).cpu().numpy()
    if bit_depth == 16:
        array = unit_to_pixels(values, 16)
    else:
        array = (values * 255.0).round().clip(0, 255).astype(np.uint8)
    alpha = np.full((*array.shape[:3], 1), np.iinfo(array.dtype).max, dtype=array.dtype)
    return np.concatenate([array, alpha], axis=3)


def encode_condition(ctx: ModeContext, rgba: np.ndarray, width: int, height: int) -> torch.Tensor:
    """A condition image (RGBA over 50 % grey, cover-resized) → scaled VAE latents [1,4,h,w]."""
    rgb = framing.grey_composite(framing.cover_resize_rgba(rgba, width, height))
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    return ctx.sampler.vae_encode(tensor)
