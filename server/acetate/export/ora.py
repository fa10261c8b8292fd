"""OpenRaster documents (`.ora`), the layered format Krita and MyPaint open natively.

An ORA file is a zip: `mimetype` first and stored uncompressed (readers sniff it at a fixed
offset), `stack.xml` describing the layer tree, one PNG per layer under `data/`, the full-size
`mergedimage.png` and a `Thumbnails/thumbnail.png` of at most 256 px a side (OpenRaster 0.0.6).
`stack.xml` lists the topmost item first, the reverse of our bottom → top groups.

Layer pixels are written as straight RGBA PNGs, byte-exact with the result's own PNGs (16-bit
PNGs, and a 16-bit `mergedimage.png`, for a `bit_depth` 16 result; the thumbnail stays 8-bit);
zip entries carry a fixed timestamp so the same result gives the same bytes.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
from PIL import Image

from acetate.bitdepth import to_uint8
from acetate.export.atomic import write_bytes_atomic
from acetate.export.png import encode_png
from acetate.export.psd import PsdGroup, PsdLayer, composite, document_depth

ORA_FILE = "layers.ora"
MIMETYPE = b"image/openraster"
ORA_VERSION = "0.0.6"
THUMBNAIL_SIDE = 256
#: Zip entries' timestamp (zip's earliest), so a document's bytes depend only on its content.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _png(pixels: np.ndarray) -> bytes:
    if pixels.dtype == np.uint16:
        return encode_png(pixels, parameters=None, opaque=False, compress_level=1)
    buffer = io.BytesIO()
    # compress_level 1: ORA members are zip-stored; PNG's own deflate does the compressing.
    Image.fromarray(pixels, "RGBA").save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _thumbnail(merged: np.ndarray) -> bytes:
    image = Image.fromarray(to_uint8(merged), "RGBA")
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    return _png(np.asarray(image))


def _layer_element(layer: PsdLayer, src: str) -> ElementTree.Element:
    return ElementTree.Element(
        "layer",
        {
            "name": layer.name,
            "src": src,
            "x": str(layer.left),
            "y": str(layer.top),
            "visibility": "visible" if layer.visible else "hidden",
            "opacity": "1.0",
            "composite-op": "svg:src-over",
        },
    )


def stack_xml(
    canvas_size: tuple[int, int], groups: Sequence[PsdGroup]
) -> tuple[bytes, list[tuple[str, PsdLayer]]]:
    """`stack.xml` for the groups (bottom → top) and the (member path, layer) of each layer."""
    width, height = canvas_size
    image = ElementTree.Element(
        "image", {"version": ORA_VERSION, "w": str(width), "h": str(height)}
    )
    root = ElementTree.SubElement(image, "stack")
    files: list[tuple[str, PsdLayer]] = []
    for group in reversed(groups):
        parent = root
        if group.name is not None:
            # Pass-through, like the PSD's groups: layers blend with everything below.
            attributes = {"name": group.name, "visibility": "visible", "isolation": "auto"}
            parent = ElementTree.SubElement(root, "stack", attributes)
        for layer in reversed(group.layers):
            src = f"data/layer{len(files)}.png"
            parent.append(_layer_element(layer, src))
            files.append((src, layer))
    xml = ElementTree.tostring(image, encoding="UTF-8", xml_declaration=True)
    return xml, files


def build_ora(canvas_size: tuple[int, int], groups: Sequence[PsdGroup]) -> bytes:
    """The bytes of an OpenRaster document of the groups (bottom → top, as for the PSD)."""
    width, height = canvas_size
    if width < 1 or height < 1:
        raise ValueError(f"canvas must be at least 1×1, got {width}×{height}")
    xml, files = stack_xml(canvas_size, groups)
    layers = [layer for group in groups for layer in group.layers]
    merged = composite(canvas_size, layers, document_depth(layers))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        # The mimetype must be the first member, uncompressed, with no extra field.
        archive.writestr(zipfile.ZipInfo("mimetype", _EPOCH), MIMETYPE, zipfile.ZIP_STORED)
        members = [
            ("stack.xml", xml),
            *((src, _png(layer.rgba)) for src, layer in files),
            ("mergedimage.png", _png(merged)),
            ("Thumbnails/thumbnail.png", _thumbnail(merged)),
        ]
        for name, data in members:
            compression = zipfile.ZIP_DEFLATED if name == "stack.xml" else zipfile.ZIP_STORED
            archive.writestr(zipfile.ZipInfo(name, _EPOCH), data, compression)
    return buffer.getvalue()


def write_ora(path: Path, canvas_size: tuple[int, int], groups: Sequence[PsdGroup]) -> None:
    """Build and write an OpenRaster document atomically."""
    write_bytes_atomic(path, build_ora(canvas_size, groups))
