"""The Qwen-Image-Layered family: its working-size buckets, how a folder is recognised, loading.

A Qwen-Image-Layered base is a diffusers `QwenImageLayeredPipeline` folder (in `models/` or the
Hugging Face cache as `Qwen/Qwen-Image-Layered`). It is recognised from its JSON configs only:
the transformer must have the layered model's extra timestep condition and 3-D layer RoPE
(plain Qwen-Image text-to-image or edit transformers lack them) and the VAE must take RGBA
(`input_channels=4`). The full-size configurations are committed under
`configs/qwen-image-layered/`, so checks and `acetate models` never reach the Hub.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from acetate.engine.nets.caption_processor import (
    PROCESSOR_DIR,
    load_caption_processor,
    pil_image_processor,
)
from acetate.engine.store.family import CONFIGS_DIR, Detection, load_json, weight_variant
from acetate.errors import InputError, ModelFileError, ModelNotFoundError
from acetate.modes import MODES, Family

log = logging.getLogger(__name__)

QWEN_FAMILY: Family = "qwen_layered"
QWEN_LABEL = "Qwen-Image-Layered"
QWEN_PIPELINE = "QwenImageLayeredPipeline"
QWEN_CONFIGS = CONFIGS_DIR / "qwen-image-layered"
#: The Hub repository of the published model (a diffusers folder).
QWEN_REPO = "Qwen/Qwen-Image-Layered"
#: Working sizes (about bucket² pixels) the published model was trained for.
BUCKETS = (640, 1024)
#: The tiny test model's own buckets: every decomposition runs on a CPU in a second.
TINY_BUCKETS = (64, 128)
#: Bytes of the published model's bf16 weights: 2 × the parameter counts of the committed
#: configs on the meta device (tests check the transformer and VAE; the 8.29 B-parameter
#: Qwen2.5-VL text encoder is the same arithmetic). The Hub listing agrees: 40.9 GB, 254 MB.
FULL_SIZE_BYTES = {
    "transformer": 2 * 20_430_407_232,
    "vae": 2 * 126_897_716,
    "text_encoder": 2 * 8_292_166_656,
}
#: The model folder's sub-folder holding its `Qwen2VLProcessor` (captioning only).
#: How captioning is enabled, the end of the message refusing an empty prompt without it.
CAPTION_HOWTO = (
    f"to caption automatically, the model folder needs its {PROCESSOR_DIR}/ (the "
    f"Qwen2VLProcessor files of {QWEN_REPO}: preprocessor_config.json and the tokenizer) and "
    "`pip install 'acetate[decompose]'` (transformers 5, whose PIL image processor captions "
    "without torchvision)"
)
_COMPONENT_WEIGHTS = {
    "transformer": "diffusion_pytorch_model",
    "vae": "diffusion_pytorch_model",
    "text_encoder": "model",
}


def buckets(tiny: bool) -> tuple[int, ...]:
    return TINY_BUCKETS if tiny else BUCKETS


def resolution_bucket(value: int | None, tiny: bool) -> int:
    """The request's bucket, or the family's first; `InputError` on `resolution` otherwise.
    The test model takes the published buckets too, as its own (640 → 64, 1024 → 128), so an
    editor sending the family default works on it."""
    allowed = buckets(tiny)
    if value is None:
        return allowed[0]
    if tiny and value in BUCKETS:
        return TINY_BUCKETS[BUCKETS.index(value)]
    if value not in allowed:
        names = " or ".join(str(b) for b in (*allowed, *(BUCKETS if tiny else ())))
        which = "the test model" if tiny else QWEN_LABEL
        raise InputError(
            f"resolution must be {names} for {which} (got {value})", field="resolution"
        )
    return value


def check_family(base_family: str, base_name: str, mode: str) -> None:
    """A Qwen base only for Qwen modes and a LayerDiffusion base never for them: else an
    `InputError` naming `model`."""
    spec = MODES.get(mode)
    if spec is None or base_family in spec.families:
        return
    qwen_mode = set(spec.families) == {QWEN_FAMILY}
    if qwen_mode or base_family == QWEN_FAMILY:
        wanted = f"a {QWEN_LABEL}" if qwen_mode else "an SDXL or SD1.5 (LayerDiffusion)"
        have = QWEN_LABEL if base_family == QWEN_FAMILY else "a LayerDiffusion (SD)"
        raise InputError(
            f"mode {mode} needs {wanted} model; {base_name} is {have} base "
            "(see `acetate models` or GET /api/models)",
            field="model",
        )


#: Smallest image side the model can split (a packed latent patch is 16 px).
MIN_SIDE = 16


def resolve_decompose(
    params: Any, images: Mapping[str, np.ndarray], tiny: bool, folder: Path | None = None
) -> dict[str, Any]:
    """What `resolve_request` fills for a Qwen base (the bucket); `InputError`s name the field:
    an image under 16 px a side, a bucket the model lacks, an empty prompt when the base at
    `folder` cannot caption (`caption_problem`; no folder: it cannot)."""
    image = images.get("image")
    if image is not None and min(image.shape[:2]) < MIN_SIDE:
        height, width = image.shape[:2]
        raise InputError(
            f"image is {width}×{height}; at least {MIN_SIDE}×{MIN_SIDE} is needed", field="image"
        )
    if params.steps is not None and params.steps < 2:
        # One step gives sigmas [1.0], which the schedule's shift to its terminal value
        # divides by zero (NaN layers); diffusers' pipeline does the same.
        raise InputError("steps must be at least 2 for Qwen-Image-Layered", field="steps")
    if not params.prompt.strip():
        problem = caption_problem(folder) if folder is not None else "no model folder"
        if problem is not None:
            raise InputError(no_caption_message(problem), field="prompt")
    return {"resolution": resolution_bucket(params.resolution, tiny)}


def no_caption_message(problem: str) -> str:
    """Why an empty prompt is refused: what is missing, then how to enable captioning."""
    return (
        "mode decompose needs a prompt describing the whole image, or automatic captioning, "
        f"which is not available ({problem}); {CAPTION_HOWTO}"
    )


def caption_problem(folder: Path) -> str | None:
    """Why a Qwen-Image-Layered folder cannot caption an image (None: it can): its
    `processor/` must hold an image processor config and a tokenizer, and transformers must
    have the PIL Qwen2-VL image processor (transformers 5; torchvision is never needed)."""
    processor = folder / PROCESSOR_DIR
    configs = ("preprocessor_config.json", "processor_config.json")
    if not any((processor / name).is_file() for name in configs):
        return f"{folder.name} has no {PROCESSOR_DIR}/ with an image processor config"
    if not any((processor / name).is_file() for name in ("tokenizer.json", "vocab.json")):
        return f"{folder.name}/{PROCESSOR_DIR}/ has no tokenizer"
    if pil_image_processor() is None:
        import transformers

        return (
            f"transformers {transformers.__version__} lacks Qwen2VLImageProcessorPil "
            "(transformers 5 has it)"
        )
    return None


def mode_families(mode: str | None) -> set[str]:
    """The families `mode` runs on (no mode: the LayerDiffusion ones, the historical default)."""
    spec = MODES.get(mode or "")
    return set(spec.families) if spec is not None else {"sd15", "sdxl"}


def default_base_name(mode: str | None, bases: Sequence[Any]) -> str:
    """The base a request of `mode` without `model` uses: the first real base of a family the
    mode runs on, else its test model (never a Qwen base for a LayerDiffusion mode, nor the
    reverse)."""
    from acetate.engine.tiny.qwen_layered import TINY_QWEN_NAME

    families = mode_families(mode)
    real = next((b.name for b in bases if b.family in families and not b.tiny), None)
    return real or (TINY_QWEN_NAME if families == {QWEN_FAMILY} else "tiny-sdxl")


def tiny_qwen_warning(models_dir: Path) -> str:
    return (
        f"no {QWEN_LABEL} model found (looked in {models_dir / 'checkpoints'} and the Hugging "
        "Face cache); using the test model tiny-qwen-image-layered, whose random weights make "
        f"noise: put the {QWEN_REPO} diffusers folder in models/checkpoints/ (see `acetate "
        "models`)"
    )


# ---- recognition -------------------------------------------------------------------------------

_TINY_FIELDS = ("num_layers", "attention_head_dim", "num_attention_heads", "joint_attention_dim")


def detect_qwen_folder(folder: Path) -> Detection:
    """Family of a `QwenImageLayeredPipeline` folder, from its configs."""
    from acetate.engine.tiny.qwen_layered import TINY_QWEN_TRANSFORMER

    transformer_file = folder / "transformer" / "config.json"
    vae_file = folder / "vae" / "config.json"
    if not (folder / "transformer").exists():
        from acetate.engine.store.qwen_split import incomplete_reason

        return Detection(None, reason=incomplete_reason(folder))
    for needed in (transformer_file, vae_file, folder / "text_encoder" / "config.json"):
        if not needed.is_file():
            return Detection(None, reason=f"no {needed.parent.name}/config.json: incomplete")
    transformer = load_json(transformer_file)
    if not (transformer.get("use_layer3d_rope") and transformer.get("use_additional_t_cond")):
        return Detection(
            None, reason="a Qwen-Image transformer without the layered model's layer RoPE"
        )
    if load_json(vae_file).get("input_channels", 3) != 4:
        return Detection(None, reason="the VAE is not the RGBA (4-channel) Qwen-Image-Layered VAE")
    variant, problem = weight_variant({folder / n: w for n, w in _COMPONENT_WEIGHTS.items()})
    if problem:
        return Detection(None, reason=problem)
    tiny = all(transformer.get(k) == TINY_QWEN_TRANSFORMER[k] for k in _TINY_FIELDS)
    return Detection(QWEN_FAMILY, tiny=tiny, variant=variant)


# ---- single files (ComfyUI's split layout) -------------------------------------------------

_COMFY_PREFIX = "model.diffusion_model."
_LAYERED_KEY = "time_text_embed.addition_t_embedding.weight"


def describe_qwen_file(shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """Why a Qwen-Image single file (ComfyUI's split transformer or VAE) is not a base on its
    own, with its size and what to get; None when the header is not a Qwen-Image part. A
    Qwen-Image-Layered transformer becomes a base when a folder without `transformer/` is found
    too (`qwen_split.pair_split_parts`)."""
    from acetate.engine.store.qwen_split import lone_file_advice, transformer_kind

    keys = {k.removeprefix(_COMFY_PREFIX): v for k, v in shapes.items()}
    gigabytes = 2 * sum(int(np.prod(shape)) for shape in keys.values()) / 1e9
    get = (
        f"Acetate loads {QWEN_LABEL} from its diffusers folder (transformer/, vae/, "
        f"text_encoder/, tokenizer/, {sum(FULL_SIZE_BYTES.values()) / 1e9:.1f} GB): "
        f"get {QWEN_REPO} into models/checkpoints/"
    )
    if "img_in.weight" in keys and "txt_in.weight" in keys:
        if _LAYERED_KEY not in keys:
            return f"a Qwen-Image (not layered) transformer ({gigabytes:.1f} GB in bf16): {get}"
        tiny, problem = transformer_kind(shapes)
        if tiny is None:
            return (
                "a Qwen-Image-Layered transformer whose shapes differ from the published model "
                f"(and the test model): {problem}"
            )
        which = "test model's transformer" if tiny else "transformer"
        return (
            f"the {QWEN_LABEL} {which} as a single file ({gigabytes:.1f} GB in bf16, "
            f"ComfyUI's qwen_image_layered_*.safetensors), loadable, but no folder with the rest "
            f"of the model was found: {lone_file_advice()}; or get {QWEN_REPO} whole into "
            f"models/checkpoints/ ({sum(FULL_SIZE_BYTES.values()) / 1e9:.1f} GB)"
        )
    conv = keys.get("encoder.conv1.weight") or keys.get("encoder.conv_in.weight")
    if conv is not None and len(conv) == 5:  # a causal-3D (Wan-style) VAE: Qwen-Image's
        what = f"the {QWEN_LABEL} RGBA VAE" if conv[1] == 4 else "a Qwen-Image (RGB) VAE"
        return (
            f"{what} as a single file ({gigabytes:.2f} GB in bf16): diffusers 0.42.1 cannot load "
            f"this VAE from a single file; {get}"
        )
    return None


# ---- loading -----------------------------------------------------------------------------------


def load_qwen_pipeline(
    path: Path,
    dtype: torch.dtype,
    variant: str | None = None,
    quantize: str = "none",
    transformer_file: Path | None = None,
    tiny: bool = False,
) -> Any:
    """A `QwenImageLayeredPipeline` on the CPU, offline, with its processor when the folder can
    caption (`caption_problem`; only captioning uses it), else `processor=None`. With
    `transformer_file` (ComfyUI's single file) the transformer comes from that file, built from
    the bundled config (the test model's when `tiny`), and the rest from the folder."""
    from diffusers import QwenImageLayeredPipeline

    from acetate.engine.memory import quantization_config
    from acetate.engine.store.loading import _dtype  # loading imports this module

    if not path.exists():
        raise ModelNotFoundError(f"{path} no longer exists", field="model")
    if dtype == torch.float16:
        dtype = torch.bfloat16  # Qwen-Image's activations overflow fp16 (it was trained in bf16)
    config = quantization_config(quantize)
    quantized = {} if config is None else {"quantization_config": config}
    parts: dict[str, Any] = {}
    if transformer_file is not None:
        from acetate.engine.store.qwen_split import load_split_transformer

        if config is not None:
            raise InputError(
                f"--quantize {quantize} is not available with a single-file transformer "
                f"({transformer_file.name}); use --offload group, or the {QWEN_REPO} "
                "transformer/ folder",
                field="quantize",
            )
        parts["transformer"] = load_split_transformer(transformer_file, tiny, dtype)
    try:
        return QwenImageLayeredPipeline.from_pretrained(
            path,
            **_dtype(dtype),
            local_files_only=True,
            use_safetensors=True,
            variant=variant,
            processor=_processor_or_none(path),
            **parts,
            **quantized,
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFileError(
            f"{path.name} could not be loaded as {QWEN_LABEL}: {first}", field="model"
        ) from error


def _processor_or_none(path: Path) -> Any:
    """The folder's caption processor, or None (no processor/, or one that does not load: a
    decomposition with a prompt needs none)."""
    if caption_problem(path) is not None:
        return None
    try:
        return load_caption_processor(path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("%s: its processor/ does not load, so no captioning: %s", path.name, error)
        return None


def files_to_get() -> dict[str, Any]:
    """What a user downloads for real decomposition, with sizes (`acetate models`)."""
    parts = [
        {"component": name, "folder": f"{name}/", "bytes": size}
        for name, size in FULL_SIZE_BYTES.items()
    ]
    # Small JSON/text folders; model_index.json likewise. processor/ captions an image sent
    # without a prompt.
    parts += [
        {"component": name, "folder": f"{name}/", "bytes": None}
        for name in ("tokenizer", "scheduler", PROCESSOR_DIR)
    ]
    return {
        "repo": QWEN_REPO,
        "url": f"https://huggingface.co/{QWEN_REPO}",
        "put_in": "models/checkpoints/Qwen-Image-Layered/ (the whole diffusers folder), or keep "
        "it in the Hugging Face cache",
        "parts": parts,
        "bytes": sum(FULL_SIZE_BYTES.values()),
        "note": "ComfyUI's VAE file (qwen_image_layered_vae.safetensors) does not load in "
        "diffusers 0.42.1; its transformer file does, with the folder minus transformer/",
        "split": split_download(),
    }


def split_download() -> dict[str, Any]:
    """The other download: ComfyUI's transformer file plus the folder without `transformer/`."""
    from acetate.engine.store.qwen_split import (
        COMFY_TRANSFORMER,
        DOWNLOAD_WITHOUT_TRANSFORMER,
        FOLDER_BYTES,
    )

    return {
        "transformer_file": COMFY_TRANSFORMER,
        "transformer_bytes": FULL_SIZE_BYTES["transformer"],
        "put_file_in": "models/diffusion_models/ (or a linked ComfyUI's models/diffusion_models/)",
        "folder_command": DOWNLOAD_WITHOUT_TRANSFORMER,
        "folder_bytes": FOLDER_BYTES,
    }


# ---- full size, on the meta device -------------------------------------------------------------


def full_size_config(component: str) -> dict[str, Any]:
    """The published configuration of one component (committed JSON, no Hub)."""
    return load_json(QWEN_CONFIGS / component / "config.json")


@cache
def full_size_transformer_shapes() -> dict[str, tuple[int, ...]]:
    """Key → shape of the full-size 20B transformer, built on the meta device (instant)."""
    from diffusers import QwenImageTransformer2DModel

    config = {k: v for k, v in full_size_config("transformer").items() if not k.startswith("_")}
    with torch.device("meta"):
        model = QwenImageTransformer2DModel.from_config(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def full_size_parameters(component: str) -> int:
    """Parameter count of a full-size component (`transformer`, `vae`), on the meta device."""
    if component == "transformer":
        shapes = full_size_transformer_shapes().values()
        return sum(int(torch.Size(shape).numel()) for shape in shapes)
    from diffusers import AutoencoderKLQwenImage

    config = {k: v for k, v in full_size_config(component).items() if not k.startswith("_")}
    with torch.device("meta"):
        model = AutoencoderKLQwenImage.from_config(config)
    return sum(p.numel() for p in model.parameters())
