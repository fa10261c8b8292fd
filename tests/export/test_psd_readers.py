"""Our PSDs as independent readers see them: GIMP 2.10 (script-fu batch) and ImageMagick 6.

Each test skips, with the reason, only when its tool is not installed (CI installs both).
GIMP costs seconds per launch, so one launch reads the whole document.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from gimp_reader import read_with_gimp

from acetate.engine.outputs import GenerationResult, LayerImage
from acetate.export.psd import PsdGroup, PsdLayer, composite, write_psd
from acetate.export.result import write_result
from acetate.protocol import ResultRecord, group_name

PROMPT = "ガラスの猫 glass cat on a café table"


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (CI installs it)")
    return path


@pytest.fixture(scope="module")
def document(tmp_path_factory) -> tuple[Path, ResultRecord, dict[str, np.ndarray]]:
    """A joint result, batch 2, written as the server writes it; layers cross the canvas edges."""
    rng = np.random.default_rng(99)

    def pixels(height: int, width: int, opaque: bool) -> np.ndarray:
        rgba = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        if opaque:
            rgba[..., 3] = 255
        else:
            rgba[..., 3].flat[:256] = np.arange(256, dtype=np.uint8)
        return rgba

    layers = []
    for index in (0, 1):
        layers += [
            LayerImage("background", index, pixels(40, 56, True), left=-6 * index, top=0),
            LayerImage("foreground", index, pixels(24, 20, False), left=44, top=-5 + 30 * index),
            LayerImage("blended", index, pixels(40, 56, True)),
        ]
    parameters = {"mode": "joint", "model": "tiny-sd15", "prompt": PROMPT}
    result = GenerationResult("joint", "tiny-sd15", parameters, 56, 40, layers)
    folder = tmp_path_factory.mktemp("readers")
    record = write_result(folder, result, job_id="j_readers", psd=True)
    return folder / "layers.psd", record, {layer.file: layer.pixels for layer in layers}


def test_gimp_reads_structure_and_pixels(document, tmp_path: Path):
    psd, record, pixels = document
    size, items = read_with_gimp(psd, tmp_path)
    assert size == (56, 40)

    # GIMP lists top → bottom and makes duplicate names unique with " #N".
    groups = [item for item in items if item.is_group]
    assert [item.path for item in groups] == [group_name(PROMPT, 1), group_name(PROMPT, 0)]
    assert all(item.visible for item in groups)
    read_layers = [item for item in items if not item.is_group]
    expected = list(reversed(record.layers))
    assert len(read_layers) == len(expected)
    for item, layer in zip(read_layers, expected, strict=True):
        group, name = item.path.split("/")
        assert group == group_name(PROMPT, layer.batch_index)
        assert re.fullmatch(re.escape(layer.name) + r"( #\d+)?", name), name
        assert (item.left, item.top, item.width, item.height) == (
            layer.left,
            layer.top,
            layer.width,
            layer.height,
        )
        assert item.visible == layer.visible
        assert np.array_equal(item.pixels(tmp_path), pixels[layer.file]), layer.file


def imagemagick(*args: str) -> bytes:
    return subprocess.run(args, check=True, capture_output=True, timeout=60).stdout


def test_imagemagick_reads_geometry_and_pixels(document):
    identify, convert = require("identify"), require("convert")
    psd, record, pixels = document
    text = imagemagick(identify, "-format", "%w %h %X %Y %[compose] %l\n", str(psd)).decode()
    merged, *rows = [line.split(" ", 5) for line in text.splitlines()]
    assert merged[:4] == ["56", "40", "+0", "+0"]
    assert len(rows) == len(record.layers)  # IM6 flattens groups away
    for scene, (row, layer) in enumerate(zip(rows, record.layers, strict=True), start=1):
        width, height, left, top, compose, label = row
        assert (int(width), int(height), int(left), int(top)) == (
            layer.width,
            layer.height,
            layer.left,
            layer.top,
        )
        assert compose == ("Over" if layer.visible else "None")  # how IM6 shows hidden layers
        assert label == layer.name  # ASCII names survive in the legacy Pascal field
        raw = imagemagick(convert, f"{psd}[{scene}]", "-depth", "8", "rgba:-")
        read = np.frombuffer(raw, np.uint8).reshape(layer.height, layer.width, 4)
        expected = pixels[layer.file]
        assert np.array_equal(read[..., 3], expected[..., 3]), layer.file
        seen = expected[..., 3] > 0  # IM may drop colour where alpha is 0
        assert np.array_equal(read[seen][:, :3], expected[seen][:, :3]), layer.file


def test_imagemagick_reads_the_merged_composite(tmp_path: Path):
    """A transparent document (fg, batch 2): IM un-mattes the merged image with its alpha."""
    convert = require("convert")
    rng = np.random.default_rng(5)
    layers = [
        PsdLayer("foreground", rng.integers(0, 256, (30, 40, 4), dtype=np.uint8), -8, 12),
        PsdLayer("foreground", rng.integers(0, 256, (30, 40, 4), dtype=np.uint8), 20, -6),
    ]
    path = tmp_path / "transparent.psd"
    write_psd(path, (48, 36), [PsdGroup(f"p #{i + 1}", [layer]) for i, layer in enumerate(layers)])
    raw = imagemagick(convert, f"{path}[0]", "-depth", "8", "rgba:-")
    read = np.frombuffer(raw, np.uint8).reshape(36, 48, 4).astype(int)
    expected = composite((48, 36), layers).astype(int)
    assert 0 < expected[..., 3].mean() < 255
    assert np.abs(read[..., 3] - expected[..., 3]).max() <= 1
    visible = expected[..., 3] >= 32  # un-matting 8-bit values is precise only at high alpha
    assert np.abs(read[..., :3] - expected[..., :3])[visible].max() <= 4
