"""Pixel conversions between Krita's layer bytes and the server's 8-bit straight RGBA."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from reference import LAYOUT, krita_to_rgba8, quantize, srgb_decode

from acetate_krita import pixels
from acetate_krita.pixels import PixelFormat, Rect

EXACT_FORMATS = [
    PixelFormat(depth, linear)
    for depth in ("U8", "U16", "F16", "F32")
    for linear in (False, True)
    if (depth, linear) != ("U8", True)  # 8-bit linear cannot hold every sRGB level
]


def test_swap_red_blue_turns_krita_bgra_into_rgba_and_back() -> None:
    bgra = bytes([10, 20, 30, 40, 1, 2, 3, 4])
    assert pixels.swap_red_blue(bgra) == bytes([30, 20, 10, 40, 3, 2, 1, 4])
    assert pixels.swap_red_blue(pixels.swap_red_blue(bgra)) == bgra


def test_straight_alpha_keeps_colour_under_any_alpha() -> None:
    """Not premultiplied: a fully transparent pixel keeps its colour bytes both ways."""
    rgba = bytes([200, 100, 50, 0, 200, 100, 50, 1, 200, 100, 50, 128])
    for fmt in EXACT_FORMATS:
        assert pixels.to_rgba8(pixels.from_rgba8(rgba, fmt), fmt) == rgba, fmt
    assert pixels.from_rgba8(rgba, pixels.SRGB8)[:3] == bytes([50, 100, 200])


@pytest.mark.parametrize("fmt", EXACT_FORMATS, ids=str)
def test_every_8bit_level_survives_the_round_trip(fmt: PixelFormat) -> None:
    rgba = bytes(range(256)) * 4
    krita = pixels.from_rgba8(rgba, fmt)
    assert len(krita) == len(rgba) * fmt.channel_bytes
    assert pixels.to_rgba8(krita, fmt) == rgba


@pytest.mark.parametrize("linear", [False, True])
def test_16bit_integers_convert_like_the_reference(linear: bool) -> None:
    codes = np.arange(65536, dtype="<u2")
    raw = np.repeat(codes, 4).tobytes()  # every code in every channel
    ours = np.frombuffer(pixels.to_rgba8(raw, PixelFormat("U16", linear)), np.uint8)
    expected = krita_to_rgba8(raw, "U16", linear).reshape(-1)
    assert np.array_equal(ours, expected)


@pytest.mark.parametrize("depth", ["F16", "F32"])
@pytest.mark.parametrize("linear", [False, True])
def test_floats_convert_like_the_reference(depth: str, linear: bool) -> None:
    rng = np.random.default_rng(7)
    values = rng.uniform(-0.2, 1.2, 40_000).astype(LAYOUT[depth][1])
    raw = values.tobytes()
    ours = np.frombuffer(pixels.to_rgba8(raw, PixelFormat(depth, linear)), np.uint8)
    assert np.array_equal(ours, krita_to_rgba8(raw, depth, linear).reshape(-1))


def test_channel_order_per_depth() -> None:
    red = bytes([255, 0, 0, 255])
    assert pixels.from_rgba8(red, PixelFormat("U16")) == struct.pack("<4H", 0, 0, 65535, 65535)
    assert pixels.from_rgba8(red, PixelFormat("F32")) == struct.pack("<4f", 1, 0, 0, 1)
    assert pixels.from_rgba8(red, PixelFormat("F16")) == struct.pack("<4e", 1, 0, 0, 1)


def test_linear_profiles_convert_colour_but_never_alpha() -> None:
    grey = struct.pack("<4f", 0.5, 0.5, 0.5, 0.5)
    rgba = pixels.to_rgba8(grey, PixelFormat("F32", linear=True))
    encoded = quantize(np.array([1.055 * 0.5 ** (1 / 2.4) - 0.055]))[0]
    assert rgba == bytes([encoded, encoded, encoded, 128])
    written = pixels.from_rgba8(bytes([188, 188, 188, 128]), PixelFormat("F32", linear=True))
    colour, _, _, alpha = struct.unpack("<4f", written)
    assert colour == pytest.approx(float(srgb_decode(np.array(188 / 255))), rel=1e-6)
    assert alpha == pytest.approx(128 / 255, rel=1e-6)


def test_8bit_linear_documents_are_encoded_to_srgb() -> None:
    raw = bytes([0, 0, 0, 10, 64, 64, 64, 20, 255, 255, 255, 30])
    ours = pixels.to_rgba8(raw, PixelFormat("U8", linear=True))
    assert ours == krita_to_rgba8(raw, "U8", True).tobytes()


@pytest.mark.parametrize(
    ("model", "depth", "profile", "expected"),
    [
        ("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc", PixelFormat("U8")),
        ("RGBA", "U16", "sRGB-elle-V2-g10.icc", PixelFormat("U16", linear=True)),
        ("RGBA", "F32", "scRGB (linear)", PixelFormat("F32", linear=True)),
        ("RGBA", "F16", "sRGB built-in", PixelFormat("F16")),
        ("RGBA", "U8", "Rec2020-elle-V4-g10.icc", None),  # other primaries: Krita converts
        ("CMYKA", "U8", "Chemical proof", None),
        ("GRAYA", "U8", "Gray-D50-elle-V2-srgbtrc.icc", None),
    ],
)
def test_pixel_format_of_krita_colour_spaces(
    model: str, depth: str, profile: str, expected: PixelFormat | None
) -> None:
    assert pixels.pixel_format(model, depth, profile) == expected


def test_wrong_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        pixels.to_rgba8(b"\x00" * 6, PixelFormat("U16"))
    with pytest.raises(ValueError):
        pixels.from_rgba8(b"\x00" * 5, PixelFormat("U8"))


def test_rect_intersection_clips_a_selection_to_the_canvas() -> None:
    canvas = Rect(0, 0, 100, 80)
    assert Rect(90, 70, 30, 30).intersected(canvas) == Rect(90, 70, 10, 10)
    assert Rect(-5, 10, 10, 5).intersected(canvas) == Rect(0, 10, 5, 5)
    assert Rect(120, 0, 10, 10).intersected(canvas).empty
    assert Rect(3, 4, 5, 6).to_json() == {"left": 3, "top": 4, "width": 5, "height": 6}


def test_thumbnail_keeps_aspect_and_picks_pixels() -> None:
    width, height = 40, 20
    rgba = bytes(v for y in range(height) for x in range(width) for v in (x, y, 0, 255))
    data, w, h = pixels.thumbnail(rgba, width, height, 10)
    assert (w, h) == (10, 5) and len(data) == 4 * w * h
    xs, ys = data[0::4], data[1::4]
    assert list(xs[:10]) == [2 + 4 * i for i in range(10)]
    assert list(ys[::10]) == [2 + 4 * i for i in range(5)]
    assert pixels.thumbnail(rgba, width, height, 100)[1:] == (40, 20)


def test_painted_mask_is_the_alpha_above_zero_cropped_to_its_bounds() -> None:
    width, height = 7, 5
    rgba = bytearray(4 * width * height)
    for x, y, alpha in ((2, 1, 255), (4, 3, 1), (3, 2, 0)):
        rgba[4 * (y * width + x) + 3] = alpha
    rgba[4 * (0 * width + 6)] = 200  # colour under alpha 0 is not paint
    found = pixels.painted_mask(bytes(rgba), width, height)
    assert found is not None
    mask, rect = found
    assert rect == Rect(2, 1, 3, 3)
    assert mask == bytes([255, 0, 0, 0, 0, 0, 0, 0, 255])
    assert pixels.painted_mask(bytes(4 * width * height), width, height) is None
