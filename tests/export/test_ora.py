"""OpenRaster results: names, groups, offsets, visibility and straight-alpha pixels byte-exact,
as an independent reader written from the spec sees them (tests/ora_reader.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ora_reader import read_ora

import acetate.cli
from acetate.engine.outputs import GenerationResult, LayerImage
from acetate.export.ora import THUMBNAIL_SIDE, build_ora
from acetate.export.psd import PsdGroup, PsdLayer, composite
from acetate.export.result import read_result, write_ora_for_result, write_result
from acetate.protocol import group_name

PROMPT = "ガラスの猫 glass cat"


@pytest.fixture
def result() -> GenerationResult:
    """A joint result, batch 2: layers cross the canvas edges, colour kept under alpha 0."""
    rng = np.random.default_rng(3)

    def pixels(height: int, width: int, opaque: bool) -> np.ndarray:
        rgba = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        if opaque:
            rgba[..., 3] = 255
        else:
            rgba[..., 3].flat[:40] = 0
        return rgba

    layers = []
    for index in (0, 1):
        layers += [
            LayerImage("background", index, pixels(40, 56, True), left=-6 * index),
            LayerImage("foreground", index, pixels(24, 20, False), left=44, top=-5 + 30 * index),
            LayerImage("blended", index, pixels(40, 56, True)),
        ]
    parameters = {"mode": "joint", "model": "tiny-sd15", "prompt": PROMPT}
    return GenerationResult("joint", "tiny-sd15", parameters, 56, 40, layers)


def test_a_result_ora_keeps_groups_names_offsets_visibility_and_pixels(
    result: GenerationResult, tmp_path: Path
) -> None:
    record = write_result(tmp_path, result, job_id="j_ora", psd=False, ora=True)
    assert record.ora == "layers.ora" and read_result(tmp_path).ora == "layers.ora"
    document = read_ora(tmp_path / "layers.ora")
    assert (document.width, document.height) == (56, 40)
    # stack.xml lists the top group first: batch item 2 is on top.
    assert document.groups == [(group_name(PROMPT, 1), True), (group_name(PROMPT, 0), True)]
    pixels = {layer.file: layer.pixels for layer in result.layers}
    assert len(document.layers) == len(record.layers)
    for read, layer in zip(document.layers, record.layers, strict=True):
        assert read.groups == (group_name(PROMPT, layer.batch_index),)
        assert (read.name, read.x, read.y, read.visible) == (
            layer.name,
            layer.left,
            layer.top,
            layer.visible,
        )
        assert np.array_equal(read.pixels, pixels[layer.file]), layer.file
    assert [layer.visible for layer in document.layers] == [True, True, False] * 2
    expected = composite(
        (56, 40), [PsdLayer(r.name, r.pixels, r.x, r.y, r.visible) for r in document.layers]
    )
    assert np.array_equal(document.merged, expected)
    assert document.thumbnail.shape[:2] == (40, 56)  # small canvases are not enlarged


def test_the_same_layers_give_the_same_bytes_and_a_bounded_thumbnail() -> None:
    rgba = np.full((300, 600, 4), 200, np.uint8)
    groups = [PsdGroup(None, [PsdLayer("only", rgba)])]
    first = build_ora((600, 300), groups)
    assert first == build_ora((600, 300), groups)
    document = read_ora(first)
    assert document.thumbnail.shape[:2] == (128, THUMBNAIL_SIDE)
    assert document.groups == [] and document.layers[0].groups == ()


def test_built_lazily_from_a_folder_and_recorded(result: GenerationResult, tmp_path: Path) -> None:
    write_result(tmp_path, result, job_id="j_ora", psd=False)
    assert read_result(tmp_path).ora is None
    path = write_ora_for_result(tmp_path)
    assert path == tmp_path / "layers.ora" and read_result(tmp_path).ora == "layers.ora"
    eager = tmp_path / "eager"
    write_result(eager, result, job_id="j_ora", psd=False, ora=True)
    assert path.read_bytes() == (eager / "layers.ora").read_bytes()


def test_cli_export_writes_psd_and_ora_or_says_which_flag_is_missing(
    result: GenerationResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    write_result(run, result, job_id="j_ora", psd=False, ora=True)
    out_ora, out_psd = tmp_path / "out.ora", tmp_path / "out.psd"
    assert acetate.cli.main(["export", "--ora", str(out_ora), "--psd", str(out_psd), str(run)]) == 0
    assert out_ora.read_bytes() == (run / "layers.ora").read_bytes()
    assert out_psd.is_file()
    assert capsys.readouterr().out.split() == [str(out_psd), str(out_ora)]
    assert acetate.cli.main(["export", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "acetate export: error: give --psd OUT.psd and/or --ora OUT.ora"
