"""UNet patches are undone by reading the base model's file again, not from RAM copies.

A loaded base knows where each UNet weight came from (`weight_files`): a diffusers folder or a
single-file checkpoint. Applying a patch keeps no copy of a touched weight that still equals its
file value, and removal reads it back bit-exactly; weights that differ from their file (a LoRA
fused first, a stacked patch) are copied as before. A patch's own tensors are read from its
file when applied, and a patch file changed on disk is validated again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from layer_files_helpers import assert_state_equal, state_copy, write_files

from acetate.engine.nets.unet_patch import (
    apply_unet_patch,
    load_unet_patch,
    needs_reload,
)
from acetate.engine.nets.weight_files import TensorFile, UNetWeightFiles, weight_files
from acetate.engine.store.loading import load_base_pipeline
from acetate.engine.store.models import ModelStore
from acetate.engine.tiny.ldm_convert import save_ldm_checkpoint
from acetate.errors import ModelFileError

ATTN = "layer_xl_transparent_attn"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_files(tmp_path_factory.mktemp("layers"))


@pytest.fixture
def store(tmp_path: Path, tiny_models_dir: Path) -> ModelStore:
    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir / "tiny", models / "tiny", symlinks=True)
    return ModelStore(models)


def _pipeline(store: ModelStore, name: str = "tiny-sdxl"):
    base, _ = store.base(name)
    return load_base_pipeline(base, torch.float32)


def test_a_loaded_diffusers_base_knows_its_unet_files(store: ModelStore) -> None:
    pipe = _pipeline(store)
    located = weight_files(pipe.unet).locations
    assert set(located) == set(pipe.unet.state_dict())
    path, key = located["conv_in.weight"]
    assert path.name.startswith("diffusion_pytorch_model") and key == "conv_in.weight"


@pytest.mark.parametrize("kind", [ATTN, "layer_xl_fg2ble"])
def test_patch_keeps_no_copies_and_restores_from_the_file(
    store: ModelStore, files: dict[str, Path], kind: str
) -> None:
    pipe = _pipeline(store)
    before = state_copy(pipe.unet)
    patch = load_unet_patch(files[kind], pipe.unet.config)
    handle = apply_unet_patch(pipe.unet, patch, 1.0)
    try:
        assert handle._originals == {}  # nothing copied: every weight equals its file value
        in_place = {key for key, w in patch.weights.items() if w.kind == "lora" or key in before}
        in_place.discard("conv_in.weight" if kind != ATTN else "")
        assert handle._from_file == in_place
        changed = [k for k in in_place if not torch.equal(pipe.unet.get_parameter(k), before[k])]
        assert len(changed) >= len(in_place) - 2
    finally:
        handle.remove()
    assert_state_equal(pipe.unet, before)
    assert pipe.unet.config.in_channels == 4


def test_weights_changed_before_the_patch_are_copied(
    store: ModelStore, files: dict[str, Path]
) -> None:
    pipe = _pipeline(store)
    patch = load_unet_patch(files[ATTN], pipe.unet.config)
    key = next(iter(patch.weights))
    with torch.no_grad():
        pipe.unet.get_parameter(key).add_(0.25)  # as a fused LoRA would
    before = state_copy(pipe.unet)
    with apply_unet_patch(pipe.unet, patch, 1.0) as handle:
        assert set(handle._originals) == {key}
        assert key not in handle._from_file
    assert_state_equal(pipe.unet, before)


def test_stacked_patches_restore_exactly(store: ModelStore, files: dict[str, Path]) -> None:
    pipe = _pipeline(store)
    before = state_copy(pipe.unet)
    first = apply_unet_patch(pipe.unet, load_unet_patch(files[ATTN], pipe.unet.config), 1.0)
    second_patch = load_unet_patch(files["layer_xl_transparent_conv"], pipe.unet.config)
    second = apply_unet_patch(pipe.unet, second_patch, 0.5)
    assert set(second._originals) <= set(first._from_file)  # its copies: what the first changed
    second.remove()
    first.remove()
    assert_state_equal(pipe.unet, before)


def test_restore_survives_the_base_file_being_replaced(
    store: ModelStore, files: dict[str, Path]
) -> None:
    pipe = _pipeline(store)
    before = state_copy(pipe.unet)
    handle = apply_unet_patch(pipe.unet, load_unet_patch(files[ATTN], pipe.unet.config), 1.0)
    path = next(iter(weight_files(pipe.unet).locations.values()))[0]
    replacement = path.with_name("replacement.safetensors")
    replacement.write_bytes(b"not a model")
    os.replace(replacement, path)  # an update or a sync tool swapping the file mid-job
    handle.remove()  # the descriptor opened when patching still reads the old data
    assert_state_equal(pipe.unet, before)
    assert not needs_reload(pipe.unet)


def test_an_unreadable_base_file_marks_the_unet_for_reloading(
    store: ModelStore, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = _pipeline(store)
    handle = apply_unet_patch(pipe.unet, load_unet_patch(files[ATTN], pipe.unet.config), 1.0)
    monkeypatch.setattr(TensorFile, "get", lambda self, key: (_ for _ in ()).throw(OSError(5)))
    with pytest.raises(ModelFileError, match="loaded again"):
        handle.remove()
    assert needs_reload(pipe.unet)


def test_single_file_checkpoints_are_located_by_their_ldm_keys(
    store: ModelStore, files: dict[str, Path], tmp_path: Path
) -> None:
    reference = _pipeline(store)
    checkpoint = save_ldm_checkpoint(
        reference, store.models_dir / "checkpoints" / "mine-sdxl.safetensors"
    )
    store.refresh()
    pipe = _pipeline(store, "mine-sdxl")
    located = weight_files(pipe.unet).locations
    assert {path for path, _ in located.values()} == {checkpoint}
    patch = load_unet_patch(files[ATTN], pipe.unet.config)
    assert set(patch.weights) <= set(located)
    before = state_copy(pipe.unet)
    with apply_unet_patch(pipe.unet, patch, 1.0) as handle:
        assert handle._originals == {} and set(handle._from_file) == set(patch.weights)
    assert_state_equal(pipe.unet, before)


def test_a_patch_file_is_read_when_applied_and_revalidated_when_changed(
    store: ModelStore, files: dict[str, Path], tmp_path: Path
) -> None:
    pipe = _pipeline(store)
    copy = shutil.copy(files[ATTN], tmp_path / f"{ATTN}.safetensors")
    patch = load_unet_patch(copy, pipe.unet.config)
    assert patch.is_current()
    Path(copy).write_bytes(Path(copy).read_bytes() + b"")
    os.utime(copy, ns=(1, 1))
    assert not patch.is_current()
    with pytest.raises(ModelFileError, match="changed on disk"):
        apply_unet_patch(pipe.unet, patch, 1.0)


def test_unknown_weights_fall_back_to_copies(files: dict[str, Path]) -> None:
    from layer_files_helpers import tiny_sdxl

    unet = tiny_sdxl()  # built in memory: no file to read back from
    assert weight_files(unet) == UNetWeightFiles({})
    before = state_copy(unet)
    patch = load_unet_patch(files[ATTN], unet.config)
    with apply_unet_patch(unet, patch, 1.0) as handle:
        assert set(handle._originals) == set(patch.weights) and not handle._from_file
    assert_state_equal(unet, before)
