"""Layer pixels at 8 or 16 bits per channel: the dtype of each depth and the conversions.

Result layers are uint8 (the default, `bit_depth` 8) or uint16 (`bit_depth` 16, kept from the
float decoder output). An 8-bit source carried into a 16-bit result is scaled by 257 (255 →
65535, exactly); 16-bit values brought down to 8 bits are rounded to the nearest level.
"""

from __future__ import annotations

import numpy as np

#: `bit_depth` → the dtype of a layer's pixels.
DTYPES: dict[int, type[np.unsignedinteger]] = {8: np.uint8, 16: np.uint16}


def bit_depth_of(pixels: np.ndarray) -> int:
    """8 or 16: the depth of uint8 or uint16 pixels (`ValueError` for anything else)."""
    for depth, dtype in DTYPES.items():
        if pixels.dtype == dtype:
            return depth
    raise ValueError(f"expected uint8 or uint16 pixels, got {pixels.dtype}")


def full_scale(pixels: np.ndarray) -> float:
    """The value of a fully opaque / full-intensity channel: 255.0 or 65535.0."""
    return float(np.iinfo(DTYPES[bit_depth_of(pixels)]).max)


def to_depth(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """`pixels` at `bit_depth`: unchanged when already there, 8 → 16 scaled by 257 (exact),
    16 → 8 rounded (`to_uint8`)."""
    have = bit_depth_of(pixels)
    if have == bit_depth:
        return pixels
    if bit_depth == 16:
        return pixels.astype(np.uint16) * np.uint16(257)
    return to_uint8(pixels)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """8-bit pixels: uint8 unchanged, uint16 rounded to the nearest 8-bit level (v / 257)."""
    if bit_depth_of(pixels) == 8:
        return pixels
    # round(v / 257) for integers: v / 257 is never exactly halfway, so floor((v + 128) / 257).
    return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)


def unit_to_pixels(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float values in [0, 1] → pixels at `bit_depth` (rounded, clipped)."""
    scale = float(np.iinfo(DTYPES[bit_depth]).max)
    return np.clip(np.rint(values * scale), 0, scale).astype(DTYPES[bit_depth])
