"""The built-in tiny test models: random weights, real layouts, built locally in seconds.

`ensure_tiny_models(models_dir)` builds `<models_dir>/tiny/`:

    checkpoints/tiny-sd15/, checkpoints/tiny-sdxl/        diffusers pipeline folders
    controlnet/tiny-controlnet-sd15/, …-sdxl/             ControlNets made from the tiny UNets
    layer_model/<official file name>.safetensors          every official LayerDiffusion kind
    loras/tiny-style-sd15.safetensors, …-sdxl             style LoRAs (`styles.py`)
    embeddings/tiny-emb-sd15.safetensors, …-sdxl          textual-inversion embeddings

The tiny models keep what the official files rely on (DESIGN.md "Models"): a VAE with 4 latent
channels, ×8 downsampling and the family's scaling factor; UNets with the real block types and
`layers_per_block`, so the LDM ↔ diffusers key mapping and the SD1.5 attention layer order are
the real ones; CLIP text encoders with a tokenizer generated here. SDXL's second text encoder
has a different width from the first, which diffusers' single-file loader needs to tell them
apart.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TINY_DIR = "tiny"
TINY_BASES = ("tiny-sd15", "tiny-sdxl")
TINY_CONTROLNETS = {"sd15": "tiny-controlnet-sd15", "sdxl": "tiny-controlnet-sdxl"}
STAMP_FILE = "BUILD.json"
SEED = 0

TINY_SD15: dict[str, Any] = dict(
    sample_size=8,
    layers_per_block=2,
    block_out_channels=(32, 64, 64, 64),
    norm_num_groups=32,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    attention_head_dim=8,
    cross_attention_dim=32,  # = text encoder width
)
TINY_SDXL: dict[str, Any] = dict(
    sample_size=8,
    layers_per_block=2,
    block_out_channels=(32, 64, 64),
    norm_num_groups=32,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(2, 4, 4),
    transformer_layers_per_block=(1, 1, 1),
    use_linear_projection=True,
    cross_attention_dim=80,  # = 32 (text encoder 1) + 48 (text encoder 2)
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=80,  # = 6 * 8 + 32 (text encoder 2 projection)
)
TINY_TEXT_ENCODER: dict[str, Any] = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=32,
)
TINY_TEXT_ENCODER_2: dict[str, Any] = dict(
    TINY_TEXT_ENCODER, hidden_act="gelu", hidden_size=48, intermediate_size=96
)
TINY_VAE: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=1,
    block_out_channels=(16, 16, 32, 32),  # four blocks: ×8 like the real VAE
    norm_num_groups=8,
    sample_size=64,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
)
SCALING_FACTOR = {"sd15": 0.18215, "sdxl": 0.13025}
SCHEDULER_SD15: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    set_alpha_to_one=False,
    skip_prk_steps=True,
    steps_offset=1,
    prediction_type="epsilon",
)
SCHEDULER_SDXL: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    timestep_spacing="leading",
    steps_offset=1,
    interpolation_type="linear",
    use_karras_sigmas=False,
)
#: Control depends on the image: the ControlNet's zero-initialised output convs get random weights.
CONTROLNET_OUTPUT_STD = 0.05


def tiny_root(models_dir: Path) -> Path:
    return Path(models_dir) / TINY_DIR


def write_tiny_tokenizer(folder: Path, *, pad_token: str = "<|endoftext|>") -> Path:
    """A byte-level CLIP BPE tokenizer with no merges (514 tokens), loadable offline."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    tokens = [*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(
        json.dumps({token: i for i, token in enumerate(tokens)}, ensure_ascii=False),
        encoding="utf-8",
    )
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer.from_pretrained(
        folder, model_max_length=77, pad_token=pad_token, local_files_only=True
    )
    tokenizer.save_pretrained(folder)  # adds tokenizer.json + tokenizer_config.json
    return folder


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _text_encoders(family: str, tokenizer: Any, seed: int) -> list[Any]:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    ids = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    with _seeded(seed + 1):
        encoders: list[Any] = [CLIPTextModel(CLIPTextConfig(**TINY_TEXT_ENCODER, **ids))]
    if family == "sdxl":
        with _seeded(seed + 2):
            encoders.append(
                CLIPTextModelWithProjection(CLIPTextConfig(**TINY_TEXT_ENCODER_2, **ids))
            )
    return encoders


