"""Layered PSD documents (psd-tools), with a merged composite computed here.

psd-tools' `save()` re-renders the merged image with its general compositor whenever a
document was edited; our layers are plain normal-mode pixel layers in pass-through groups, so
straight-alpha "over" in numpy gives the same image several times faster. The merged image
follows Photoshop's convention for transparent documents: a negative layer count flags its
4th channel as transparency and the colour channels are matted against white (readers such as
ImageMagick and psd-tools undo the matte).

A document holding 16-bit layers (a `bit_depth` 16 result) is a 16-bit document: its layers
are written at full precision (`create_pixel_layer_from_array`), its merged image at 16 bits.

Stacking: groups and the layers in each are listed bottom → top. psd-tools 1.26 cannot save a
non-MacRoman name passed to its factories, so layers and groups are created with an ASCII
placeholder and renamed through the `name` setter (which writes the Unicode `luni` block); the
legacy Pascal name gets a MacRoman fallback for readers that only know it (ImageMagick 6).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms
from psd_tools import PSDImage
from psd_tools.api.layers import Group, Layer
from psd_tools.constants import Resource
from psd_tools.psd.image_resources import ImageResource

from acetate.bitdepth import DTYPES, bit_depth_of, to_depth
from acetate.export.atomic import atomic_open
from acetate.protocol import LayerRecord, ResultRecord, group_name

PSD_FILE = "layers.psd"
#: Largest side of a PSD (larger needs the PSB format).
MAX_PSD_SIDE = 30000
#: Longest layer name Photoshop keeps; longer names are cut.
MAX_NAME = 255


@dataclass(frozen=True)
class PsdLayer:
    """One pixel layer: H×W×4 straight RGBA (uint8, or uint16 in a 16-bit document) placed at
    (left, top) canvas pixels."""

    name: str
    rgba: np.ndarray
    left: int = 0
    top: int = 0
    visible: bool = True


@dataclass(frozen=True)
class PsdGroup:
    """A group of layers, bottom → top; `name=None` puts the layers at the top level instead."""

    name: str | None
    layers: Sequence[PsdLayer]


@functools.cache
def srgb_profile() -> bytes:
    """The sRGB ICC profile embedded in every document (built once: its header has a date)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def document_depth(layers: Iterable[PsdLayer]) -> int:
    """16 when any layer is uint16 (a `bit_depth` 16 result), else 8."""
    return max((bit_depth_of(layer.rgba) for layer in layers), default=8)


def composite(
    canvas_size: tuple[int, int], layers: Iterable[PsdLayer], bit_depth: int = 8
) -> np.ndarray:
    """Straight-alpha "over" of the visible layers, bottom → top, clipped to the canvas.

    Returns H×W×4 straight RGBA at `bit_depth` (uint8 or uint16; colour 0 where nothing covers
    a pixel); layers of the other depth are converted first.
    """
    width, height = canvas_size
    dtype = DTYPES[bit_depth]
    scale = float(np.iinfo(dtype).max)
    # Colour premultiplied by alpha, in 0..scale units; alpha in 0..1.
    colour = np.zeros((height, width, 3), np.float32)
    alpha = np.zeros((height, width, 1), np.float32)
    for layer in layers:
        region = _covered(layer, width, height) if layer.visible else None
        if region is None:
            continue
        (y0, y1, x0, x1), pixels = region
        pixels = to_depth(pixels, bit_depth)
        src_alpha = pixels[..., 3:]
        if src_alpha.min() == scale:  # opaque: replaces what is below, no blending
            colour[y0:y1, x0:x1] = pixels[..., :3]
            alpha[y0:y1, x0:x1] = 1.0
            continue
        a = src_alpha * np.float32(1.0 / scale)
        dst_colour, dst_alpha = colour[y0:y1, x0:x1], alpha[y0:y1, x0:x1]
        dst_colour *= 1.0 - a
        dst_colour += pixels[..., :3] * a
        dst_alpha *= 1.0 - a
        dst_alpha += a
    if alpha.min() < 1.0:
        np.divide(colour, alpha, out=colour, where=alpha > 0)
    out = np.empty((height, width, 4), dtype)
    colour += 0.5
    out[..., :3] = np.clip(colour, 0, scale, out=colour)
    out[..., 3:] = np.clip(alpha * scale + 0.5, 0, scale)
    return out


def _covered(
    layer: PsdLayer, width: int, height: int
) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """The canvas rectangle (y0, y1, x0, x1) where a layer has non-transparent pixels, and
    its pixels there; None if it shows nowhere on the canvas."""
    h, w = layer.rgba.shape[:2]
    x0, y0 = max(layer.left, 0), max(layer.top, 0)
    x1, y1 = min(layer.left + w, width), min(layer.top + h, height)
    if x0 >= x1 or y0 >= y1:
        return None
    pixels = layer.rgba[y0 - layer.top : y1 - layer.top, x0 - layer.left : x1 - layer.left]
    shown = pixels[..., 3] > 0
    rows, cols = np.flatnonzero(shown.any(axis=1)), np.flatnonzero(shown.any(axis=0))
    if rows.size == 0:
        return None
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    rect = (y0 + top, y0 + bottom, x0 + left, x0 + right)
    return rect, pixels[top:bottom, left:right]


