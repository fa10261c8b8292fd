"""LayerDiffusion's latent transparency: the transparent decoder, the offset encoder, their codec.

`TransparentDecoder` is the official "UNet1024" (in 3, out 4) built from diffusers blocks: it
reads the SD-VAE's RGB output plus the unscaled latent and predicts alpha and straight colour.
`TransparentEncoder` is the official `LatentTransparencyOffsetEncoder`: it predicts the offset, in
units of the VAE posterior's std, that hides the transparency in the latent. Both keep the
official state-dict layouts, so the released `.safetensors` files load strictly; their widths are
configurable so that tiny test files have the same keys with small shapes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D, get_down_block, get_up_block
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from acetate.engine.rgb_padding import pad_rgb_tensor
from acetate.errors import InputError, ModelFileError, ModelNotFoundError

DecodeMode = Literal["tta", "fast"]
DECODE_MODES: tuple[DecodeMode, ...] = ("tta", "fast")

#: The decoder halves the resolution six times, so sizes must be multiples of 2**6.
SIZE_MULTIPLE = 64
#: Down block before which the latent (at 1/8 resolution) is added to the hidden state.
LATENT_INJECTION_BLOCK = 3
#: The official test-time augmentation, in the official order: (horizontal flip, quarter turns).
TTA_VIEWS: tuple[tuple[bool, int], ...] = tuple((f, k) for f in (False, True) for k in range(4))
#: Views × pixels per batched TTA pass on accelerators (8 views at 512²; bounds memory). On the
#: CPU one view per pass is faster: measured 2.65 s per view at batch 1 vs 4.0 s at batch 8, 512².
ACCELERATOR_PIXELS_PER_PASS = 8 * 512 * 512
DECODER_WIDTHS = (32, 32, 64, 128, 256, 512, 512)
ENCODER_WIDTHS = (32, 64, 128, 256)

Shapes = Mapping[str, tuple[int, ...]]


class TransparentDecoder(ModelMixin, ConfigMixin):  # type: ignore[misc]  # diffusers' own bases clash
    """UNet1024: (pixel [B,3,H,W] in [0,1], latent [B,4,H/8,W/8]) → [B,4,H,W], ch 0 = alpha.

    No time embedding; the latent enters through a 1×1 conv (zero-initialised, as officially)
    added before down block 3. Up blocks have one resnet more than down blocks (skip concat).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 4,
        latent_channels: int = 4,
        down_block_types: tuple[str, ...] = ("DownBlock2D",) * 4 + ("AttnDownBlock2D",) * 3,
        up_block_types: tuple[str, ...] = ("AttnUpBlock2D",) * 3 + ("UpBlock2D",) * 4,
        block_out_channels: tuple[int, ...] = DECODER_WIDTHS,
        layers_per_block: int = 2,
        norm_num_groups: int = 4,
        norm_eps: float = 1e-5,
        attention_head_dim: int = 8,
    ) -> None:
        super().__init__()
        widths = list(block_out_channels)
        common: dict[str, Any] = dict(
            temb_channels=None,
            resnet_eps=norm_eps,
            resnet_act_fn="silu",
            resnet_groups=norm_num_groups,
            attention_head_dim=attention_head_dim,
            resnet_time_scale_shift="default",
            dropout=0.0,
        )
        self.conv_in = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1)
        self.latent_conv_in = nn.Conv2d(
            latent_channels, widths[LATENT_INJECTION_BLOCK - 1], kernel_size=1
        )
        for parameter in self.latent_conv_in.parameters():
            nn.init.zeros_(parameter)

        self.down_blocks = nn.ModuleList()
        for i, block_type in enumerate(down_block_types):
            self.down_blocks.append(
                get_down_block(
                    block_type,
                    num_layers=layers_per_block,
                    in_channels=widths[max(i - 1, 0)],
                    out_channels=widths[i],
                    add_downsample=i < len(widths) - 1,
                    downsample_padding=1,
                    downsample_type="conv",
                    **common,
                )
            )
        self.mid_block = UNetMidBlock2D(
            in_channels=widths[-1],
            temb_channels=None,  # type: ignore[arg-type]  # None: no time embedding
            resnet_eps=norm_eps,
            resnet_act_fn="silu",
            resnet_groups=norm_num_groups,
            attention_head_dim=attention_head_dim,
            add_attention=True,
        )
        reversed_widths = widths[::-1]
        self.up_blocks = nn.ModuleList()
        for i, block_type in enumerate(up_block_types):
            self.up_blocks.append(
                get_up_block(
                    block_type,
                    num_layers=layers_per_block + 1,
                    in_channels=reversed_widths[min(i + 1, len(widths) - 1)],
                    out_channels=reversed_widths[i],
                    prev_output_channel=reversed_widths[max(i - 1, 0)],
                    add_upsample=i < len(widths) - 1,
                    upsample_type="conv",
                    **common,
                )
            )
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, widths[0], eps=norm_eps)
        self.conv_out = nn.Conv2d(widths[0], out_channels, kernel_size=3, padding=1)

    @staticmethod
    def config_from_shapes(shapes: Shapes) -> dict[str, Any]:
        """Constructor arguments for a state dict of these shapes (KeyError: not a decoder)."""
        return dict(
            in_channels=shapes["conv_in.weight"][1],
            out_channels=shapes["conv_out.weight"][0],
            latent_channels=shapes["latent_conv_in.weight"][1],
            block_out_channels=tuple(
                shapes[f"down_blocks.{i}.resnets.0.conv1.weight"][0]
                for i in range(len(DECODER_WIDTHS))
            ),
        )

    def forward(self, pixel: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        # The blocks' own forwards, walked here with `_resnet` for their resnets: the same
        # arithmetic bit for bit, half the large allocations (17% less CPU time at 512²).
        block: Any  # diffusers blocks: their sub-module attributes are untyped
        hidden = self.conv_in(pixel)
        skips = [hidden]
        for i, block in enumerate(self.down_blocks):
            if i == LATENT_INJECTION_BLOCK:
                hidden = hidden + self.latent_conv_in(latent)
            for resnet, attention in _layers(block):
                hidden = _resnet(resnet, hidden)
                hidden = hidden if attention is None else attention(hidden)
                skips.append(hidden)
            if block.downsamplers is not None:
                hidden = block.downsamplers[0](hidden)
                skips.append(hidden)
        mid: Any = self.mid_block
        hidden = _resnet(mid.resnets[0], hidden)
        for attention, resnet in zip(mid.attentions, mid.resnets[1:], strict=True):
            hidden = _resnet(resnet, attention(hidden))
        for block in self.up_blocks:
            for resnet, attention in _layers(block):
                hidden = _resnet(resnet, torch.cat([hidden, skips.pop()], dim=1))
                hidden = hidden if attention is None else attention(hidden)
            if block.upsamplers is not None:
                hidden = block.upsamplers[0](hidden)
        return self.conv_out(F.silu(self.conv_norm_out(hidden), inplace=True))


def _layers(block: Any) -> list[tuple[Any, Any]]:
    """(resnet, attention or None) pairs of a diffusers down/up block."""
    attentions = block.attentions if hasattr(block, "attentions") else [None] * len(block.resnets)
    return list(zip(block.resnets, attentions, strict=True))


def _resnet(block: Any, hidden: torch.Tensor) -> torch.Tensor:
    """`ResnetBlock2D` without time embedding, output scale 1 and dropout, in place where safe."""
    out = block.conv1(F.silu(block.norm1(hidden), inplace=True))
    out = block.conv2(F.silu(block.norm2(out), inplace=True))
    return out.add_(hidden if block.conv_shortcut is None else block.conv_shortcut(hidden))


class TransparentEncoder(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """LatentTransparencyOffsetEncoder: [B,4,H,W] (alpha, padded RGB) → offset [B,4,H/8,W/8].

    Nine 3×3 convs with SiLU between (`blocks.0, 2, …, 16`); each width after the first starts
    with a stride-2 conv. The last conv is zero-initialised, as officially.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 4,
        block_out_channels: tuple[int, ...] = ENCODER_WIDTHS,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for i, width in enumerate(block_out_channels):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv2d(previous, width, 3, stride=stride, padding=1), nn.SiLU()]
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.SiLU()]
            previous = width
        last = nn.Conv2d(previous, out_channels, 3, padding=1)
        for parameter in last.parameters():
            nn.init.zeros_(parameter)
        self.blocks = nn.Sequential(*layers, last)

    @staticmethod
    def config_from_shapes(shapes: Shapes) -> dict[str, Any]:
        """Constructor arguments for a state dict of these shapes (KeyError: not an encoder)."""
        last = 4 * len(ENCODER_WIDTHS)  # index of the final conv in `blocks`
        return dict(
            in_channels=shapes["blocks.0.weight"][1],
            out_channels=shapes[f"blocks.{last}.weight"][0],
            block_out_channels=tuple(
                shapes[f"blocks.{4 * i}.weight"][0] for i in range(len(ENCODER_WIDTHS))
            ),
        )

    def forward(self, feed: torch.Tensor) -> torch.Tensor:
        return self.blocks(feed)


# Loading: safetensors only, strict, the config inferred from the shapes in the file's header.

ModelT = TypeVar("ModelT", TransparentDecoder, TransparentEncoder)


def _read_shapes(path: Path) -> Shapes:
    if not path.is_file():
        raise ModelNotFoundError(f"weight file not found: {path}")
    if path.suffix != ".safetensors":
        raise ModelFileError(f"{path}: only .safetensors weight files are accepted")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"{path} is not a readable safetensors file: {error}") from error


def _check_layout(expected: Shapes, found: Shapes, path: Path, what: str) -> None:
    """Raise `ModelFileError` naming the first few missing, unexpected and mis-shaped keys."""
    problems = []
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    wrong = [key for key in expected if key in found and found[key] != expected[key]]
    if missing:
        problems.append("missing keys " + ", ".join(repr(key) for key in missing[:5]))
    if unexpected:
        problems.append("unexpected keys " + ", ".join(repr(key) for key in unexpected[:5]))
    for key in wrong[:5]:
        problems.append(f"{key!r} has shape {list(found[key])}, expected {list(expected[key])}")
    if problems:
        raise ModelFileError(f"{path} is not a {what} file: " + "; ".join(problems))


def _load_strict(
    cls: type[ModelT],
    what: str,
    path: str | os.PathLike[str],
    device: torch.device | str,
    dtype: torch.dtype,
) -> ModelT:
    path = Path(path)
    shapes = _read_shapes(path)
    try:
        with torch.device("meta"):
            model = cls(**cls.config_from_shapes(shapes))
    except KeyError as error:
        raise ModelFileError(
            f"{path} is not a {what} file: missing key {error.args[0]!r}"
        ) from None
    except (IndexError, ValueError) as error:  # odd ranks, widths GroupNorm cannot split
        raise ModelFileError(f"{path} is not a {what} file: {error}") from None
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    _check_layout(expected, shapes, path, what)
    tensors = {key: value.to(dtype) for key, value in load_file(path, device=str(device)).items()}
    model.load_state_dict(tensors, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def load_transparent_decoder(
    path: str | os.PathLike[str],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> TransparentDecoder:
    """Load an official (or tiny) transparent decoder `.safetensors` file strictly."""
    decoder = _load_strict(TransparentDecoder, "transparent decoder", path, device, dtype)
    return decoder.to(memory_format=torch.channels_last)


def load_transparent_encoder(
    path: str | os.PathLike[str],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> TransparentEncoder:
    """Load an official (or tiny) transparency encoder `.safetensors` file strictly."""
    return _load_strict(TransparentEncoder, "transparency encoder", path, device, dtype)


# The codec the pipelines call.


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


def _decode_pass(
    decoder: TransparentDecoder, pixel: torch.Tensor, latent: torch.Tensor
) -> torch.Tensor:
    channels_last = torch.channels_last  # ~13% less CPU time per pass; faster fp16 convs on GPUs
    pixel = pixel.contiguous(memory_format=channels_last)
    return decoder(pixel, latent.contiguous(memory_format=channels_last)).clamp(0, 1)


def _decode_tta(
    decoder: TransparentDecoder, pixel: torch.Tensor, latent: torch.Tensor, pixels_per_pass: int
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
        decoded = torch.cat(
            [
                _decode_pass(decoder, pixels[i : i + rows_per_pass], latents[i : i + rows_per_pass])
                for i in range(0, len(pixels), rows_per_pass)
            ]
        )
        for view, part in zip(views, decoded.split(batch), strict=True):
            outputs[view] = _unview(part, *view)
    # torch.median takes the lower of the two middle values of 8, exactly as the official code.
    return torch.stack([outputs[view] for view in TTA_VIEWS]).median(dim=0).values


@torch.inference_mode()
def decode_transparent(
    decoder: TransparentDecoder,
    pixel: torch.Tensor,
    latent: torch.Tensor,
    mode: DecodeMode = "tta",
    *,
    pixels_per_pass: int | None = None,
) -> torch.Tensor:
    """RGBA [B,4,H,W] float32 in [0,1], straight alpha, channels in R,G,B,A order.

    `pixel`: the SD-VAE's RGB output in [0,1] [B,3,H,W]; `latent`: the UNSCALED VAE latent
    (z / scaling_factor) [B,4,H/8,W/8]. `tta` is the official 8-view flip × rot90 median,
    `fast` one pass. `pixels_per_pass` bounds views × pixels per batched TTA pass (memory);
    by default one view per pass on the CPU, `ACCELERATOR_PIXELS_PER_PASS` elsewhere.
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
    if mode == "fast":
        result = _decode_pass(decoder, pixel, latent)
    else:
        result = _decode_tta(decoder, pixel, latent, pixels_per_pass)
    # Official channel order is alpha first; everything downstream wants RGBA.
    return torch.cat([result[:, 1:], result[:, :1]], dim=1).float().contiguous()


@contextmanager
def _vae_precision(vae: AutoencoderKL) -> Iterator[torch.dtype]:
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
    with _vae_precision(vae) as dtype:
        image = vae.decode(unscaled.to(vae.device, dtype)).sample
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
    with _vae_precision(vae) as dtype:
        posterior = vae.encode(feed.to(vae.device, dtype)).latent_dist
        latents = posterior.mean + posterior.std * offset.to(posterior.std)
    config: Any = vae.config
    return latents * config.scaling_factor


def rgba_tensor_to_uint8(rgba: torch.Tensor) -> np.ndarray:
    """[B,4,H,W] in [0,1] → [B,H,W,4] uint8 (rounded, clipped)."""
    scaled = (rgba.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


def rgba_uint8_to_tensor(rgba: np.ndarray) -> torch.Tensor:
    """[B,H,W,4] (or [H,W,4]) uint8 → [B,4,H,W] float32 in [0,1]."""
    if rgba.dtype != np.uint8 or rgba.shape[-1] != 4 or rgba.ndim not in (3, 4):
        raise ValueError(f"expected uint8 RGBA [B,]H,W,4, got {rgba.dtype} {rgba.shape}")
    batch = rgba if rgba.ndim == 4 else rgba[None]
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float() / 255.0


# Tiny files in the official layouts, for tests and the tiny model set.

TINY_DECODER_WIDTHS = (4, 4, 8, 16, 32, 64, 64)  # official ÷ 8: the same shortcut convs
TINY_ENCODER_WIDTHS = (8, 8, 16, 16)
TINY_FILE_NAMES = (
    "vae_transparent_decoder.safetensors",
    "vae_transparent_encoder.safetensors",
    "layer_sd15_vae_transparent_decoder.safetensors",
    "layer_sd15_vae_transparent_encoder.safetensors",
    "ld_diffusers_sdxl_vae_transparent_decoder.safetensors",
    "ld_diffusers_sdxl_vae_transparent_encoder.safetensors",
)
#: The `ld_diffusers_*` encoder's output is used ×300 (official DiffusersCLI); its tiny twin's last
#: layer is shrunk to match, so both kinds give offsets of the same size.
_LD_DIFFUSERS_ENCODER_SCALE = 300.0


def random_transparent_decoder(
    block_out_channels: tuple[int, ...] = DECODER_WIDTHS,
) -> TransparentDecoder:
    """A decoder with random weights (seed torch first) whose latent path and outputs matter.

    The official zero-initialised latent conv gets random weights; the output conv is made
    zero-mean with a 0.5 bias (the SiLU features are mostly positive), so outputs spread around
    0.5 and alpha is neither all 0 nor all 1 after clipping. For tests and benchmarks.
    """
    decoder = TransparentDecoder(block_out_channels=block_out_channels)
    nn.init.normal_(decoder.latent_conv_in.weight, std=0.5)
    nn.init.normal_(decoder.latent_conv_in.bias, std=0.1)
    weight = decoder.conv_out.weight.data
    weight.sub_(weight.mean(dim=(1, 2, 3), keepdim=True))
    nn.init.constant_(decoder.conv_out.bias, 0.5)
    return decoder.eval().requires_grad_(False)


def random_transparent_encoder(
    block_out_channels: tuple[int, ...] = ENCODER_WIDTHS, output_scale: float = 1.0
) -> TransparentEncoder:
    """An encoder with random weights (seed torch first), its zero-initialised last conv included:
    offsets of about `output_scale` std."""
    encoder = TransparentEncoder(block_out_channels=block_out_channels)
    last = encoder.blocks[-1]
    nn.init.normal_(last.weight, std=0.5 * output_scale)
    nn.init.normal_(last.bias, std=0.5 * output_scale)
    return encoder.eval().requires_grad_(False)


def _save_atomic(tensors: dict[str, torch.Tensor], path: Path) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(tensors, temporary, metadata={"format": "pt"})
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_tiny_transparent_files(out_dir: Path, seed: int = 0) -> list[Path]:
    """Write tiny random decoders/encoders under their official names; deterministic per seed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, name in enumerate(TINY_FILE_NAMES):
        with torch.random.fork_rng(devices=[]), torch.device("cpu"):
            torch.manual_seed(seed * len(TINY_FILE_NAMES) + index)
            if name.endswith("decoder.safetensors"):
                model: nn.Module = random_transparent_decoder(TINY_DECODER_WIDTHS)
            else:
                ld_diffusers = name.startswith("ld_diffusers_")
                scale = 1 / _LD_DIFFUSERS_ENCODER_SCALE if ld_diffusers else 1.0
                model = random_transparent_encoder(TINY_ENCODER_WIDTHS, scale)
        tensors = {key: value.contiguous() for key, value in model.state_dict().items()}
        _save_atomic(tensors, out_dir / name)
        paths.append(out_dir / name)
    return paths
