"""Pixel-frame helpers: model sizes, alpha-correct resizing, selections and feathering."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acetate.engine import framing
from acetate.errors import InputError


@given(st.integers(1, 8192), st.integers(1, 8192), st.sampled_from([256, 512, 1024]))
@settings(max_examples=200, deadline=None)
def test_model_size_is_valid_and_keeps_the_aspect(width: int, height: int, native: int) -> None:
    w, h = framing.model_size(width, height, native)
    assert w % 64 == 0 and h % 64 == 0 and w >= 64 and h >= 64
    scale = (native * native / (width * height)) ** 0.5
    # each side is the exact scaled side rounded to 64 (or the 64-px floor)
    assert abs(w - max(64, width * scale)) <= 32 and abs(h - max(64, height * scale)) <= 32


def test_fit_area_caps_the_pixel_count() -> None:
    assert framing.fit_area(3000, 1000, 1024 * 1024) == (1792, 576)
    assert framing.fit_area(100, 30) == (128, 64)


def test_resize_rgba_has_no_dark_fringe_and_keeps_opaque_colour() -> None:
    image = np.zeros((64, 64, 4), np.uint8)
    image[16:48, 16:48] = (250, 40, 10, 255)  # red square on transparent black
    small = framing.resize_rgba(image, 21, 21)
    visible = small[..., 3] > 0
    # premultiplied resampling: no black bleeding into the colour of partly covered pixels
    assert (small[visible][:, 0] >= 240).all()
    opaque = np.full((40, 30, 4), (12, 34, 56, 255), np.uint8)
    assert (framing.resize_rgba(opaque, 77, 91) == (12, 34, 56, 255)).all()


def test_selection_rect_and_expansion() -> None:
    mask = np.zeros((100, 200), np.uint8)
    assert framing.selection_rect(mask) is None
    mask[10:20, 30:35] = 9
    rect = framing.selection_rect(mask)
    assert rect == framing.Rect(30, 10, 5, 10)
    assert framing.expand_rect(rect, 16, 200, 100) == framing.Rect(14, 0, 37, 36)


@given(st.integers(0, 40))
@settings(max_examples=40, deadline=None)
def test_feathering_never_grows_the_selection(feather: int) -> None:
    mask = np.zeros((80, 80), np.uint8)
    mask[20:60, 10:50] = 255
    mask[20:25, 10:50] = 100
    soft = framing.feather_mask(mask, feather)
    assert (soft <= mask).all() and (soft[mask == 0] == 0).all()
    if feather <= 20:  # (40, 30) is 20 px from the nearest edge
        assert soft[40, 30] == 255


def test_a_selection_touching_the_border_is_not_feathered_there() -> None:
    full = np.full((50, 50), 255, np.uint8)
    assert (framing.feather_mask(full, 8) == 255).all()


def test_place_mask_from_bounds_and_size_errors() -> None:
    crop = np.full((3, 4), 200, np.uint8)
    placed = framing.place_mask(crop, framing.Rect(5, 6, 4, 3), 20, 10)
    assert placed.shape == (10, 20) and placed[6:9, 5:9].min() == 200 and placed.sum() == 200 * 12
    with pytest.raises(InputError) as wrong:
        framing.place_mask(crop, framing.Rect(5, 6, 5, 3), 20, 10)
    assert wrong.value.field == "selection"
    with pytest.raises(InputError) as outside:
        framing.place_mask(crop, framing.Rect(18, 6, 4, 3), 20, 10)
    assert outside.value.field == "selection_bounds"


def test_cover_resize_crops_the_centre() -> None:
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, 100:200] = 255  # the centre third is white
    assert (framing.cover_resize(image, 64, 64) == 255).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("size", [(24, 16), (96, 64)])
def test_resize_keeps_the_decoded_colour_under_zero_alpha(
    dtype: type[np.unsignedinteger], size: tuple[int, int]
) -> None:
    # Alpha as an editable mask shows the colour under alpha 0 again: resizing must not zero it.
    top = np.iinfo(dtype).max
    rgba = np.zeros((48, 32, 4), dtype)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = top // 5 * 4, top // 5 * 2, top // 5
    rgba[10:20, 10:20, 3] = top  # a visible square; everything else is hidden colour
    out = framing.resize_rgba(rgba, *size)
    hidden = out[..., 3] == 0
    assert hidden.any()
    expected = rgba[0, 0, :3].astype(np.int64)
    assert np.abs(out[hidden][:, :3].astype(np.int64) - expected).max() <= top // 255


def test_blend_keeps_the_straight_mix_where_both_are_transparent() -> None:
    from acetate.engine.pipelines.transparent import blend_rgba

    original = np.zeros((8, 8, 4), np.uint8)
    original[..., :3] = (200, 0, 0)
    generated = np.zeros((8, 8, 4), np.uint8)
    generated[..., :3] = (0, 0, 200)
    mask = np.full((8, 8), 255, np.uint8)
    mask[:, :4] = 128
    mixed = blend_rgba(original, generated, mask)
    assert (mixed[..., 3] == 0).all()
    assert (mixed[:, 4:, :3] == (0, 0, 200)).all()  # fully generated: the decoded colour
    assert np.abs(mixed[:, :4, :3].astype(int) - (100, 0, 100)).max() <= 1  # the straight mix
