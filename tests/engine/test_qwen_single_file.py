"""Qwen-Image-Layered from ComfyUI's transformer single file plus the diffusers folder without
`transformer/` (the 40.9 GB download a ComfyUI user already has): pairing, listing, a bit-exact
decomposition on the tiny model, and clear refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from acetate.engine.engine import Engine
from acetate.engine.store.models import ModelStore
from acetate.engine.store.qwen_split import (
    COMFY_PREFIX,
    SplitQwenBase,
    load_split_transformer,
)
from acetate.engine.tiny.qwen_layered import TINY_QWEN_NAME, ensure_tiny_qwen, tiny_qwen_folder
from acetate.errors import ModelFileError
from acetate.protocol import GenerateParameters

FILE_NAME = "qwen_image_layered_tiny.safetensors"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the tiny Qwen-Image-Layered diffusers folder."""
    models = tmp_path_factory.mktemp("qwen-source")
    ensure_tiny_qwen(models)
    return models


def transformer_state(source: Path) -> dict[str, torch.Tensor]:
    return load_file(
        tiny_qwen_folder(source) / "transformer" / "diffusion_pytorch_model.safetensors"
    )


def write_comfy_file(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """The transformer as ComfyUI ships it: one file, keys under `model.diffusion_model.`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({COMFY_PREFIX + k: v.contiguous() for k, v in state.items()}, path)
    return path


def partial_folder(source: Path, models: Path, name: str = "my-qwen") -> Path:
    """The tiny folder as `hf download --exclude "transformer/*"` leaves it."""
    folder = models / "checkpoints" / name
    shutil.copytree(tiny_qwen_folder(source), folder, ignore=shutil.ignore_patterns("transformer"))
    return folder


@pytest.fixture(scope="module")
def split_models(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("split-models")
    partial_folder(source, models)
    write_comfy_file(models / "diffusion_models" / FILE_NAME, transformer_state(source))
    return models


def test_a_folder_and_a_single_file_make_one_base(split_models: Path) -> None:
    store = ModelStore(split_models, hf_cache=False)
    real = [b for b in store.bases() if b.source != "tiny"]
    assert [b.name for b in real] == ["my-qwen"]
    base = real[0]
    assert isinstance(base, SplitQwenBase) and base.family == "qwen_layered" and base.tiny
    assert base.path == split_models / "checkpoints" / "my-qwen"
    assert base.transformer_file == split_models / "diffusion_models" / FILE_NAME
    assert store.refused() == []  # both parts are used, neither is listed as refused
    described = next(b for b in store.describe()["bases"] if b["name"] == "my-qwen")
    assert described["parts"]["transformer"] == str(base.transformer_file)
    assert described["parts"]["vae"] == str(base.path / "vae")
    assert described["modes"] == {"decompose": []}
    assert store.plan("my-qwen", "decompose").base == base


def decomposed(store: ModelStore, model: str) -> list[np.ndarray]:
    torch.set_num_threads(1)
    params = GenerateParameters(
        mode="decompose", model=model, prompt="a red disc on blue", steps=2, seed=11,
        resolution=64, layer_count=2,
    )  # fmt: skip
    image = np.zeros((48, 64, 4), dtype=np.uint8)
    image[...] = (30, 60, 200, 255)
    image[10:30, 20:40] = (220, 30, 30, 255)
    result = Engine(store).generate(params, {"image": image})
    return [layer.pixels for layer in result.layers]


def test_the_paired_base_decomposes_bit_identically_to_the_folder(
    source: Path, split_models: Path
) -> None:
    paired = decomposed(ModelStore(split_models, hf_cache=False), "my-qwen")
    original = decomposed(ModelStore(source, hf_cache=False), TINY_QWEN_NAME)
    assert len(paired) == len(original) == 3  # 2 layers + the recomposite
    for got, want in zip(paired, original, strict=True):
        assert np.array_equal(got, want)


def test_the_folder_alone_is_incomplete_and_names_the_transformer(
    source: Path, tmp_path: Path
) -> None:
    folder = partial_folder(source, tmp_path / "models")
    store = ModelStore(tmp_path / "models", hf_cache=False)
    assert all(b.source == "tiny" for b in store.bases())
    reason = {r.path: r.reason for r in store.refused()}[folder]
    assert reason.startswith("incomplete Qwen-Image-Layered folder: missing transformer/ (40.9 GB)")
    assert "qwen_image_layered_bf16.safetensors" in reason and "diffusion_models" in reason


def test_a_file_alone_says_which_folder_parts_to_get(source: Path, tmp_path: Path) -> None:
    path = write_comfy_file(tmp_path / "models" / "diffusion_models" / FILE_NAME,
                            transformer_state(source))  # fmt: skip
    store = ModelStore(tmp_path / "models", hf_cache=False)
    reason = {r.path: r.reason for r in store.refused()}[path]
    assert "no folder with the rest of the model was found" in reason
    assert '--exclude "transformer/*"' in reason and "16.8 GB" in reason


def test_a_wrong_shape_names_the_key(source: Path, tmp_path: Path) -> None:
    state = transformer_state(source)
    state["img_in.weight"] = torch.zeros(7, 32)
    models = tmp_path / "models"
    folder = partial_folder(source, models)
    path = write_comfy_file(models / "diffusion_models" / FILE_NAME, state)
    store = ModelStore(models, hf_cache=False)
    assert all(b.source == "tiny" for b in store.bases())  # not paired
    refused = {r.path: r.reason for r in store.refused()}
    assert "model.diffusion_model.img_in.weight has shape [7, 32]" in refused[path]
    assert refused[folder].startswith("incomplete")
    with pytest.raises(ModelFileError) as error:
        load_split_transformer(path, tiny=True, dtype=torch.float32)
    assert "model.diffusion_model.img_in.weight has shape [7, 32]" in error.value.message
    assert error.value.field == "model"
    del state["img_in.weight"]
    write_comfy_file(path, state)
    with pytest.raises(ModelFileError, match=r"img_in\.weight is missing"):
        load_split_transformer(path, tiny=True, dtype=torch.float32)


def test_two_fitting_files_are_ambiguous(source: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    folder = partial_folder(source, models)
    state = transformer_state(source)
    write_comfy_file(models / "diffusion_models" / FILE_NAME, state)
    write_comfy_file(models / "checkpoints" / "other.safetensors", state)
    store = ModelStore(models, hf_cache=False)
    assert all(b.source == "tiny" for b in store.bases())
    assert "several transformer files fit it" in {r.path: r.reason for r in store.refused()}[folder]


def test_unprefixed_keys_load_too(source: Path, tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    state = transformer_state(source)
    save_file(state, path)
    model = load_split_transformer(path, tiny=True, dtype=torch.float32)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_acetate_models_text_shows_the_pairing(split_models: Path, tmp_path: Path) -> None:
    from acetate.cli.models import format_summary

    text = "\n".join(format_summary(ModelStore(split_models, hf_cache=False).describe()))
    transformer = split_models / "diffusion_models" / FILE_NAME
    assert (
        f"my-qwen  Qwen-Image-Layered  single_file  {split_models / 'checkpoints' / 'my-qwen'}"
        in text
    )
    assert f"paired: transformer from the single file {transformer}" in text
    assert "vae, text_encoder, tokenizer, scheduler, processor from the folder" in text
    # Nothing real yet: the download advice offers the split option too.
    empty = "\n".join(format_summary(ModelStore(tmp_path, hf_cache=False).describe()))
    assert "or: ComfyUI's qwen_image_layered_bf16.safetensors (40.9 GB)" in empty
    assert '--exclude "transformer/*"' in empty and "(16.8 GB)" in empty


def test_full_size_pairs_a_comfyui_file_with_the_cached_folder(tmp_path: Path) -> None:
    """Headers only: ComfyUI's 40.9 GB file in a linked install, the folder without
    transformer/ in the Hugging Face cache (as `hf download --exclude "transformer/*"` leaves
    it); a test-size folder never pairs with it."""
    from store_files import hf_repo, write_header_only

    from acetate.engine.store.qwen import QWEN_CONFIGS, full_size_transformer_shapes

    comfy = tmp_path / "ComfyUI" / "models"
    transformer = {COMFY_PREFIX + k: v for k, v in full_size_transformer_shapes().items()}
    path = comfy / "diffusion_models" / "qwen_image_layered_bf16.safetensors"
    write_header_only(path, transformer, "BF16")
    files: dict[str, bytes | Path] = {
        name: QWEN_CONFIGS / name
        for name in ("model_index.json", "vae/config.json", "text_encoder/config.json",
                     "scheduler/scheduler_config.json")
    }  # fmt: skip
    files |= {
        "vae/diffusion_pytorch_model.safetensors": b"weights",
        "text_encoder/model.safetensors.index.json": b"{}",
        "tokenizer/vocab.json": b"{}",
    }
    cache = tmp_path / "hub"
    snapshot = hf_repo(cache, "Qwen/Qwen-Image-Layered", files)
    store = ModelStore(tmp_path / "models", [comfy.parent], hf_cache=cache)
    real = [b for b in store.bases() if b.source != "tiny"]
    assert [(b.name, b.tiny) for b in real] == [("Qwen/Qwen-Image-Layered", False)]
    assert isinstance(real[0], SplitQwenBase) and real[0].transformer_file == path
    assert real[0].path == snapshot
    summary = store.describe()
    assert summary["decompose_files"] is None
    assert summary["default_bases"]["decompose"] == "Qwen/Qwen-Image-Layered"
    assert summary["refused"] == []


def test_quantize_is_refused_for_a_single_file_transformer(split_models: Path) -> None:
    from acetate.engine.store.qwen import load_qwen_pipeline
    from acetate.errors import InputError

    base = ModelStore(split_models, hf_cache=False).base("my-qwen").model
    assert isinstance(base, SplitQwenBase) and base.transformer_file is not None
    with pytest.raises(InputError) as error:
        load_qwen_pipeline(base.path, torch.float32, None, "nf4", base.transformer_file, True)
    assert error.value.field == "quantize" and "single-file transformer" in error.value.message
