"""Pixel bytes between Krita's layers and the server's 8-bit straight RGBA, Qt-free.

Krita hands out raw channel bytes: B,G,R,A for 8- and 16-bit integer RGB and R,G,B,A for
16- and 32-bit float RGB, always straight (not premultiplied) alpha, little-endian. The
server speaks 8-bit sRGB RGBA. Colour channels go through the sRGB transfer curve when the
document's profile is linear; alpha never does. Everything here is exact and table-driven
(Krita's Python has no numpy): 8-bit input goes through `bytes.translate`, 16-bit input
through 65536-entry tables, 32-bit floats through a binary search of rounding thresholds.
Formats this module cannot convert exactly (other colour models, other primaries) are
left to Krita's colour engine by the caller (`pixel_format` returns None for them).
"""

from __future__ import annotations

import functools
import struct
import sys
from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

DEPTH_BYTES: dict[str, int] = {"U8": 1, "U16": 2, "F16": 2, "F32": 4}
#: Krita's sRGB-primaries profiles whose transfer curve we know exactly.
SRGB_PROFILES: frozenset[str] = frozenset({"sRGB-elle-V2-srgbtrc.icc", "sRGB built-in"})
LINEAR_PROFILES: frozenset[str] = frozenset({"sRGB-elle-V2-g10.icc", "scRGB (linear)"})
SRGB_PROFILE = "sRGB-elle-V2-srgbtrc.icc"


@dataclass(frozen=True)
class Rect:
    """A rectangle in canvas pixels."""

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

    @property
    def empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def intersected(self, other: Rect) -> Rect:
        left, top = max(self.left, other.left), max(self.top, other.top)
        right, bottom = min(self.right, other.right), min(self.bottom, other.bottom)
        return Rect(left, top, max(0, right - left), max(0, bottom - top))

    def to_json(self) -> dict[str, int]:
        return {"left": self.left, "top": self.top, "width": self.width, "height": self.height}


@dataclass(frozen=True)
class PixelFormat:
    """How one Krita RGBA paint device stores a pixel."""

    depth: str  # U8, U16, F16 or F32
    linear: bool = False

    @property
    def channel_bytes(self) -> int:
        return DEPTH_BYTES[self.depth]

    @property
    def pixel_bytes(self) -> int:
        return 4 * self.channel_bytes

    @property
    def krita_order(self) -> tuple[int, int, int, int]:
        """Index in Krita's pixel of the R, G, B and A channel."""
        return (2, 1, 0, 3) if self.depth in ("U8", "U16") else (0, 1, 2, 3)

    @property
    def is_srgb8(self) -> bool:
        """Krita's pixels are the server's bytes with red and blue swapped."""
        return self.depth == "U8" and not self.linear


SRGB8 = PixelFormat("U8")


def pixel_format(model: str, depth: str, profile: str) -> PixelFormat | None:
    """The format of a document or layer, or None if only Krita can convert it exactly."""
    if model != "RGBA" or depth not in DEPTH_BYTES:
        return None
    if profile in SRGB_PROFILES:
        return PixelFormat(depth, linear=False)
    if profile in LINEAR_PROFILES:
        return PixelFormat(depth, linear=True)
    return None


def swap_red_blue(data: bytes) -> bytes:
    """BGRA ⇄ RGBA for 8-bit pixels (its own inverse); alpha and colour bytes kept as they are."""
    out = bytearray(data)
    out[0::4] = data[2::4]
    out[2::4] = data[0::4]
    return bytes(out)


def srgb_encode(linear: float) -> float:
    """Linear light → sRGB-encoded value, both in [0, 1]."""
    if linear <= 0.0031308:
        return 12.92 * linear
    return 1.055 * linear ** (1 / 2.4) - 0.055


def srgb_decode(encoded: float) -> float:
    """sRGB-encoded value → linear light, both in [0, 1]."""
    if encoded <= 0.04045:
        return encoded / 12.92
    return ((encoded + 0.055) / 1.055) ** 2.4


# -- Krita format → 8-bit ------------------------------------------------------------------


@functools.cache
def _thresholds(linear: bool) -> tuple[float, ...]:
    """Values where the 8-bit result steps up: k + 0.5 of 255 in the output encoding."""
    steps = [(k + 0.5) / 255 for k in range(255)]
    return tuple(srgb_decode(s) for s in steps) if linear else tuple(steps)


def _quantize(value: float, linear: bool) -> int:
    """A channel value (linear or encoded; clipped to [0, 1]) → nearest 8-bit sRGB code.

    Half-way values round up. NaN compares false and so lands on 255, in every format.
    """
    return bisect_right(_thresholds(linear), value)


@functools.cache
def _table16(depth: str, linear: bool) -> bytes:
    """All 65536 16-bit codes (U16 integers or F16 bit patterns) → 8-bit values."""
    if depth == "U16":
        values: Sequence[float] = [code / 65535 for code in range(65536)]
    else:
        values = struct.unpack("<65536e", struct.pack("<65536H", *range(65536)))
    return bytes(_quantize(value, linear) for value in values)


