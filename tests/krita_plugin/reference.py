"""Independent numpy references for the plugin's pixel conversions (tests only)."""

from __future__ import annotations

import numpy as np

#: Krita's channel order per depth (index of R, G, B, A in a pixel), and the numpy dtype.
LAYOUT = {
    "U8": ((2, 1, 0, 3), "<u1", 255.0),
    "U16": ((2, 1, 0, 3), "<u2", 65535.0),
    "F16": ((0, 1, 2, 3), "<f2", 1.0),
    "F32": ((0, 1, 2, 3), "<f4", 1.0),
}


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    return np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)


def quantize(values: np.ndarray) -> np.ndarray:
    """[0, 1] → 8-bit, half-way up."""
    return np.floor(np.clip(values, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def krita_to_rgba8(raw: bytes, depth: str, linear: bool) -> np.ndarray:
    """Krita pixel bytes (RGB colour model) → N×4 straight 8-bit sRGB RGBA."""
    order, dtype, scale = LAYOUT[depth]
    values = np.frombuffer(raw, dtype).reshape(-1, 4).astype(np.float64) / scale
    values = values[:, list(order)]
    colour = srgb_encode(values[:, :3]) if linear else values[:, :3]
    return np.concatenate([quantize(colour), quantize(values[:, 3:])], axis=1)


def rgba16_to_krita(raw: bytes, depth: str, linear: bool) -> bytes:
    """16-bit straight sRGB RGBA (little-endian uint16) → Krita pixel bytes at `depth` (RGB
    colour model): U16 codes as they are (through the sRGB curve when `linear`, rounded),
    F16/F32 values in [0, 1], U8 rounded to 8 bits."""
    order, dtype, scale = LAYOUT[depth]
    values = np.frombuffer(raw, "<u2").reshape(-1, 4).astype(np.float64) / 65535.0
    if linear:
        values[:, :3] = srgb_decode(values[:, :3])
    if depth in ("U8", "U16"):
        values = np.floor(values * scale + 0.5)
    out = np.empty_like(values)
    out[:, list(order)] = values
    return out.astype(dtype).tobytes()
