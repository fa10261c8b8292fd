"""What a generation reads from a document and how its layers go back in.

Qt-free: document.py implements the `Document` port on Krita; tests use an in-memory document.
Which images a mode takes comes from the server (`ModeInfo.inputs`); a plugin only knows how
each *source* is read: `canvas` is the visible composite, `layer` the active layer, and
`selection` the selection as a mask.

A list input whose items have a `region` option (the `scene` mode's objects) is filled from
a *layout group*: each visible child layer of the group is one item, bottom → top; the child's
name is the item's title (the option the mode titles its layers from, e.g. `prompt`) and its
painted pixels are the region, sent as a mask cropped to its bounds (`{left, top}` in the item,
the mask as the part `<list>.<i>.mask`). Canvas inputs are then read without the layout group.

What a result replaces — the layout group, or what a `replaced` input (decompose's image) was
read from: the active layer, or every visible top-level layer for the canvas — is what its
groups stack right above, and is hidden once the first layer is in (never deleted; "Undo
whole result" shows it again). An input with `other_sources` is read from the source the user
picked (`chosen`); a main image or a selection mask may be read from a layer the user picked
instead (`layers`: its pixels, or its alpha as the mask; sources.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .pixels import LayerPixels, Rect
from .protocol import (
    CANVAS,
    LAYER,
    SELECTION,
    ImageInputInfo,
    LayerInfo,
    LayerRecord,
    ListInputInfo,
    ModeInfo,
    WireImage,
    group_name,
)
from .sources import alpha_mask

#: The item option type that places a list item on the canvas.
REGION = "region"


@dataclass(frozen=True)
class LayoutItem:
    """One child layer of a layout group: its name and its painted pixels (a mask cropped to
    their bounds, placed at `left, top` on the canvas)."""

    name: str
    mask: WireImage
    left: int
    top: int


class Document(Protocol):
    """An open document, as the model needs it (document.py implements it on Krita)."""

    @property
    def name(self) -> str: ...

    @property
    def color_depth(self) -> str:
        """Krita's channel depth of the document: U8, U16, F16 or F32."""
        ...

    def alive(self) -> bool: ...

    def read_canvas(self) -> WireImage: ...

    def read_canvas_without(self, node_id: str) -> WireImage:
        """The visible composite as if node `node_id` were hidden, leaving the document as it
        was (no undo step, same modified flag)."""
        ...

    def active_group_id(self) -> str | None:
        """The active layer when it is a group (a layout), else None."""
        ...

    def groups(self) -> list[tuple[str, str]]:
        """(id, name) of every group layer, top-level first (a layout-group picker)."""
        ...

    def read_layout(self, group: str) -> list[LayoutItem]:
        """The visible child layers of `group`, bottom → top; UserError for one with no
        painted pixels."""
        ...

    def visible(self, node_id: str) -> bool: ...

    def set_visible(self, node_id: str, visible: bool) -> None:
        """Show or hide a node (not an undo step: it only changes what is shown)."""
        ...

    def read_layer(self) -> WireImage: ...

    def layers(self) -> list[tuple[str, str]]:
        """(id, name) of every layer, top → bottom as the Layers docker lists them (groups
        included, masks left out): a structure-layer picker."""
        ...

    def read_node(self, node_id: str) -> WireImage | None:
        """Layer `node_id` (a group: its composite) over the whole canvas frame, like
        `read_layer`; None when it is no longer in the document."""
        ...

    def visible_layer_ids(self) -> list[str]:
        """The visible top-level layers, bottom → top (masks left out): what the canvas shows."""
        ...

    def read_selection(self, crop: bool) -> tuple[WireImage, Rect] | None: ...

    def active_layer_id(self) -> str | None: ...

    def top_layer_id(self) -> str | None:
        """The topmost top-level layer (where results go without an active layer)."""
        ...

    def insert_group(
        self, name: str, layers: Sequence[tuple[LayerRecord, LayerPixels]], above: str | None
    ) -> str:
        """Add a group holding `layers` (bottom → top) above top-level node `above` (None:
        on top), as one undo step; returns the group's id."""
        ...

    def insert_layer(self, group: str, layer: LayerRecord, pixels: LayerPixels, above: str) -> str:
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


def generatable(mode: ModeInfo) -> list[tuple[ImageInputInfo, LayerInfo]]:
    """Optional inputs the server can generate instead (a layer is returned `only_without`
    them, e.g. scene's background), with that layer: the user may choose not to send them."""
    inputs = {image.field: image for image in mode.inputs if not image.required}
    return [
        (inputs[layer.only_without], layer)
        for layer in mode.layers
        if layer.only_without is not None and layer.only_without in inputs
    ]


def source_of(image: ImageInputInfo, chosen: Mapping[str, str] | None = None) -> str:
    """Where `image` is read from: the user's choice among its sources, else its `source`."""
    pick = (chosen or {}).get(image.field)
    return pick if pick is not None and pick in image.sources else image.source


