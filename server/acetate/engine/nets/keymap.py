"""LDM (original Stable Diffusion / Forge / ComfyUI) ↔ diffusers UNet parameter names.

The mapping is derived from the UNet's config (block types, `layers_per_block`), so it is the
real one for full-size SD1.5/SDXL and for the tiny test UNets alike. It is built per module
prefix (`down_blocks.1.attentions.0` ↔ `input_blocks.4.1`) plus the resnet renames, and is a
bijection over every key of the UNet's state dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

LDM_PREFIXES = ("model.diffusion_model.", "diffusion_model.")

#: Resnet sub-module names: diffusers → LDM.
RESNET_RENAMES: dict[str, str] = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_RESNET_RENAMES_BACK = {ldm: diffusers for diffusers, ldm in RESNET_RENAMES.items()}


def strip_ldm_prefix(key: str) -> str:
    """`model.diffusion_model.input_blocks.0.0.weight` → `input_blocks.0.0.weight`."""
    for prefix in LDM_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _config_items(config: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...], int, bool]:
    down = tuple(config["down_block_types"])
    up = tuple(config["up_block_types"])
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        if len(set(layers)) != 1:
            raise ValueError("per-block layers_per_block is not an SD1.5/SDXL layout")
        layers = int(layers[0])
    has_add_embedding = config.get("addition_embed_type") == "text_time"
    return down, up, layers, has_add_embedding


@lru_cache(maxsize=16)
def _prefix_maps(
    down: tuple[str, ...], up: tuple[str, ...], layers: int, add_embedding: bool
) -> tuple[dict[str, tuple[str, bool]], dict[str, tuple[str, bool]]]:
    """(diffusers prefix → (LDM prefix, is_resnet)), and the reverse."""
    forward: dict[str, tuple[str, bool]] = {
        "conv_in": ("input_blocks.0.0", False),
        "time_embedding.linear_1": ("time_embed.0", False),
        "time_embedding.linear_2": ("time_embed.2", False),
        "conv_norm_out": ("out.0", False),
        "conv_out": ("out.2", False),
        "mid_block.resnets.0": ("middle_block.0", True),
        "mid_block.attentions.0": ("middle_block.1", False),
        "mid_block.resnets.1": ("middle_block.2", True),
    }
    if add_embedding:
        forward["add_embedding.linear_1"] = ("label_emb.0.0", False)
        forward["add_embedding.linear_2"] = ("label_emb.0.2", False)

    index = 1
    for block, block_type in enumerate(down):
        has_attention = "CrossAttn" in block_type
        for layer in range(layers):
            forward[f"down_blocks.{block}.resnets.{layer}"] = (f"input_blocks.{index}.0", True)
            if has_attention:
                forward[f"down_blocks.{block}.attentions.{layer}"] = (
                    f"input_blocks.{index}.1",
                    False,
                )
            index += 1
        if block < len(down) - 1:
            forward[f"down_blocks.{block}.downsamplers.0.conv"] = (
                f"input_blocks.{index}.0.op",
                False,
            )
            index += 1

    index = 0
    for block, block_type in enumerate(up):
        has_attention = "CrossAttn" in block_type
        for layer in range(layers + 1):
            forward[f"up_blocks.{block}.resnets.{layer}"] = (f"output_blocks.{index}.0", True)
            if has_attention:
                forward[f"up_blocks.{block}.attentions.{layer}"] = (
                    f"output_blocks.{index}.1",
                    False,
                )
            if layer == layers and block < len(up) - 1:
                slot = 2 if has_attention else 1
                forward[f"up_blocks.{block}.upsamplers.0.conv"] = (
                    f"output_blocks.{index}.{slot}.conv",
                    False,
                )
            index += 1

    backward = {ldm: (diffusers, is_resnet) for diffusers, (ldm, is_resnet) in forward.items()}
    return forward, backward


def _maps(
    config: Mapping[str, Any],
) -> tuple[dict[str, tuple[str, bool]], dict[str, tuple[str, bool]]]:
    return _prefix_maps(*_config_items(config))


def _split(key: str, table: Mapping[str, tuple[str, bool]]) -> tuple[str, str, tuple[str, bool]]:
    """Longest module prefix of `key` found in `table` → (prefix, rest, entry)."""
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        entry = table.get(prefix)
        if entry is not None:
            return prefix, ".".join(parts[cut:]), entry
    raise KeyError(key)


def diffusers_to_ldm_key(key: str, config: Mapping[str, Any]) -> str:
    """A diffusers UNet parameter name → its LDM name (without `diffusion_model.`)."""
    forward, _ = _maps(config)
    _, rest, (ldm_prefix, is_resnet) = _split(key, forward)
    if is_resnet:
        head, _, tail = rest.partition(".")
        if head not in RESNET_RENAMES:
            raise KeyError(key)
        rest = f"{RESNET_RENAMES[head]}.{tail}"
    return f"{ldm_prefix}.{rest}"


def ldm_to_diffusers_key(key: str, config: Mapping[str, Any]) -> str:
    """An LDM UNet parameter name (with or without `diffusion_model.`) → the diffusers name.

    Raises `KeyError` for a name that has no place in a UNet of this config. Names inside a
    transformer block are passed through; whether the result exists is for the caller to check
    against the UNet's state dict.
    """
    _, backward = _maps(config)
    stripped = strip_ldm_prefix(key)
    _, rest, (diffusers_prefix, is_resnet) = _split(stripped, backward)
    if is_resnet:
        parts = rest.split(".")
        two = ".".join(parts[:2])
        if two in _RESNET_RENAMES_BACK:
            rest = ".".join([_RESNET_RENAMES_BACK[two], *parts[2:]])
        elif parts[0] in _RESNET_RENAMES_BACK:
            rest = ".".join([_RESNET_RENAMES_BACK[parts[0]], *parts[1:]])
        else:
            raise KeyError(key)
    return f"{diffusers_prefix}.{rest}"


def ldm_to_diffusers_keys(keys: Iterable[str], config: Mapping[str, Any]) -> dict[str, str]:
    """Map many LDM keys at once; raises `KeyError` naming the first key that has no place."""
    return {key: ldm_to_diffusers_key(key, config) for key in keys}
