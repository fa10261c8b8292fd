"""Shared fixtures for the export tests: pixels that exercise every alpha value."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

MakeRgba = Callable[[int, int], np.ndarray]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def noisy_rgba(rng: np.random.Generator) -> MakeRgba:
    """Random straight RGBA in which every alpha value 0..255 occurs (colour under alpha too)."""

    def make(height: int, width: int) -> np.ndarray:
        rgba = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        count = min(256, height * width)
        rgba[..., 3].flat[:count] = np.arange(count, dtype=np.uint8)
        return rgba

    return make


@pytest.fixture
def opaque_rgba(rng: np.random.Generator) -> MakeRgba:
    """Random RGB with alpha 255."""

    def make(height: int, width: int) -> np.ndarray:
        rgba = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        rgba[..., 3] = 255
        return rgba

    return make
