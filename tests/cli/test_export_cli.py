"""`acetate export --psd`: from PNG layers and from a result folder; one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from psd_tools import PSDImage

import acetate.cli
from acetate.engine.outputs import GenerationResult, LayerImage
from acetate.export.result import write_result


@pytest.fixture(autouse=True)
def only_export(monkeypatch):
    """Only this sub-command is under test; the others are built by other modules."""
    monkeypatch.setattr(acetate.cli, "COMMANDS", ("export",))


@pytest.fixture
def pngs(tmp_path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    arrays = {
        "bg.png": np.dstack([rng.integers(0, 256, (30, 40, 3)), np.full((30, 40), 255)]),
        "fg.png": rng.integers(0, 256, (12, 16, 4)),
    }
    arrays = {name: array.astype(np.uint8) for name, array in arrays.items()}
    for name, array in arrays.items():
        Image.fromarray(array if name == "fg.png" else array[..., :3]).save(tmp_path / name)
    return arrays


def layer_pixels(layer) -> np.ndarray:
    return np.asarray(layer.topil(apply_icc=False))


def test_layers_with_names_offsets_and_group(tmp_path: Path, pngs, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = acetate.cli.main(
        ["export", "--psd", "out.psd", "--group", "Set ✓", "bg.png", "猫=fg.png@30,-4"]
    )
    assert code == 0
    assert capsys.readouterr().out.strip() == "out.psd"
    psd = PSDImage.open(tmp_path / "out.psd")
    assert (psd.width, psd.height) == (46, 30)  # bounding box from 0,0: 30+16 wide
    (group,) = psd
    assert group.name == "Set ✓"
    assert [(layer.name, layer.left, layer.top) for layer in group] == [
        ("bg", 0, 0),
        ("猫", 30, -4),
    ]
    assert np.array_equal(layer_pixels(group[0]), pngs["bg.png"])
    assert np.array_equal(layer_pixels(group[1]), pngs["fg.png"])


def test_explicit_canvas_and_no_group(tmp_path: Path, pngs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert acetate.cli.main(["export", "--psd", "out.psd", "--canvas", "20x10", "fg.png"]) == 0
    psd = PSDImage.open(tmp_path / "out.psd")
    assert (psd.width, psd.height) == (20, 10)
    assert [(layer.kind, layer.name) for layer in psd] == [("pixel", "fg")]


def test_result_folder_gives_the_servers_psd(tmp_path: Path, pngs):
    fg = pngs["fg.png"]
    layers = [LayerImage("foreground", index, fg, left=3 * index, top=2) for index in range(2)]
    parameters = {"mode": "fg", "model": "tiny-sdxl", "prompt": "a red fox"}
    result = GenerationResult("fg", "tiny-sdxl", parameters, 32, 24, layers)
    write_result(tmp_path / "run", result, job_id="j_cli", psd=True)
    out = tmp_path / "from_dir.psd"
    assert acetate.cli.main(["export", "--psd", str(out), str(tmp_path / "run")]) == 0
    assert out.read_bytes() == (tmp_path / "run" / "layers.psd").read_bytes()
    assert [group.name for group in PSDImage.open(out)] == ["a red fox #1", "a red fox #2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.png"], "missing.png: No such file"),
        (["notpng.png"], "not a PNG"),
        (["fg.png@12"], "bad offset '12'"),
        (["fg.png@1,x"], "bad offset"),
        (["=fg.png"], "empty layer name"),
        (["--canvas=-3x4", "fg.png"], "at least 1x1"),
        (["--canvas", "0x4", "fg.png"], "at least 1x1"),
        (["--canvas", "big", "fg.png"], "bad canvas size 'big'"),
        (["--canvas", "9000x10", "fg.png"], "exceeds 8192"),
        (["fg.png@-100,-100"], "give --canvas"),
        (["--group", "g", "."], "not to a result folder"),
        (["."], "no result.json"),
        (["fg.png", "."], "folder can only be given alone"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, pngs, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notpng.png").write_text("hello")
    assert acetate.cli.main(["export", "--psd", "out.psd", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("acetate export: error")
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.psd").exists()


def test_unwritable_output_is_one_line_without_traceback(tmp_path: Path, pngs):
    main = "import sys, acetate.cli as c; c.COMMANDS = ('export',); sys.exit(c.main())"
    out = tmp_path / "no" / "such" / "dir" / "out.psd"
    run = subprocess.run(
        [sys.executable, "-c", main, "export", "--psd", str(out), str(tmp_path / "fg.png")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert run.stderr.strip() == f"acetate export: error: --psd: cannot write {out}: " + (
        "No such file or directory"
    )
