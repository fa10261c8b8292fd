"""Single-file checkpoints load offline through the bundled-config mechanism, bit-exactly.

The tiny pipelines are written as original-layout (LDM) files with `ldm_convert`, found by the
store like any user checkpoint and loaded with `from_single_file(config=…)` under
HF_HUB_OFFLINE=1. Full-size configs are checked on the meta device against the real counts.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from store_files import (
    checkpoint_shapes,
    full_checkpoint_shapes,
    hf_repo,
    write_clip_tokenizer,
    write_header_only,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from acetate.engine.store.family import CONFIGS_DIR, infer_model_type, read_header
from acetate.engine.store.loading import load_base_pipeline, load_controlnet, load_tokenizers
from acetate.engine.store.models import ModelStore
from acetate.engine.tiny.ldm_convert import save_ldm_checkpoint
from acetate.errors import ModelNotFoundError

PIPELINES = {"sd15": StableDiffusionPipeline, "sdxl": StableDiffusionXLPipeline}


@pytest.fixture
def models(tmp_path: Path, tiny_models_dir: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny").symlink_to(tiny_models_dir / "tiny")
    return folder


def _rehome(pipe) -> None:
    """Give every weight its own fresh buffer: loaded safetensors tensors may sit at unaligned
    addresses, which changes float summation order in BLAS and so the last bit of a result."""
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        if module is not None:
            for param in module.parameters():
                param.data = param.data.clone()


def _image(pipe) -> torch.Tensor:
    out = pipe(
        "a glass bottle",
        num_inference_steps=2,
        height=64,
        width=64,
        output_type="pt",
        generator=torch.Generator().manual_seed(0),
    )
    return out.images


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_single_file_loads_offline_bit_exact(models: Path, family: str) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    folder = models / "tiny" / "checkpoints" / f"tiny-{family}"
    reference = PIPELINES[family].from_pretrained(folder, local_files_only=True)
    checkpoint = save_ldm_checkpoint(
        reference, models / "checkpoints" / f"mine-{family}.safetensors"
    )
    shapes = read_header(checkpoint).shapes
    assert infer_model_type(shapes) == "v1"  # diffusers' guess is useless for tiny SDXL files

    store = ModelStore(models, hf_cache=False)
    base = store.base(f"mine-{family}").model
    assert (base.family, base.format, base.tiny) == (family, "single_file", True)
    loaded = load_base_pipeline(base, torch.float32)
    assert type(loaded) is PIPELINES[family]
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if getattr(reference, name, None) is None:
            continue
        ours, theirs = getattr(loaded, name).state_dict(), getattr(reference, name).state_dict()
        assert ours.keys() == theirs.keys(), name
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), name
    assert dict(loaded.scheduler.config) == dict(reference.scheduler.config)
    _rehome(loaded)
    _rehome(reference)
    assert torch.equal(_image(loaded), _image(reference))


def test_diffusers_folder_loads_through_the_store(models: Path) -> None:
    shutil.copytree(models / "tiny" / "checkpoints" / "tiny-sd15", models / "checkpoints" / "f")
    store = ModelStore(models, hf_cache=False)
    pipe = load_base_pipeline(store.base("f").model, torch.float16)
    assert type(pipe) is StableDiffusionPipeline and pipe.unet.dtype == torch.float16
    assert pipe.safety_checker is None


def test_single_file_controlnet(models: Path) -> None:
    source = models / "tiny" / "controlnet" / "tiny-controlnet-sdxl"
    target = models / "controlnet" / "cn-canny.safetensors"
    target.parent.mkdir()
    shutil.copy(source / "diffusion_pytorch_model.safetensors", target)
    store = ModelStore(models, hf_cache=False)
    info = store.controlnet(None, "sdxl", "canny", tiny=True)
    assert (info.name, info.format) == ("cn-canny", "single_file")
    loaded = load_controlnet(info, torch.float32)
    reference = ControlNetModel.from_pretrained(source)
    ours, theirs = loaded.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_bundled_configs_build_the_real_full_size_models_on_meta() -> None:
    counts = {}
    with torch.device("meta"):
        for family in ("sd15", "sdxl"):
            folder = CONFIGS_DIR / family
            counts[f"{family}/vae"] = AutoencoderKL.from_config(
                AutoencoderKL.load_config(folder / "vae")
            ).num_parameters()
            config = CLIPTextConfig.from_pretrained(folder / "text_encoder")
            counts[f"{family}/te"] = CLIPTextModel(config).num_parameters()
            unet = UNet2DConditionModel.from_config(
                UNet2DConditionModel.load_config(folder / "unet")
            )
            control = ControlNetModel.from_config(
                ControlNetModel.load_config(CONFIGS_DIR / f"controlnet-{family}")
            )
            counts[f"{family}/unet"] = unet.num_parameters()
            # a ControlNet is a trainable copy of its base's encoder: same shapes there
            copied = control.state_dict()
            encoder = {k: v.shape for k, v in unet.state_dict().items() if k in copied}
            assert len(encoder) > 100
            assert all(copied[k].shape == shape for k, shape in encoder.items())
            counts[f"{family}/controlnet"] = control.num_parameters()
        config = CLIPTextConfig.from_pretrained(CONFIGS_DIR / "sdxl" / "text_encoder_2")
        counts["sdxl/te2"] = CLIPTextModelWithProjection(config).num_parameters()
    assert counts.pop("sdxl/controlnet") > counts["sd15/controlnet"]
    assert counts == {
        "sd15/unet": 859_520_964,
        "sd15/vae": 83_653_863,
        "sd15/te": 123_060_480,
        "sd15/controlnet": 361_279_120,
        "sdxl/unet": 2_567_463_684,
        "sdxl/vae": 83_653_863,
        "sdxl/te": 123_060_480,
        "sdxl/te2": 694_659_840,
    }
    shipped = {p.suffix for p in CONFIGS_DIR.rglob("*") if p.is_file()}
    assert shipped == {".json"}  # configs only: no weights, no vocabulary


def _real_xl(models: Path) -> None:
    write_header_only(models / "checkpoints" / "xl.safetensors", checkpoint_shapes("sdxl"))


def test_tokenizers_come_from_the_hugging_face_cache(models: Path, tmp_path: Path) -> None:
    _real_xl(models)
    vocab = write_clip_tokenizer(tmp_path / "clip")
    cache = tmp_path / "hub"
    files = {name: vocab / name for name in ("vocab.json", "merges.txt")}
    hf_repo(cache, "openai/clip-vit-large-patch14", files)
    base = ModelStore(models, hf_cache=cache).base("xl").model
    tokenizers = load_tokenizers(base)
    assert set(tokenizers) == {"tokenizer", "tokenizer_2"}
    assert tokenizers["tokenizer"].pad_token == "<|endoftext|>"
    assert tokenizers["tokenizer_2"].pad_token == "!"
    ids = tokenizers["tokenizer"]("a cat", padding="max_length").input_ids
    assert len(ids) == 77 and ids[0] == 49406 and 49407 in ids


def test_tokenizers_come_from_a_comfyui_install(models: Path, tmp_path: Path) -> None:
    _real_xl(models)
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "checkpoints").mkdir(parents=True)
    write_clip_tokenizer(comfy / "comfy" / "sd1_tokenizer")
    for root in (comfy, comfy / "models"):
        base = ModelStore(models, [root], hf_cache=False).base("xl").model
        assert len(load_tokenizers(base)["tokenizer_2"]) == 49408


def test_missing_tokenizer_says_what_to_get(models: Path, tmp_path: Path) -> None:
    _real_xl(models)
    base = ModelStore(models, hf_cache=tmp_path / "empty-cache").base("xl").model
    with pytest.raises(ModelNotFoundError, match="acetate models get clip-tokenizer"):
        load_base_pipeline(base, torch.float16)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("RUN_SLOW") != "1", reason="full-size loads; RUN_SLOW=1")
@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_full_size_single_file_loads_with_the_bundled_config(
    models: Path, tmp_path: Path, family: str
) -> None:
    # A sparse full-size file (weights read as zeros) through the real bundled config.
    write_header_only(models / "checkpoints" / "full.safetensors", full_checkpoint_shapes(family))
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "checkpoints").mkdir(parents=True)
    write_clip_tokenizer(comfy / "comfy" / "sd1_tokenizer")
    base = ModelStore(models, [comfy], hf_cache=False).base("full").model
    assert (base.family, base.tiny) == (family, False)
    pipe = load_base_pipeline(base, torch.float16)
    assert type(pipe) is PIPELINES[family]
    expected = {"sd15": 859_520_964, "sdxl": 2_567_463_684}[family]
    assert pipe.unet.num_parameters() == expected
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        assert module is None or not any(p.is_meta for p in module.parameters()), name


def test_incomplete_checkpoint_fails_with_one_clear_line(models: Path) -> None:
    from safetensors.torch import save_file

    from acetate.engine.tiny.ldm_convert import pipeline_to_ldm
    from acetate.errors import ModelFileError

    reference = StableDiffusionPipeline.from_pretrained(
        models / "tiny" / "checkpoints" / "tiny-sd15"
    )
    state = pipeline_to_ldm(reference)
    keep = "first_stage_model.decoder.conv_in.weight"  # looks complete to the header check
    state = {
        k: v.contiguous() for k, v in state.items() if "first_stage_model." not in k or k == keep
    }
    path = models / "checkpoints" / "broken.safetensors"
    path.parent.mkdir()
    save_file(state, str(path))
    base = ModelStore(models, hf_cache=False).base("broken").model
    with pytest.raises(ModelFileError) as info:
        load_base_pipeline(base, torch.float32)
    assert info.value.message.startswith("broken.safetensors could not be loaded as an SD1.5 model")
    assert "\n" not in info.value.message
