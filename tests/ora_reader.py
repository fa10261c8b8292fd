"""An OpenRaster reader written from the spec (openraster.org, 0.0.6), independent of ours.

It checks the container rules a strict reader relies on (the `mimetype` member first, stored,
no extra field, so its bytes sit at offset 38), resolves `stack.xml` into layers with their
group path, and decodes every PNG it names.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import cv2
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class OraLayer:
    """One `<layer>`; `groups` are the enclosing `<stack>` names, outermost first."""

    groups: tuple[str, ...]
    name: str
    x: int
    y: int
    visible: bool
    pixels: np.ndarray


@dataclass(frozen=True)
class OraDocument:
    width: int
    height: int
    #: Bottom → top (the reverse of `stack.xml`, which lists the topmost first).
    layers: list[OraLayer]
    #: Group names and visibility, top → bottom as listed.
    groups: list[tuple[str, bool]]
    merged: np.ndarray
    thumbnail: np.ndarray


def _png(data: bytes) -> np.ndarray:
    """RGBA uint8, or uint16 for a 16-bit PNG (read by OpenCV: Pillow narrows it to 8 bits)."""
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        if data[24] != 16:  # IHDR bit depth
            return np.asarray(image.convert("RGBA"))
    bgra = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert bgra.dtype == np.uint16 and bgra.shape[2] in (3, 4)
    return cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA if bgra.shape[2] == 4 else cv2.COLOR_BGR2RGBA)


def read_ora(source: Path | bytes) -> OraDocument:
    """Parse an ORA file (path or bytes), asserting the container rules on the way."""
    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    # Local file header: 30 fixed bytes, then the name, then (no extra field) the data.
    assert raw[:4] == b"PK\x03\x04"
    assert raw[26:30] == b"\x08\x00\x00\x00", "mimetype: name length 8, no extra field"
    assert raw[30:38] == b"mimetype" and raw[38:54] == b"image/openraster"
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        first = archive.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
        stack = ElementTree.fromstring(archive.read("stack.xml"))
        assert stack.tag == "image"
        width, height = int(stack.attrib["w"]), int(stack.attrib["h"])
        layers: list[OraLayer] = []
        groups: list[tuple[str, bool]] = []

        def walk(element: ElementTree.Element, path: tuple[str, ...]) -> None:
            for child in element:
                visible = child.attrib.get("visibility", "visible") == "visible"
                if child.tag == "stack":
                    name = child.attrib.get("name", "")
                    groups.append((name, visible))
                    walk(child, (*path, name))
                elif child.tag == "layer":
                    assert child.attrib.get("composite-op", "svg:src-over") == "svg:src-over"
                    assert float(child.attrib.get("opacity", "1")) == 1.0
                    layers.append(
                        OraLayer(
                            path,
                            child.attrib.get("name", ""),
                            int(child.attrib.get("x", "0")),
                            int(child.attrib.get("y", "0")),
                            visible,
                            _png(archive.read(child.attrib["src"])),
                        )
                    )

        (root,) = list(stack)
        assert root.tag == "stack"
        walk(root, ())
        merged = _png(archive.read("mergedimage.png"))
        thumbnail = _png(archive.read("Thumbnails/thumbnail.png"))
    return OraDocument(width, height, layers[::-1], groups, merged, thumbnail)
