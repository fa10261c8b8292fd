"""A diffusers base stored in fp16 and run in fp32 is loaded as stored, then widened.

That keeps loading from holding the file's whole state dict beside the fp32 model; the loaded
pipeline must be exactly what diffusers' own fp32 loading gives.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionXLPipeline

from acetate.engine.store.loading import (
    load_base_pipeline,
    narrower_stored_dtypes,
    stored_float_dtype,
)
from acetate.engine.store.models import ModelStore

COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "vae")


@pytest.fixture(scope="module")
def fp16_store(tmp_path_factory: pytest.TempPathFactory, tiny_models_dir: Path) -> Path:
    models = tmp_path_factory.mktemp("fp16") / "models"
    source = tiny_models_dir / "tiny" / "checkpoints" / "tiny-sdxl"
    pipe = StableDiffusionXLPipeline.from_pretrained(source, local_files_only=True)
    pipe.to(torch.float16).save_pretrained(models / "checkpoints" / "half-sdxl")
    return models


def test_stored_dtypes_are_read_from_the_headers(fp16_store: Path) -> None:
    folder = fp16_store / "checkpoints" / "half-sdxl"
    assert stored_float_dtype(folder / "unet", None) == torch.float16
    assert stored_float_dtype(folder / "unet", "fp16") is None  # no such variant files
    assert narrower_stored_dtypes(folder, None, torch.float32) == dict.fromkeys(
        COMPONENTS, torch.float16
    )
    assert narrower_stored_dtypes(folder, None, torch.float16) == {}
    assert narrower_stored_dtypes(folder, None, torch.bfloat16) == {}  # same width: as before


def test_fp16_files_load_as_diffusers_fp32_loading_does(fp16_store: Path) -> None:
    base, _ = ModelStore(fp16_store).base("half-sdxl")
    ours = load_base_pipeline(base, torch.float32)
    reference = StableDiffusionXLPipeline.from_pretrained(
        base.path, dtype=torch.float32, local_files_only=True
    )
    for name in COMPONENTS:
        mine, theirs = getattr(ours, name).state_dict(), getattr(reference, name).state_dict()
        assert list(mine) == list(theirs), name
        for key, value in theirs.items():
            assert mine[key].dtype == value.dtype == torch.float32 or not value.is_floating_point()
            assert torch.equal(mine[key], value), f"{name}.{key}"
        assert getattr(ours, name).dtype == torch.float32


def test_a_variant_folder_is_read_for_its_variant(fp16_store: Path, tmp_path: Path) -> None:
    folder = tmp_path / "unet"
    shutil.copytree(fp16_store / "checkpoints" / "half-sdxl" / "unet", folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    weights.rename(folder / "diffusion_pytorch_model.fp16.safetensors")
    assert stored_float_dtype(folder, "fp16") == torch.float16
    assert stored_float_dtype(folder, None) is None


def test_the_unet_is_read_tensor_by_tensor(
    fp16_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from acetate.engine.store import loading

    built = []
    original = loading.load_unet_by_tensor
    monkeypatch.setattr(
        loading, "load_unet_by_tensor", lambda *a: built.append(original(*a)) or built[-1]
    )
    base, _ = ModelStore(fp16_store).base("half-sdxl")
    pipe = load_base_pipeline(base, torch.float32)
    assert built and pipe.unet is built[0]
    assert not pipe.unet.training


def test_a_unet_folder_that_does_not_match_its_config_is_left_to_diffusers(
    fp16_store: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    from acetate.engine.nets.weight_files import UNetWeightFiles
    from acetate.engine.store.loading import load_unet_by_tensor

    folder = tmp_path / "unet"
    shutil.copytree(fp16_store / "checkpoints" / "half-sdxl" / "unet", folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    tensors.pop("conv_in.bias")
    save_file(tensors, weights)
    files = UNetWeightFiles.from_diffusers_folder(folder, None)
    assert load_unet_by_tensor(folder, files, torch.float32) is None
