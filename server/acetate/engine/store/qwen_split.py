"""Qwen-Image-Layered from ComfyUI's transformer single file plus the rest of the diffusers folder.

ComfyUI distributes the 40.9 GB transformer as one file (`qwen_image_layered_bf16.safetensors`,
keys optionally prefixed `model.diffusion_model.`, diffusers' own names otherwise: diffusers'
single-file mapping for `QwenImageTransformer2DModel` is the identity). Its VAE single file is
a different layout diffusers 0.42.1 cannot load, so the VAE, text encoder, tokenizer and
scheduler still come from the `Qwen/Qwen-Image-Layered` folder, downloaded without its
transformer (`--exclude "transformer/*"`).

Discovery lists such a folder (one without `transformer/`) as refused, "incomplete", and the
single file as refused too; `pair_split_parts` then turns a folder with exactly one transformer
file of its size (full-size ↔ full-size, test model ↔ test model, by shapes) into one base
named after the folder. The transformer is built from the bundled config (or the test model's)
and the file's tensors are loaded strictly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import torch

from acetate.engine.store.discovery import (
    SUBFOLDERS,
    BaseCheckpoint,
    Found,
    RefusedFile,
    model_name,
)
from acetate.engine.store.family import load_json, read_header, weight_variant
from acetate.engine.store.qwen import (
    FULL_SIZE_BYTES,
    PROCESSOR_DIR,
    QWEN_FAMILY,
    QWEN_LABEL,
    QWEN_PIPELINE,
    QWEN_REPO,
    full_size_config,
    full_size_transformer_shapes,
)
from acetate.errors import ModelFileError, ModelNotFoundError

COMFY_PREFIX = "model.diffusion_model."
#: ComfyUI's name for the transformer file (bf16; fp8 variants have other shapes/dtypes).
COMFY_TRANSFORMER = "qwen_image_layered_bf16.safetensors"
#: The folder parts the single file needs, with their bf16 sizes where large.
FOLDER_PARTS = ("vae", "text_encoder", "tokenizer", "scheduler")
#: Bytes of the folder without `transformer/` (VAE + text encoder; the rest is small).
FOLDER_BYTES = FULL_SIZE_BYTES["vae"] + FULL_SIZE_BYTES["text_encoder"]
DOWNLOAD_WITHOUT_TRANSFORMER = (
    f'hf download {QWEN_REPO} --exclude "transformer/*" '
    "--local-dir models/checkpoints/Qwen-Image-Layered"
)
_LAYERED_KEY = "time_text_embed.addition_t_embedding.weight"


@dataclass(frozen=True)
class SplitQwenBase(BaseCheckpoint):
    """A Qwen-Image-Layered base whose transformer is a single file and whose other parts are
    the diffusers folder at `path` (which has no `transformer/`)."""

    transformer_file: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "parts": split_parts(self.path, self.transformer_file)}


def split_parts(folder: Path, transformer_file: Path | None) -> dict[str, str]:
    """Where each part of a paired base comes from (component → path)."""
    parts = {"transformer": str(transformer_file)}
    parts.update({name: str(folder / name) for name in FOLDER_PARTS})
    if (folder / PROCESSOR_DIR).is_dir():
        parts[PROCESSOR_DIR] = str(folder / PROCESSOR_DIR)
    return parts


# ---- shapes ------------------------------------------------------------------------------------


def transformer_config(tiny: bool) -> dict[str, Any]:
    """The transformer config a single file is built with: the published one (committed) or
    the test model's."""
    if tiny:
        from acetate.engine.tiny.qwen_layered import TINY_QWEN_TRANSFORMER

        return dict(TINY_QWEN_TRANSFORMER)
    return {k: v for k, v in full_size_config("transformer").items() if not k.startswith("_")}


@cache
def _tiny_transformer_shapes() -> dict[str, tuple[int, ...]]:
    from diffusers import QwenImageTransformer2DModel

    with torch.device("meta"):
        model = QwenImageTransformer2DModel.from_config(transformer_config(tiny=True))
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def expected_shapes(tiny: bool) -> dict[str, tuple[int, ...]]:
    return _tiny_transformer_shapes() if tiny else full_size_transformer_shapes()


def _stripped(
    shapes: Mapping[str, tuple[int, ...]],
) -> tuple[dict[str, tuple[int, ...]], str | None]:
    """Keys without ComfyUI's prefix (→ the file's own key), or a problem (a duplicate)."""
    keys: dict[str, tuple[int, ...]] = {}
    for key, shape in shapes.items():
        name = key.removeprefix(COMFY_PREFIX)
        if name in keys:
            return keys, f"{key} is in the file twice (with and without {COMFY_PREFIX})"
        keys[name] = tuple(shape)
    return keys, None


