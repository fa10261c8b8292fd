"""Write a diffusers SD1.5/SDXL pipeline as one original-layout (LDM) `.safetensors` checkpoint.

diffusers ships only the LDM → diffusers direction; this is the way back, used to make
single-file checkpoints of the tiny models so the single-file loading path is tested for real.
The UNet goes through `keymap` (derived from the UNet config); the VAE, CLIP-L and OpenCLIP
renames follow the original checkpoints' layout.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from acetate.engine.nets.keymap import diffusers_to_ldm_key

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = {
    "sd15": "cond_stage_model.transformer.",
    "sdxl": "conditioner.embedders.0.transformer.",
}
OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."

_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}
_OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def unet_to_ldm(unet: Any) -> dict[str, torch.Tensor]:
    return {
        UNET_PREFIX + diffusers_to_ldm_key(key, unet.config): value
        for key, value in unet.state_dict().items()
    }


def _vae_key(key: str, up_blocks: int) -> str:
    key = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", key)
    key = re.sub(
        r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", key
    )
    key = re.sub(
        r"^decoder\.up_blocks\.(\d+)\.(resnets|upsamplers\.0)\.",
        lambda m: (
            f"decoder.up.{up_blocks - 1 - int(m[1])}."
            + ("block." if m[2] == "resnets" else "upsample.")
        ),
        key,
    )
    key = re.sub(r"\.mid_block\.resnets\.(\d+)\.", lambda m: f".mid.block_{int(m[1]) + 1}.", key)
    for diffusers, ldm in _VAE_ATTENTION.items():
        key = key.replace(f".mid_block.attentions.0.{diffusers}.", f".mid.attn_1.{ldm}.")
    return key.replace("conv_norm_out", "norm_out").replace(".conv_shortcut.", ".nin_shortcut.")


def vae_to_ldm(vae: Any) -> dict[str, torch.Tensor]:
    up_blocks = len(vae.config.up_block_types)
    out = {}
    for key, value in vae.state_dict().items():
        ldm = _vae_key(key, up_blocks)
        if ".mid.attn_1." in ldm and ldm.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # the original VAE attention uses 1×1 convolutions
        out[VAE_PREFIX + ldm] = value
    return out


def clip_to_ldm(text_encoder: Any, prefix: str) -> dict[str, torch.Tensor]:
    """CLIP-L; transformers ≥ 5 drops the `text_model.` prefix that LDM files carry."""
    out = {}
    for key, value in text_encoder.state_dict().items():
        name = key if key.startswith("text_model.") else f"text_model.{key}"
        out[prefix + name] = value
    return out


def open_clip_to_ldm(text_encoder: Any, prefix: str = OPEN_CLIP_PREFIX) -> dict[str, torch.Tensor]:
    """SDXL's second encoder in OpenCLIP layout (fused q/k/v, transposed projection)."""
    state = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    out = {
        prefix + "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
        prefix + "positional_embedding": state.pop("embeddings.position_embedding.weight"),
        prefix + "ln_final.weight": state.pop("final_layer_norm.weight"),
        prefix + "ln_final.bias": state.pop("final_layer_norm.bias"),
        prefix + "text_projection": state.pop("text_projection.weight").T.contiguous(),
    }
    state.pop("embeddings.position_ids", None)
    for layer in range(text_encoder.config.num_hidden_layers):
        source = f"encoder.layers.{layer}."
        target = f"{prefix}transformer.resblocks.{layer}."
        for kind in ("weight", "bias"):
            out[f"{target}attn.in_proj_{kind}"] = torch.cat(
                [state.pop(f"{source}self_attn.{p}_proj.{kind}") for p in "qkv"]
            )
        for ours, theirs in _OPEN_CLIP_LAYER.items():
            for kind in ("weight", "bias"):
                out[f"{target}{theirs}.{kind}"] = state.pop(f"{source}{ours}.{kind}")
    if state:
        raise ValueError(f"unconverted text encoder 2 keys: {sorted(state)[:5]}")
    return out


def pipeline_to_ldm(pipe: Any) -> dict[str, torch.Tensor]:
    """The whole pipeline (UNet, VAE, text encoders) as one LDM state dict."""
    family = "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd15"
    state = unet_to_ldm(pipe.unet) | vae_to_ldm(pipe.vae)
    state |= clip_to_ldm(pipe.text_encoder, CLIP_PREFIX[family])
    if family == "sdxl":
        state |= open_clip_to_ldm(pipe.text_encoder_2)
    return state


def save_ldm_checkpoint(pipe: Any, path: Path, dtype: torch.dtype | None = None) -> Path:
    """Write `pipeline_to_ldm(pipe)` to `path` atomically (optionally cast to `dtype`)."""
    state = pipeline_to_ldm(pipe)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    state = {k: v.detach().contiguous() for k, v in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)
    return path
