"""Files for the model-store tests: header-only full-size checkpoints, HF cache layouts, installs.

Full-size files are written as sparse safetensors: a real header and a data region left as a
hole, so a "6 GB" SDXL checkpoint takes a few kilobytes of disk and no time. Only the header is
ever read by discovery, which is exactly what these files test.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from acetate.engine.nets.attention_sharing import AttentionSharing
from acetate.engine.nets.keymap import diffusers_to_ldm_key
from acetate.engine.nets.transparent_vae import TransparentDecoder, TransparentEncoder
from acetate.engine.nets.unet_patch import ATTENTION_TARGET
from acetate.engine.store.family import CONFIGS_DIR, expected_unet_shapes, load_json

Shapes = dict[str, tuple[int, ...]]
_BYTES = {"F16": 2, "F32": 4, "BF16": 2}
CLIP_L = "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"
SDXL_CLIP = "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight"
SDXL_OPEN_CLIP = "conditioner.embedders.1.model.positional_embedding"
VAE = "first_stage_model.decoder.conv_in.weight"


def write_header_only(
    path: Path, shapes: Shapes, dtype: str = "F16", metadata: dict[str, str] | None = None
) -> Path:
    """A valid safetensors file whose tensor data is a sparse hole (reads as zeros)."""
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, shape in shapes.items():
        size = _BYTES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)
    return path


def unet_shapes(family: str, tiny: bool = False) -> Shapes:
    return {f"model.diffusion_model.{k}": s for k, s in expected_unet_shapes(family, tiny).items()}


def checkpoint_shapes(family: str) -> Shapes:
    """Full-size UNet plus the keys that show a VAE and the family's text encoders."""
    shapes = unet_shapes(family) | {VAE: (512, 4, 3, 3)}
    if family == "sdxl":
        return shapes | {SDXL_CLIP: (77, 768), SDXL_OPEN_CLIP: (77, 1280)}
    return shapes | {CLIP_L: (77, 768)}


def sd2_unet_shapes() -> Shapes:
    config = load_json(CONFIGS_DIR / "sd15" / "unet" / "config.json")
    config |= dict(attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024)
    config["use_linear_projection"] = True
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    return {
        f"model.diffusion_model.{diffusers_to_ldm_key(k, unet.config)}": tuple(v.shape)
        for k, v in unet.state_dict().items()
    }


def _shapes(module: torch.nn.Module) -> Shapes:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def full_layer_shapes(kind: str) -> Shapes:
    """Key → shape of a full-size official file of `kind` (the kinds the tests need)."""
    with torch.device("meta"):
        if kind.endswith("transparent_decoder"):
            return _shapes(TransparentDecoder())
        if kind.endswith("transparent_encoder"):
            return _shapes(TransparentEncoder())
        config = load_json(
            CONFIGS_DIR / ("sdxl" if "xl" in kind else "sd15") / "unet" / "config.json"
        )
        unet = UNet2DConditionModel.from_config(config)
        if kind == "ld_diffusers_sdxl_attn":
            return {k: s for k, s in _shapes(unet).items() if ATTENTION_TARGET.search(k)}
        frames, control = {
            "layer_sd15_transparent_attn": (1, False),
            "layer_sd15_joint": (3, False),
            "layer_sd15_fg2bg": (2, True),
            "layer_sd15_bg2fg": (2, True),
        }[kind]
        return _shapes(AttentionSharing.for_unet(unet, frames, control))


def write_layer_file(folder: Path, kind: str, name: str | None = None) -> Path:
    return write_header_only(folder / f"{name or kind}.safetensors", full_layer_shapes(kind))


def hf_repo(cache: Path, repo_id: str, files: dict[str, bytes | Path]) -> Path:
    """A model repo in Hugging Face cache layout (blobs + relative symlinks); its snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


def folder_files(folder: Path) -> dict[str, Path]:
    """Every file under `folder` by relative path (to copy a model into a fake cache)."""
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}


def write_clip_tokenizer(folder: Path) -> Path:
    """A CLIP-shaped BPE tokenizer with the real vocabulary size (49,408), made up merges."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    pairs = [(a, b) for a in chars for b in chars][:48894]
    tokens = [*chars, *(c + "</w>" for c in chars), *(a + b for a, b in pairs)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    merges = "\n".join(f"{a} {b}" for a, b in pairs)
    (folder / "merges.txt").write_text(f"#version: 0.2\n{merges}\n", encoding="utf-8")
    return folder


def full_checkpoint_shapes(family: str) -> Shapes:
    """Every key of a real full-size LDM checkpoint (UNet, VAE, text encoders) from meta models."""
    from types import SimpleNamespace

    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from acetate.engine.tiny.ldm_convert import pipeline_to_ldm

    folder = CONFIGS_DIR / family
    with torch.device("meta"):
        parts = SimpleNamespace(
            unet=UNet2DConditionModel.from_config(load_json(folder / "unet" / "config.json")),
            vae=AutoencoderKL.from_config(load_json(folder / "vae" / "config.json")),
            text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")),
            text_encoder_2=CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(folder / "text_encoder_2")
            )
            if family == "sdxl"
            else None,
        )
    return {k: tuple(v.shape) for k, v in pipeline_to_ldm(parts).items()}
