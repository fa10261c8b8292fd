"""Which official LayerDiffusion files each mode needs, per base family: one table.

`MODE_REQUIREMENTS[family][mode]` maps a role to the official kinds (file stems) that can fill
it, preferred first. Roles: `unet_patch` (SDXL UNet patch applied while sampling the layer),
`blend_patch` (SDXL first stage of a two-stage mode: the blended image), `attention_sharing`
(SD1.5 multi-frame attention model), `decoder` / `encoder` (transparent VAE).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Final

from acetate.engine.store.discovery import BaseModel, LayerFile
from acetate.engine.store.family import FAMILY_LABEL, Family
from acetate.errors import InputError, ModelFileError

Role = str
Requirements = dict[Role, tuple[str, ...]]

ROLES: Final = ("unet_patch", "blend_patch", "attention_sharing", "decoder", "encoder")
LAYER_FOLDER: Final = "layer_model"

_SDXL_DECODER = ("vae_transparent_decoder", "ld_diffusers_sdxl_vae_transparent_decoder")
_SDXL_ENCODER = ("vae_transparent_encoder", "ld_diffusers_sdxl_vae_transparent_encoder")
_SDXL_FG: Requirements = {
    "unet_patch": (
        "layer_xl_transparent_attn",
        "ld_diffusers_sdxl_attn",
        "layer_xl_transparent_conv",
    ),
    "decoder": _SDXL_DECODER,
}
_SDXL_BG2FG: Requirements = {
    "blend_patch": ("layer_xl_bg2ble",),
    "unet_patch": ("layer_xl_bgble2fg",),
    "decoder": _SDXL_DECODER,
}
_SD15_FG: Requirements = {
    "attention_sharing": ("layer_sd15_transparent_attn",),
    "decoder": ("layer_sd15_vae_transparent_decoder",),
}
_SD15_BG2FG: Requirements = {
    "attention_sharing": ("layer_sd15_bg2fg",),
    "decoder": ("layer_sd15_vae_transparent_decoder",),
}
_SDXL_EDIT: Requirements = {**_SDXL_FG, "encoder": _SDXL_ENCODER}
_SD15_EDIT: Requirements = {**_SD15_FG, "encoder": ("layer_sd15_vae_transparent_encoder",)}

MODE_REQUIREMENTS: Final[dict[Family, dict[str, Requirements]]] = {
    "sdxl": {
        "fg": _SDXL_FG,
        # the foreground is a condition image (plain VAE), the background comes out RGB
        "fg2bg": {"blend_patch": ("layer_xl_fg2ble",), "unet_patch": ("layer_xl_fgble2bg",)},
        "bg2fg": _SDXL_BG2FG,
        "img2img": _SDXL_EDIT,
        "inpaint": _SDXL_EDIT,
        "upscale": _SDXL_EDIT,
        "layer_on_artwork": _SDXL_BG2FG,
    },
    "sd15": {
        "fg": _SD15_FG,
        "fg2bg": {"attention_sharing": ("layer_sd15_fg2bg",)},
        "bg2fg": _SD15_BG2FG,
        "joint": {
            "attention_sharing": ("layer_sd15_joint",),
            "decoder": ("layer_sd15_vae_transparent_decoder",),
        },
        "img2img": _SD15_EDIT,
        "inpaint": _SD15_EDIT,
        "upscale": _SD15_EDIT,
        "layer_on_artwork": _SD15_BG2FG,
    },
}

#: Modes a family cannot run, whatever files are present, and why.
UNSUPPORTED_MODES: Final[dict[Family, dict[str, str]]] = {
    "sdxl": {
        "joint": "no official SDXL joint model exists (LayerDiffusion released joint "
        "foreground/background generation for SD1.5 only); use an SD1.5 base, or fg then fg2bg",
    },
    "sd15": {},
}


def requirements(family: Family, mode: str) -> Requirements:
    """The roles and kinds `mode` needs on `family`; `KeyError` for an unsupported pair."""
    return MODE_REQUIREMENTS[family][mode]


def file_name(kind: str) -> str:
    """The official file name of a kind."""
    return f"{kind}.safetensors"


def describe_missing(kinds: tuple[str, ...]) -> str:
    """`a.safetensors` or `a.safetensors (or b.safetensors)` for a role's alternatives."""
    first, *others = (file_name(k) for k in kinds)
    return f"{first} (or {' / '.join(others)})" if others else first


def select(
    needs: Requirements, candidates: Iterable[LayerFile], chosen: dict[Role, LayerFile]
) -> list[tuple[str, ...]]:
    """Fill every role of `needs` not yet in `chosen` with the most preferred candidate
    (in place); returns the alternatives of the roles nothing fills."""
    candidates = list(candidates)
    missing = []
    for role, kinds in needs.items():
        if role in chosen:
            continue
        ranked = sorted(
            (f for f in candidates if f.kind in kinds), key=lambda f: kinds.index(f.kind)
        )
        if ranked:
            chosen[role] = ranked[0]
        else:
            missing.append(kinds)
    return missing


def override_role(layer: LayerFile, base: BaseModel, mode: str, needs: Requirements) -> Role:
    """The role an explicitly given file fills for `mode` on `base`, or why it cannot."""
    label = FAMILY_LABEL[base.family]
    if layer.family != base.family:
        raise ModelFileError(
            f"{layer.name} is an {FAMILY_LABEL[layer.family]} file ({layer.kind}); "
            f"the base {base.name} is {label}",
            field="layer_model",
        )
    if layer.tiny != base.tiny:
        what = "a tiny test file" if layer.tiny else "a full-size file"
        size = "a tiny test model" if base.tiny else "full size"
        raise ModelFileError(
            f"{layer.name} is {what}; the base {base.name} is {size}", field="layer_model"
        )
    for role, kinds in needs.items():
        if layer.kind in kinds:
            return role
    wanted = ", ".join(file_name(k) for kinds in needs.values() for k in kinds)
    raise InputError(
        f"{layer.name} ({layer.kind}) is not used by mode {mode} on {label}; it uses {wanted}",
        field="layer_model",
    )


def missing_message(
    base: BaseModel, mode: str, missing: list[tuple[str, ...]], models_dir: Path
) -> str:
    """Every missing official file name, where to put it and how to get it."""
    names = " and ".join(describe_missing(kinds) for kinds in missing)
    if base.tiny:
        return f"tiny layer files for {mode} are missing ({names}): run `acetate models tiny`"
    gets = ", ".join(f"`acetate models get {kinds[0]}`" for kinds in missing)
    return (
        f"mode {mode} on {base.name} ({FAMILY_LABEL[base.family]}) needs {names}: put "
        f"{'it' if len(missing) == 1 else 'them'} in {models_dir / LAYER_FOLDER}/ "
        f"(download with {gets}, or from huggingface.co/LayerDiffusion/layerdiffusion-v1)"
    )
