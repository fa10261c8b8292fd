"""Qwen-Image-Layered decomposition as Acetate's own loop over the diffusers components.

`QwenImageLayeredPipeline.__call__` only accepts its two published buckets (640 and 1024), which
make a CPU test take a minute even with tiny weights, and it reports progress and previews in
its own way. This module runs the same steps over the same loaded components — image
preprocessing, prompt encoding, latent packing, the flow-matching schedule with the image's
shift, the true-CFG transformer loop and the per-layer VAE decode — reusing the pipeline's own
helpers (`encode_prompt`, `prepare_latents`, `_unpack_latents`, its image processor), with the
bucket taken from the model family (`acetate.engine.store.qwen`). At a published bucket the
result equals the diffusers pipeline's, which `tests/engine/test_decompose_loop.py` checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from acetate.bitdepth import unit_to_pixels

#: A loaded diffusers `QwenImageLayeredPipeline` (its components are registered at run time,
#: which type checkers cannot follow).
QwenImageLayeredPipeline = Any

#: The pipeline's own base sequence length for its image-dependent shift (256² px in 16² px
#: patches).
_BASE_SEQUENCE = 256 * 256 / 16 / 16
#: Longest prompt the transformer reads (the pipeline's default).
MAX_SEQUENCE = 512

StepHook = Callable[[int, torch.Tensor], None]


@dataclass(frozen=True)
class LayeredRun:
    """One decomposition of one image into `layers` RGBA layers, for `len(prompts)` result sets."""

    image: np.ndarray  # H×W×4 uint8 straight RGBA
    prompts: list[str]
    negative_prompt: str
    #: True CFG scale; > 1 runs the negative prompt as a second transformer pass per step.
    cfg: float
    layers: int
    steps: int
    #: The working area is about `bucket`² pixels (the family's buckets).
    bucket: int
    #: One generator per result set.
    generators: list[torch.Generator]


@dataclass
class Decomposed:
    """Denoised layer latents [B, C, N + 1, h, w] (frame 0: the composite) at `size`."""

    latents: torch.Tensor
    size: tuple[int, int]
    layers: int


#: Most tokens a caption has (the pipeline's `max_new_tokens`).
CAPTION_TOKENS = 512

#: Called with the number of caption tokens generated so far (it may raise to cancel).
TokenHook = Callable[[int], None]


def caption_image(
    pipe: QwenImageLayeredPipeline, image: np.ndarray, bucket: int, hook: TokenHook | None
) -> str:
    """The pipeline's own captioning (`get_image_caption`, English instruction) of `image`
    (H×W×4 uint8 straight RGBA) resized as `decompose` resizes it, with `hook(tokens)` after
    every generated token; needs the pipeline's processor (`load_qwen_pipeline`)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    processor = pipe.vl_processor
    if processor is None:
        raise ValueError("this Qwen-Image-Layered pipeline has no processor: it cannot caption")
    height, width = image.shape[:2]
    size_w, size_h = bucket_size(width, height, bucket, packing_multiple(pipe))
    resized = pipe.image_processor.resize(Image.fromarray(image, "RGBA"), size_h, size_w)
    device = pipe._execution_device
    inputs = processor(
        text=pipe.image_caption_prompt_en, images=resized, padding=True, return_tensors="pt"
    ).to(device)
    prompt_length = int(inputs.input_ids.shape[1])

    class _Hook(StoppingCriteria):  # type: ignore[misc]
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            if hook is not None:
                hook(int(input_ids.shape[1]) - prompt_length)
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    with torch.inference_mode():
        generated = pipe.text_encoder.generate(
            **inputs,
            max_new_tokens=CAPTION_TOKENS,
            stopping_criteria=StoppingCriteriaList([_Hook()]),
        )
    text = processor.batch_decode(
        generated[:, prompt_length:], skip_special_tokens=True, clean_up_tokenization_spaces=False
    )[0]
    return str(text).strip()