def shape_problem(
    shapes: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]
) -> str | None:
    """The first key of a transformer file that is missing, of the wrong shape or unknown to
    the model (keys with or without ComfyUI's prefix); None when it matches exactly."""
    keys, problem = _stripped(shapes)
    if problem:
        return problem
    prefix = COMFY_PREFIX if any(k.startswith(COMFY_PREFIX) for k in shapes) else ""
    for key, want in expected.items():
        got = keys.get(key)
        if got is None:
            return f"{prefix}{key} is missing"
        if got != tuple(want):
            return f"{prefix}{key} has shape {list(got)}, the model expects {list(want)}"
    for key in keys:
        if key not in expected:
            return f"{prefix}{key} is not a parameter of the model"
    return None


def is_layered_transformer(shapes: Mapping[str, tuple[int, ...]]) -> bool:
    keys = {k.removeprefix(COMFY_PREFIX) for k in shapes}
    return {"img_in.weight", "txt_in.weight", _LAYERED_KEY} <= keys


def transformer_kind(shapes: Mapping[str, tuple[int, ...]]) -> tuple[bool | None, str | None]:
    """(tiny, None) for a published-size (tiny False) or test-model (tiny True) Qwen-Image-
    Layered transformer; (None, the first bad key against the nearer of the two) otherwise."""
    problems = {tiny: shape_problem(shapes, expected_shapes(tiny)) for tiny in (False, True)}
    for tiny, problem in problems.items():
        if problem is None:
            return tiny, None
    keys, _ = _stripped(shapes)

    def misfits(tiny: bool) -> int:
        expected = expected_shapes(tiny)
        return sum(keys.get(key) != shape for key, shape in expected.items()) + len(
            keys.keys() - expected.keys()
        )

    return None, problems[misfits(True) < misfits(False)]


def _file_kind(path: Path) -> bool | None:
    try:
        shapes = read_header(path).shapes
    except ModelFileError:
        return None
    if not is_layered_transformer(shapes):
        return None
    return transformer_kind(shapes)[0]


# ---- folders without transformer/ --------------------------------------------------------------


def _hidden_size(config: dict[str, Any]) -> Any:
    return config.get("text_config", {}).get("hidden_size", config.get("hidden_size"))


def partial_folder(folder: Path) -> tuple[bool, str | None] | None:
    """(tiny, weight variant) of a `QwenImageLayeredPipeline` folder that has every part but
    `transformer/`; None for anything else."""
    from acetate.engine.tiny.qwen_layered import TINY_QWEN_TEXT, TINY_QWEN_VAE

    index_file = folder / "model_index.json"
    if not index_file.is_file() or (folder / "transformer").exists():
        return None
    try:
        if load_json(index_file).get("_class_name") != QWEN_PIPELINE or missing_parts(folder):
            return None
        vae = load_json(folder / "vae" / "config.json")
        text = load_json(folder / "text_encoder" / "config.json")
    except ModelFileError:
        return None
    size = (vae.get("base_dim"), vae.get("z_dim"), _hidden_size(text), vae.get("input_channels"))
    full = full_size_config("vae"), full_size_config("text_encoder")
    if size == (
        TINY_QWEN_VAE["base_dim"],
        TINY_QWEN_VAE["z_dim"],
        TINY_QWEN_TEXT["hidden_size"],
        4,
    ):
        tiny = True
    elif size == (full[0]["base_dim"], full[0]["z_dim"], _hidden_size(full[1]), 4):
        tiny = False
    else:
        return None
    variant, problem = weight_variant(
        {folder / "vae": "diffusion_pytorch_model", folder / "text_encoder": "model"}
    )
    return None if problem else (tiny, variant)


def missing_parts(folder: Path) -> list[str]:
    """The parts (besides `transformer/`) a Qwen-Image-Layered folder lacks."""
    missing = [
        name for name in ("vae", "text_encoder") if not (folder / name / "config.json").is_file()
    ]
    missing += [name for name in ("tokenizer", "scheduler") if not (folder / name).is_dir()]
    return missing


def _size(name: str) -> str:
    size = FULL_SIZE_BYTES.get(name)
    return f"{name}/ ({size / 1e9:.1f} GB)" if size else f"{name}/ (small)"


