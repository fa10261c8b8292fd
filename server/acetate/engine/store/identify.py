"""Identify an official LayerDiffusion file from its safetensors header (and, only where headers
are alike, its official file name); check that a file fits the full-size base architecture.

Structure decides, not sizes, so the tiny test files identify like the real ones. Headers are
alike for SD1.5 fg2bg/bg2fg, SDXL fg2ble/bg2ble and fgble2bg/bgble2fg, and the transparent VAE
files of SD1.5, SDXL and `ld_diffusers_*`: there the file's official name decides, or `kind=`.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from torch import nn

from acetate.engine.nets.attention_sharing import AttentionSharing, infer_config
from acetate.engine.nets.keymap import strip_ldm_prefix
from acetate.engine.nets.transparent_vae import TransparentDecoder, TransparentEncoder
from acetate.engine.nets.unet_patch import (
    ATTENTION_TARGET,
    QKV_WEIGHT,
    patch_format,
    plan_unet_patch,
)
from acetate.engine.nets.weights import Shapes, check_layout, read_shapes
from acetate.engine.store.family import CONFIGS_DIR, load_json
from acetate.errors import ModelFileError
from acetate.modes import Family

Role = Literal["unet_patch", "attention_sharing", "transparent_decoder", "transparent_encoder"]

#: Every official kind (= file stem) → (family, role).
KINDS: dict[str, tuple[Family, Role]] = {
    "layer_xl_transparent_attn": ("sdxl", "unet_patch"),
    "layer_xl_transparent_conv": ("sdxl", "unet_patch"),
    "layer_xl_fg2ble": ("sdxl", "unet_patch"),
    "layer_xl_fgble2bg": ("sdxl", "unet_patch"),
    "layer_xl_bg2ble": ("sdxl", "unet_patch"),
    "layer_xl_bgble2fg": ("sdxl", "unet_patch"),
    "ld_diffusers_sdxl_attn": ("sdxl", "unet_patch"),
    "vae_transparent_encoder": ("sdxl", "transparent_encoder"),
    "vae_transparent_decoder": ("sdxl", "transparent_decoder"),
    "ld_diffusers_sdxl_vae_transparent_encoder": ("sdxl", "transparent_encoder"),
    "ld_diffusers_sdxl_vae_transparent_decoder": ("sdxl", "transparent_decoder"),
    "layer_sd15_vae_transparent_encoder": ("sd15", "transparent_encoder"),
    "layer_sd15_vae_transparent_decoder": ("sd15", "transparent_decoder"),
    "layer_sd15_transparent_attn": ("sd15", "attention_sharing"),
    "layer_sd15_joint": ("sd15", "attention_sharing"),
    "layer_sd15_fg2bg": ("sd15", "attention_sharing"),
    "layer_sd15_bg2fg": ("sd15", "attention_sharing"),
}
#: The official DiffusersCLI scales the `ld_diffusers_*` encoder's output by 300.
LD_DIFFUSERS_ENCODER_SCALE = 300.0
#: Forge diff files by the input channels of their `conv_in` diff (4 = not widened).
_DIFF_KINDS_BY_CONV_IN = {
    4: ("layer_xl_transparent_conv",),
    8: ("layer_xl_fg2ble", "layer_xl_bg2ble"),
    12: ("layer_xl_fgble2bg", "layer_xl_bgble2fg"),
}
_SHARING_KINDS = {
    (1, False): ("layer_sd15_transparent_attn",),
    (3, False): ("layer_sd15_joint",),
    (2, True): ("layer_sd15_fg2bg", "layer_sd15_bg2fg"),
}
_ENCODER_KEY = re.compile(r"blocks\.\d+\.(weight|bias)")


@dataclass(frozen=True)
class LayerFileIdentity:
    """What an official LayerDiffusion file is, from its header (+ name where needed)."""

    path: Path
    kind: str
    family: Family
    role: Role
    num_params: int
    #: Shapes smaller than the official file's (the tiny test files).
    tiny: bool
    #: SD1.5 attention sharing: frames per result set and whether a control image is used.
    frames: int | None = None
    use_control: bool | None = None
    #: SDXL patches carrying a `conv_in` diff: its input channels (8/12 for conditional files).
    conv_in_channels: int | None = None
    #: Multiplier of the transparency encoder's output (300 for `ld_diffusers_*`, else 1).
    encoder_offset_scale: float = 1.0
    #: A file `acetate train` wrote: its `acetate.*` metadata (None for the released files).
    trained: dict[str, str] | None = None


def _num_params(shapes: Shapes) -> int:
    return sum(_prod(shape) for shape in shapes.values())


def _prod(shape: tuple[int, ...]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def _shapes_of(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _meta_model(cls: type[nn.Module], shapes: Shapes, name: str, what: str) -> nn.Module:
    """The model a transparency file's shapes describe, built on `meta`, its layout checked."""
    try:
        with torch.device("meta"):
            model = cls(**cls.config_from_shapes(shapes))  # type: ignore[attr-defined]
    except KeyError as error:
        raise ModelFileError(f"{name}: damaged {what}, missing key {error}") from None
    except ValueError as error:
        raise ModelFileError(f"{name}: damaged {what} ({error})") from None
    check_layout(_shapes_of(model), shapes, name)
    return model


