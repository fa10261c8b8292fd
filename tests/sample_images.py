"""Test images shared by the engine and server tests."""

from __future__ import annotations

import numpy as np


def rgba(width: int, height: int, seed: int = 0, *, opaque: bool = False) -> np.ndarray:
    """Random colour with a centred disc of alpha 255 on transparent (or fully opaque)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    disc = ((xx - width / 2) ** 2 + (yy - height / 2) ** 2) < (min(width, height) / 3) ** 2
    image[..., 3] = 255 if opaque else np.where(disc, 255, 0)
    return image
