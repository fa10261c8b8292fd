"""Load a discovered base model or ControlNet on the CPU, offline, safetensors only.

Diffusers folders go through `from_pretrained(local_files_only=True)`. Single files go through
`from_single_file` with `config=` a config-only diffusers folder (the bundled
`engine/configs/<family>/`, or the tiny model's own folder), so diffusers never asks the Hub
for a config. Those folders carry no tokenizer vocabulary: the CLIP tokenizers come from a
folder the store found (a diffusers model, the Hugging Face cache, a ComfyUI or Forge install).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from acetate.engine.store.discovery import BaseCheckpoint, ControlNetInfo
from acetate.engine.store.family import CONFIGS_DIR, FAMILY_LABEL, load_json
from acetate.engine.store.qwen import QWEN_FAMILY, load_qwen_pipeline
from acetate.errors import ModelFileError, ModelNotFoundError

TOKENIZER_HELP = (
    "the CLIP tokenizer files (vocab.json + merges.txt) were not found: run "
    "`acetate models get clip-tokenizer` once online, keep a diffusers SD1.5/SDXL model in "
    "models/checkpoints/, or pass --extra-models-dir pointing at a ComfyUI install"
)


def has_tokenizer_files(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or (
        (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    )


def _load_tokenizer(folder: Path, settings: dict[str, Any], vocab_size: int) -> Any | None:
    from transformers import CLIPTokenizer

    try:
        tokenizer = CLIPTokenizer.from_pretrained(
            folder,
            local_files_only=True,
            model_max_length=int(settings.get("model_max_length", 77)),
            pad_token=settings.get("pad_token", "<|endoftext|>"),
        )
    except (OSError, ValueError, TypeError):
        return None
    return tokenizer if len(tokenizer) == vocab_size else None


def load_tokenizers(base: BaseCheckpoint) -> dict[str, Any]:
    """`tokenizer` (and `tokenizer_2` for SDXL) for a single-file base, from its search folders.

    Every CLIP tokenizer shares one vocabulary; the bundled `tokenizer_config.json` of each slot
    supplies what differs (SDXL's second tokenizer pads with `!`).
    """
    assert base.config_dir is not None
    names = ["tokenizer", "tokenizer_2"] if base.family == "sdxl" else ["tokenizer"]
    vocab_size = int(load_json(base.config_dir / "text_encoder" / "config.json")["vocab_size"])
    folders = [f for f in base.tokenizer_dirs if has_tokenizer_files(f)]
    loaded: dict[str, Any] = {}
    for name in names:
        settings_file = base.config_dir / name / "tokenizer_config.json"
        settings = load_json(settings_file) if settings_file.is_file() else {}
        for folder in folders:
            tokenizer = _load_tokenizer(folder, settings, vocab_size)
            if tokenizer is not None:
                loaded[name] = tokenizer
                break
        else:
            raise ModelNotFoundError(f"{base.name}: {TOKENIZER_HELP}", field="model")
    return loaded


def _dtype(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """diffusers renamed `torch_dtype` to `dtype` (the old name warns); pass what it expects."""
    from diffusers.utils import deprecation_utils

    return {"dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype": dtype}


def _is_memory_error(error: Exception) -> bool:
    """Out-of-memory stays what it is: the engine reports it, it is no fault of the file."""
    return isinstance(error, RuntimeError) and "memory" in str(error).lower()


def _load_error(what: str, path: Path, error: Exception) -> ModelFileError:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ModelFileError(f"{path.name} could not be loaded as {what}: {first_line}")


def load_base_pipeline(base: BaseCheckpoint, dtype: torch.dtype, quantize: str = "none") -> Any:
    """A `StableDiffusionPipeline` (SD1.5) or `StableDiffusionXLPipeline` on the CPU (or, for
    the Qwen-Image-Layered family, a `QwenImageLayeredPipeline`, quantised per `quantize`)."""
    if base.family == QWEN_FAMILY:
        split = getattr(base, "transformer_file", None)  # `qwen_split.SplitQwenBase`
        return load_qwen_pipeline(base.path, dtype, base.variant, quantize, split, base.tiny)
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    cls = StableDiffusionXLPipeline if base.family == "sdxl" else StableDiffusionPipeline
    extra: dict[str, Any] = {}
    if base.family == "sd15":
        extra = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    what = f"an {FAMILY_LABEL[base.family]} model"
    if not base.path.exists():
        raise ModelNotFoundError(f"{base.name}: {base.path} no longer exists", field="model")
    try:
        if base.format == "diffusers":
            pipeline = cls.from_pretrained(
                base.path,
                **_dtype(dtype),
                local_files_only=True,
                use_safetensors=True,
                variant=base.variant,
                **extra,
            )
        else:
            config_dir = base.config_dir or CONFIGS_DIR / base.family
            tokenizers = load_tokenizers(base)
            pipeline = cls.from_single_file(
                str(base.path),
                config=str(config_dir),
                local_files_only=True,
                **_dtype(dtype),
                **tokenizers,
                **extra,
            )
    except (ModelNotFoundError, ModelFileError):
        raise
    except (
        OSError,
        ValueError,
        RuntimeError,
        KeyError,
        TypeError,
        AttributeError,
        OverflowError,
        SingleFileComponentError,
    ) as error:
        # An unusable config (wrong types, bad JSON, missing keys) is the file's fault.
        if _is_memory_error(error):
            raise
        raise _load_error(what, base.path, error) from error
    check_tokenizers(pipeline, base)
    return pipeline


#: Longest prompt window a CLIP text encoder can have (77 for every SD1.5/SDXL encoder).
MAX_TOKENIZER_LENGTH = 4096


def check_tokenizers(pipeline: Any, base: BaseCheckpoint) -> None:
    """Refuse a base whose tokenizer cannot tokenize (e.g. a `tokenizer_config.json` without a
    usable `model_max_length`: transformers then uses 1e30 and fails on the first prompt),
    naming the file to fix."""
    for name, encoder_name in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")):
        tokenizer = getattr(pipeline, name, None)
        if tokenizer is None:
            continue
        length = getattr(tokenizer, "model_max_length", None)
        encoder = getattr(pipeline, encoder_name, None)
        positions = getattr(getattr(encoder, "config", None), "max_position_embeddings", None)
        limit = positions if isinstance(positions, int) else MAX_TOKENIZER_LENGTH
        if isinstance(length, int) and 1 <= length <= limit:
            continue
        if base.format == "diffusers":
            where = f"{base.path.name}/{name}/tokenizer_config.json"
        else:
            where = f"the {name} files found for {base.path.name}"
        raise ModelFileError(
            f"{base.name}: {where} has no usable model_max_length (got {length!r}; "
            f"the text encoder takes at most {limit} tokens)",
            field="model",
        )


def load_controlnet(info: ControlNetInfo, dtype: torch.dtype) -> Any:
    """A `ControlNetModel` on the CPU."""
    from diffusers import ControlNetModel

    try:
        if info.format == "diffusers":
            return ControlNetModel.from_pretrained(
                info.path,
                **_dtype(dtype),
                local_files_only=True,
                use_safetensors=True,
                variant=info.variant,
            )
        return ControlNetModel.from_single_file(
            str(info.path),
            config=str(info.config_dir or CONFIGS_DIR / f"controlnet-{info.family}"),
            local_files_only=True,
            **_dtype(dtype),
        )
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        if _is_memory_error(error):
            raise
        raise _load_error(f"an {FAMILY_LABEL[info.family]} ControlNet", info.path, error) from error
