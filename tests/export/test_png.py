"""Layer PNGs: byte-exact straight alpha, RGB when opaque, A1111 infotext + JSON parameters."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from acetate.export import atomic
from acetate.export.png import (
    DEFAULT_COMPRESS_LEVEL,
    FAST_COMPRESS_LEVEL,
    encode_png,
    infotext,
    read_png_parameters,
    write_png,
)

PARAMETERS = {
    "mode": "fg",
    "model": "tiny-sdxl",
    "prompt": "a glass cat, studio light\nsecond line 猫",
    "negative_prompt": "blurry, lowres",
    "seed": 42,
    "steps": 20,
    "cfg": 7.5,
    "scheduler": "dpm++_2m_karras",
    "width": 64,
    "height": 32,
    "batch": 1,
    "strength": 0.7,
    "layer_weight": 1.0,
    "canvas": {"width": 10, "height": 10, "sha256": "ab"},
}
# The key/value pattern A1111 (modules/infotext_utils.py) parses the last infotext line with.
A1111_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data), formats=["PNG"])
    image.load()
    return image


def parse_a1111(text: str) -> tuple[str, str, dict[str, str]]:
    """Split infotext the way A1111 does: prompt lines, `Negative prompt:`, last-line fields."""
    *lines, last = text.split("\n")
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    fields = {}
    for key, value in A1111_PARAM.findall(last):
        fields[key] = json.loads(value) if value.startswith('"') else value
    return "\n".join(prompt), "\n".join(negative), fields


@pytest.mark.parametrize("level", [DEFAULT_COMPRESS_LEVEL, FAST_COMPRESS_LEVEL, 0])
def test_rgba_round_trip_is_byte_exact(noisy_rgba, level):
    rgba = noisy_rgba(37, 53)
    image = decode(encode_png(rgba, parameters=None, compress_level=level))
    assert image.mode == "RGBA"
    assert np.array_equal(np.asarray(image), rgba)  # incl. colour under alpha 0..254


def test_opaque_layers_become_rgb(opaque_rgba, noisy_rgba):
    rgba = opaque_rgba(20, 30)
    auto = decode(encode_png(rgba, parameters=None))
    assert auto.mode == "RGB"
    assert np.array_equal(np.asarray(auto), rgba[..., :3])
    assert decode(encode_png(rgba, parameters=None, opaque=True)).mode == "RGB"
    assert decode(encode_png(rgba, parameters=None, opaque=False)).mode == "RGBA"
    with pytest.raises(ValueError, match="alpha"):
        encode_png(noisy_rgba(20, 30), parameters=None, opaque=True)


def test_rejects_non_rgba():
    with pytest.raises(ValueError, match="RGBA"):
        encode_png(np.zeros((4, 4, 3), np.uint8), parameters=None)
    with pytest.raises(ValueError, match="RGBA"):
        encode_png(np.zeros((4, 4, 4), np.float32), parameters=None)


def test_parameters_chunk_reads_like_a1111(noisy_rgba):
    image = decode(encode_png(noisy_rgba(8, 8), parameters=PARAMETERS))
    prompt, negative, fields = parse_a1111(image.text["parameters"])
    assert prompt == PARAMETERS["prompt"]
    assert negative == "blurry, lowres"
    assert fields["Steps"] == "20"
    assert fields["Sampler"] == "DPM++ 2M Karras"
    assert fields["CFG scale"] == "7.5"
    assert fields["Seed"] == "42"
    assert fields["Size"] == "64x32"
    assert fields["Model"] == "tiny-sdxl"
    assert fields["Mode"] == "fg"
    assert "Denoising strength" not in fields  # fg has no strength


def test_acetate_chunk_holds_the_full_parameters(noisy_rgba):
    data = encode_png(noisy_rgba(8, 8), parameters=PARAMETERS)
    assert read_png_parameters(data) == PARAMETERS
    assert json.loads(decode(data).text["acetate"]) == PARAMETERS
    assert read_png_parameters(encode_png(noisy_rgba(8, 8), parameters=None)) is None


def test_infotext_quotes_values_that_would_break_the_line():
    params = dict(PARAMETERS, model="my, model: v2", negative_prompt="", mode="img2img")
    _, negative, fields = parse_a1111(infotext(params))
    assert negative == ""
    assert fields["Model"] == "my, model: v2"
    assert fields["Denoising strength"] == "0.7"


def test_infotext_size_falls_back_to_the_image():
    params = dict(PARAMETERS, width=None, height=None, mode="bg2fg")
    assert parse_a1111(infotext(params, (300, 200)))[2]["Size"] == "300x200"


def test_fast_level_is_valid_and_not_smaller(rng):
    # Smooth content, as generated images are: compression level matters.
    ramp = np.linspace(0, 255, 256, dtype=np.float32)
    rgba = np.dstack([np.add.outer(ramp, ramp) / 2] * 4).astype(np.uint8)
    fast = encode_png(rgba, parameters=None, compress_level=FAST_COMPRESS_LEVEL)
    default = encode_png(rgba, parameters=None)
    assert np.array_equal(np.asarray(decode(fast)), np.asarray(decode(default)))
    assert len(fast) >= len(default)


def test_write_png_is_atomic(tmp_path: Path, noisy_rgba, monkeypatch):
    path = tmp_path / "foreground.png"
    first = noisy_rgba(10, 10)
    write_png(path, first, parameters=PARAMETERS)
    assert np.array_equal(np.asarray(decode(path.read_bytes())), first)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(OSError, match="space"):
        write_png(path, noisy_rgba(10, 10), parameters=PARAMETERS)
    assert os.listdir(tmp_path) == ["foreground.png"]  # no temporary file left
    assert np.array_equal(np.asarray(decode(path.read_bytes())), first)  # old file intact
