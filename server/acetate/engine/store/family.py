"""Which base family a checkpoint or ControlNet belongs to, read from headers and configs only.

Nothing here loads tensors: single files are judged from their safetensors header (names and
shapes), diffusers folders from their JSON configs. A base is SD1.5- or SDXL-family when its
UNet is exactly that UNet (every key with the right shape, built on the `meta` device from the
bundled config, or the tiny config); everything else is refused with the reason, named with
diffusers' own model-type inference where it knows the architecture.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

# The safetensors header reader lives with the other weight-file readers; the store's modules
# and the CLI name it from here too.
from acetate.engine.nets.weights import Header as Header
from acetate.engine.nets.weights import read_header as read_header
from acetate.errors import ModelFileError
from acetate.modes import Family

FAMILIES: tuple[Family, ...] = ("sd15", "sdxl")
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin", ".pkl"})
PICKLE_REASON = (
    "pickle checkpoint refused: loading pickle files can run arbitrary code; "
    "get the .safetensors version of this model"
)
FAMILY_LABEL = {"sd15": "SD1.5", "sdxl": "SDXL", "qwen_layered": "Qwen-Image-Layered"}
_UNSUPPORTED = "LayerDiffusion's layer models exist for SD1.5- and SDXL-family bases only"
#: diffusers model types (`infer_diffusers_model_type`) → what to call them in a refusal.
MODEL_TYPE_LABELS = {
    "v2": "SD2.x",
    "xl_refiner": "SDXL refiner",
    "inpainting": "SD1.5 inpainting",
    "inpainting_v2": "SD2 inpainting",
    "xl_inpaint": "SDXL inpainting",
    "instruct-pix2pix": "InstructPix2Pix",
    "playground-v2-5": "Playground v2.5 (EDM)",
    "upscale": "SD x4 upscaler",
    "sd3": "Stable Diffusion 3",
    "sd35_medium": "Stable Diffusion 3.5",
    "sd35_large": "Stable Diffusion 3.5",
    "flux-dev": "Flux",
    "flux-schnell": "Flux",
    "flux-fill": "Flux",
    "flux-depth": "Flux",
    "flux-2-dev": "Flux 2",
    "chroma": "Chroma",
    "auraflow": "AuraFlow",
}
_SDXL_CLIP = "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight"
_SDXL_OPEN_CLIP = "conditioner.embedders.1.model.positional_embedding"
_SD15_CLIP = "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"
_VAE_KEY = "first_stage_model.decoder.conv_in.weight"
_UNET = "model.diffusion_model."


@dataclass(frozen=True)
class Detection:
    """`family` is None when refused; `reason` then says why."""

    family: Family | None
    tiny: bool = False
    reason: str | None = None
    variant: str | None = None  # diffusers weight variant ("fp16") when only that is present


def load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelFileError(f"{path}: unreadable JSON ({error})") from error
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: not a JSON object")
    return data


# ---- expected UNet layouts ------------------------------------------------------------------


def _unet_configs() -> dict[tuple[Family, bool], dict[str, Any]]:
    from acetate.engine.tiny.bases import TINY_SD15, TINY_SDXL

    return {
        ("sd15", False): load_json(CONFIGS_DIR / "sd15" / "unet" / "config.json"),
        ("sdxl", False): load_json(CONFIGS_DIR / "sdxl" / "unet" / "config.json"),
        ("sd15", True): dict(TINY_SD15),
        ("sdxl", True): dict(TINY_SDXL),
    }


@lru_cache(maxsize=8)
def expected_unet_shapes(family: Family, tiny: bool) -> dict[str, tuple[int, ...]]:
    """LDM UNet key (no prefix) → shape for the family's UNet, built on the meta device."""
    import torch
    from diffusers import UNet2DConditionModel

    from acetate.engine.nets.keymap import diffusers_to_ldm_key

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(_unet_configs()[(family, tiny)])
    return {
        diffusers_to_ldm_key(key, unet.config): tuple(value.shape)
        for key, value in unet.state_dict().items()
    }