def _check_forge_structure(shapes: Shapes, name: str) -> tuple[str, int | None]:
    """(patch type, conv_in input channels or None) of a Forge patch file, slots complete."""
    slots: dict[tuple[str, str], set[int]] = {}
    conv_in: int | None = None
    for key, shape in shapes.items():
        parts = key.split("::")
        if len(parts) != 3 or parts[1] not in ("lora", "diff") or not parts[2].isdigit():
            raise ModelFileError(f"{name}: key {key!r} is not a Forge patch key")
        slots.setdefault((parts[0], parts[1]), set()).add(int(parts[2]))
        if strip_ldm_prefix(parts[0]) == "input_blocks.0.0.weight" and parts[1] == "diff":
            conv_in = shape[1]
    types = {patch_type for _, patch_type in slots}
    if len(types) != 1:
        raise ModelFileError(f"{name}: mixes lora and diff patches, unlike any official file")
    (patch_type,) = types
    wanted = {0, 1} if patch_type == "lora" else {0}
    for (target, _), found in slots.items():
        if found != wanted:
            missing = sorted(wanted - found) or sorted(found - wanted)
            raise ModelFileError(
                f"{name}: damaged patch, {target}::{patch_type} has slots {sorted(found)} "
                f"(slot {missing[0]} missing or unexpected)"
            )
    return patch_type, conv_in


def _candidates(shapes: Shapes, name: str) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Official kinds whose structure this header has, plus facts read on the way."""
    if not shapes:
        raise ModelFileError(f"{name}: the file holds no tensors")
    keys = list(shapes)
    if any("::" in key for key in keys):
        patch_format(shapes, name)
        patch_type, conv_in = _check_forge_structure(shapes, name)
        if patch_type == "lora":
            return ("layer_xl_transparent_attn",), {}
        kinds = _DIFF_KINDS_BY_CONV_IN.get(conv_in or 4)
        if kinds is None:
            raise ModelFileError(f"{name}: a conv_in with {conv_in} input channels fits no file")
        return kinds, {"conv_in_channels": conv_in}
    if any(key.startswith("hookers.layers.") for key in keys):
        config = infer_config(shapes, name)
        with torch.device("meta"):
            check_layout(_shapes_of(AttentionSharing(config)), shapes, name)
        kinds = _SHARING_KINDS.get((config.frames, config.use_control))
        if kinds is None:
            raise ModelFileError(
                f"{name}: {config.frames} frames with control={config.use_control} "
                "fits no official attention-sharing file"
            )
        return kinds, {"frames": config.frames, "use_control": config.use_control}
    if "latent_conv_in.weight" in shapes:
        _meta_model(TransparentDecoder, shapes, name, "transparent decoder")
        return tuple(k for k, v in KINDS.items() if v[1] == "transparent_decoder"), {}
    if all(_ENCODER_KEY.fullmatch(key) for key in keys):
        _meta_model(TransparentEncoder, shapes, name, "transparency encoder")
        return tuple(k for k, v in KINDS.items() if v[1] == "transparent_encoder"), {}
    if all(ATTENTION_TARGET.search(key) for key in keys):
        return ("ld_diffusers_sdxl_attn",), {}
    raise ModelFileError(f"{name}: not an official LayerDiffusion file (first key {keys[0]!r})")


def _choose(candidates: tuple[str, ...], stem: str, kind: str | None, name: str) -> str:
    if kind is not None:
        if kind not in KINDS:
            raise ModelFileError(f"unknown layer file kind {kind!r}; known: {', '.join(KINDS)}")
        if kind not in candidates:
            raise ModelFileError(f"{name} is a {' or '.join(candidates)} file, not {kind}")
        return kind
    if len(candidates) == 1:
        if stem in KINDS and stem != candidates[0]:
            raise ModelFileError(f"{name} is named {stem} but holds a {candidates[0]} model")
        return candidates[0]
    if stem in candidates:
        return stem
    raise ModelFileError(
        f"{name}: this header fits {' or '.join(candidates)}, which differ only by their "
        "official file name; rename the file or give its kind explicitly"
    )


def identify_layer_file(
    path: str | os.PathLike[str],
    *,
    kind: str | None = None,
    encoder_offset_scale: float | None = None,
) -> LayerFileIdentity:
    """Identify an official LayerDiffusion `.safetensors` file from its header alone.

    Where headers are alike the official file name decides, or `kind` (an official stem) when
    the file was renamed. `encoder_offset_scale` overrides the encoder's official scale.
    Raises `ModelFileError` for unknown, damaged, ambiguous or misnamed files.
    """
    path = Path(path)
    shapes = read_shapes(path)
    # A trained file says which official kind it replaces (its name is never an official one).
    trained = trained_metadata(path)
    if kind is None and trained is not None and trained.get("acetate.kind") in KINDS:
        kind = trained["acetate.kind"]
    identity = identify_header(shapes, path, kind=kind, encoder_offset_scale=encoder_offset_scale)
    return identity if trained is None else replace(identity, trained=trained)


def trained_metadata(path: Path) -> dict[str, str] | None:
    """The `acetate.*` safetensors metadata of a file `acetate train` wrote, else None."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError):
        return None
    found = {k: v for k, v in metadata.items() if k.startswith("acetate.")}
    return found or None


