"""The VAE decoder with its full-resolution stages run in row bands, for a fraction of the memory.

At 1024² SDXL's VAE decoder holds several 0.5–1 GB feature maps at once in its last blocks (a
ResNet block's input, its normalised copy, the activation, the convolution output, the
shortcut): about 4 GB above the weights, the largest peak of a CPU job. Tiled decoding (diffusers'
`enable_tiling`) normalises each tile with its own statistics and so changes the picture. Here
each layer is still computed over the whole image, with GroupNorm's statistics taken over the
whole feature map, but its output is produced in bands of rows, each band reading the rows it
needs (one more above and below for a 3×3 convolution): only the layer's input and output are
held whole. The result equals the plain decode up to float rounding (max |Δ| ~1e-6); decoders
with other block types decode as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Stages whose input feature map takes at least this many bytes go through bands (those of a
#: 1024² SDXL image from its 512² stage on; a 512² SD1.5 image decodes as before).
BANDED_FROM_BYTES = 256 * 2**20
#: Output rows per band (a few tens of MB per band at 1024² width).
ROWS_PER_BAND = 64

Rows = Callable[[int, int], torch.Tensor]


def _plain_conv(conv: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and conv.kernel_size[0] == conv.kernel_size[1]
        and conv.padding == (conv.kernel_size[0] // 2,) * 2
    )


def _plain_resnet(resnet: nn.Module) -> bool:
    from diffusers.models.resnet import ResnetBlock2D

    return (
        isinstance(resnet, ResnetBlock2D)
        and resnet.upsample is None
        and resnet.downsample is None
        and resnet.time_emb_proj is None
        and isinstance(resnet.norm1, nn.GroupNorm)
        and isinstance(resnet.norm2, nn.GroupNorm)
        and isinstance(resnet.nonlinearity, nn.SiLU)
        and _plain_conv(resnet.conv1)
        and _plain_conv(resnet.conv2)
        and (resnet.conv_shortcut is None or _plain_conv(resnet.conv_shortcut))
    )


def _plain_upsampler(upsampler: nn.Module) -> bool:
    from diffusers.models.upsampling import Upsample2D

    return (
        isinstance(upsampler, Upsample2D)
        and upsampler.norm is None
        and not upsampler.use_conv_transpose
        and upsampler.interpolate
        and upsampler.use_conv
        and _plain_conv(upsampler.conv)
    )


def supports_banding(decoder: Any) -> bool:
    """Whether `decoder` (diffusers' `Decoder`) has only blocks the banded path reproduces."""
    from diffusers.models.unets.unet_2d_blocks import UpDecoderBlock2D

    blocks = list(getattr(decoder, "up_blocks", []))
    return (
        bool(blocks)
        and all(isinstance(block, UpDecoderBlock2D) for block in blocks)
        and all(_plain_resnet(r) for block in blocks for r in block.resnets)
        and all(_plain_upsampler(u) for block in blocks for u in block.upsamplers or [])
        and isinstance(decoder.conv_norm_out, nn.GroupNorm)
        and isinstance(decoder.conv_act, nn.SiLU)
        and _plain_conv(decoder.conv_out)
    )


def _bands(height: int) -> list[tuple[int, int]]:
    return [(top, min(top + ROWS_PER_BAND, height)) for top in range(0, height, ROWS_PER_BAND)]


def _normalised(x: torch.Tensor, norm: nn.GroupNorm) -> Rows:
    """Rows of SiLU(GroupNorm(x)) with the statistics of the whole of `x`."""
    batch, channels = x.shape[:2]
    groups = norm.num_groups
    grouped = x.reshape(batch, groups, -1)
    variance, mean = torch.var_mean(grouped.float(), dim=2, unbiased=False)
    scale = torch.rsqrt(variance + norm.eps)
    weight = norm.weight.float().reshape(1, channels, 1, 1) if norm.affine else None
    bias = norm.bias.float().reshape(1, channels, 1, 1) if norm.affine else None

    def rows(top: int, bottom: int) -> torch.Tensor:
        band = x[:, :, top:bottom].float()
        shape = band.shape
        band = (band.reshape(batch, groups, -1, *shape[2:]) - mean[:, :, None, None, None]) * (
            scale[:, :, None, None, None]
        )
        band = band.reshape(shape)
        if weight is not None and bias is not None:
            band = band * weight + bias
        return F.silu(band).to(x.dtype)

    return rows


def _conv_rows(conv: nn.Conv2d, source: Rows, height: int, top: int, bottom: int) -> torch.Tensor:
    """Rows [top, bottom) of `conv` over a `height`-row input given row by row by `source`,
    zero-padded above and below the image as the convolution itself pads."""
    halo = conv.kernel_size[0] // 2
    first, last = max(top - halo, 0), min(bottom + halo, height)
    band = source(first, last)
    above, below = halo - (top - first), halo - (last - bottom)
    if above or below:
        band = F.pad(band, (0, 0, above, below))
    return F.conv2d(band, conv.weight, conv.bias, padding=(0, halo))


def _resnet(resnet: Any, x: torch.Tensor) -> torch.Tensor:
    height = x.shape[2]
    hidden = torch.empty(
        (x.shape[0], resnet.conv1.out_channels, height, x.shape[3]), dtype=x.dtype, device=x.device
    )
    first = _normalised(x, resnet.norm1)
    for top, bottom in _bands(height):
        hidden[:, :, top:bottom] = _conv_rows(resnet.conv1, first, height, top, bottom)
    second = _normalised(hidden, resnet.norm2)
    out = torch.empty_like(hidden)
    for top, bottom in _bands(height):
        shortcut = x[:, :, top:bottom]
        if resnet.conv_shortcut is not None:
            shortcut = resnet.conv_shortcut(shortcut)
        band = _conv_rows(resnet.conv2, second, height, top, bottom)
        out[:, :, top:bottom] = (shortcut + band) / resnet.output_scale_factor
    return out


def _upsample(upsampler: Any, x: torch.Tensor) -> torch.Tensor:
    height = x.shape[2] * 2

    def doubled(top: int, bottom: int) -> torch.Tensor:
        source = F.interpolate(x[:, :, top // 2 : (bottom + 1) // 2], scale_factor=2.0)
        return source[:, :, top % 2 : top % 2 + bottom - top]

    out = torch.empty(
        (x.shape[0], upsampler.conv.out_channels, height, x.shape[3] * 2),
        dtype=x.dtype,
        device=x.device,
    )
    for top, bottom in _bands(height):
        out[:, :, top:bottom] = _conv_rows(upsampler.conv, doubled, height, top, bottom)
    return out


def _large(x: torch.Tensor) -> bool:
    return x.numel() * x.element_size() >= BANDED_FROM_BYTES


def _banded_decoder(decoder: Any, z: torch.Tensor) -> torch.Tensor:
    """diffusers' `Decoder.forward` (no latent embeds), large stages in bands."""
    sample = decoder.conv_in(z)
    sample = decoder.mid_block(sample, None)
    for block in decoder.up_blocks:
        for resnet in block.resnets:
            sample = _resnet(resnet, sample) if _large(sample) else resnet(sample, temb=None)
        for upsampler in block.upsamplers or []:
            sample = _upsample(upsampler, sample) if _large(sample) else upsampler(sample)
    if not _large(sample):
        return decoder.conv_out(decoder.conv_act(decoder.conv_norm_out(sample)))
    height = sample.shape[2]
    last = _normalised(sample, decoder.conv_norm_out)
    return torch.cat(
        [_conv_rows(decoder.conv_out, last, height, top, b) for top, b in _bands(height)], dim=2
    )


@torch.inference_mode()
def vae_decode(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """`vae.decode(latents).sample`, with the decoder's large stages in row bands when the VAE's
    blocks allow it (diffusers' `AutoencoderKL` as SD1.5 and SDXL have it; tiling and slicing
    switched off); anything else decodes as usual."""
    decoder = getattr(vae, "decoder", None)
    if (
        decoder is None
        or getattr(vae, "use_tiling", False)
        or getattr(vae, "use_slicing", False)
        or not supports_banding(decoder)
    ):
        return vae.decode(latents).sample
    if getattr(vae, "post_quant_conv", None) is not None:
        latents = vae.post_quant_conv(latents)
    return _banded_decoder(decoder, latents)
