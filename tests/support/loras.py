"""Tiny LoRAs for the tiny bases in diffusers keys (made as the tiny store's `tiny-style-*`
are), plus the same weights under kohya keys."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from acetate.engine.tiny.styles import lora_tensors


def tiny_unet_lora(
    models: Path, family: str, out: Path, *, seed: int = 0, text_encoders: bool = False
) -> Path:
    """A LoRA on every attention projection of the tiny `family` UNet (and, with
    `text_encoders`, of its text encoders), in diffusers keys at `out` (the tiny store's own
    `tiny-style-*` maker, `acetate.engine.tiny.styles.lora_tensors`)."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    folder = models / "tiny" / "checkpoints" / f"tiny-{family}"
    components: dict[str, torch.nn.Module] = {
        "unet": UNet2DConditionModel.from_pretrained(folder / "unet")
    }
    if text_encoders:
        components["text_encoder"] = CLIPTextModel.from_pretrained(folder / "text_encoder")
        if family == "sdxl":
            components["text_encoder_2"] = CLIPTextModelWithProjection.from_pretrained(
                folder / "text_encoder_2"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(lora_tensors(components, torch.Generator().manual_seed(seed)), str(out))
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