def incomplete_reason(folder: Path) -> str:
    """Why a Qwen-Image-Layered folder is no base: every missing part with its size, and for a
    missing transformer alone how ComfyUI's single file completes it."""
    missing = (["transformer"] if not (folder / "transformer").exists() else []) + missing_parts(
        folder
    )
    text = f"incomplete {QWEN_LABEL} folder: missing " + ", ".join(_size(m) for m in missing)
    if missing == ["transformer"]:
        return (
            f"{text}; put ComfyUI's transformer file ({COMFY_TRANSFORMER}) in "
            "models/diffusion_models/ (or a linked ComfyUI's) and Acetate pairs it with this "
            f"folder, or get transformer/ from {QWEN_REPO}"
        )
    return f"{text}; get them from {QWEN_REPO}"


def lone_file_advice() -> str:
    """What a transformer single file with no folder to pair with needs."""
    return (
        f"get the rest of {QWEN_REPO} without its transformer ({'/, '.join(FOLDER_PARTS)}/, "
        f"{PROCESSOR_DIR}/, model_index.json; {FOLDER_BYTES / 1e9:.1f} GB: "
        f"`{DOWNLOAD_WITHOUT_TRANSFORMER}`) and Acetate pairs that folder with this file"
    )


# ---- pairing -----------------------------------------------------------------------------------


def _folder_name(item: RefusedFile) -> str:
    if item.source.startswith("hf:"):
        return item.source.removeprefix("hf:")
    for parent in item.path.parents:
        if SUBFOLDERS.get(parent.name.lower()) == "base":
            return model_name(item.path.relative_to(parent), is_file=False)
    return item.path.name


def pair_split_parts(found: Found) -> None:
    """Turn each refused folder without `transformer/` that exactly one refused transformer
    single file of its size fits into a `SplitQwenBase` (the two leave `found.refused`)."""
    folders: list[tuple[RefusedFile, bool, str | None]] = []
    files: list[tuple[RefusedFile, bool]] = []
    for item in found.refused:
        if item.category != "base":
            continue
        if item.path.is_dir():
            info = partial_folder(item.path)
            if info is not None:
                folders.append((item, *info))
        elif item.path.suffix.lower() == ".safetensors":
            tiny = _file_kind(item.path)
            if tiny is not None:
                files.append((item, tiny))
    used: set[Path] = set()
    reasons: dict[Path, str] = {}
    for item, tiny, variant in folders:
        matches = [file for file, file_tiny in files if file_tiny == tiny]
        if len(matches) > 1:
            names = ", ".join(str(file.path) for file in matches)
            reasons[item.path] = (
                f"{incomplete_reason(item.path)}; several transformer files fit it ({names}): "
                "keep one"
            )
            continue
        if not matches:
            continue
        file = matches[0]
        found.bases.append(
            SplitQwenBase(
                _folder_name(item),
                QWEN_FAMILY,
                "single_file",
                item.path,
                item.source,
                tiny,
                variant,
                transformer_file=file.path,
            )
        )
        used |= {item.path, file.path}
    found.refused = [
        replace(r, reason=reasons.get(r.path, r.reason))
        for r in found.refused
        if r.path not in used
    ]


# ---- loading -----------------------------------------------------------------------------------


def load_split_transformer(path: Path, tiny: bool, dtype: torch.dtype) -> Any:
    """`QwenImageTransformer2DModel` from the bundled config (the test model's for `tiny`) and
    the tensors of one safetensors file, loaded strictly: every key present, of the config's
    shape, nothing else (`ModelFileError` naming the first bad key)."""
    from accelerate import init_empty_weights
    from diffusers import QwenImageTransformer2DModel
    from safetensors import safe_open

    if not path.is_file():
        raise ModelNotFoundError(f"{path} no longer exists", field="model")
    if path.suffix.lower() != ".safetensors":
        raise ModelFileError(
            f"{path.name}: only .safetensors transformer files load", field="model"
        )
    which = f"the {QWEN_LABEL} {'test-model ' if tiny else ''}transformer"
    problem = shape_problem(read_header(path).shapes, expected_shapes(tiny))
    if problem:
        raise ModelFileError(f"{path.name} is not {which}: {problem}", field="model")
    with init_empty_weights():
        model = QwenImageTransformer2DModel.from_config(transformer_config(tiny))
    state: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                state[key.removeprefix(COMFY_PREFIX)] = handle.get_tensor(key).to(dtype)
        model.load_state_dict(state, strict=True, assign=True)
    except (OSError, RuntimeError, ValueError) as error:
        if isinstance(error, RuntimeError) and "memory" in str(error).lower():
            raise  # out of memory is no fault of the file
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFileError(
            f"{path.name} could not be loaded as {which}: {first}", field="model"
        ) from error
    return model.eval()