def identify_header(
    shapes: Shapes,
    path: str | os.PathLike[str],
    *,
    kind: str | None = None,
    encoder_offset_scale: float | None = None,
) -> LayerFileIdentity:
    """`identify_layer_file` on an already-read header (key → shape); `path` gives the name."""
    path = Path(path)
    candidates, facts = _candidates(shapes, path.name)
    chosen = _choose(candidates, path.stem.lower(), kind, path.name)
    family, role = KINDS[chosen]
    scale = LD_DIFFUSERS_ENCODER_SCALE if chosen.startswith("ld_diffusers_") else 1.0
    if role != "transparent_encoder":
        scale = 1.0
    if encoder_offset_scale is not None:
        scale = float(encoder_offset_scale)
    num_params = _num_params(shapes)
    return LayerFileIdentity(
        path=path,
        kind=chosen,
        family=family,
        role=role,
        num_params=num_params,
        tiny=num_params * 8 < full_size_params(chosen),
        encoder_offset_scale=scale,
        **facts,
    )


@lru_cache(maxsize=2)
def _full_unet(family: Family) -> UNet2DConditionModel:
    """The full-size base UNet from the bundled diffusers config, on the meta device."""
    with torch.device("meta"):
        return UNet2DConditionModel.from_config(
            load_json(CONFIGS_DIR / family / "unet" / "config.json")
        )


def _full_size_shapes(
    role: Role, frames: int | None = None, use_control: bool | None = None, rank: int = 256
) -> dict[str, tuple[int, ...]]:
    """Exact key → shape of a full-size attention-sharing (LoRA `rank`: 256 in the released
    files; `acetate train layer-model --rank` may choose another) or transparent VAE file."""
    if role == "attention_sharing":
        assert frames is not None and use_control is not None
        unet = _full_unet("sd15")
        return _shapes_of(AttentionSharing.for_unet(unet, frames, use_control, rank=rank))
    with torch.device("meta"):
        model = TransparentDecoder() if role == "transparent_decoder" else TransparentEncoder()
    return _shapes_of(model)


@lru_cache(maxsize=32)
def full_size_params(kind: str) -> int:
    """Parameter count of a full-size official file of `kind`, derived from the architectures
    (the SDXL attention LoRA at the README's rank 256)."""
    role = KINDS[kind][1]
    if role == "attention_sharing":
        frames, control = next(fc for fc, kinds in _SHARING_KINDS.items() if kind in kinds)
        return _num_params(_full_size_shapes(role, frames, control))
    if role != "unet_patch":
        return _num_params(_full_size_shapes(role))
    params = _shapes_of(_full_unet("sdxl"))
    targets = {k: s for k, s in params.items() if ATTENTION_TARGET.search(k)}
    if kind == "layer_xl_transparent_attn":
        return sum(256 * (s[0] + _prod(s[1:])) for s in targets.values())
    if kind == "ld_diffusers_sdxl_attn":
        return _num_params(targets)
    return _num_params({k: s for k, s in params.items() if not QKV_WEIGHT.search(k)})


def verify_full_size(path_or_identity: str | os.PathLike[str] | LayerFileIdentity) -> None:
    """Check that a file maps completely onto its full-size base architecture (meta device).

    SDXL patches: every key maps onto a full-size SDXL UNet parameter with a compatible shape.
    Other roles: exactly the keys and shapes of the full-size model. Raises `ModelFileError`
    naming the first bad key.
    """
    identity = (
        path_or_identity
        if isinstance(path_or_identity, LayerFileIdentity)
        else identify_layer_file(path_or_identity)
    )
    check_full_size(identity, read_shapes(identity.path))


def check_full_size(identity: LayerFileIdentity, shapes: Shapes) -> None:
    """`verify_full_size` on an already-read header."""
    name = identity.path.name
    if identity.role == "unet_patch":
        plan_unet_patch(shapes, _full_unet("sdxl").config, name)
        return
    rank = 256
    if identity.role == "attention_sharing" and identity.trained is not None:
        rank = shapes.get("hookers.layers.0.to_q_lora.0.down.weight", (256,))[0]
    expected = _full_size_shapes(identity.role, identity.frames, identity.use_control, rank)
    check_layout(expected, shapes, f"{name} (full size)")


def describe(identity: LayerFileIdentity) -> dict[str, Any]:
    """A JSON-friendly summary (for `acetate models check`)."""
    return {**asdict(identity), "path": str(identity.path)}
