"""Tiny UNet-side LayerDiffusion files: the official formats and key names, tiny random shapes.

For a tiny SD1.5 and a tiny SDXL UNet (real block layouts, so the LDM names are the real ones)
this writes every SDXL patch file in Forge's `diffusion_model.<key>::<type>::<slot>` format,
`ld_diffusers_sdxl_attn` with diffusers keys, and the four SD1.5 attention-sharing state dicts.
Deltas are sized relative to each weight, so a patched UNet stays finite and visibly changes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from safetensors.torch import save_file

from acetate.engine.nets.attention_sharing import AttentionSharing, AttentionSharingConfig
from acetate.engine.nets.keymap import diffusers_to_ldm_key
from acetate.engine.nets.unet_patch import ATTENTION_TARGET, CONV_IN, QKV_WEIGHT

TINY_RANK = 4
TINY_CONTROL_WIDTHS = (8, 8, 16, 16)
#: Delta size relative to the weight's own standard deviation.
RELATIVE_DELTA = 0.5
#: Official dtype of the released files.
FILE_DTYPE = torch.float16

Tensors = dict[str, torch.Tensor]


def _save_atomic(tensors: Tensors, path: Path) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        contiguous = {key: value.to(FILE_DTYPE).contiguous() for key, value in tensors.items()}
        save_file(contiguous, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _scales(unet: UNet2DConditionModel) -> dict[str, float]:
    """Delta scale per parameter: a fraction of its spread (a floor for constant tensors)."""
    return {
        key: RELATIVE_DELTA * max(float(weight.float().std()) if weight.numel() > 1 else 0.0, 0.02)
        for key, weight in unet.state_dict().items()
    }


def _forge_key(unet: UNet2DConditionModel, key: str, patch_type: str, slot: int) -> str:
    return f"diffusion_model.{diffusers_to_ldm_key(key, unet.config)}::{patch_type}::{slot}"


def _attention_lora(
    unet: UNet2DConditionModel, scales: dict[str, float], generator: torch.Generator
) -> Tensors:
    tensors = {}
    for key, weight in unet.state_dict().items():
        if not ATTENTION_TARGET.search(key):
            continue
        # (up @ down) entries have std √rank·σ² for factor std σ: aim at the weight's scale.
        factor = (scales[key] / TINY_RANK**0.5) ** 0.5
        up = torch.randn(weight.shape[0], TINY_RANK, generator=generator) * factor
        down = torch.randn(TINY_RANK, weight[0].numel(), generator=generator) * factor
        tensors[_forge_key(unet, key, "lora", 0)] = up
        tensors[_forge_key(unet, key, "lora", 1)] = down
    return tensors


def _forge_diff(
    unet: UNet2DConditionModel,
    scales: dict[str, float],
    generator: torch.Generator,
    conv_in_channels: int,
) -> Tensors:
    """A Forge diff for every parameter except attention q/k/v weights."""
    tensors = {}
    for key, weight in unet.state_dict().items():
        if QKV_WEIGHT.search(key):
            continue
        shape = list(weight.shape)
        if key == CONV_IN:
            shape[1] = conv_in_channels
        delta = torch.randn(shape, generator=generator) * scales[key]
        tensors[_forge_key(unet, key, "diff", 0)] = delta
    return tensors


def _diffusers_attention_offsets(
    unet: UNet2DConditionModel, scales: dict[str, float], generator: torch.Generator
) -> Tensors:
    return {
        key: torch.randn(weight.shape, generator=generator) * scales[key]
        for key, weight in unet.state_dict().items()
        if ATTENTION_TARGET.search(key)
    }


def _sharing(
    unet: UNet2DConditionModel, generator: torch.Generator, frames: int, use_control: bool
) -> Tensors:
    config = AttentionSharingConfig.for_unet(
        unet, frames, use_control, rank=TINY_RANK, control_widths=TINY_CONTROL_WIDTHS
    )
    with torch.device("meta"):
        model = AttentionSharing(config)
    tensors = {}
    for key, value in model.state_dict().items():
        if key.endswith("temporal_n.weight"):
            tensors[key] = 1.0 + 0.1 * torch.randn(value.shape, generator=generator)
        elif value.ndim == 1:
            tensors[key] = 0.02 * torch.randn(value.shape, generator=generator)
        else:
            # nn.Linear / nn.Conv2d default scale (1/√fan_in), so activations stay O(1).
            fan_in = value[0].numel()
            tensors[key] = torch.randn(value.shape, generator=generator) / fan_in**0.5
    return tensors


def _builders(
    sd15: UNet2DConditionModel, sdxl: UNet2DConditionModel
) -> dict[str, Callable[[torch.Generator], Tensors]]:
    scales = _scales(sdxl)
    return {
        "layer_xl_transparent_attn": lambda g: _attention_lora(sdxl, scales, g),
        "layer_xl_transparent_conv": lambda g: _forge_diff(sdxl, scales, g, 4),
        "layer_xl_fg2ble": lambda g: _forge_diff(sdxl, scales, g, 8),
        "layer_xl_bg2ble": lambda g: _forge_diff(sdxl, scales, g, 8),
        "layer_xl_fgble2bg": lambda g: _forge_diff(sdxl, scales, g, 12),
        "layer_xl_bgble2fg": lambda g: _forge_diff(sdxl, scales, g, 12),
        "ld_diffusers_sdxl_attn": lambda g: _diffusers_attention_offsets(sdxl, scales, g),
        "layer_sd15_transparent_attn": lambda g: _sharing(sd15, g, 1, False),
        "layer_sd15_joint": lambda g: _sharing(sd15, g, 3, False),
        "layer_sd15_fg2bg": lambda g: _sharing(sd15, g, 2, True),
        "layer_sd15_bg2fg": lambda g: _sharing(sd15, g, 2, True),
    }


@torch.no_grad()
def write_tiny_layer_files(
    out_dir: Path,
    sd15_unet: UNet2DConditionModel,
    sdxl_unet: UNet2DConditionModel,
    *,
    seed: int = 0,
) -> list[Path]:
    """Write every UNet-side official layer file for these tiny UNets (deterministic per seed,
    atomic writes); returns the paths, named `<official kind>.safetensors`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (kind, build) in enumerate(_builders(sd15_unet, sdxl_unet).items()):
        generator = torch.Generator().manual_seed(seed * 1000 + index)
        path = out_dir / f"{kind}.safetensors"
        _save_atomic(build(generator), path)
        paths.append(path)
    return paths
