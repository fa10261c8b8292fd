"""Result folders: files, record, order, visibility, lazy PSD, and atomicity under failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from psd_tools import PSDImage

from acetate.engine.outputs import GenerationResult, LayerImage
from acetate.errors import InputError
from acetate.export import atomic
from acetate.export.png import read_png_parameters
from acetate.export.result import read_result, write_psd_for_result, write_result
from acetate.protocol import LayerRecord, group_name

PROMPT = "a knight in glass armour, 騎士, standing in a very long corridor of mirrors"


@pytest.fixture
def result(noisy_rgba, opaque_rgba) -> GenerationResult:
    """A joint result, batch 2, layers handed over in no particular order."""
    layers = []
    for index in (1, 0):
        layers += [
            LayerImage("blended", index, opaque_rgba(48, 64)),
            LayerImage("foreground", index, noisy_rgba(30, 20), left=10 * index + 5, top=7),
            LayerImage("background", index, opaque_rgba(48, 64)),
        ]
    parameters = {"mode": "joint", "model": "tiny-sd15", "prompt": PROMPT, "seed": 7, "batch": 2}
    return GenerationResult("joint", "tiny-sd15", parameters, 64, 48, layers, ["test warning"])


def decode(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA"))


def test_writes_layers_and_record(tmp_path: Path, result: GenerationResult):
    seen: list[LayerRecord] = []

    def on_layer(layer: LayerRecord) -> None:
        # Called once the file is complete, before the record exists.
        assert (tmp_path / layer.file).is_file()
        assert not (tmp_path / "result.json").exists()
        seen.append(layer)

    record = write_result(tmp_path, result, job_id="j_1", psd=False, on_layer=on_layer)
    assert seen == record.layers
    assert [(layer.batch_index, layer.name) for layer in record.layers] == [
        (0, "background"),
        (0, "foreground"),
        (0, "blended"),
        (1, "background"),
        (1, "foreground"),
        (1, "blended"),
    ]
    assert [layer.file for layer in record.layers[:3]] == [
        "background.png",
        "foreground.png",
        "blended.png",
    ]
    assert record.layers[4].file == "foreground_1.png"
    assert [layer.visible for layer in record.layers] == [True, True, False] * 2
    assert (record.layers[4].left, record.layers[4].top) == (15, 7)
    assert (record.layers[4].width, record.layers[4].height) == (20, 30)
    assert record.psd is None and not (tmp_path / "layers.psd").exists()
    assert record.warnings == ["test warning"]
    assert (record.canvas.width, record.canvas.height) == (64, 48)

    on_disk = read_result(tmp_path)
    assert on_disk == record
    assert json.loads((tmp_path / "result.json").read_text())["id"] == "j_1"
    for layer_image in result.layers:
        path = tmp_path / layer_image.file
        assert np.array_equal(decode(path), layer_image.pixels)
        assert read_png_parameters(path.read_bytes()) == result.parameters
    with Image.open(tmp_path / "foreground.png") as image:
        assert image.mode == "RGBA"
    with Image.open(tmp_path / "background.png") as image:
        assert image.mode == "RGB"


def test_psd_has_one_group_per_batch_item(tmp_path: Path, result: GenerationResult):
    record = write_result(tmp_path, result, job_id="j_2", psd=True)
    assert record.psd == "layers.psd"
    assert read_result(tmp_path).psd == "layers.psd"
    psd = PSDImage.open(tmp_path / "layers.psd")
    assert [group.name for group in psd] == [group_name(PROMPT, 0), group_name(PROMPT, 1)]
    assert psd[0].name == PROMPT[:60] + " #1"
    for group, index in zip(psd, (0, 1), strict=True):
        expected = [layer for layer in record.layers if layer.batch_index == index]
        assert [layer.name for layer in group] == [layer.name for layer in expected]
        assert [layer.visible for layer in group] == [layer.visible for layer in expected]
        for read, layer in zip(group, expected, strict=True):
            assert (read.left, read.top) == (layer.left, layer.top)
            assert np.array_equal(
                np.asarray(read.topil(apply_icc=False)), decode(tmp_path / layer.file)
            )


def test_lazy_psd_equals_the_eager_one(tmp_path: Path, result: GenerationResult):
    eager, lazy = tmp_path / "eager", tmp_path / "lazy"
    write_result(eager, result, job_id="j_3", psd=True)
    record = write_result(lazy, result, job_id="j_3", psd=False)
    path = write_psd_for_result(lazy)
    assert path == lazy / "layers.psd"
    assert path.read_bytes() == (eager / "layers.psd").read_bytes()
    assert read_result(lazy) == record.model_copy(update={"psd": "layers.psd"})


def test_rewriting_a_folder_drops_the_stale_psd(tmp_path: Path, result: GenerationResult):
    write_result(tmp_path, result, job_id="j_4", psd=True)
    record = write_result(tmp_path, result, job_id="j_4", psd=False)
    assert record.psd is None
    assert not (tmp_path / "layers.psd").exists()


def test_read_result_errors(tmp_path: Path):
    with pytest.raises(InputError, match=r"no result\.json"):
        read_result(tmp_path)
    (tmp_path / "result.json").write_text('{"id": 3}')
    with pytest.raises(InputError, match="not a result record"):
        read_result(tmp_path)


def test_lazy_psd_refuses_paths_outside_the_folder(tmp_path: Path, result: GenerationResult):
    record = write_result(tmp_path / "r", result, job_id="j_5", psd=False)
    evil = record.model_copy(deep=True)
    evil.layers[0].file = "../outside.png"
    with pytest.raises(InputError, match="plain file name"):
        write_psd_for_result(tmp_path / "r", evil)
    (tmp_path / "r" / "foreground.png").unlink()
    with pytest.raises(InputError, match="missing layer file"):
        write_psd_for_result(tmp_path / "r")


def test_no_partial_files_when_a_callback_fails(tmp_path: Path, result: GenerationResult):
    def fail(layer: LayerRecord) -> None:
        if layer.batch_index == 1:
            raise RuntimeError("client gone")

    with pytest.raises(RuntimeError):
        write_result(tmp_path, result, job_id="j_6", psd=True, on_layer=fail)
    assert not (tmp_path / "result.json").exists()
    assert not (tmp_path / "layers.psd").exists()


def test_every_failing_write_leaves_a_consistent_folder(
    tmp_path: Path, result: GenerationResult, monkeypatch
):
    """Disk full at each fsync in turn: no temp files; result.json only with all it names."""
    real_fsync = os.fsync
    calls = {"left": 0}

    def fsync(fd: int) -> None:
        calls["left"] -= 1
        if calls["left"] == 0:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    failures = 0
    for attempt in range(1, 40):
        folder = tmp_path / str(attempt)
        calls["left"] = attempt
        try:
            write_result(folder, result, job_id="j_7", psd=True)
        except OSError:
            failures += 1
        assert not [name for name in os.listdir(folder) if name.endswith(".tmp")]
        if (folder / "result.json").exists():
            record = read_result(folder)
            for name in [layer.file for layer in record.layers] + [record.psd]:
                assert (folder / str(name)).is_file()
        if calls["left"] > 0:  # this attempt ran out of writes to fail
            break
    assert failures >= 8  # at least one per file: 6 PNGs, the PSD, the record


def test_export_does_not_import_torch_or_aiohttp():
    code = (
        "import sys, acetate.export.result, acetate.export.psd, acetate.export.png\n"
        "print(sorted(m for m in ('torch', 'aiohttp', 'diffusers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
