"""Pixel-frame helpers for editor modes: valid model sizes, alpha-correct resizing, selections.

Editor modes accept any input size: the input is scaled to a model size (multiples of 64 near
the family's native pixel count, aspect kept) and the result scaled back to the input's frame.
Pure numpy/OpenCV: no torch here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from acetate.bitdepth import bit_depth_of, full_scale, to_depth, unit_to_pixels
from acetate.errors import InputError


@dataclass(frozen=True)
class Rect:
    """A pixel rectangle; right/bottom exclusive."""

    left: int
    top: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def bottom(self) -> int:
        return self.top + self.height

    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)


def model_size(width: int, height: int, native: int, *, max_scale: float = 1.0) -> tuple[int, int]:
    """A multiple-of-64 size with the aspect of `width`×`height` and about `native`² pixels.

    `max_scale` > 1 allows a larger area (upscale mode works above the native size).
    """
    target = native * native * max_scale
    scale = math.sqrt(target / float(width * height))
    w = max(64, round(width * scale / 64.0) * 64)
    h = max(64, round(height * scale / 64.0) * 64)
    return w, h


def fit_area(width: float, height: float, max_pixels: float | None = None) -> tuple[int, int]:
    """`width`×`height` rounded to multiples of 64 (at least 64), shrunk to `max_pixels`."""
    if max_pixels is not None and width * height > max_pixels:
        shrink = math.sqrt(max_pixels / (width * height))
        width, height = width * shrink, height * shrink
    return max(64, round(width / 64.0) * 64), max(64, round(height / 64.0) * 64)


def resize_rgba(rgba: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize straight-alpha RGBA (uint8 or uint16, kept) without dark fringes (resampled
    premultiplied)."""
    if rgba.shape[1] == width and rgba.shape[0] == height:
        return rgba.copy()
    shrinking = width * height < rgba.shape[0] * rgba.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4
    values = rgba.astype(np.float32) / full_scale(rgba)
    alpha = values[..., 3:4]
    premultiplied = np.concatenate([values[..., :3] * alpha, alpha], axis=2)
    resized = cv2.resize(premultiplied, (width, height), interpolation=interpolation)
    resized = np.clip(resized, 0.0, 1.0)
    out_alpha = resized[..., 3:4]
    # Where nothing is left to divide by, keep the decoded colour resampled straight (not 0):
    # users may turn alpha into an editable mask and paint the hidden colour back in.
    hidden = cv2.resize(values[..., :3], (width, height), interpolation=interpolation)
    colour = np.where(out_alpha > 1e-6, resized[..., :3] / np.maximum(out_alpha, 1e-6), hidden)
    out = np.concatenate([np.clip(colour, 0.0, 1.0), out_alpha], axis=2)
    return unit_to_pixels(out, bit_depth_of(rgba))


def resize_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an H×W uint8 mask (area when shrinking, linear when enlarging)."""
    if mask.shape[1] == width and mask.shape[0] == height:
        return mask.copy()
    shrinking = width * height < mask.shape[0] * mask.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(mask, (width, height), interpolation=interpolation)


def over(bottom: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Straight-alpha RGBA `top` composited over `bottom` (same size), at `top`'s depth (uint8
    or uint16; an 8-bit `bottom` under a 16-bit `top` is scaled by 257 first)."""
    depth = bit_depth_of(top)
    b = to_depth(bottom, depth).astype(np.float32) / full_scale(top)
    t = top.astype(np.float32) / full_scale(top)
    top_alpha, bottom_alpha = t[..., 3:], b[..., 3:]
    alpha = top_alpha + bottom_alpha * (1.0 - top_alpha)
    colour = t[..., :3] * top_alpha + b[..., :3] * bottom_alpha * (1.0 - top_alpha)
    colour = np.where(alpha > 1e-6, colour / np.maximum(alpha, 1e-6), 0.0)
    out = np.concatenate([np.clip(colour, 0.0, 1.0), alpha], axis=2)
    return unit_to_pixels(out, depth)


def limit_alpha(pixels: np.ndarray, mask: np.ndarray) -> None:
    """Multiply RGBA pixels' alpha (uint8 or uint16) by an 8-bit mask (255 = kept), rounded,
    in place."""
    alpha = pixels[..., 3].astype(np.uint32) * mask.astype(np.uint32)
    pixels[..., 3] = ((alpha + 127) // 255).astype(pixels.dtype)


def grey_composite(rgba: np.ndarray) -> np.ndarray:
    """RGBA (uint8 or uint16) → RGB float32 in [0,1] over 50 % grey (how LayerDiffusion
    conditions look)."""
    values = rgba.astype(np.float32) / full_scale(rgba)
    alpha = values[..., 3:4]
    return 0.5 + (values[..., :3] - 0.5) * alpha


def selection_rect(mask: np.ndarray, threshold: int = 0) -> Rect | None:
    """Bounding box of the pixels of a canvas-sized mask above `threshold`, or None if empty."""
    rows = np.flatnonzero((mask > threshold).any(axis=1))
    cols = np.flatnonzero((mask > threshold).any(axis=0))
    if rows.size == 0:
        return None
    return Rect(
        int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)
    )


