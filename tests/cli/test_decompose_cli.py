"""`acetate generate --mode decompose` on the tiny Qwen-Image-Layered model: the layers, the
record's metrics, a PSD in stacking order, and one-line errors naming the flag."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from psd_tools import PSDImage
from sample_images import rgba

import acetate.cli


@pytest.fixture(autouse=True)
def only_generate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only this sub-command is under test; the others are built by other modules."""
    monkeypatch.setattr(acetate.cli, "COMMANDS", ("generate",))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("decompose-cli-models")


def generate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = acetate.cli.main(["generate", *argv])
    except SystemExit as exit_:  # argparse usage errors
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_decompose_writes_layers_metrics_and_a_psd(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flat = tmp_path / "flat.png"
    Image.fromarray(rgba(96, 64, seed=4, opaque=True)).save(flat)
    selection = np.zeros((64, 96), dtype=np.uint8)
    selection[8:56, 16:80] = 255
    mask = tmp_path / "mask.png"
    Image.fromarray(selection).save(mask)
    out = tmp_path / "out"
    code, stdout, stderr = generate(
        capsys, "--mode", "decompose", "--image", str(flat), "--layer-count", "4",
        "--prompt", "a glass bottle on a table", "--selection", str(mask), "--steps", "2",
        "--seed", "9", "--psd", "--device", "cpu", "--models-dir", str(models), "--out", str(out),
    )  # fmt: skip
    assert code == 0, stderr
    record = json.loads((out / "result.json").read_text())
    assert record["model"] == "tiny-qwen-image-layered"
    assert "tiny-qwen-image-layered" in stderr  # the test-model warning
    names = [layer["name"] for layer in record["layers"]]
    assert names == ["layer_1", "layer_2", "layer_3", "layer_4", "blended"]
    for layer in record["layers"]:
        assert layer["left"] >= 16 and layer["left"] + layer["width"] <= 80
        assert layer["top"] >= 8 and layer["top"] + layer["height"] <= 56
        with Image.open(out / layer["file"]) as png:
            assert png.mode == "RGBA" and png.size == (layer["width"], layer["height"])
    assert record["metrics"][0]["batch_index"] == 0 and record["metrics"][0]["psnr_db"] > 0
    assert record["psd"] == "layers.psd"
    (group,) = list(PSDImage.open(out / "layers.psd"))
    assert [layer.name for layer in group] == names
    assert str(out / "layers.psd") in stdout.split()


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--strength", "0.4"], "--strength"),
        (["--decode", "fast"], "--decode"),
        (["--layer-count", "12"], "--layer-count"),
        (["--resolution", "512"], "--resolution"),
        (["--model", "tiny-sd15"], "--model"),
        (["--quantize", "nf4", "--device", "cpu"], "--quantize"),
    ],
)
def test_errors_are_one_line_naming_the_flag(
    argv: list[str], flag: str, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flat = tmp_path / "flat.png"
    Image.fromarray(rgba(48, 32, seed=1, opaque=True)).save(flat)
    code, _, stderr = generate(
        capsys, "--mode", "decompose", "--image", str(flat), "--prompt", "x",
        "--models-dir", str(models), "--out", str(tmp_path / "out"), *argv,
    )  # fmt: skip
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("acetate generate: error: ") and flag in lines[0]


def test_models_lists_the_qwen_test_model_and_what_to_download(tmp_path: Path) -> None:
    from acetate.cli.models import format_summary
    from acetate.engine.store.models import ModelStore

    text = "\n".join(format_summary(ModelStore(tmp_path, hf_cache=False).describe()))
    assert "tiny-qwen-image-layered  Qwen-Image-Layered  diffusers  built in" in text
    assert "usable modes: decompose" in text
    assert "Qwen/Qwen-Image-Layered (57.7 GB" in text
    assert "transformer/  40.861 GB" in text and "vae/  0.254 GB" in text
    assert "decompose: unavailable: splitting an image into layers needs" in text
