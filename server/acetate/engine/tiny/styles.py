"""Tiny style LoRAs and textual-inversion embeddings for the tiny bases, in the real file formats.

    loras/tiny-style-sd15.safetensors, loras/tiny-style-sdxl.safetensors
        diffusers/peft keys (`unet.….attn2.to_k.lora_A.weight`, `text_encoder.….q_proj.lora_B…`)
        on every attention projection of the UNet and the text encoders, as `save_lora_weights`
        writes them.
    embeddings/tiny-emb-sd15.safetensors      A1111 `{"emb_params": [vectors, width]}`
    embeddings/tiny-emb-sdxl.safetensors      A1111/ComfyUI SDXL `{"clip_l": …, "clip_g": …}`

Weights are random but deterministic per seed and large enough to change the picture: a LoRA's
up factors and an embedding's vectors are a multiple of the weights they act on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

LORA_DIR = "loras"
EMBEDDING_DIR = "embeddings"
TINY_STYLE_LORAS: dict[str, str] = {"sd15": "tiny-style-sd15", "sdxl": "tiny-style-sdxl"}
TINY_EMBEDDINGS: dict[str, str] = {"sd15": "tiny-emb-sd15", "sdxl": "tiny-emb-sdxl"}
LORA_RANK = 4
#: Standard deviation of the LoRA up (B) factors; the down (A) factors have peft's gaussian init.
LORA_UP_STD = 0.5
#: Attention projections a LoRA targets: the UNet's, then CLIP's.
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
CLIP_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
EMBEDDING_VECTORS = 2
#: Embedding vectors' size relative to the text encoder's own token embeddings.
EMBEDDING_SCALE = 20.0


def lora_tensors(
    components: dict[str, torch.nn.Module], generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """A rank-4 LoRA on the attention projections of each component (`unet`, `text_encoder`,
    `text_encoder_2`), under the keys diffusers' `save_lora_weights` writes."""
    tensors: dict[str, torch.Tensor] = {}
    for component, model in components.items():
        targets = UNET_TARGETS if component == "unet" else CLIP_TARGETS
        for name, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear) or not name.endswith(targets):
                continue
            down = torch.randn(LORA_RANK, module.in_features, generator=generator) / LORA_RANK
            up = torch.randn(module.out_features, LORA_RANK, generator=generator) * LORA_UP_STD
            if component != "unet" and not name.startswith("text_model."):
                name = f"text_model.{name}"  # transformers 5 dropped the wrapper the files name
            tensors[f"{component}.{name}.lora_A.weight"] = down
            tensors[f"{component}.{name}.lora_B.weight"] = up
    return tensors


def _text_encoders(pipe: Any) -> dict[str, Any]:
    encoders = {"text_encoder": pipe.text_encoder}
    if getattr(pipe, "text_encoder_2", None) is not None:
        encoders["text_encoder_2"] = pipe.text_encoder_2
    return encoders


def embedding_tensors(pipe: Any, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """An A1111 textual-inversion embedding of `EMBEDDING_VECTORS` vectors for `pipe`'s text
    encoders: `emb_params` for SD1.5, `clip_l` + `clip_g` for SDXL."""
    vectors = {}
    for component, encoder in _text_encoders(pipe).items():
        tokens = encoder.get_input_embeddings().weight.detach()
        std = float(tokens.float().std()) * EMBEDDING_SCALE
        vectors[component] = torch.randn(EMBEDDING_VECTORS, tokens.shape[1], generator=generator)
        vectors[component] *= std
    if "text_encoder_2" in vectors:
        return {"clip_l": vectors["text_encoder"], "clip_g": vectors["text_encoder_2"]}
    return {"emb_params": vectors["text_encoder"]}


def _save(tensors: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(path))
    return path


def write_tiny_styles(root: Path, family: str, pipe: Any, seed: int) -> list[Path]:
    """Write `family`'s tiny style LoRA and embedding for its tiny pipeline `pipe` under the
    tiny store `root` (`loras/`, `embeddings/`); returns the paths."""
    offset = 0 if family == "sd15" else 1
    lora = lora_tensors(
        {"unet": pipe.unet, **_text_encoders(pipe)},
        torch.Generator().manual_seed(seed * 1000 + 100 + offset),
    )
    embedding = embedding_tensors(pipe, torch.Generator().manual_seed(seed * 1000 + 200 + offset))
    return [
        _save(lora, root / LORA_DIR / f"{TINY_STYLE_LORAS[family]}.safetensors"),
        _save(embedding, root / EMBEDDING_DIR / f"{TINY_EMBEDDINGS[family]}.safetensors"),
    ]
