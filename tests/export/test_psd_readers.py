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
from PIL import Image

from acetate.engine.outputs import GenerationResult, LayerImage
from acetate.export.psd import PsdGroup, PsdLayer, composite, write_psd
from acetate.export.result import write_result
from acetate.protocol import ResultRecord, group_name

PROMPT = "ガラスの猫 glass cat on a café table"

# Walks the layer tree top → bottom; writes one TSV row per item and each pixel layer as
# <tattoo>.png (svtrans 1: colour under transparent pixels kept). Definitions and the call
# must be in a single -b expression.
GIMP_SCRIPT = r"""
(define (acetate-dump item port dir prefix)
  (let* ((name (car (gimp-item-get-name item)))
         (offsets (gimp-drawable-offsets item))
         (tattoo (car (gimp-item-get-tattoo item)))
         (group (= 1 (car (gimp-item-is-group item)))))
    (for-each (lambda (value) (display value port) (display "\t" port))
              (list (string-append prefix name) (if group "group" "layer")
                    (car offsets) (cadr offsets)
                    (car (gimp-drawable-width item)) (car (gimp-drawable-height item))
                    (car (gimp-item-get-visible item))))
    (display tattoo port) (newline port)
    (if group
        (acetate-walk (vector->list (cadr (gimp-item-get-children item))) port dir
                      (string-append prefix name "/"))
        (let ((file (string-append dir "/" (number->string tattoo) ".png")))
          (file-png-save2 RUN-NONINTERACTIVE (car (gimp-item-get-image item)) item
                          file file 0 1 0 0 0 0 0 0 1)))))
(define (acetate-walk items port dir prefix)
  (for-each (lambda (item) (acetate-dump item port dir prefix)) items))
(define (acetate-list psd dir)
  (let* ((image (car (gimp-file-load RUN-NONINTERACTIVE psd psd)))
         (port (open-output-file (string-append dir "/layers.tsv"))))
    (display (car (gimp-image-width image)) port) (display "\t" port)
    (display (car (gimp-image-height image)) port) (newline port)
    (acetate-walk (vector->list (cadr (gimp-image-get-layers image))) port dir "")
    (close-output-port port)))
"""


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
    gimp = require("gimp")
    psd, record, pixels = document
    call = f'(begin {GIMP_SCRIPT} (acetate-list "{psd}" "{tmp_path}") (gimp-quit 0))'
    subprocess.run(
        [gimp, "-i", "-d", "-f", "--batch-interpreter=plug-in-script-fu-eval", "-b", call],
        check=True,
        capture_output=True,
        timeout=180,
    )
    size, *rows = (tmp_path / "layers.tsv").read_text("utf-8").splitlines()
    assert size.split("\t") == ["56", "40"]
    items = [row.split("\t") for row in rows]

    # GIMP lists top → bottom and makes duplicate names unique with " #N".
    groups = [item for item in items if item[1] == "group"]
    assert [item[0] for item in groups] == [group_name(PROMPT, 1), group_name(PROMPT, 0)]
    assert all(item[6] == "1" for item in groups)
    read_layers = [item for item in items if item[1] == "layer"]
    expected = list(reversed(record.layers))
    assert len(read_layers) == len(expected)
    for (path, _, left, top, width, height, visible, tattoo), layer in zip(
        read_layers, expected, strict=True
    ):
        group, name = path.split("/")
        assert group == group_name(PROMPT, layer.batch_index)
        assert re.fullmatch(re.escape(layer.name) + r"( #\d+)?", name), name
        assert (int(left), int(top), int(width), int(height)) == (
            layer.left,
            layer.top,
            layer.width,
            layer.height,
        )
        assert visible == ("1" if layer.visible else "0")
        with Image.open(tmp_path / f"{tattoo}.png") as image:
            exported = np.asarray(image.convert("RGBA"))
        assert np.array_equal(exported, pixels[layer.file]), layer.file


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