def _unet_matches(unet: dict[str, tuple[int, ...]]) -> tuple[Family, bool] | None:
    for family in FAMILIES:
        for tiny in (False, True):
            expected = expected_unet_shapes(family, tiny)
            if all(unet.get(key) == shape for key, shape in expected.items()):
                return family, tiny
    return None


def infer_model_type(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """diffusers' key-based model type for a header, or None when it cannot tell."""
    import torch
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    try:
        return str(infer_diffusers_model_type(meta))
    except Exception:  # some branches read tensor values, which meta tensors lack
        return None


def _refused(what: str) -> Detection:
    return Detection(None, reason=f"{what}: {_UNSUPPORTED}")


# ---- base checkpoints -------------------------------------------------------------------------


def looks_like_checkpoint(header: Header) -> bool:
    """Cheap pre-check: the header has original-layout UNet weights."""
    return any(key.startswith(_UNET) for key in header.shapes)


def detect_checkpoint(path: Path, header: Header | None = None) -> Detection:
    """Family of a single-file base checkpoint (`.safetensors`)."""
    from acetate.engine.store.qwen import describe_qwen_file  # qwen imports this module

    header = header or read_header(path)
    shapes = header.shapes
    qwen = describe_qwen_file(shapes)  # ComfyUI's Qwen-Image parts share the UNet prefix
    if qwen is not None:
        return Detection(None, reason=qwen)
    unet = {k[len(_UNET) :]: s for k, s in shapes.items() if k.startswith(_UNET)}
    if not unet:
        return Detection(None, reason=_not_a_checkpoint(shapes))
    conv_in = unet.get("input_blocks.0.0.weight", ())
    if len(conv_in) == 4 and conv_in[1] != 4:
        kind = {9: "inpainting", 8: "InstructPix2Pix-style"}.get(conv_in[1], "non-standard")
        return Detection(
            None,
            reason=f"{kind} UNet ({conv_in[1]} input channels): the layer models need the "
            "plain 4-channel text-to-image UNet",
        )
    if "v_pred" in shapes or _metadata_says_v(header.metadata):
        return Detection(None, reason="v-prediction model: the layer models are epsilon-trained")
    if "edm_mean" in shapes:
        return _refused("Playground v2.5 (EDM) checkpoint")
    match = _unet_matches(unet)
    if match is None:
        model_type = infer_model_type(shapes)
        if model_type in MODEL_TYPE_LABELS:
            return _refused(f"{MODEL_TYPE_LABELS[model_type]} checkpoint")
        return Detection(
            None,
            reason="the UNet matches neither SD1.5 nor SDXL (a pruned, distilled or other "
            f"architecture): {_UNSUPPORTED}",
        )
    family, tiny = match
    needed = [_VAE_KEY, *((_SDXL_CLIP, _SDXL_OPEN_CLIP) if family == "sdxl" else (_SD15_CLIP,))]
    missing = [key for key in needed if key not in shapes]
    if missing:
        parts = "VAE" if missing == [_VAE_KEY] else "text encoder"
        return Detection(
            None,
            reason=f"{FAMILY_LABEL[family]} UNet without its {parts}: a full checkpoint "
            "(UNet, VAE and text encoders in one file) or a diffusers folder is needed",
        )
    return Detection(family, tiny=tiny)


def _metadata_says_v(metadata: dict[str, str]) -> bool:
    value = metadata.get("modelspec.prediction_type", "") or metadata.get("prediction_type", "")
    return value.lower() in {"v", "v_prediction", "v-prediction"}


def _not_a_checkpoint(shapes: dict[str, tuple[int, ...]]) -> str:
    if any("::" in k for k in shapes) or any(k.startswith("hookers.") for k in shapes):
        return "a LayerDiffusion layer file, not a base model: put it in layer_model/"
    if any(k.startswith(("control_model.", "controlnet_cond_embedding.")) for k in shapes):
        return "a ControlNet, not a base model: put it in controlnet/"
    if "decoder.conv_in.weight" in shapes and "encoder.conv_in.weight" in shapes:
        return "a VAE, not a base model"
    model_type = infer_model_type(shapes)
    if model_type in MODEL_TYPE_LABELS:
        return f"{MODEL_TYPE_LABELS[model_type]} model: {_UNSUPPORTED}"
    return "not a Stable Diffusion checkpoint (no UNet weights found)"


# ---- diffusers pipeline folders ----------------------------------------------------------------

_UNET_FIELDS = (
    "in_channels",
    "block_out_channels",
    "down_block_types",
    "up_block_types",
    "layers_per_block",
    "cross_attention_dim",
    "transformer_layers_per_block",
    "addition_embed_type",
    "attention_head_dim",
    "use_linear_projection",
)
_UNET_DEFAULTS: dict[str, Any] = {
    "in_channels": 4,
    "transformer_layers_per_block": 1,
    "addition_embed_type": None,
    "attention_head_dim": 8,
    "use_linear_projection": False,
}
_COMPONENT_WEIGHTS = {
    "unet": "diffusion_pytorch_model",
    "vae": "diffusion_pytorch_model",
    "text_encoder": "model",
    "text_encoder_2": "model",
}


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _config_family(config: dict[str, Any]) -> tuple[Family, bool] | None:
    for (family, tiny), expected in _unet_configs().items():
        if all(
            _normalise(config.get(name, _UNET_DEFAULTS.get(name)))
            == _normalise(expected.get(name, _UNET_DEFAULTS.get(name)))
            for name in _UNET_FIELDS
        ):
            return family, tiny
    return None


def _variants(folder: Path, stem: str) -> tuple[set[str | None], str | None]:
    """Safetensors variants of one component folder, or why it has none."""
    names = {p.name for p in folder.glob("*")}
    found = {
        variant
        for variant, suffix in ((None, ".safetensors"), ("fp16", ".fp16.safetensors"))
        if f"{stem}{suffix}" in names or f"{stem}{suffix}.index.json" in names
    }
    if found:
        return found, None
    pickles = sorted(n for n in names if Path(n).suffix in PICKLE_SUFFIXES)
    if pickles:
        return found, f"{folder.name}/ has only pickle weights ({pickles[0]}): {PICKLE_REASON}"
    return found, f"{folder.name}/ has no .safetensors weights (incomplete download?)"


def weight_variant(components: dict[Path, str]) -> tuple[str | None, str | None]:
    """(variant, problem): the safetensors variant that all component folders share.

    `components` maps each folder to its weight file stem (`diffusion_pytorch_model`, `model`).
    """
    chosen: set[str | None] = set()
    for folder, stem in components.items():
        found, problem = _variants(folder, stem)
        if problem:
            return None, problem
        chosen.add(None if None in found else "fp16")
    if len(chosen) > 1:
        return None, "components mix fp16-only and full weights; re-download one variant"
    return next(iter(chosen), None), None


def detect_pipeline_folder(folder: Path) -> Detection:
    """Family of a diffusers pipeline folder (one with `model_index.json`)."""
    index = load_json(folder / "model_index.json")
    class_name = str(index.get("_class_name", ""))
    if class_name == "QwenImageLayeredPipeline":
        from acetate.engine.store.qwen import detect_qwen_folder

        return detect_qwen_folder(folder)
    if "StableDiffusion" not in class_name or "3" in class_name:
        return _refused(f"{class_name or 'unknown'} pipeline")
    unet_config = folder / "unet" / "config.json"
    if not unet_config.is_file():
        return Detection(None, reason="no unet/config.json: not a complete diffusers pipeline")
    config = load_json(unet_config)
    if config.get("in_channels", 4) != 4:
        return Detection(
            None,
            reason=f"{config.get('in_channels')}-channel UNet (inpainting?): the layer models "
            "need the plain 4-channel text-to-image UNet",
        )
    scheduler = folder / "scheduler" / "scheduler_config.json"
    if scheduler.is_file() and load_json(scheduler).get("prediction_type") == "v_prediction":
        return Detection(None, reason="v-prediction model: the layer models are epsilon-trained")
    match = _config_family(config)
    if match is None:
        if config.get("cross_attention_dim") == 1024:
            return _refused("SD2.x pipeline")
        if "text_encoder" not in index or index.get("text_encoder") == [None, None]:
            return _refused("SDXL refiner pipeline")
        return Detection(None, reason=f"the UNet matches neither SD1.5 nor SDXL: {_UNSUPPORTED}")
    family, tiny = match
    names = ["unet", "vae", "text_encoder"] + (["text_encoder_2"] if family == "sdxl" else [])
    variant, problem = weight_variant({folder / n: _COMPONENT_WEIGHTS[n] for n in names})
    if problem:
        return Detection(None, reason=problem)
    return Detection(family, tiny=tiny, variant=variant)


# ---- ControlNets -----------------------------------------------------------------------------


def _controlnet_family(cross_width: int | None, add_embedding: bool) -> tuple[Family, bool] | None:
    table: dict[tuple[int | None, bool], tuple[Family, bool]] = {
        (768, False): ("sd15", False),
        (2048, True): ("sdxl", False),
        (32, False): ("sd15", True),
        (80, True): ("sdxl", True),
    }
    return table.get((cross_width, add_embedding))


def detect_controlnet_folder(folder: Path) -> Detection:
    config = load_json(folder / "config.json")
    if config.get("_class_name") != "ControlNetModel":
        return Detection(None, reason=f"{config.get('_class_name')} is not a plain ControlNetModel")
    match = _controlnet_family(
        config.get("cross_attention_dim"), config.get("addition_embed_type") == "text_time"
    )
    if match is None:
        return _refused(f"ControlNet for cross-attention width {config.get('cross_attention_dim')}")
    variant, problem = weight_variant({folder: "diffusion_pytorch_model"})
    if problem:
        return Detection(None, reason=problem)
    return Detection(match[0], tiny=match[1], variant=variant)


def detect_controlnet_file(path: Path, header: Header | None = None) -> Detection:
    """Family of a single-file ControlNet (original or diffusers key layout)."""
    shapes = (header or read_header(path)).shapes
    if "lora_controlnet" in shapes:
        return Detection(None, reason="Control-LoRA files are not supported; use a full ControlNet")
    if any(k.startswith(("adapter.", "body.")) for k in shapes):
        return Detection(None, reason="T2I-Adapter, not a ControlNet")
    if "controlnet_cond_embedding.conv_in.weight" in shapes:  # diffusers layout
        to_k = shapes.get("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight")
        add = "add_embedding.linear_1.weight" in shapes
        deep = "down_blocks.2.attentions.0.transformer_blocks.9.attn1.to_q.weight" in shapes
    else:
        prefix = "control_model." if any(k.startswith("control_model.") for k in shapes) else ""
        if f"{prefix}input_hint_block.0.weight" not in shapes:
            return Detection(None, reason="not a ControlNet (no conditioning-image encoder)")
        block = (
            "input_blocks.4.1" if f"{prefix}label_emb.0.0.weight" in shapes else "input_blocks.1.1"
        )
        to_k = shapes.get(f"{prefix}{block}.transformer_blocks.0.attn2.to_k.weight")
        add = f"{prefix}label_emb.0.0.weight" in shapes
        deep = f"{prefix}input_blocks.7.1.transformer_blocks.9.attn1.to_q.weight" in shapes
    match = _controlnet_family(to_k[1] if to_k and len(to_k) == 2 else None, add)
    if match is None:
        width = to_k[1] if to_k else "unknown"
        return _refused(f"ControlNet for cross-attention width {width}")
    if match == ("sdxl", False) and not deep:
        return Detection(
            None,
            reason="a reduced (mid/small) SDXL ControlNet as a single file: use its diffusers "
            "folder (config.json + weights) instead",
        )
    return Detection(match[0], tiny=match[1])
