"""The only module that reads or writes Krita documents (the model's `Documents` port).

Reading: the canvas is the document's projection, a layer is the active node's projection,
both in the canvas frame; the selection is Krita's global selection (8-bit mask). The canvas
without a layout group is read by hiding the group, reading and showing it again: visibility
set through the scripting API is no undo step, and the modified flag is put back. A layout
child's region is where its projection has alpha > 0, cropped to those pixels. Pixels go
out as 8-bit straight sRGB RGBA: exact conversions in pixels.py for RGB documents in sRGB
or linear sRGB, Krita's own colour engine for any other colour space.

Writing: each result becomes new paint layers inside one group per batch item. Krita's
`addChildNode` is one "Add Layer" undo step: a group is assembled detached and attached in one
step; a later layer is added into it in one step. Pixels are written over the full rectangle
of the layer record (transparent borders included) at its canvas offset, at the depth they were
fetched (16-bit for 16/32-bit documents, insertion.py). With "Alpha as editable mask" a
transparent layer is written opaque and gets a child transparency mask holding its alpha, built
while the layer is detached (still one step). Krita 5.1 scripts cannot create a mask with
pixels, so masks are duplicated from one Krita imports from a tiny PSD (mask_template.py).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

from krita import Document as KritaDocument
from krita import Krita, Node

from . import pixels
from .inputs import LayoutItem, UserError
from .mask_template import mask_template_psd
from .pixels import SRGB_PROFILE, LayerPixels, PixelFormat, Rect
from .protocol import LayerRecord, WireImage

#: The name of the transparency mask a layer's alpha goes into.
MASK_NAME = "Transparency Mask"
_mask_template: Node | None = None


def _format(item: KritaDocument | Node) -> PixelFormat | None:
    return pixels.pixel_format(item.colorModel(), item.colorDepth(), item.colorProfile())


def _convert_with_krita(document: KritaDocument, raw: bytes, source: Node, rect: Rect) -> bytes:
    """Any colour space → 8-bit sRGB BGRA, by Krita: a detached layer converted in place."""
    scratch = document.createNode("acetate-convert", "paintlayer")
    scratch.setColorSpace(source.colorModel(), source.colorDepth(), source.colorProfile())
    scratch.setPixelData(raw, rect.left, rect.top, rect.width, rect.height)
    scratch.setColorSpace("RGBA", "U8", SRGB_PROFILE)
    return bytes(scratch.pixelData(rect.left, rect.top, rect.width, rect.height))


def _transparency_mask() -> Node:
    """A new transparency mask whose pixels can be written: a duplicate of the mask Krita
    imports from the template PSD (opened once, then closed; its mask is kept)."""
    global _mask_template
    if _mask_template is None:
        folder = os.path.join(tempfile.gettempdir(), "acetate")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"mask-template-{os.getpid()}.psd")
        with open(path, "wb") as file:
            file.write(mask_template_psd())
        source = Krita.instance().openDocument(path)
        os.remove(path)
        if source is None:
            raise UserError("Krita could not open the mask template: insert without masks.")
        try:
            masks = [
                child
                for node in source.topLevelNodes()
                for child in node.childNodes()
                if child.type() == "transparencymask"
            ]
            if not masks:
                raise UserError("Krita imported no mask from the template: insert without masks.")
            _mask_template = masks[0].duplicate()
        finally:
            source.setModified(False)
            source.close()
    mask = _mask_template.duplicate()
    mask.setName(MASK_NAME)
    return mask


class Document:
    """One open Krita document."""

    def __init__(self, document: KritaDocument) -> None:
        self._doc = document

    @property
    def name(self) -> str:
        return self._doc.name() or "Untitled"

    @property
    def canvas(self) -> Rect:
        return Rect(0, 0, self._doc.width(), self._doc.height())

    @property
    def color_depth(self) -> str:
        return str(self._doc.colorDepth())

    def alive(self) -> bool:
        return any(open_doc == self._doc for open_doc in Krita.instance().documents())

    def _to_rgba8(
        self, raw: bytes, fmt: PixelFormat | None, source: Node, rect: Rect | None = None
    ) -> bytes:
        if fmt is None:
            bgra = _convert_with_krita(self._doc, raw, source, rect or self.canvas)
            return pixels.swap_red_blue(bgra)
        return pixels.to_rgba8(raw, fmt)

    def read_canvas(self) -> WireImage:
        """The composited image as the user sees it (hidden layers left out)."""
        rect = self.canvas
        self._doc.refreshProjection()
        self._doc.waitForDone()
        raw = bytes(self._doc.pixelData(rect.left, rect.top, rect.width, rect.height))
        rgba = self._to_rgba8(raw, _format(self._doc), self._doc.rootNode())
        return WireImage(rgba, rect.width, rect.height)

    def read_canvas_without(self, node_id: str) -> WireImage:
        """The composite as if `node_id` were hidden; the document is left as it was."""
        node = self._find(node_id)
        if node is None or not node.visible():
            return self.read_canvas()
        modified = self._doc.modified()
        node.setVisible(False)
        try:
            return self.read_canvas()
        finally:
            node.setVisible(True)
            self._doc.refreshProjection()
            self._doc.waitForDone()
            self._doc.setModified(modified)

    def active_group_id(self) -> str | None:
        node = self._active_layer()
        if node is None or node.type() != "grouplayer":
            return None
        return str(node.uniqueId().toString())

    def groups(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        pending = list(self._doc.topLevelNodes())
        while pending:
            node = pending.pop(0)
            if node.type() == "grouplayer":
                found.append((str(node.uniqueId().toString()), node.name()))
                pending.extend(node.childNodes())
        return found

    def read_layout(self, group: str) -> list[LayoutItem]:
        """Each visible child layer of `group`, bottom → top: its name and painted pixels."""
        parent = self._find(group)
        if parent is None:
            raise UserError("The layout group is gone: select it again.")
        items = []
        for child in parent.childNodes():
            if child.type().endswith("mask") or not child.visible():
                continue
            bounds = child.bounds()
            rect = Rect(bounds.x(), bounds.y(), bounds.width(), bounds.height())
            rect = rect.intersected(self.canvas)
            found = None
            if not rect.empty:
                raw = bytes(child.projectionPixelData(rect.left, rect.top, rect.width, rect.height))
                rgba = self._to_rgba8(raw, _format(child), child, rect)
                found = pixels.painted_mask(rgba, rect.width, rect.height)
            if found is None:
                raise UserError(
                    f"Layer {child.name()!r} of the layout has no painted pixels on the canvas: "
                    "paint where the object goes, or hide the layer."
                )
            mask, inner = found
            image = WireImage(mask, inner.width, inner.height)
            items.append(
                LayoutItem(child.name(), image, rect.left + inner.left, rect.top + inner.top)
            )
        return items

    def visible(self, node_id: str) -> bool:
        node = self._find(node_id)
        return bool(node is not None and node.visible())

    def set_visible(self, node_id: str, visible: bool) -> None:
        node = self._find(node_id)
        if node is not None and node.visible() != visible:
            node.setVisible(visible)
            self._changed()

    def _active_layer(self) -> Node | None:
        """The active layer; for an active mask, the layer it belongs to."""
        node = self._doc.activeNode()
        while node is not None and node.type().endswith("mask"):
            node = node.parentNode()
        # Climbing from the global selection mask ends at the root, which is no layer.
        if node is None or not node.type() or node.uniqueId() == self._doc.rootNode().uniqueId():
            return None
        return node

    def read_layer(self) -> WireImage:
        """The active layer (a group: its composite) over the whole canvas frame."""
        node = self._active_layer()
        if node is None:
            raise UserError("Select a layer in the Layers docker first.")
        rect = self.canvas
        raw = bytes(node.projectionPixelData(rect.left, rect.top, rect.width, rect.height))
        rgba = self._to_rgba8(raw, _format(node), node)
        return WireImage(rgba, rect.width, rect.height)

    def layers(self) -> list[tuple[str, str]]:
        """Every layer, top → bottom as the Layers docker lists them; masks left out."""
        found: list[tuple[str, str]] = []

        def walk(nodes: Sequence[Node]) -> None:
            for node in reversed(list(nodes)):
                if node.type().endswith("mask"):
                    continue
                found.append((str(node.uniqueId().toString()), node.name()))
                if node.type() == "grouplayer":
                    walk(node.childNodes())

        walk(self._doc.topLevelNodes())
        return found

    def read_node(self, node_id: str) -> WireImage | None:
        """Layer `node_id` (a group: its composite) over the whole canvas frame."""
        node = self._find(node_id) if node_id else None
        if node is None:
            return None
        rect = self.canvas
        raw = bytes(node.projectionPixelData(rect.left, rect.top, rect.width, rect.height))
        return WireImage(self._to_rgba8(raw, _format(node), node), rect.width, rect.height)

    def visible_layer_ids(self) -> list[str]:
        """The visible top-level layers, bottom → top; the global selection mask left out."""
        return [
            str(node.uniqueId().toString())
            for node in self._doc.topLevelNodes()
            if node.visible() and not node.type().endswith("mask")
        ]

    def read_selection(self, crop: bool) -> tuple[WireImage, Rect] | None:
        """The selection mask: cropped to its bounds, or canvas-sized; None if nothing is."""
        selection = self._doc.selection()
        if selection is None:
            return None
        canvas = self.canvas
        bounds = Rect(selection.x(), selection.y(), selection.width(), selection.height())
        bounds = bounds.intersected(canvas)
        if bounds.empty:
            return None
        mask = bytes(selection.pixelData(bounds.left, bounds.top, bounds.width, bounds.height))
        if crop:
            return WireImage(mask, bounds.width, bounds.height), bounds
        full = bytearray(canvas.width * canvas.height)
        for row in range(bounds.height):
            start = (bounds.top + row) * canvas.width + bounds.left
            full[start : start + bounds.width] = mask[row * bounds.width : (row + 1) * bounds.width]
        return WireImage(bytes(full), canvas.width, canvas.height), bounds

    def active_layer_id(self) -> str | None:
        node = self._active_layer()
        return node.uniqueId().toString() if node is not None else None

    def _find(self, node_id: str | None) -> Node | None:
        if node_id is None:
            return None
        pending = list(self._doc.topLevelNodes())
        while pending:
            node = pending.pop()
            if node.uniqueId().toString() == node_id:
                return node
            pending.extend(node.childNodes())
        return None

    def _paint_layer(self, name: str, data: LayerPixels, rect: Rect) -> Node:
        node = self._doc.createNode(name, "paintlayer")
        x, y, width, height = rect.left, rect.top, rect.width, rect.height
        fmt = _format(self._doc)
        if fmt is not None:
            node.setPixelData(data.krita_bytes(fmt), x, y, width, height)
            return node
        # Another colour space: write sRGB at the fetched depth, then let Krita convert.
        depth = "U16" if data.bits == 16 else "U8"
        node.setColorSpace("RGBA", depth, SRGB_PROFILE)
        node.setPixelData(data.krita_bytes(PixelFormat(depth)), x, y, width, height)
        doc = self._doc
        node.setColorSpace(doc.colorModel(), doc.colorDepth(), doc.colorProfile())
        return node

    def top_layer_id(self) -> str | None:
        children = self._doc.rootNode().childNodes()
        return children[-1].uniqueId().toString() if children else None

    def insert_group(
        self, name: str, layers: Sequence[tuple[LayerRecord, LayerPixels]], above: str | None
    ) -> str:
        """A group holding `layers` (bottom → top), attached above `above` in one undo step.

        The group is assembled while detached, so attaching it is Krita's single "Add Layer".
        """
        anchor = self._find(above)
        parent = anchor.parentNode() if anchor is not None else self._doc.rootNode()
        group = self._doc.createGroupLayer(name)
        below = None
        for layer, data in layers:
            node = self._layer_node(layer, data)
            group.addChildNode(node, below)
            below = node
        parent.addChildNode(group, anchor)
        self._changed()
        return str(group.uniqueId().toString())

    def insert_layer(self, group: str, layer: LayerRecord, data: LayerPixels, above: str) -> str:
        """One layer into `group` right above its child `above`: one "Add Layer" undo step."""
        parent = self._find(group)
        if parent is None:
            raise UserError("The result's group was removed while the job was running.")
        anchor = self._find(above)
        node = self._layer_node(layer, data)
        parent.addChildNode(node, anchor)
        self._changed()
        return str(node.uniqueId().toString())

    def child_ids(self, group: str) -> list[str]:
        node = self._find(group)
        return [child.uniqueId().toString() for child in node.childNodes()] if node else []

    def exists(self, node_id: str) -> bool:
        return self._find(node_id) is not None

    def remove(self, node_ids: Sequence[str]) -> int:
        removed = 0
        for node_id in node_ids:
            node = self._find(node_id)
            if node is not None and node.remove():
                removed += 1
        if removed:
            self._changed()
        return removed

    def _layer_node(self, layer: LayerRecord, data: LayerPixels) -> Node:
        rect = layer.rect
        node = self._paint_layer(layer.name, data, rect)
        alpha = data.mask_bytes()
        if alpha is not None:
            mask = _transparency_mask()
            mask.setPixelData(alpha, rect.left, rect.top, rect.width, rect.height)
            node.addChildNode(mask, None)
        node.setVisible(layer.visible)
        return node

    def _changed(self) -> None:
        self._doc.setModified(True)
        self._doc.refreshProjection()


class Documents:
    """The open documents of the running Krita."""

    def active(self) -> Document | None:
        document = Krita.instance().activeDocument()
        return Document(document) if document is not None else None

    def open(self, path: str) -> None:
        """Open a file (the job's PSD) in a new view of the active window."""
        app = Krita.instance()
        document = app.openDocument(path)
        if document is None:
            raise OSError(f"Krita could not open {path}")
        window = app.activeWindow()
        if window is not None:
            window.addView(document)
