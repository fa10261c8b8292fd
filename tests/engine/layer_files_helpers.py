"""Shared helpers for the layer-file tests: tiny UNets, their tiny layer files, UNet inputs."""

from __future__ import annotations

import copy
import json
import math
import struct
from functools import lru_cache
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file
from test_keymap import TINY_SD15, TINY_SDXL

from acetate.engine.tiny.layers import write_tiny_layer_files

SDXL_KINDS = (
    "layer_xl_transparent_attn",
    "layer_xl_transparent_conv",
    "layer_xl_fg2ble",
    "layer_xl_bg2ble",
    "layer_xl_fgble2bg",
    "layer_xl_bgble2fg",
    "ld_diffusers_sdxl_attn",
)
SD15_KINDS = (
    "layer_sd15_transparent_attn",
    "layer_sd15_joint",
    "layer_sd15_fg2bg",
    "layer_sd15_bg2fg",
)


@lru_cache(maxsize=1)
def _pristine_unets() -> tuple[UNet2DConditionModel, UNet2DConditionModel]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        sd15 = UNet2DConditionModel(**TINY_SD15).eval().requires_grad_(False)
        sdxl = UNet2DConditionModel(**TINY_SDXL).eval().requires_grad_(False)
    return sd15, sdxl


def tiny_unets() -> tuple[UNet2DConditionModel, UNet2DConditionModel]:
    """Fresh copies of (tiny SD1.5 UNet, tiny SDXL UNet): random weights, eval, fp32, CPU."""
    return copy.deepcopy(_pristine_unets())


def tiny_sd15() -> UNet2DConditionModel:
    return copy.deepcopy(_pristine_unets()[0])


def tiny_sdxl() -> UNet2DConditionModel:
    return copy.deepcopy(_pristine_unets()[1])


def write_sparse(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """A valid fp16 safetensors file whose data region is a sparse hole: full-size headers
    for identification tests without materialising any tensor."""
    header, offset = {}, 0
    for key, shape in shapes.items():
        size = 2 * math.prod(shape)
        header[key] = {
            "dtype": "F16",
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + offset)
    return path


def write_files(folder: Path) -> dict[str, Path]:
    """Every tiny UNet-side layer file for `tiny_unets()`, by kind."""
    sd15, sdxl = tiny_unets()
    paths = write_tiny_layer_files(folder, sd15, sdxl, seed=0)
    return {path.stem: path for path in paths}


def sdxl_forward(unet: UNet2DConditionModel, latents: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """One tiny SDXL UNet call with fixed random conditioning."""
    generator = torch.Generator().manual_seed(seed)
    batch = latents.shape[0]
    context = torch.randn(batch, 7, TINY_SDXL["cross_attention_dim"], generator=generator)
    added = {
        "text_embeds": torch.randn(batch, 32, generator=generator),
        "time_ids": torch.randn(batch, 6, generator=generator),
    }
    with torch.no_grad():
        return unet(latents, 10, context, added_cond_kwargs=added).sample


def state_copy(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in unet.state_dict().items()}


def assert_state_equal(unet: torch.nn.Module, reference: dict[str, torch.Tensor]) -> None:
    state = unet.state_dict()
    assert list(state) == list(reference)
    for key, value in reference.items():
        assert state[key].dtype == value.dtype, key
        assert torch.equal(state[key], value), key


def rewrite(source: Path, target: Path, edit: dict[str, torch.Tensor | None]) -> Path:
    """Copy a safetensors file with keys replaced, added (tensor) or removed (None)."""
    tensors = load_file(source)
    for key, value in edit.items():
        if value is None:
            del tensors[key]
        else:
            tensors[key] = value
    save_file(tensors, target)
    return target
