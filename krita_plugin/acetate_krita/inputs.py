"""What a generation reads from a document: the document port and each mode's images.

Qt-free: document.py implements the port on Krita; tests use an in-memory document.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from .pixels import Rect
from .protocol import CANVAS, LAYER, MODE_IMAGES, SELECTION, ResultRecord, WireImage


class Document(Protocol):
    """An open document, as the model needs it (document.py implements it on Krita)."""

    @property
    def name(self) -> str: ...

    def alive(self) -> bool: ...

    def read_canvas(self) -> WireImage: ...

    def read_layer(self) -> WireImage: ...

    def read_selection(self, crop: bool) -> tuple[WireImage, Rect] | None: ...

    def active_layer_id(self) -> str | None: ...

    def insert(
        self, record: ResultRecord, layer_pixels: Mapping[str, bytes], above: str | None
    ) -> None: ...


class Documents(Protocol):
    def active(self) -> Document | None: ...

    def open(self, path: str) -> None: ...


class UserError(Exception):
    """Something the user can fix before generating (no document, empty prompt…)."""


def collect_images(mode: str, document: Document) -> tuple[dict[str, WireImage], Rect | None]:
    """The image fields `mode` sends, read from `document`, and the selection's bounds.

    No selection means the whole canvas: layer_on_artwork then sends no mask, inpaint a
    mask that selects everything.
    """
    images: dict[str, WireImage] = {}
    bounds = None
    for field, source in MODE_IMAGES[mode].items():
        if source == CANVAS:
            images[field] = document.read_canvas()
        elif source == LAYER:
            images[field] = document.read_layer()
        elif source == SELECTION:
            crop = mode == "layer_on_artwork"
            selection = document.read_selection(crop)
            if selection is not None:
                images[field], bounds = selection[0], selection[1] if crop else None
            elif mode == "inpaint":
                frame = images["image"]
                everything = b"\xff" * (frame.width * frame.height)
                images[field] = WireImage(everything, frame.width, frame.height)
    return images, bounds
