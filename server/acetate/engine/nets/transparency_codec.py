"""The latent transparency codec the pipelines call: decode latents to RGBA, encode RGBA.

Decoding runs the SD-VAE, then the transparent decoder on its RGB output and the unscaled latent,
as one pass (`fast`) or the official 8-view flip/rotation test-time augmentation combined with a
per-element median (`tta`). Encoding hides alpha in the latent: the SD-VAE posterior mean plus
the transparency encoder's offset in units of the posterior's std.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

from acetate.engine.nets import banded_vae
from acetate.engine.nets.decoder_paths import PREPARED
from acetate.engine.nets.prepared_decoder import PreparedDecoder
from acetate.engine.nets.rgb_padding import pad_rgb_tensor
from acetate.engine.nets.transparent_vae import (
    SIZE_MULTIPLE,
    TransparentDecoder,
    TransparentEncoder,
)
from acetate.errors import InputError

DecodeMode = Literal["tta", "fast"]
DECODE_MODES: tuple[DecodeMode, ...] = ("tta", "fast")

#: The official test-time augmentation, in the official order: (horizontal flip, quarter turns).
TTA_VIEWS: tuple[tuple[bool, int], ...] = tuple((f, k) for f in (False, True) for k in range(4))
#: Views × pixels per batched TTA pass on accelerators (8 views at 512²; bounds memory). On the
#: CPU one view per pass is faster: measured 2.65 s per view at batch 1 vs 4.0 s at batch 8, 512².
ACCELERATOR_PIXELS_PER_PASS = 8 * 512 * 512


def _check_mode(mode: str) -> None:
    if mode not in DECODE_MODES:
        raise InputError(
            f"decode must be one of {', '.join(DECODE_MODES)}, got {mode!r}", field="decode"
        )


def _check_size(height: int, width: int, multiple: int) -> None:
    for field, value in (("height", height), ("width", width)):
        if value % multiple:
            raise InputError(
                f"{field} {value} is not a multiple of {multiple}, as latent transparency needs",
                field=field,
            )


def _view(x: torch.Tensor, flip: bool, turns: int) -> torch.Tensor:
    return torch.rot90(x.flip(3) if flip else x, turns, dims=(2, 3))


def _unview(y: torch.Tensor, flip: bool, turns: int) -> torch.Tensor:
    y = torch.rot90(y, -turns, dims=(2, 3))
    return y.flip(3) if flip else y


#: Prepared networks of one decode, by (height, width) of a pass; None: that size runs eagerly.
Nets = dict[tuple[int, int], PreparedDecoder | None]


def _decode_pass(
    decoder: TransparentDecoder, pixel: torch.Tensor, latent: torch.Tensor, nets: Nets | None = None
) -> torch.Tensor:
    net = (nets or {}).get((pixel.shape[-2], pixel.shape[-1]))
    if net is not None:  # the same network prepared for ONNX Runtime, output clipped too
        return net(pixel, latent)
    channels_last = torch.channels_last  # ~13% less CPU time per pass; faster fp16 convs on GPUs
    pixel = pixel.contiguous(memory_format=channels_last)
    return decoder(pixel, latent.contiguous(memory_format=channels_last)).clamp(0, 1)


def _decode_tta(
    decoder: TransparentDecoder,
    pixel: torch.Tensor,
    latent: torch.Tensor,
    pixels_per_pass: int,
    nets: Nets | None = None,
) -> torch.Tensor:
    """Official 8-view TTA, views of one shape batched together, combined by a lower median."""
    batch, _, height, width = pixel.shape
    rows_per_pass = max(1, pixels_per_pass // (height * width))
    groups: dict[bool, list[tuple[bool, int]]] = {}
    for view in TTA_VIEWS:  # odd quarter turns transpose a non-square image
        groups.setdefault(height != width and view[1] % 2 == 1, []).append(view)
    outputs: dict[tuple[bool, int], torch.Tensor] = {}
    for views in groups.values():
        pixels = torch.cat([_view(pixel, *view) for view in views])
        latents = torch.cat([_view(latent, *view) for view in views])
        # A prepared network takes every view at once and runs as many together as it can.
        prepared = (nets or {}).get((pixels.shape[-2], pixels.shape[-1])) is not None
        step = len(pixels) if prepared else rows_per_pass
        decoded = torch.cat(
            [
                _decode_pass(decoder, pixels[i : i + step], latents[i : i + step], nets)
                for i in range(0, len(pixels), step)
            ]
        )
        for view, part in zip(views, decoded.split(batch), strict=True):
            outputs[view] = _unview(part, *view)
    return tta_median([outputs[view] for view in TTA_VIEWS])


def tta_median(views: list[torch.Tensor]) -> torch.Tensor:
    """The element-wise lower median of same-shaped views, as the official `torch.median`.

    Computed on a rank-2 [views, elements] tensor: Apple's MPS sort handles at most 4-D, so the
    official stack-of-5-D median crashes there ("MPSNDArraySort … Axis = 4"). Half precision is
    sorted as float32, as the community fixes do: a median picks one of its inputs, so the cast
    round-trips exactly and the result equals the plain stacked median bit for bit.
    """
    first = views[0]
    stacked = torch.stack([view.reshape(-1) for view in views])
    if stacked.dtype in (torch.float16, torch.bfloat16):
        stacked = stacked.float()
    # torch.median takes the lower of the two middle values of 8, exactly as the official code.
    return stacked.median(dim=0).values.to(first.dtype).reshape(first.shape)


@torch.inference_mode()
def decode_transparent(
    decoder: TransparentDecoder,
    pixel: torch.Tensor,
    latent: torch.Tensor,
    mode: DecodeMode = "tta",
    *,
    pixels_per_pass: int | None = None,
    prepared: bool = True,
) -> torch.Tensor:
    """RGBA [B,4,H,W] float32 in [0,1], straight alpha, channels in R,G,B,A order.

    `pixel`: the SD-VAE's RGB output in [0,1] [B,3,H,W]; `latent`: the UNSCALED VAE latent
    (z / scaling_factor) [B,4,H/8,W/8]. `tta` is the official 8-view flip × rot90 median,
    `fast` one pass. `pixels_per_pass` bounds views × pixels per batched TTA pass (memory);
    by default one view per pass on the CPU, `ACCELERATOR_PIXELS_PER_PASS` elsewhere.
    `prepared`: a decoder the engine attached to `decoder_paths.PREPARED` runs its prepared
    (ONNX Runtime) network where one is ready for the size when the decode starts (asking
    starts preparing it in the background); False: always eager.
    """
    _check_mode(mode)
    batch, _, height, width = pixel.shape
    _check_size(height, width, SIZE_MULTIPLE)
    if latent.shape[0] != batch or tuple(latent.shape[-2:]) != (height // 8, width // 8):
        raise ValueError(f"latent {tuple(latent.shape)} does not match pixel {tuple(pixel.shape)}")
    device = decoder.device
    if pixels_per_pass is None:
        pixels_per_pass = 1 if device.type == "cpu" else ACCELERATOR_PIXELS_PER_PASS
    pixel = pixel.to(device, decoder.dtype)
    latent = latent.to(device, decoder.dtype)
    # Chosen once per decode, so that one result never mixes eager and prepared passes.
    nets: Nets = {}
    if prepared:
        for size in {(height, width), (width, height) if mode == "tta" else (height, width)}:
            nets[size] = PREPARED.net_for(decoder, *size)
    if mode == "fast":
        result = _decode_pass(decoder, pixel, latent, nets)
    else:
        result = _decode_tta(decoder, pixel, latent, pixels_per_pass, nets)
    # Official channel order is alpha first; everything downstream wants RGBA.
    return torch.cat([result[:, 1:], result[:, :1]], dim=1).float().contiguous()


@contextmanager
def vae_precision(vae: AutoencoderKL) -> Iterator[torch.dtype]:
    """Run an fp16 VAE that overflows in fp16 (SDXL's, `force_upcast`) in fp32, like diffusers."""
    model: Any = vae  # diffusers' `to` and `config` are typed loosely
    upcast = model.dtype == torch.float16 and bool(getattr(model.config, "force_upcast", False))
    if upcast:
        model.to(dtype=torch.float32)
    try:
        yield model.dtype
    finally:
        if upcast:
            model.to(dtype=torch.float16)


@torch.inference_mode()
def decode_rgba(
    vae: AutoencoderKL,
    decoder: TransparentDecoder,
    latents: torch.Tensor,
    mode: DecodeMode = "tta",
) -> torch.Tensor:
    """Scaled diffusion latents [B,4,h,w] → RGBA [B,4,8h,8w] (see `decode_transparent`)."""
    _check_mode(mode)
    config: Any = vae.config
    vae_scale = 2 ** (len(config.block_out_channels) - 1)
    _check_size(latents.shape[-2] * vae_scale, latents.shape[-1] * vae_scale, SIZE_MULTIPLE)
    unscaled = latents / config.scaling_factor
    with vae_precision(vae) as dtype:
        image = banded_vae.vae_decode(vae, unscaled.to(vae.device, dtype))
    pixel = (image.float() * 0.5 + 0.5).clamp(0, 1)
    return decode_transparent(decoder, pixel, unscaled, mode)


@torch.inference_mode()
def encode_offset(
    encoder: TransparentEncoder, rgba: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """Latent offset [B,4,H/8,W/8] of straight RGBA [B,4,H,W] in [0,1], times `scale`.

    `scale` is 1.0 for the layerdiffusion-v1 encoders and 300.0 for `ld_diffusers_*` ones.
    """
    if rgba.ndim != 4 or rgba.shape[1] != 4:
        raise ValueError(f"expected a [B,4,H,W] RGBA tensor, got shape {tuple(rgba.shape)}")
    _check_size(rgba.shape[2], rgba.shape[3], 8)
    feed = torch.cat([rgba[:, 3:].float(), pad_rgb_tensor(rgba).to(rgba.device)], dim=1)
    return encoder(feed.to(encoder.device, encoder.dtype)) * scale


@torch.inference_mode()
def encode_transparent(
    vae: AutoencoderKL,
    encoder: TransparentEncoder,
    rgba: torch.Tensor,
    offset_scale: float = 1.0,
) -> torch.Tensor:
    """Scaled diffusion latents of straight RGBA [B,4,H,W] in [0,1] with the transparency offset.

    The VAE sees the image premultiplied onto mid-grey; the offset replaces the posterior's noise:
    `(mean + std * offset) * scaling_factor`.
    """
    offset = encode_offset(encoder, rgba, offset_scale)
    rgba = rgba.float()
    feed = (rgba[:, :3] * 2.0 - 1.0) * rgba[:, 3:]
    with vae_precision(vae) as dtype:
        posterior = vae.encode(feed.to(vae.device, dtype)).latent_dist
        latents = posterior.mean + posterior.std * offset.to(posterior.std)
    config: Any = vae.config
    return latents * config.scaling_factor


def rgba_tensor_to_uint8(rgba: torch.Tensor) -> np.ndarray:
    """[B,4,H,W] in [0,1] → [B,H,W,4] uint8 (rounded, clipped)."""
    scaled = (rgba.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


def rgba_tensor_to_uint16(rgba: torch.Tensor) -> np.ndarray:
    """[B,4,H,W] in [0,1] → [B,H,W,4] uint16 (rounded, clipped): `bit_depth` 16 results."""
    # float32 holds every 0..65535 level exactly; int32 because torch's uint16 lacks most ops.
    scaled = (rgba.detach().float().clamp(0, 1) * 65535.0).round().to(torch.int32)
    return scaled.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint16)


def rgba_uint8_to_tensor(rgba: np.ndarray) -> torch.Tensor:
    """[B,H,W,4] (or [H,W,4]) uint8 → [B,4,H,W] float32 in [0,1]."""
    if rgba.dtype != np.uint8 or rgba.shape[-1] != 4 or rgba.ndim not in (3, 4):
        raise ValueError(f"expected uint8 RGBA [B,]H,W,4, got {rgba.dtype} {rgba.shape}")
    batch = rgba if rgba.ndim == 4 else rgba[None]
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float() / 255.0