def collect_images(
    mode: ModeInfo,
    document: Document,
    options: Mapping[str, Any] | None = None,
    *,
    skip: Iterable[str] = (),
    without: str | None = None,
    chosen: Mapping[str, str] | None = None,
    layers: Mapping[str, str] | None = None,
) -> tuple[dict[str, WireImage], Rect | None]:
    """The image fields `mode` sends, read from `document`, and the selection's bounds.

    A selection mask placed on a canvas-source image is cropped to its bounds (sent with
    `selection_bounds`); on a layer it is canvas-sized like the layer. No selection: a
    required mask selects everything, an optional one is not sent. Optional inputs in `skip`
    are not sent (the server generates them); with `without` (a layout group's id) canvas
    inputs are read as if that node were hidden. `chosen`: the source the user picked for an
    input that has `other_sources`. `layers`: the layer (node id) the user picked for an
    input (sources.py): its pixels, or for a mask its alpha, instead of the input's source.
    """
    options = options or {}
    skipped = set(skip)
    images: dict[str, WireImage] = {}
    bounds = None
    sources = {image.field: source_of(image, chosen) for image in mode.inputs}
    for image in mode.inputs:
        if not wanted(image, options) or (image.field in skipped and not image.required):
            continue
        source = sources[image.field]
        picked = (layers or {}).get(image.field)
        if picked is not None:
            crop = sources.get(image.relative_to or "") == CANVAS
            image_read, picked_bounds = read_picked(document, image, picked, crop)
            images[image.field] = image_read
            bounds = picked_bounds or bounds
        elif source == CANVAS:
            if without is not None:
                images[image.field] = document.read_canvas_without(without)
            else:
                images[image.field] = document.read_canvas()
        elif source == LAYER:
            images[image.field] = document.read_layer()
        elif source == SELECTION:
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
                f"{mode.label} (source {source!r}): update the plugin."
            )
    return images, bounds


def read_picked(
    document: Document, image: ImageInputInfo, node_id: str, crop: bool
) -> tuple[WireImage, Rect | None]:
    """Input `image` read from layer `node_id`: its pixels over the canvas frame, or for a mask
    its alpha (with `crop`, cut to its painted pixels and returned with their bounds)."""
    layer = document.read_node(node_id)
    label = image.label or image.field
    if layer is None:
        raise UserError(
            f"The layer picked for the {label} is no longer in the document: pick another one."
        )
    if image.kind != "mask":
        return layer, None
    mask = alpha_mask(layer, crop)
    if mask is None:
        raise UserError(f"The layer picked as the {label} has no painted pixels.")
    return mask


def replaced_nodes(
    mode: ModeInfo,
    document: Document,
    sent: Iterable[str],
    chosen: Mapping[str, str] | None = None,
) -> list[str]:
    """What the result replaces, bottom → top, hidden once it is in (shown again when it is
    undone): for a `replaced` input sent, the active layer it was read from, or every visible
    top-level layer when it was the canvas."""
    fields = set(sent)
    for image in mode.inputs:
        if not image.replaced or image.field not in fields:
            continue
        source = source_of(image, chosen)
        if source == LAYER:
            active = document.active_layer_id()
            return [active] if active is not None else []
        if source == CANVAS:
            return document.visible_layer_ids()
    return []


def layout_lists(mode: ModeInfo) -> tuple[ListInputInfo, ...]:
    """The list inputs of `mode` filled from a layout group: those whose items have a region."""
    return tuple(spec for spec in mode.lists if any(o.type == REGION for o in spec.item_options))


def title_option(mode: ModeInfo, spec: ListInputInfo) -> str | None:
    """The item option a layout child's name fills: the one the mode titles the list's layers
    from, else `prompt`, else the first text option."""
    names = {option.name for option in spec.item_options}
    for layer in mode.layers:
        if layer.count_from == spec.field and layer.title_from in names:
            return layer.title_from
    if "prompt" in names:
        return "prompt"
    return next((o.name for o in spec.item_options if o.type == "text"), None)


def collect_layout(
    mode: ModeInfo, document: Document, group: str
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, WireImage]]:
    """The layout lists' items read from layout group `group`, and their region masks (by
    multipart part name `<list>.<i>.mask`)."""
    lists: dict[str, list[dict[str, Any]]] = {}
    images: dict[str, WireImage] = {}
    specs = layout_lists(mode)
    if not specs:
        return lists, images
    layout = document.read_layout(group)
    for spec in specs:
        label = (spec.label or spec.field).lower()
        if len(layout) < max(spec.min_items, 1):
            raise UserError(
                f"The layout group has no visible layers: add one layer per {label} item, "
                "named after it, painted where it goes."
            )
        if spec.max_items is not None and len(layout) > spec.max_items:
            raise UserError(
                f"The layout group has {len(layout)} layers; {mode.label} takes at most "
                f"{spec.max_items} {label}."
            )
        title = title_option(mode, spec)
        region = next(o.name for o in spec.item_options if o.type == REGION)
        items: list[dict[str, Any]] = []
        for index, item in enumerate(layout):
            entry: dict[str, Any] = {region: {"left": item.left, "top": item.top}}
            if title is not None:
                entry[title] = item.name
            items.append(entry)
            images[f"{spec.field}.{index}.mask"] = item.mask
        lists[spec.field] = items
    return lists, images


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
        self._waiting: dict[int, list[tuple[LayerRecord, LayerPixels]]] = {}
        self.inserted: list[LayerRecord] = []

    @property
    def group_ids(self) -> list[str]:
        return [self.groups[index] for index in sorted(self.groups)]

    def add(self, layer: LayerRecord, pixels: LayerPixels) -> bool:
        """Insert `layer` now if it can go in its place; True if it (or its group) went in."""
        if any(done.file == layer.file for done in self.inserted):
            return False
        index, key = layer.batch_index, self.mode.layer_key(layer.stack_name)
        group = self.groups.get(index)
        if group is not None:
            nodes = self._nodes[index]
            below = [entry for entry in nodes if entry[0] <= key]
            above = max(below)[1] if below else max(nodes)[1]
            node = self.document.insert_layer(group, layer, pixels, above)
            nodes.append((key, node))
            self.inserted.append(layer)
            return True
        waiting = self._waiting.setdefault(index, [])
        waiting.append((layer, pixels))
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
