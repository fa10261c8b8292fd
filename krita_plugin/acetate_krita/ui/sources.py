"""An input's source picker: its declared source ("Active layer", "Whole canvas", "Selection")
or any layer of the document (for a mask: the layer's alpha). The logic is in sources.py."""

from __future__ import annotations

from ..model import Model
from ..protocol import ImageInputInfo
from ..qt import QtWidgets
from ..sources import fixed_entries, layer_entry
from .layers import LayerPicker, labelled_row


class SourcePicker:
    """One row: "<input> from" and a layer picker remembered per mode (`model.source_choice`)."""

    def __init__(self, model: Model, image: ImageInputInfo) -> None:
        self.image = image
        self.layers = LayerPicker(
            model.documents,
            fixed_entries(image),
            lambda: model.source_choice(image.field),
            lambda value: model.set_source_choice(image.field, value),
            lambda name: layer_entry(image, name),
        )
        self.combo = self.layers.combo
        label = image.label or image.field
        self.row: QtWidgets.QWidget = labelled_row(f"{label} from", *self.layers.widgets)
        what = "alpha channel is the mask" if image.kind == "mask" else "pixels are sent"
        self.row.setToolTip(
            f"{image.help} Any layer can be picked instead (its {what}, read over the same "
            "frame); a group reads as its composite."
        )

    def refresh(self) -> None:
        self.layers.refresh()

    def show_value(self) -> None:
        self.layers.show_value()