def bucket_size(width: int, height: int, bucket: int, multiple: int) -> tuple[int, int]:
    """(width, height) of the working image: about `bucket`² pixels with the input's aspect,
    in multiples of 32, then of `multiple` (the pipeline's `calculate_dimensions` rule)."""
    ratio = width / height
    target_w = math.sqrt(bucket * bucket * ratio)
    target_h = target_w / ratio
    w = max(32, round(target_w / 32) * 32)
    h = max(32, round(target_h / 32) * 32)
    return max(multiple, w // multiple * multiple), max(multiple, h // multiple * multiple)


def packing_multiple(pipe: QwenImageLayeredPipeline) -> int:
    """Pixels per packed latent patch side: the VAE's downsampling × the 2×2 packing."""
    return int(pipe.vae_scale_factor) * 2


def decompose(
    pipe: QwenImageLayeredPipeline,
    run: LayeredRun,
    hook: StepHook | None,
    *,
    previews: bool = True,
) -> Decomposed:
    """Denoise `run`'s layers; `hook(step, latents)` after every step (it may raise to cancel):
    the composite frame [1, C, h, w] for previews, or (`previews` False) the packed latents."""
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_layered import retrieve_timesteps

    device = pipe._execution_device
    batch = len(run.prompts)
    height, width = run.image.shape[:2]
    size_w, size_h = bucket_size(width, height, run.bucket, packing_multiple(pipe))
    # 1. The image, resized like the pipeline does, as a one-frame video in [-1, 1]
    processor = pipe.image_processor
    resized = processor.resize(Image.fromarray(run.image, "RGBA"), size_h, size_w)
    image = processor.preprocess(resized, size_h, size_w).unsqueeze(2)
    image = image.to(dtype=pipe.text_encoder.dtype)
    with torch.inference_mode():
        # 2. Prompts (and the negative prompt for true CFG)
        embeds, embeds_mask = pipe.encode_prompt(
            prompt=run.prompts, device=device, max_sequence_length=MAX_SEQUENCE
        )
        use_cfg = run.cfg > 1.0
        negative, negative_mask = None, None
        if use_cfg:
            negative, negative_mask = pipe.encode_prompt(
                prompt=[run.negative_prompt] * batch,
                device=device,
                max_sequence_length=MAX_SEQUENCE,
            )
        # 3. Noise for the composite + N layers, and the image's latents, packed
        channels = int(pipe.transformer.config.in_channels) // 4
        latents, image_latents = pipe.prepare_latents(
            image,
            batch,
            channels,
            size_h,
            size_w,
            run.layers,
            embeds.dtype,
            device,
            run.generators,
        )
        patches = (1, size_h // pipe.vae_scale_factor // 2, size_w // pipe.vae_scale_factor // 2)
        img_shapes = [[patches] * (run.layers + 2)] * batch
        # 4. The flow-matching schedule, shifted by the image's sequence length
        sigmas = list(np.linspace(1.0, 0, run.steps + 1)[:-1])
        mu = (image_latents.shape[1] / _BASE_SEQUENCE) ** 0.5
        timesteps, _ = retrieve_timesteps(pipe.scheduler, run.steps, device, sigmas=sigmas, mu=mu)
        is_rgb = torch.zeros(batch, dtype=torch.long, device=device)
        # 5. Denoise
        pipe.scheduler.set_begin_index(0)
        for index, t in enumerate(timesteps):
            model_input = torch.cat([latents, image_latents], dim=1)
            timestep = t.expand(latents.shape[0]).to(latents.dtype) / 1000
            prediction = _predict(pipe, "cond", model_input, timestep, embeds, embeds_mask,
                                  img_shapes, is_rgb)[:, : latents.size(1)]  # fmt: skip
            if use_cfg:
                unconditional = _predict(pipe, "uncond", model_input, timestep, negative,
                                         negative_mask, img_shapes, is_rgb)  # fmt: skip
                unconditional = unconditional[:, : latents.size(1)]
                prediction = unconditional + run.cfg * (prediction - unconditional)
            latents = pipe.scheduler.step(prediction, t, latents, return_dict=False)[0]
            if hook is not None:
                shown = latents
                if previews:
                    shown = _composite_frame(pipe, latents, size_h, size_w, run.layers)
                hook(index, shown)
        unpacked = pipe._unpack_latents(latents, size_h, size_w, run.layers, pipe.vae_scale_factor)
        unpacked = unpacked.to(pipe.vae.dtype)
        config = pipe.vae.config
        view = (1, int(config.z_dim), 1, 1, 1)
        mean = torch.tensor(config.latents_mean).view(view).to(unpacked.device, unpacked.dtype)
        # Divided by the reciprocal, as diffusers does, so the values match it bit for bit.
        inverse_std = 1.0 / torch.tensor(config.latents_std).view(view)
        inverse_std = inverse_std.to(unpacked.device, unpacked.dtype)
    return Decomposed(unpacked / inverse_std + mean, (size_w, size_h), run.layers)


def _predict(
    pipe: QwenImageLayeredPipeline,
    context: str,
    model_input: torch.Tensor,
    timestep: torch.Tensor,
    embeds: Any,
    embeds_mask: Any,
    img_shapes: list[list[tuple[int, int, int]]],
    is_rgb: torch.Tensor,
) -> torch.Tensor:
    """One transformer pass (its cache context named as in diffusers, so caches behave alike)."""
    with pipe.transformer.cache_context(context):
        output: torch.Tensor = pipe.transformer(
            hidden_states=model_input,
            timestep=timestep,
            guidance=None,
            encoder_hidden_states_mask=embeds_mask,
            encoder_hidden_states=embeds,
            img_shapes=img_shapes,
            attention_kwargs={},
            additional_t_cond=is_rgb,
            return_dict=False,
        )[0]
    return output


def _composite_frame(
    pipe: QwenImageLayeredPipeline, latents: torch.Tensor, height: int, width: int, layers: int
) -> torch.Tensor:
    """The first result set's composite frame [1, C, h, w], for step previews."""
    unpacked = pipe._unpack_latents(latents[:1], height, width, layers, pipe.vae_scale_factor)
    return unpacked[:, :, 0].detach()


def decode_layers(
    pipe: QwenImageLayeredPipeline, decomposed: Decomposed, batch_index: int
) -> torch.Tensor:
    """Result set `batch_index`'s layers (bottom first) → [N, 4, H, W] straight RGBA in [0, 1].

    The N frames go through the VAE as one batch, as in diffusers: decoding them one by one
    differs in the last bits (batch-size-dependent convolution kernels)."""
    frames = decomposed.latents[batch_index : batch_index + 1, :, 1:]
    _, channels, count, height, width = frames.shape
    frames = frames.permute(0, 2, 1, 3, 4).reshape(count, channels, 1, height, width)
    with torch.inference_mode():
        decoded = pipe.vae.decode(frames, return_dict=False)[0].squeeze(2)
    return (decoded / 2 + 0.5).clamp(0, 1).float()


def to_uint8(rgba: torch.Tensor) -> np.ndarray:
    """[4, H, W] in [0, 1] → H×W×4 uint8, rounded as diffusers rounds its PIL/uint8 outputs."""
    array = rgba.permute(1, 2, 0).cpu().numpy()
    return (array * 255).round().astype(np.uint8)


def to_pixels(rgba: torch.Tensor, bit_depth: int) -> np.ndarray:
    """[4, H, W] in [0, 1] → H×W×4 pixels at `bit_depth`: `to_uint8`, or uint16 from the
    VAE's float output."""
    if bit_depth == 16:
        return unit_to_pixels(rgba.permute(1, 2, 0).cpu().numpy(), 16)
    return to_uint8(rgba)
