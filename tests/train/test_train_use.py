"""A trained pair is used where named (`acetate generate --transparent-decoder/-encoder`),
listed with its metadata by the model store, and never replaces the released files by default."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TinyRun
from PIL import Image

import acetate.cli


def _fg_alpha(out: Path) -> np.ndarray:
    import json

    record = json.loads((out / "result.json").read_text())
    layer = next(item for item in record["layers"] if item["file"].endswith(".png"))
    return np.asarray(Image.open(out / layer["file"]))[..., 3]


def test_generate_uses_the_trained_files(
    tiny_run: TinyRun, tiny_models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["generate", "--mode", "fg", "--model", "tiny-sd15", "--prompt", "glass",
              "--seed", "5", "--steps", "2", "--decode", "fast", "--device", "cpu",
              "--width", "64", "--height", "64", "--models-dir", str(tiny_models_dir)]  # fmt: skip
    assert acetate.cli.main([*common, "--out", str(tmp_path / "official")]) == 0
    # fg decodes only: the trained encoder is for modes that encode an image.
    trained = ["--transparent-decoder", str(tiny_run.files["transparent_decoder"])]
    code = acetate.cli.main([*common, *trained, "--out", str(tmp_path / "trained")])
    assert code == 0, capsys.readouterr().err
    assert not np.array_equal(_fg_alpha(tmp_path / "official"), _fg_alpha(tmp_path / "trained"))


def test_store_lists_trained_files_but_defaults_to_the_released_ones(
    tiny_run: TinyRun, tiny_models_dir: Path, tmp_path: Path
) -> None:
    from acetate.engine.store.models import ModelStore

    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models, symlinks=True)
    trained_dir = models / "tiny" / "layer_model"
    for path in tiny_run.files.values():
        shutil.copy(path, trained_dir / path.name)
    store = ModelStore(models, hf_cache=False)
    listed = {f.name: f.to_dict() for f in store.layer_files()}
    decoder = listed[tiny_run.files["transparent_decoder"].name]
    assert decoder["kind"] == "layer_sd15_vae_transparent_decoder"
    assert decoder["trained"]["acetate.steps"] == "60"
    base = store.base("tiny-sd15").model
    chosen = store.resolve(base, "fg")
    assert all(f.to_dict()["trained"] is None for f in chosen.values())
