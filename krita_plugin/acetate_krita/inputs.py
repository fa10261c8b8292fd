"""What a generation reads from a document and how its layers go back in.

Qt-free: document.py implements the `Document` port on Krita; tests use an in-memory document.
Which images a mode takes comes from the server (`ModeInfo.inputs`); a plugin only knows how
each *source* is read: `canvas` is the visible composite, `layer` the active layer, and
`selection` the selection as a mask.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from .pixels import Rect
from .protocol import (
    CANVAS,
    LAYER,
    SELECTION,
    ImageInputInfo,
    LayerRecord,
    ModeInfo,
    WireImage,
    group_name,
)


class Document(Protocol):
    """An open document, as the model needs it (document.py implements it on Krita)."""

    @property
    def name(self) -> str: ...

    def alive(self) -> bool: ...

    def read_canvas(self) -> WireImage: ...

    def read_layer(self) -> WireImage: ...

    def read_selection(self, crop: bool) -> tuple[WireImage, Rect] | None: ...

    def active_layer_id(self) -> str | None: ...

    def top_layer_id(self) -> str | None:
        """The topmost top-level layer (where results go without an active layer)."""
        ...

    def insert_group(
        self, name: str, layers: Sequence[tuple[LayerRecord, bytes]], above: str | None
    ) -> str:
        """Add a group holding `layers` (bottom → top) above top-level node `above` (None:
        on top), as one undo step; returns the group's id."""
        ...

    def insert_layer(self, group: str, layer: LayerRecord, rgba: bytes, above: str) -> str:
        """Add one layer into `group` right above its child `above`, as one undo step."""
        ...

    def child_ids(self, group: str) -> list[str]:
        """The ids of a group's children, bottom → top."""
        ...

    def exists(self, node_id: str) -> bool: ...

    def remove(self, node_ids: Sequence[str]) -> int:
        """Remove these nodes (those still there); returns how many were removed."""
        ...


class Documents(Protocol):
    def active(self) -> Document | None: ...

    def open(self, path: str) -> None: ...


class UserError(Exception):
    """Something the user can fix before generating (no document, empty prompt…)."""


def wanted(image: ImageInputInfo, options: Mapping[str, Any]) -> bool:
    """Whether an input is sent: inputs with a `when` only with one of the listed values."""
    if not image.when:
        return True
    return all(options.get(name) in values for name, values in image.when.items())


def collect_images(
    mode: ModeInfo, document: Document, options: Mapping[str, Any] | None = None
) -> tuple[dict[str, WireImage], Rect | None]:
    """The image fields `mode` sends, read from `document`, and the selection's bounds.

    A selection mask placed on a canvas-source image is cropped to its bounds (sent with
    `selection_bounds`); on a layer it is canvas-sized like the layer. No selection: a
    required mask selects everything, an optional one is not sent.
    """
    options = options or {}
    images: dict[str, WireImage] = {}
    bounds = None
    sources = {image.field: image.source for image in mode.inputs}
    for image in mode.inputs:
        if not wanted(image, options):
            continue
        if image.source == CANVAS:
            images[image.field] = document.read_canvas()
        elif image.source == LAYER:
            images[image.field] = document.read_layer()
        elif image.source == SELECTION:
            crop = sources.get(image.relative_to or "") == CANVAS
            selection = document.read_selection(crop)
            if selection is not None:
                images[image.field] = selection[0]
                bounds = selection[1] if crop else bounds
            elif image.required:
                reference = images.get(image.relative_to or "") or document.read_canvas()
                everything = b"\xff" * (reference.width * reference.height)
                images[image.field] = WireImage(everything, reference.width, reference.height)
        else:
            raise UserError(
                f"This plugin cannot read the {image.label or image.field} of mode "
                f"{mode.label} (source {image.source!r}): update the plugin."
            )
    return images, bounds


class Placement:
    """Puts a result's layers into a document as they arrive, one undo step each.

    One group per batch item, stacked above `anchor` in batch order; inside a group the
    layers stack in the order the mode declares them, whatever order they arrive in. Krita
    can add a layer above another one in one step but not at the bottom of a group, so a
    group is created with its lowest layer: layers that arrive before it wait (and go in
    with it, still one step); after that each layer goes in as it arrives. `finish()` puts
    in whatever still waits (a group whose lowest layer never came).
    """

    def __init__(
        self,
        document: Document,
        mode: ModeInfo,
        prompt: str,
        counts: Mapping[str, int],
        anchor: str | None,
        images: Iterable[str] | None = None,
    ) -> None:
        self.document = document
        self.mode = mode
        self.prompt = prompt
        self.anchor = anchor
        names = mode.layer_names(dict(counts), images)
        expected = [mode.layer_key(name) for name in names]
        self._lowest = min(expected) if expected else None
        self.groups: dict[int, str] = {}
        self._nodes: dict[int, list[tuple[tuple[int, int], str]]] = {}
        self._waiting: dict[int, list[tuple[LayerRecord, bytes]]] = {}
        self.inserted: list[LayerRecord] = []

    @property
    def group_ids(self) -> list[str]:
        return [self.groups[index] for index in sorted(self.groups)]

    def add(self, layer: LayerRecord, rgba: bytes) -> bool:
        """Insert `layer` now if it can go in its place; True if it (or its group) went in."""
        if any(done.file == layer.file for done in self.inserted):
            return False
        index, key = layer.batch_index, self.mode.layer_key(layer.stack_name)
        group = self.groups.get(index)
        if group is not None:
            nodes = self._nodes[index]
            below = [entry for entry in nodes if entry[0] <= key]
            above = max(below)[1] if below else max(nodes)[1]
            node = self.document.insert_layer(group, layer, rgba, above)
            nodes.append((key, node))
            self.inserted.append(layer)
            return True
        waiting = self._waiting.setdefault(index, [])
        waiting.append((layer, rgba))
        keys = [self.mode.layer_key(item.stack_name) for item, _ in waiting]
        if self._lowest is None or min(keys) <= self._lowest:
            self._create_group(index)
            return True
        return False

    def finish(self) -> None:
        for index in sorted(self._waiting):
            if self._waiting[index]:
                self._create_group(index)

    def _create_group(self, index: int) -> None:
        items = sorted(
            self._waiting.pop(index), key=lambda item: self.mode.layer_key(item[0].stack_name)
        )
        lower = [self.groups[i] for i in sorted(self.groups) if i < index]
        above = lower[-1] if lower else self.anchor
        name = group_name(self.prompt, index, self.mode.label)
        self.groups[index] = self.document.insert_group(name, items, above)
        self._nodes[index] = [
            (self.mode.layer_key(layer.stack_name), node_id)
            for (layer, _), node_id in zip(
                items, self.document.child_ids(self.groups[index]), strict=True
            )
        ]
        self.inserted += [layer for layer, _ in items]
