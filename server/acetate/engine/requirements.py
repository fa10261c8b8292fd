"""Which official LayerDiffusion files each mode needs, per base family: one table.

`MODE_REQUIREMENTS[family][mode]` maps a role to the official kinds (file stems) that can fill
it, preferred first. Roles: `unet_patch` (SDXL UNet patch applied while sampling the layer),
`blend_patch` (SDXL first stage of a two-stage mode: the blended image), `attention_sharing`
(SD1.5 multi-frame attention model), `decoder` / `encoder` (transparent VAE).
"""

from __future__ import annotations

from typing import Final

from acetate.engine.family import Family

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
