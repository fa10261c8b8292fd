"""A one-pixel PSD whose only layer has a layer mask, Qt-free.

Krita 5.1's scripting API makes transparency masks without pixels: `createNode(name,
"transparencymask")` gives a mask with no selection, so `setPixelData` on it writes nothing,
and `TransparencyMask`/`createTransparencyMask` only arrive in Krita 5.2. A mask Krita imports
from a PSD layer mask has its pixels, and its duplicates keep them: document.py opens this file
once, duplicates the mask, and fills a duplicate for each layer it inserts with an alpha mask.
The mask is white (fully shown) inside and outside its one pixel, so whatever a duplicate's
written rectangle leaves out stays visible.
"""

from __future__ import annotations

import struct

#: PSD channel ids of the layer: transparency, red, green, blue and the user (layer) mask.
_CHANNELS = (-1, 0, 1, 2, -2)
#: The layer's one pixel: opaque black, its mask white.
_PIXEL = {-1: 255, 0: 0, 1: 0, 2: 0, -2: 255}
_NAME = b"alpha"


def _pascal(name: bytes) -> bytes:
    """A Pascal string padded to a multiple of 4 bytes (the layer record's name)."""
    data = bytes([len(name)]) + name
    return data + b"\0" * (-len(data) % 4)


def mask_template_psd() -> bytes:
    """The PSD's bytes: 1×1 RGB, 8 bits, one layer carrying a layer mask."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 1, 1, 8, 3)  # v1, 3 channels, 1×1, 8 bit, RGB
    raw = [struct.pack(">HB", 0, _PIXEL[channel]) for channel in _CHANNELS]  # uncompressed
    # Layer mask data: its rectangle, default colour (outside the rectangle) white, flags 0.
    mask = struct.pack(">IiiiiBB2x", 20, 0, 0, 1, 1, 255, 0)
    extra = mask + struct.pack(">I", 0) + _pascal(_NAME)  # no blending ranges
    record = struct.pack(">iiiiH", 0, 0, 1, 1, len(_CHANNELS))
    record += b"".join(struct.pack(">hI", c, len(d)) for c, d in zip(_CHANNELS, raw, strict=True))
    record += b"8BIMnorm" + struct.pack(">BBBxI", 255, 0, 0, len(extra)) + extra
    layer_info = struct.pack(">h", 1) + record + b"".join(raw)
    layer_info += b"\0" * (len(layer_info) % 2)
    layers = struct.pack(">I", len(layer_info)) + layer_info + struct.pack(">I", 0)
    merged = struct.pack(">H", 0) + bytes(3)  # uncompressed R, G, B planes: black
    colour_mode, resources = struct.pack(">I", 0), struct.pack(">I", 0)
    return header + colour_mode + resources + struct.pack(">I", len(layers)) + layers + merged
