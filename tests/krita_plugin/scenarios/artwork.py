"""Deterministic test artwork as Krita layer bytes (pure Python: used inside Krita and by pytest).

Canvas artwork is opaque, so the document's projection equals it exactly and the test can
predict the canvas the plugin sends. Layer artwork (for layer modes) has every kind of alpha.
"""

from __future__ import annotations

import math
import struct

#: The layer-on-artwork document (also in the README screenshot) and its selection.
CANVAS_SIZE = (320, 240)
SELECTION = (60, 118, 96, 72)
#: The document whose artwork layer the `decompose` scenario splits (tiny model: fast).
DECOMPOSE_SIZE = (96, 64)


def landscape(u: float, v: float) -> tuple[int, int, int]:
    """A sky, a sun and a hill at (u, v) in [0, 1): smooth areas plus hard edges."""
    if v > 0.68 + 0.06 * math.sin(u * 9.0):
        return 50 + int(60 * u), 120 + int(50 * v), 40
    if (u - 0.72) ** 2 + ((v - 0.3) * 0.75) ** 2 < 0.01:
        return 250, 215, 110
    return 70 + int(150 * v), 110 + int(70 * v), 210 - int(110 * v)


def gray_artwork(width: int, height: int) -> bytes:
    """8-bit gray + alpha (Krita's GRAYA U8 layout), opaque."""
    rows = (bytes(((x * 3 + y * 5) % 256, 255)) for y in range(height) for x in range(width))
    return b"".join(rows)


def artwork(width: int, height: int, depth: str, *, opaque: bool = True) -> bytes:
    """Pixels in Krita's layout for `depth`: B,G,R,A integers or R,G,B,A floats."""
    out = bytearray()
    for y in range(height):
        for x in range(width):
            a = 1.0 if opaque else ((x + 2 * y) % 17) / 16
            if depth == "U8":
                alpha = 255 if opaque else round(a * 255)
                r, g, b = landscape(x / width, y / height)
                out += bytes((b, g, r, alpha))
            elif depth == "U16":
                alpha = 65535 if opaque else round(a * 65535)
                values = (
                    (x * 2671 + y * 911) % 65536,
                    (x * 613 + y * 4099) % 65536,
                    (x * y * 37) % 65536,
                )
                out += struct.pack("<4H", *values, alpha)
            else:
                floats = ((x * 0.0137 + y * 0.0071) % 1.0, (x * 0.0291) % 1.0, (y * 0.0173) % 1.0)
                out += struct.pack("<4f" if depth == "F32" else "<4e", *floats, a)
    return bytes(out)


#: The scene document: a painted background and a layout group of three overlapping objects.
SCENE_SIZE = (128, 96)
SCENE_OBJECTS = ("a crow", "a lantern", "a moon")


def scene_layout(width: int, height: int) -> list[tuple[str, bytes]]:
    """The layout's child layers bottom → top: (name, canvas-sized mask, 255 = painted).

    A box, a disc over its right half and a box over the disc's top right: all overlap."""

    def inside(index: int, x: int, y: int) -> bool:
        if index == 0:
            return 10 <= x < 60 and 30 <= y < 70
        if index == 1:
            return (x - 58) ** 2 + (y - 52) ** 2 <= 22**2
        return 66 <= x < 110 and 14 <= y < 50

    return [
        (name, bytes(255 if inside(i, x, y) else 0 for y in range(height) for x in range(width)))
        for i, name in enumerate(SCENE_OBJECTS)
    ]


def painted(mask: bytes, bgr: tuple[int, int, int]) -> bytes:
    """Krita U8 BGRA bytes: `bgr` where the mask is painted, transparent elsewhere."""
    return b"".join(bytes((*bgr, 255)) if m else b"\0\0\0\0" for m in mask)


#: The `structure` scenario's document: a sketch layer steers an fg job (64×64, tiny SDXL).
STRUCTURE_SIZE = (64, 64)


def sketch(width: int, height: int) -> bytes:
    """A few black strokes on a transparent layer, B,G,R,A U8: a box, a diagonal, a bar."""
    out = bytearray(4 * width * height)
    for y in range(height):
        for x in range(width):
            box = 12 <= x < 52 and 12 <= y < 52 and (x < 15 or x >= 49 or y < 15 or y >= 49)
            diagonal = abs(x - y) < 2 and 12 <= x < 52
            bar = 28 <= y < 31 and 4 <= x < 60
            if box or diagonal or bar:
                out[4 * (y * width + x) + 3] = 255
    return bytes(out)