def _samples(data: bytes, depth: str) -> array:
    samples = array({"U16": "H", "F16": "H", "F32": "f"}[depth])
    samples.frombytes(data)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _channel_to8(depth: str, linear: bool) -> Callable[[array], bytes]:
    if depth == "F32":
        quantize = functools.partial(bisect_right, _thresholds(linear))
        return lambda samples: bytes(map(quantize, samples))
    table = _table16(depth, linear)
    return lambda samples: bytes(map(table.__getitem__, samples))


def to_rgba8(data: bytes, fmt: PixelFormat) -> bytes:
    """Krita pixel bytes in `fmt` → 8-bit straight sRGB RGBA."""
    if len(data) % fmt.pixel_bytes:
        raise ValueError(f"{len(data)} bytes is not a whole number of {fmt.depth} pixels")
    if fmt.depth == "U8":
        rgba = swap_red_blue(data)
        if not fmt.linear:
            return rgba
        encode = bytes(_quantize(v / 255, True) for v in range(256))
        encoded = bytearray(rgba.translate(encode))
        encoded[3::4] = rgba[3::4]
        return bytes(encoded)
    samples = _samples(data, fmt.depth)
    out = bytearray(len(samples))
    colour, alpha = _channel_to8(fmt.depth, fmt.linear), _channel_to8(fmt.depth, False)
    for channel, source in enumerate(fmt.krita_order):
        convert = alpha if channel == 3 else colour
        out[channel::4] = convert(samples[source::4])
    return bytes(out)


# -- 8-bit → Krita format ------------------------------------------------------------------


@functools.cache
def _byte_tables(depth: str, linear: bool) -> tuple[bytes, ...]:
    """For each byte of an encoded sample, the 256-entry `translate` table giving it."""
    values = [srgb_decode(v / 255) if linear else v / 255 for v in range(256)]
    if depth == "U8":
        encoded = bytes(round(v * 255) for v in values)
    elif depth == "U16":
        encoded = struct.pack("<256H", *(round(v * 65535) for v in values))
    else:
        encoded = struct.pack(f"<256{'e' if depth == 'F16' else 'f'}", *values)
    width = DEPTH_BYTES[depth]
    return tuple(encoded[i::width] for i in range(width))


def from_rgba8(rgba: bytes, fmt: PixelFormat) -> bytes:
    """8-bit straight sRGB RGBA → Krita pixel bytes in `fmt`."""
    if len(rgba) % 4:
        raise ValueError(f"{len(rgba)} bytes is not a whole number of RGBA pixels")
    if fmt.is_srgb8:
        return swap_red_blue(rgba)
    width = fmt.channel_bytes
    stride = 4 * width
    out = bytearray(len(rgba) * width)
    colour, alpha = _byte_tables(fmt.depth, fmt.linear), _byte_tables(fmt.depth, False)
    for channel, target in enumerate(fmt.krita_order):
        source = rgba[channel::4]
        tables = alpha if channel == 3 else colour
        for byte, table in enumerate(tables):
            out[target * width + byte :: stride] = source.translate(table)
    return bytes(out)


# -- masks and previews ---------------------------------------------------------------------


def thumbnail(rgba: bytes, width: int, height: int, max_side: int) -> tuple[bytes, int, int]:
    """A nearest-neighbour RGBA thumbnail no larger than `max_side` (for the history list)."""
    scale = min(1.0, max_side / max(width, height))
    out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
    columns = [min(width - 1, int((x + 0.5) * width / out_w)) for x in range(out_w)]
    rows = []
    for y in range(out_h):
        source = min(height - 1, int((y + 0.5) * height / out_h))
        row = rgba[source * width * 4 : (source + 1) * width * 4]
        rows.append(b"".join(row[4 * x : 4 * x + 4] for x in columns))
    return b"".join(rows), out_w, out_h


#: Alpha 0 → 0 (not painted), any other alpha → 255 (painted).
_PAINTED = bytes([0] + [255] * 255)


def painted_mask(rgba: bytes, width: int, height: int) -> tuple[bytes, Rect] | None:
    """Where an 8-bit RGBA image is painted (alpha > 0): a 1-byte/px mask (255 painted, 0 not)
    cropped to the painted pixels' bounds, and those bounds in the image; None: nothing is."""
    alpha = rgba[3::4].translate(_PAINTED)
    rows = [alpha[y * width : (y + 1) * width] for y in range(height)]
    painted = [y for y, row in enumerate(rows) if row.count(0) != width]
    if not painted:
        return None
    top, bottom = painted[0], painted[-1] + 1
    left = min(width - len(rows[y].lstrip(b"\x00")) for y in painted)
    right = max(len(rows[y].rstrip(b"\x00")) for y in painted)
    mask = b"".join(row[left:right] for row in rows[top:bottom])
    return mask, Rect(left, top, right - left, bottom - top)
