"""Pixel bytes between Krita's layers and the server's straight RGBA, Qt-free.

Krita hands out raw channel bytes: B,G,R,A for 8- and 16-bit integer RGB and R,G,B,A for
16- and 32-bit float RGB, always straight (not premultiplied) alpha, little-endian. The
server speaks 8-bit sRGB RGBA, and for `bit_depth` 16 jobs also 16-bit (little-endian
uint16). Colour channels go through the sRGB transfer curve when the document's profile is
linear; alpha never does. Everything here is exact and table-driven (Krita's Python has no
numpy): 8-bit input goes through `bytes.translate`, 16-bit input through 65536-entry tables,
32-bit floats through a binary search of rounding thresholds. Formats this module cannot
convert exactly (other colour models, other primaries) are left to Krita's colour engine by
the caller (`pixel_format` returns None for them).
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


# -- 16-bit results → Krita format ---------------------------------------------------------


@functools.cache
def _to8_table() -> bytes:
    """Each 16-bit code's nearest 8-bit one, round(v / 257) (never a tie: 257 is odd)."""
    return bytes((code + 128) // 257 for code in range(65536))


def rgba16_to_rgba8(data: bytes) -> bytes:
    """16-bit straight RGBA (little-endian uint16) → 8-bit, every value rounded to 8 bits."""
    if len(data) % 8:
        raise ValueError(f"{len(data)} bytes is not a whole number of 16-bit RGBA pixels")
    return bytes(map(_to8_table().__getitem__, _samples(data, "U16")))


@functools.cache
def _table16_to(depth: str, linear: bool) -> array | None:
    """Each 16-bit sRGB code as a sample of `depth` (U16 integers, F16 bit patterns, F32
    floats; through the sRGB curve when `linear`); None: the code itself (U16 sRGB)."""
    if depth == "U16" and not linear:
        return None
    values = [srgb_decode(code / 65535) if linear else code / 65535 for code in range(65536)]
    if depth == "U16":
        return array("H", [round(value * 65535) for value in values])
    if depth == "F16":
        return array("H", struct.unpack("=65536H", struct.pack("=65536e", *values)))
    return array("f", values)


def from_rgba16(data: bytes, fmt: PixelFormat) -> bytes:
    """16-bit straight sRGB RGBA (little-endian uint16) → Krita pixel bytes in `fmt`.

    U16: the codes as they are (B,G,R,A order); F16/F32: floats in [0, 1]; an 8-bit layer
    gets each value rounded to 8 bits.
    """
    if len(data) % 8:
        raise ValueError(f"{len(data)} bytes is not a whole number of 16-bit RGBA pixels")
    if fmt.depth == "U8":
        return from_rgba8(rgba16_to_rgba8(data), fmt)
    samples = _samples(data, "U16")
    typecode = "f" if fmt.depth == "F32" else "H"
    out = array(typecode, bytes(len(samples) * array(typecode).itemsize))
    colour, alpha = _table16_to(fmt.depth, fmt.linear), _table16_to(fmt.depth, False)
    for channel, target in enumerate(fmt.krita_order):
        table = alpha if channel == 3 else colour
        source = samples[channel::4]
        if table is not None:
            source = array(typecode, map(table.__getitem__, source))
        out[target::4] = source
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


@dataclass(frozen=True)
class LayerPixels:
    """A result layer as downloaded: straight sRGB RGBA, row-major, `bits` per channel (16:
    little-endian uint16). With `alpha_mask` a transparent layer goes in opaque, keeping its
    RGB everywhere (also where alpha is 0), with its alpha in a transparency mask."""

    data: bytes
    bits: int = 8
    alpha_mask: bool = False

    @property
    def _alpha_bytes(self) -> tuple[bytes, ...]:
        """The bytes of every alpha value: one slice per byte of a sample."""
        if self.bits == 16:
            return self.data[6::8], self.data[7::8]
        return (self.data[3::4],)

    @property
    def opaque(self) -> bool:
        """Every pixel fully opaque (a background): no mask to paint."""
        return all(part.count(255) == len(part) for part in self._alpha_bytes)

    @property
    def has_mask(self) -> bool:
        return self.alpha_mask and not self.opaque

    def rgba8(self) -> bytes:
        """The pixels as 8-bit RGBA (history thumbnails)."""
        return rgba16_to_rgba8(self.data) if self.bits == 16 else self.data

    def layer_data(self) -> bytes:
        """The paint layer's RGBA: as downloaded, or fully opaque when the alpha goes to a mask
        (colour untouched, also where alpha was 0)."""
        if not self.has_mask:
            return self.data
        out = bytearray(self.data)
        step = self.bits // 2
        for offset in range(3 * self.bits // 8, step):
            out[offset::step] = b"\xff" * (len(out) // step)
        return bytes(out)

    def krita_bytes(self, fmt: PixelFormat) -> bytes:
        """The paint layer's pixels in Krita's format `fmt`."""
        data = self.layer_data()
        return from_rgba16(data, fmt) if self.bits == 16 else from_rgba8(data, fmt)

    def mask_bytes(self) -> bytes | None:
        """The transparency mask's pixels, 1 byte each (Krita's masks are 8-bit alpha in
        documents of every depth: 16-bit alpha is rounded); None: no mask."""
        if not self.has_mask:
            return None
        if self.bits == 16:
            return bytes(map(_to8_table().__getitem__, _samples(self.data, "U16")[3::4]))
        return self.data[3::4]


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