def build_psd(canvas_size: tuple[int, int], groups: Sequence[PsdGroup]) -> PSDImage:
    """An RGBA document with sRGB profile, the layers and our merged composite: 8 bits per
    channel, or 16 when any layer is uint16.

    Write it with `save_psd`: psd-tools' own `save()` would re-render the merged image.
    """
    width, height = canvas_size
    if not (1 <= width <= MAX_PSD_SIDE and 1 <= height <= MAX_PSD_SIDE):
        raise ValueError(f"canvas must be 1..{MAX_PSD_SIDE} px a side, got {width}×{height}")
    depth = document_depth(layer for group in groups for layer in group.layers)
    psd = PSDImage.new("RGBA", (width, height), color=0, depth=16 if depth == 16 else None)
    psd.image_resources[Resource.ICC_PROFILE] = ImageResource(
        key=Resource.ICC_PROFILE, data=srgb_profile()
    )
    for group in groups:
        parent: PSDImage | Group = psd
        if group.name is not None:
            parent = psd.create_group(name="group", open_folder=True)
            _rename(parent, group.name)
        for spec in group.layers:
            _check_pixels(spec)
            if depth == 16:  # full precision (a PIL image would carry 8 bits)
                layer = parent.create_pixel_layer_from_array(
                    to_depth(spec.rgba, 16), name="layer", top=spec.top, left=spec.left
                )
            else:
                layer = parent.create_pixel_layer(
                    Image.fromarray(spec.rgba, "RGBA"), name="layer", top=spec.top, left=spec.left
                )
            _rename(layer, spec.name)
            layer.visible = spec.visible
    layers = (layer for group in groups for layer in group.layers)
    _store_merged(psd, composite((width, height), layers, depth))
    return psd


def _check_pixels(spec: PsdLayer) -> None:
    rgba = spec.rgba
    if rgba.dtype not in (np.uint8, np.uint16) or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"layer {spec.name!r}: expected H×W×4 uint8/16 RGBA, got {rgba.shape}")
    if 0 in rgba.shape:
        raise ValueError(f"layer {spec.name!r}: empty, {rgba.shape}")


def _rename(layer: Layer, name: str) -> None:
    name = name[:MAX_NAME]
    layer.name = name  # Unicode-safe: fills the `luni` block
    layer._record.name = name.encode("mac_roman", "replace").decode("mac_roman")


def _store_merged(psd: PSDImage, merged: np.ndarray) -> None:
    """Photoshop's merged image of a transparent document: colour matted against white, and
    a negative layer count saying that the 4th channel is the merged transparency.

    Goes through the low-level record (`PSDImage._record`, psd-tools' documented way down).
    """
    record = psd._record
    if merged.dtype == np.uint16:  # 16-bit documents store big-endian samples
        alpha64 = merged[..., 3:].astype(np.uint64)
        white = 65535 * (65535 - alpha64)
        matted16 = (merged[..., :3] * alpha64 + white + 32767) // 65535
        planes = [np.ascontiguousarray(matted16[..., i], ">u2").tobytes() for i in range(3)]
        planes.append(np.ascontiguousarray(merged[..., 3], ">u2").tobytes())
    else:
        alpha = merged[..., 3:].astype(np.uint16)
        matted = (merged[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255
        planes = [np.ascontiguousarray(matted[..., i], np.uint8).tobytes() for i in range(3)]
        planes.append(np.ascontiguousarray(merged[..., 3]).tobytes())
    record.image_data.set_data(planes, record.header)
    layer_info = record.layer_and_mask_information.layer_info
    if layer_info is not None and layer_info.layer_count:
        layer_info.layer_count = -abs(layer_info.layer_count)


def save_psd(psd: PSDImage, file: BinaryIO) -> None:
    """Write a `build_psd` document as built (no re-rendering of the merged image)."""
    psd._record.write(file)


def write_psd(path: Path, canvas_size: tuple[int, int], groups: Sequence[PsdGroup]) -> None:
    """Build and write a layered PSD atomically."""
    psd = build_psd(canvas_size, groups)
    with atomic_open(path) as file:
        save_psd(psd, file)


def result_groups(
    record: ResultRecord, pixels: Callable[[LayerRecord], np.ndarray]
) -> list[PsdGroup]:
    """One group per batch item, named by `group_name`, layers in record order (bottom → top).

    Groups go bottom → top in batch order: the last item is on top, as when an editor inserts
    each result set above the previous one.
    `pixels` gives a layer's RGBA (from memory while writing a result, from its PNG later).
    """
    prompt = str(record.parameters.get("prompt") or "")
    by_batch: dict[int, list[PsdLayer]] = {}
    for layer in record.layers:
        by_batch.setdefault(layer.batch_index, []).append(
            PsdLayer(layer.name, pixels(layer), layer.left, layer.top, layer.visible)
        )
    return [
        PsdGroup(group_name(prompt, index, record.mode), layers)
        for index, layers in sorted(by_batch.items())
    ]