def expand_rect(rect: Rect, margin: int, width: int, height: int) -> Rect:
    """`rect` grown by `margin` on every side, clamped to a `width`×`height` canvas."""
    left = max(0, rect.left - margin)
    top = max(0, rect.top - margin)
    right = min(width, rect.right + margin)
    bottom = min(height, rect.bottom + margin)
    return Rect(left, top, right - left, bottom - top)


def feather_mask(mask: np.ndarray, feather: int) -> np.ndarray:
    """Soften a uint8 mask's edge inward by about `feather` pixels; never grows it.

    Distance to the unselected area, ramped over `feather` px, times the original coverage:
    pixels outside the selection stay exactly 0, deep inside stay as selected. The image border
    is not an edge (a selection touching it continues past it).
    """
    if feather <= 0:
        return mask.copy()
    inside = (mask > 0).astype(np.uint8)
    padded = np.pad(inside, 1, mode="edge")
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    ramp = np.clip(distance / float(feather), 0.0, 1.0)
    out = ramp * (mask.astype(np.float32) / 255.0)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def place_mask(
    selection: np.ndarray, bounds: Rect | None, width: int, height: int, field: str = "selection"
) -> np.ndarray:
    """A canvas-sized mask from a canvas-sized one, or from one cropped to `bounds`."""
    if bounds is None:
        if selection.shape != (height, width):
            raise InputError(
                f"{field} is {selection.shape[1]}×{selection.shape[0]} but the canvas is "
                f"{width}×{height} (send a canvas-sized mask or selection_bounds)",
                field=field,
            )
        return selection
    if selection.shape != (bounds.height, bounds.width):
        raise InputError(
            f"{field} is {selection.shape[1]}×{selection.shape[0]} but selection_bounds is "
            f"{bounds.width}×{bounds.height}",
            field=field,
        )
    if bounds.right > width or bounds.bottom > height:
        raise InputError("selection_bounds extends past the canvas", field="selection_bounds")
    canvas = np.zeros((height, width), dtype=np.uint8)
    canvas[bounds.slices()] = selection
    return canvas


def canny(rgb: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """Canny edges of an RGB(A) uint8 image as a 3-channel uint8 control image."""
    gray = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, low, high)
    return np.stack([edges] * 3, axis=2)


def cover_crop_box(
    width: int, height: int, target_w: int, target_h: int
) -> tuple[int, int, int, int]:
    """The centred crop (left, top, w, h) of a `width`×`height` image with the target's aspect."""
    scale = max(target_w / width, target_h / height)
    crop_w = min(width, max(1, round(target_w / scale)))
    crop_h = min(height, max(1, round(target_h / scale)))
    return (width - crop_w) // 2, (height - crop_h) // 2, crop_w, crop_h


def cover_resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale to cover `width`×`height` and centre-crop (the official "Crop and Resize")."""
    left, top, crop_w, crop_h = cover_crop_box(rgb.shape[1], rgb.shape[0], width, height)
    crop = np.ascontiguousarray(rgb[top : top + crop_h, left : left + crop_w])
    if crop.shape[1] == width and crop.shape[0] == height:
        return crop.copy()
    shrinking = width * height < crop.shape[0] * crop.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4
    return cv2.resize(crop, (width, height), interpolation=interpolation)


def cover_resize_rgba(rgba: np.ndarray, width: int, height: int) -> np.ndarray:
    """`cover_resize` for straight-alpha RGBA (resampled premultiplied)."""
    left, top, crop_w, crop_h = cover_crop_box(rgba.shape[1], rgba.shape[0], width, height)
    return resize_rgba(
        np.ascontiguousarray(rgba[top : top + crop_h, left : left + crop_w]), width, height
    )


def fit_resize(rgb: np.ndarray, width: int, height: int, tolerance: float = 0.05) -> np.ndarray:
    """Plain resize when the aspect nearly matches (same frame), else `cover_resize`."""
    source = rgb.shape[1] / rgb.shape[0]
    if abs(source / (width / height) - 1.0) <= tolerance:
        shrinking = width * height < rgb.shape[0] * rgb.shape[1]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4
        return cv2.resize(rgb, (width, height), interpolation=interpolation)
    return cover_resize(rgb, width, height)
