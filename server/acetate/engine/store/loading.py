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

from acetate.engine.nets.weight_files import (
    DTYPES,
    UNetWeightFiles,
    WeightReader,
    attach_weight_files,
)
from acetate.engine.store.discovery import BaseCheckpoint, ControlNetInfo
from acetate.engine.store.family import CONFIGS_DIR, FAMILY_LABEL, load_json, read_header
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


def _dtype(dtype: torch.dtype | dict[str, torch.dtype]) -> dict[str, Any]:
    """diffusers renamed `torch_dtype` to `dtype` (the old name warns); pass what it expects
    (one dtype, or one per component with a "default")."""
    from diffusers.utils import deprecation_utils

    return {"dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype": dtype}


def _is_memory_error(error: Exception) -> bool:
    """Out-of-memory stays what it is: the engine reports it, it is no fault of the file."""
    return isinstance(error, RuntimeError) and "memory" in str(error).lower()


def _load_error(what: str, path: Path, error: Exception) -> ModelFileError:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ModelFileError(f"{path.name} could not be loaded as {what}: {first_line}")


#: Pipeline components whose weights are worth loading in their stored dtype first.
UPCAST_COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "vae")


def stored_float_dtype(folder: Path, variant: str | None) -> torch.dtype | None:
    """The one float dtype of a component folder's weight files (None: mixed, or no files)."""
    found: set[str] = set()
    for path in folder.glob("*.safetensors"):
        middle = path.name.split(".")[1:-1]
        if middle != ([variant] if variant else []):
            continue
        try:
            found |= set(read_header(path).dtypes.values())
        except ModelFileError:
            return None
    floats = found & set(DTYPES)
    return DTYPES[floats.pop()] if len(floats) == 1 else None


def narrower_stored_dtypes(
    folder: Path, variant: str | None, dtype: torch.dtype
) -> dict[str, torch.dtype]:
    """Components stored in a narrower float type than `dtype` (fp16 files for an fp32 run).

    diffusers reads a whole weight file into memory before converting it, so loading SDXL's
    5 GB fp16 UNet as fp32 holds both (15 GB); loaded as stored and then converted tensor by
    tensor, it never holds more than the fp32 result. The values are the same: widening a
    float is exact.
    """
    narrower = {}
    for component in UPCAST_COMPONENTS:
        stored = stored_float_dtype(folder / component, variant)
        if stored is not None and stored.itemsize < dtype.itemsize:
            narrower[component] = stored
    return narrower


def load_unet_by_tensor(folder: Path, files: UNetWeightFiles, dtype: torch.dtype) -> Any | None:
    """A diffusers UNet read one tensor at a time and converted to `dtype` as it is read.

    diffusers maps the weight file and converts the mapped tensors: while SDXL's fp16 UNet
    becomes fp32, the whole mapped file (5 GB) is resident beside the new weights. Reading
    each tensor into its own buffer instead keeps loading at the size of the result. None when
    the folder is not exactly the UNet its config describes (then diffusers loads it, and says
    what is wrong). `files`: where the folder's weights lie (`unet_weight_files`).
    """
    from accelerate import init_empty_weights
    from accelerate.utils import set_module_tensor_to_device
    from diffusers import UNet2DConditionModel

    try:
        config = UNet2DConditionModel.load_config(folder)
        with init_empty_weights():
            unet = UNet2DConditionModel.from_config(config)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    expected = unet.state_dict()
    if set(files.locations) != set(expected):
        return None
    reader = WeightReader(files)
    try:
        for key, empty in expected.items():
            value = reader.read(key)
            if value is None or tuple(value.shape) != tuple(empty.shape):
                return None
            set_module_tensor_to_device(unet, key, "cpu", value=value.to(dtype))
    finally:
        reader.close()
    unet.register_to_config(_name_or_path=str(folder.parent))
    return unet.eval()


def load_base_pipeline(base: BaseCheckpoint, dtype: torch.dtype, quantize: str = "none") -> Any:
    """A `StableDiffusionPipeline` (SD1.5) or `StableDiffusionXLPipeline` on the CPU (or, for
    the Qwen-Image-Layered family, a `QwenImageLayeredPipeline`, quantised per `quantize`)."""
    if base.family == QWEN_FAMILY:
        split = getattr(base, "transformer_file", None)  # `qwen_split.SplitQwenBase`
        return load_qwen_pipeline(base.path, dtype, base.variant, quantize, split, base.tiny)
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    cls = StableDiffusionXLPipeline if base.family == "sdxl" else StableDiffusionPipeline
    extra: dict[str, Any] = {}
    if base.family == "sd15":
        extra = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    what = f"an {FAMILY_LABEL[base.family]} model"
    if not base.path.exists():
        raise ModelNotFoundError(f"{base.name}: {base.path} no longer exists", field="model")
    try:
        files = unet_weight_files(base)  # for the by-tensor load and for undoing patches
        if base.format == "diffusers":
            narrower = narrower_stored_dtypes(base.path, base.variant, dtype)
            pipeline = cls.from_pretrained(
                base.path,
                **_dtype({"default": dtype, **narrower}),
                local_files_only=True,
                use_safetensors=True,
                variant=base.variant,
                **extra,
                **({"unet": None} if "unet" in narrower else {}),  # loaded last, below
            )
            for component in narrower:  # one tensor at a time: no second full copy
                if component != "unet":
                    # nn.Module's own `to`: diffusers' warns about fp32-kept modules, moot
                    # when widening to fp32.
                    torch.nn.Module.to(getattr(pipeline, component), dtype)
            if "unet" in narrower:
                unet = load_unet_by_tensor(base.path / "unet", files, dtype)
                if unet is None:  # diffusers' own loading, and its account of the problem
                    unet = UNet2DConditionModel.from_pretrained(
                        base.path,
                        subfolder="unet",
                        variant=base.variant,
                        local_files_only=True,
                        **_dtype(dtype),
                    )
                pipeline.register_modules(unet=unet)
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
    attach_weight_files(pipeline.unet, files)
    return pipeline


def unet_weight_files(base: BaseCheckpoint) -> UNetWeightFiles:
    """Where the base's UNet weights lie, so a UNet patch can be undone by reading them back."""
    try:
        if base.format == "diffusers":
            return UNetWeightFiles.from_diffusers_folder(base.path / "unet", base.variant)
        config_dir = base.config_dir or CONFIGS_DIR / base.family
        config = load_json(config_dir / "unet" / "config.json")
        return UNetWeightFiles.from_single_file(base.path, config)
    except (OSError, ValueError, KeyError, ModelFileError):
        return UNetWeightFiles({})  # patches then keep copies of what they change


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
