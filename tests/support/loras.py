"""Tiny LoRAs for the tiny bases: made with peft on the tiny UNets and saved with diffusers'
`save_lora_weights` (diffusers keys), plus the same weights under kohya keys."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

#: The tiny bases' pipeline classes, by family.
PIPELINES = {"sd15": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline"}


def _with_lora(model: Any, targets: list[str]) -> dict[str, torch.Tensor]:
    """`model` given a rank-4 peft LoRA on `targets` whose up weights are big enough to change
    the picture; its LoRA state dict."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=targets)
    inject_adapter_in_model(config, model)  # peft itself: transformers' `add_adapter` wants 0.22
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    return {
        key.replace(".default.", "."): value.detach().clone()
        for key, value in model.state_dict().items()
        if ".lora_" in key
    }


def tiny_unet_lora(
    models: Path, family: str, out: Path, *, seed: int = 0, text_encoders: bool = False
) -> Path:
    """A LoRA on every attention projection of the tiny `family` UNet (and, with
    `text_encoders`, of its text encoders), saved in diffusers keys at `out`."""
    import diffusers
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    folder = models / "tiny" / "checkpoints" / f"tiny-{family}"
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    layers = {"unet_lora_layers": _with_lora(unet, ["to_q", "to_k", "to_v", "to_out.0"])}
    if text_encoders:
        clip = ["q_proj", "k_proj", "v_proj", "out_proj"]
        encoder = CLIPTextModel.from_pretrained(folder / "text_encoder")
        layers["text_encoder_lora_layers"] = _with_lora(encoder, clip)
        if family == "sdxl":
            encoder_2 = CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2")
            layers["text_encoder_2_lora_layers"] = _with_lora(encoder_2, clip)
    pipeline = getattr(diffusers, PIPELINES[family])
    out.parent.mkdir(parents=True, exist_ok=True)
    pipeline.save_lora_weights(str(out.parent), weight_name=out.name, **layers)
    return out


def to_kohya(diffusers_lora: Path, out: Path) -> Path:
    """The same LoRA under kohya keys (`lora_unet_<module>`, `lora_te1_`/`lora_te2_text_model_…`
    with `.lora_down/up.weight` and `.alpha`), as sd-scripts writes them."""
    prefixes = {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}
    tensors = {}
    for key, value in load_file(diffusers_lora).items():
        match = re.fullmatch(r"(unet|text_encoder|text_encoder_2)\.(.+)\.lora_(A|B)\.weight", key)
        assert match, key
        component, module, factor = match.groups()
        if component != "unet" and not module.startswith("text_model."):
            module = f"text_model.{module}"
        name = prefixes[component] + module.replace(".", "_")
        tensors[f"{name}.lora_{'down' if factor == 'A' else 'up'}.weight"] = value
        tensors[f"{name}.alpha"] = torch.tensor(float(value.shape[0 if factor == "A" else 1]))
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out))
    return out


def store_with_loras(tiny_models: Path, models: Path) -> dict[str, Path]:
    """A copy of the tiny store with `models/loras/`: `style-sd15`, `style-sdxl` (diffusers
    keys, UNet and text encoders) and `kohya-sdxl` (`style-sdxl` in kohya keys); plus a pickle
    file the store must refuse."""
    shutil.copytree(tiny_models, models, symlinks=True)
    loras = models / "loras"
    files = {
        "style-sd15": tiny_unet_lora(models, "sd15", loras / "style-sd15.safetensors"),
        # Text encoders too: both SDXL encoders get LoRA layers, fused and restored alike.
        "style-sdxl": tiny_unet_lora(
            models, "sdxl", loras / "style-sdxl.safetensors", text_encoders=True
        ),
    }
    files["kohya-sdxl"] = to_kohya(files["style-sdxl"], loras / "kohya-sdxl.safetensors")
    (loras / "old.pt").write_bytes(b"not opened")
    return files