def build_tiny_pipeline(family: str, folder: Path, seed: int = SEED) -> Any:
    """Build tiny-sd15 / tiny-sdxl and save it as a diffusers folder; returns the pipeline."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTokenizer

    write_tiny_tokenizer(folder / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    encoders = _text_encoders(family, tokenizer, seed)
    with _seeded(seed + 3):
        vae = AutoencoderKL(**TINY_VAE, scaling_factor=SCALING_FACTOR[family], force_upcast=True)
    with _seeded(seed + 4):
        unet = UNet2DConditionModel(**(TINY_SDXL if family == "sdxl" else TINY_SD15))
    pipe: Any
    if family == "sdxl":
        write_tiny_tokenizer(folder / "tokenizer_2", pad_token="!")
        tokenizer_2 = CLIPTokenizer.from_pretrained(folder / "tokenizer_2", local_files_only=True)
        pipe = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=encoders[0],
            text_encoder_2=encoders[1],
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=unet,
            scheduler=EulerDiscreteScheduler(**SCHEDULER_SDXL),
        )
    else:
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=encoders[0],
            tokenizer=tokenizer,
            unet=unet,
            scheduler=PNDMScheduler(**SCHEDULER_SD15),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    pipe.save_pretrained(folder, safe_serialization=True)
    return pipe


def build_tiny_controlnet(unet: Any, folder: Path, seed: int = SEED) -> Any:
    """A ControlNet copied from a tiny UNet, with random (non-zero) output convolutions."""
    import torch
    from diffusers import ControlNetModel

    with _seeded(seed + 5):
        controlnet = ControlNetModel.from_unet(unet)
    generator = torch.Generator().manual_seed(seed + 6)
    with torch.no_grad():
        for name, param in controlnet.named_parameters():
            if name.startswith(
                (
                    "controlnet_down_blocks.",
                    "controlnet_mid_block.",
                    "controlnet_cond_embedding.conv_out.",
                )
            ):
                param.copy_(torch.randn(param.shape, generator=generator) * CONTROLNET_OUTPUT_STD)
    controlnet.save_pretrained(folder, safe_serialization=True)
    return controlnet


def _layer_writers() -> tuple[Any, Any, Any]:
    from acetate.engine.nets import transparent_vae
    from acetate.engine.tiny import layers as tiny_layers
    from acetate.engine.tiny import styles as tiny_styles

    return transparent_vae, tiny_layers, tiny_styles


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Saving shows library progress bars; a build of tiny files is not worth a bar."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    was = [m.is_progress_bar_enabled() for m in (diffusers_logging, transformers_logging)]
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        for module, enabled in zip((diffusers_logging, transformers_logging), was, strict=True):
            if enabled:
                module.enable_progress_bar()


def build_tiny_models(root: Path, seed: int = SEED) -> list[Path]:
    """Build every tiny model under `root` (an empty or new folder); returns the written paths."""
    with _no_progress_bars():
        return _build(root, seed)


def _build(root: Path, seed: int) -> list[Path]:
    transparent_vae, tiny_layers, tiny_styles = _layer_writers()
    written: list[Path] = []
    unets = {}
    for family, name in zip(("sd15", "sdxl"), TINY_BASES, strict=True):
        folder = root / "checkpoints" / name
        pipe = build_tiny_pipeline(family, folder, seed)
        unets[family] = pipe.unet
        written.append(folder)
        written += tiny_styles.write_tiny_styles(root, family, pipe, seed)
        controlnet = root / "controlnet" / TINY_CONTROLNETS[family]
        build_tiny_controlnet(unets[family], controlnet, seed)
        written.append(controlnet)
    layers = root / "layer_model"
    layers.mkdir(parents=True, exist_ok=True)
    written += transparent_vae.write_tiny_transparent_files(layers, seed=seed)
    written += tiny_layers.write_tiny_layer_files(layers, unets["sd15"], unets["sdxl"], seed=seed)
    return written


def builder_stamp() -> dict[str, str]:
    """What the tiny files depend on: the builders' source and the libraries that save them."""
    import diffusers
    import transformers

    digest = hashlib.sha256()
    for module in (sys.modules[__name__], *_layer_writers()):
        digest.update(inspect.getsource(module).encode())
    return {
        "builder": digest.hexdigest(),
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }


def _read_stamp(root: Path) -> dict[str, str] | None:
    try:
        stamp = json.loads((root / STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def tiny_models_current(models_dir: Path) -> bool:
    """True when `<models_dir>/tiny/` exists and was built by this builder."""
    return _read_stamp(tiny_root(models_dir)) == builder_stamp()


def ensure_tiny_models(models_dir: Path) -> Path:
    """Build `<models_dir>/tiny/` unless it is current; returns that folder.

    Idempotent and safe when several processes race: each builds in its own temporary folder
    and renames it into place; a process that finds a current build already there keeps it.
    """
    root = tiny_root(models_dir)
    stamp = builder_stamp()
    if _read_stamp(root) == stamp:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=root.parent))
    try:
        build_tiny_models(build)
        (build / STAMP_FILE).write_text(json.dumps(stamp, indent=1), encoding="utf-8")
        _install(build, root, stamp)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return root


def _install(build: Path, root: Path, stamp: dict[str, str]) -> None:
    for _ in range(5):
        try:
            os.rename(build, root)
            return
        except OSError:
            if _read_stamp(root) == stamp:
                return  # another process finished first
            trash = root.with_name(f".tiny-old-{uuid.uuid4().hex}")
            try:
                os.rename(root, trash)
            except FileNotFoundError:
                continue
            shutil.rmtree(trash, ignore_errors=True)
    raise OSError(f"could not install the tiny models into {root}")
