"""LayerDiffusion RGB padding: opaque colour kept, colour continued under transparency."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from acetate.engine.nets.rgb_padding import pad_rgb, pad_rgb_tensor


def _random_rgba(seed: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgba = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    rgba[..., 3] = rng.choice(np.array([0, 255, 128, 7], np.uint8), (height, width))
    return rgba


@settings(max_examples=40, deadline=None)
@given(
    arrays(
        np.uint8,
        st.tuples(st.integers(1, 40), st.integers(1, 40), st.just(4)),
        elements=st.integers(0, 255),
    )
)
def test_output_is_float_rgb_in_unit_range(rgba: np.ndarray) -> None:
    padded = pad_rgb(rgba)
    assert padded.shape == (*rgba.shape[:2], 3)
    assert padded.dtype == np.float32
    assert np.isfinite(padded).all()
    assert padded.min() >= 0.0
    assert padded.max() <= 1.0 + 1e-6


def test_opaque_pixels_keep_their_colour_exactly() -> None:
    rgba = _random_rgba(0, 48, 80)
    padded = pad_rgb(rgba)
    opaque = rgba[..., 3] == 255
    assert opaque.any()
    np.testing.assert_array_equal(padded[opaque], rgba[..., :3][opaque].astype(np.float32) / 255)


def test_fully_opaque_image_is_unchanged() -> None:
    rgba = _random_rgba(1, 33, 17)
    rgba[..., 3] = 255
    np.testing.assert_array_equal(pad_rgb(rgba), rgba[..., :3].astype(np.float32) / 255)


def test_fully_transparent_image_gives_black_not_nan() -> None:
    padded = pad_rgb(np.zeros((64, 40, 4), np.uint8))
    np.testing.assert_array_equal(padded, np.zeros((64, 40, 3), np.float32))


def test_colour_is_continued_under_transparent_pixels() -> None:
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[:, :32] = (200, 40, 10, 255)  # opaque left half; right half transparent (and black)
    padded = pad_rgb(rgba)
    np.testing.assert_allclose(
        padded[:, 32:], np.broadcast_to([200 / 255, 40 / 255, 10 / 255], (64, 32, 3)), atol=1e-5
    )


def test_semi_transparent_pixels_blend_with_their_surroundings() -> None:
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., :3] = (0, 0, 255)
    rgba[..., 3] = 255
    rgba[16, 16] = (255, 0, 0, 128)  # half-transparent red in a blue field
    red, green, blue = pad_rgb(rgba)[16, 16]
    # colour = premultiplied own colour + (1 - alpha) × the padding from the neighbourhood
    assert 128 / 255 <= red < 0.75
    assert green == pytest.approx(0.0, abs=1e-6)
    assert 0.3 < blue <= 127 / 255 + 1e-6


def test_tensor_entry_point_matches_per_image_padding_exactly() -> None:
    images = np.stack([_random_rgba(2, 40, 56), _random_rgba(3, 40, 56)])
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    padded = pad_rgb_tensor(tensor)
    assert padded.shape == (2, 3, 40, 56)
    assert padded.dtype == torch.float32
    for image, result in zip(images, padded, strict=True):
        np.testing.assert_array_equal(result.permute(1, 2, 0).numpy(), pad_rgb(image))


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((8, 8, 4), np.float32), "uint8"),
        (np.zeros((8, 8, 3), np.uint8), "H×W×4"),
    ],
)
def test_bad_arrays_are_refused(array: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pad_rgb(array)


def test_bad_tensor_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[B,4,H,W\]"):
        pad_rgb_tensor(torch.zeros(1, 3, 8, 8))
