"""16-bit results on disk: 16-bit layer PNGs that keep their text chunks, a 16-bit PSD
(psd-tools and GIMP read back the exact uint16 arrays) and an ORA of 16-bit PNGs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from gimp_reader import read_with_gimp
from ora_reader import read_ora
from PIL import Image
from psd_tools import PSDImage

from acetate.bitdepth import to_uint8
from acetate.engine.outputs import GenerationResult, LayerImage
from acetate.export.png import decode_png16, encode_png, png_bit_depth, read_png_parameters
from acetate.export.psd import PsdLayer, composite, result_groups
from acetate.export.result import write_psd_for_result, write_result
from acetate.protocol import ResultRecord

PARAMETERS = {"mode": "joint", "model": "tiny-sd15", "prompt": "fumée ☁ smoke", "bit_depth": 16}


def pixels16(rng: np.random.Generator, height: int, width: int, opaque: bool) -> np.ndarray:
    """Random uint16 RGBA; transparent layers hold soft alpha between 8-bit levels."""
    rgba = rng.integers(0, 65536, (height, width, 4), dtype=np.uint16)
    if opaque:
        rgba[..., 3] = 65535
    else:
        rgba[..., 3].flat[:300] = np.arange(300, dtype=np.uint16)  # below one 8-bit level
    return rgba


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, ResultRecord, dict[str, np.ndarray]]:
    """A 16-bit joint result, batch 2, with offsets crossing the canvas edges."""
    rng = np.random.default_rng(16)
    layers = []
    for index in (0, 1):
        layers += [
            LayerImage("background", index, pixels16(rng, 40, 56, True), left=-6 * index),
            LayerImage("foreground", index, pixels16(rng, 24, 20, False), 44, -5 + 30 * index),
            LayerImage("blended", index, pixels16(rng, 40, 56, True), visible=False),
        ]
    result = GenerationResult("joint", "tiny-sd15", PARAMETERS, 56, 40, layers)
    folder = tmp_path_factory.mktemp("sixteen")
    record = write_result(folder, result, job_id="j_16", psd=True, ora=True)
    return folder, record, {layer.file: layer.pixels for layer in layers}


def test_png16_round_trips_with_its_text_chunks(rng: np.random.Generator) -> None:
    rgba = pixels16(rng, 9, 13, opaque=False)
    data = encode_png(rgba, parameters=PARAMETERS)
    assert png_bit_depth(data) == 16 and data[25] == 6  # colour type 6: RGBA
    assert np.array_equal(decode_png16(data), rgba)
    assert read_png_parameters(data) == PARAMETERS
    with Image.open(io.BytesIO(data)) as image:  # an independent reader: Pillow keeps 8 bits
        assert image.text["parameters"].startswith("fumée ☁ smoke\n")
        assert np.array_equal(np.asarray(image.convert("RGBA")), (rgba >> 8).astype(np.uint8))
    opaque = pixels16(rng, 5, 4, opaque=True)
    rgb = encode_png(opaque, parameters=None)
    assert data[25] == 6 and rgb[25] == 2  # opaque: written as RGB, read back with alpha 65535
    assert np.array_equal(decode_png16(rgb), opaque)
    kept = encode_png(opaque, parameters=None, opaque=False, compress_level=1)
    assert kept[25] == 6 and np.array_equal(decode_png16(kept), opaque)


def test_result_pngs_are_16_bit(written) -> None:
    folder, record, pixels = written
    for layer in record.layers:
        data = (folder / layer.file).read_bytes()
        assert png_bit_depth(data) == 16
        assert np.array_equal(decode_png16(data), pixels[layer.file])
        assert read_png_parameters(data) == PARAMETERS


def test_psd_is_16_bit_and_psd_tools_reads_the_exact_arrays(written) -> None:
    folder, record, pixels = written
    psd = PSDImage.open(folder / "layers.psd")
    assert psd.depth == 16 and psd.size == (56, 40)
    read = [layer for group in psd for layer in group]
    assert len(read) == len(record.layers)
    by_batch = sorted(record.layers, key=lambda layer: layer.batch_index)
    for item, layer in zip(read, by_batch, strict=True):
        assert (item.left, item.top, item.visible) == (layer.left, layer.top, layer.visible)
        values = np.rint(item.numpy() * 65535.0).astype(np.uint16)
        assert np.array_equal(values, pixels[layer.file]), layer.file
    # the merged image: our 16-bit composite, as psd-tools reads it back (matte undone)
    merged = np.rint(psd.numpy() * 65535.0)
    ours = composite((56, 40), _psd_layers(record, pixels), 16)
    assert ours.dtype == np.uint16
    covered = ours[..., 3] > 0
    assert np.abs(merged[..., 3] - ours[..., 3]).max() <= 1
    assert np.abs(merged[covered][:, :3] - ours[covered][:, :3]).max() <= 2


def _psd_layers(record: ResultRecord, pixels: dict[str, np.ndarray]) -> list[PsdLayer]:
    groups = result_groups(record, lambda layer: pixels[layer.file])
    return [layer for group in groups for layer in group.layers]


def test_psd_built_later_from_the_16_bit_pngs_is_the_same(written, tmp_path: Path) -> None:
    folder, _, _ = written
    for file in folder.iterdir():
        if file.suffix == ".png" or file.name == "result.json":
            (tmp_path / file.name).write_bytes(file.read_bytes())
    rebuilt = write_psd_for_result(tmp_path)
    assert rebuilt.read_bytes() == (folder / "layers.psd").read_bytes()


def test_gimp_reads_the_16_bit_pixels(written, tmp_path: Path) -> None:
    folder, record, pixels = written
    size, items = read_with_gimp(folder / "layers.psd", tmp_path)
    assert size == (56, 40)
    read_layers = [item for item in items if not item.is_group]
    for item, layer in zip(read_layers, reversed(record.layers), strict=True):
        assert (item.left, item.top) == (layer.left, layer.top)
        read = item.pixels(tmp_path)
        assert read.dtype == np.uint16, "GIMP opened a 16-bit document"
        assert np.array_equal(read, pixels[layer.file]), layer.file


def test_ora_holds_16_bit_pngs(written) -> None:
    folder, record, pixels = written
    document = read_ora(folder / "layers.ora")
    assert len(document.layers) == len(record.layers)
    for layer in document.layers:
        assert layer.pixels.dtype == np.uint16
    read = {(layer.x, layer.y, layer.pixels.tobytes()) for layer in document.layers}
    expected = {(x.left, x.top, pixels[x.file].tobytes()) for x in record.layers}
    assert read == expected
    merged = composite((56, 40), _psd_layers(record, pixels), 16)
    assert np.array_equal(document.merged, merged)
    assert document.thumbnail.dtype == np.uint8
    assert np.array_equal(document.thumbnail, to_uint8(merged))
