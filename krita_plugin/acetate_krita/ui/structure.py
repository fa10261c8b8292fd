"""The Structure section: a layer of the document steers the result through a ControlNet.

Kind (none, edges of the layer, the layer as is), the layer (the document's layers, "None"
first), strength and the ControlNet ("Default" first, then those that fit the base). The
values live in the model (structure.py has the logic); this is widgets only.
"""

from __future__ import annotations

from ..model import Model
from ..protocol import OptionInfo
from ..qt import QtWidgets
from ..structure import KIND_LABELS, NONE
from .layers import LayerPicker
from .layers import labelled_row as _row
from .options import NumberEditor


class StructureBox(QtWidgets.QGroupBox):
    NO_LAYER = ""

    def __init__(self, model: Model, strength: OptionInfo | None) -> None:
        super().__init__("Structure")
        self.model = model
        self.setToolTip(
            "A layer of the document steers the result through a ControlNet: its edges "
            "(canny), or the layer itself as a ready lineart, depth or pose image."
        )
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.kind_combo = QtWidgets.QComboBox()
        for kind, label in KIND_LABELS.items():
            self.kind_combo.addItem(label, kind)
        self.kind_combo.currentIndexChanged.connect(self._kind_picked)
        self.layers = LayerPicker(
            model.documents,
            (("None", self.NO_LAYER),),
            lambda: model.structure_layer,
            self._layer_picked,
        )
        self.layer_combo, self.refresh_button = self.layers.combo, self.layers.refresh_button
        self.controlnet_combo = QtWidgets.QComboBox()
        self.controlnet_combo.currentIndexChanged.connect(self._controlnet_picked)
        self.strength: NumberEditor | None = None
        layout.addWidget(_row("Kind", self.kind_combo))
        layout.addWidget(_row("Layer", *self.layers.widgets))
        if strength is not None:
            self.strength = NumberEditor(strength, model.set_option, False)
            layout.addWidget(self.strength.row)
        layout.addWidget(_row("ControlNet", self.controlnet_combo))
        self.refresh()

    def refresh(self) -> None:
        """The document's layers and the ControlNets of the base, then the model's values."""
        self.layers.refresh()
        self.controlnet_combo.blockSignals(True)
        self.controlnet_combo.clear()
        self.controlnet_combo.addItem("Default", None)
        for name in self.model.controlnet_choices():
            self.controlnet_combo.addItem(name, name)
        self.controlnet_combo.blockSignals(False)
        self.show_values()

    def show_values(self) -> None:
        model = self.model
        self.layers.show_value()
        for combo, value in (
            (self.kind_combo, model.option_value("control") or NONE),
            (self.controlnet_combo, model.option_value("controlnet")),
        ):
            combo.blockSignals(True)
            combo.setCurrentIndex(max(combo.findData(value), 0))
            combo.blockSignals(False)
        if self.strength is not None:
            self.strength.show_value(model.option_value("control_strength"))

    def _kind_picked(self, index: int) -> None:
        if index >= 0:
            self.model.set_option("control", self.kind_combo.itemData(index))

    def _layer_picked(self, node_id: str) -> None:
        self.model.set_structure_layer(node_id)
        self.show_values()

    def _controlnet_picked(self, index: int) -> None:
        if index >= 0:
            self.model.set_option("controlnet", self.controlnet_combo.itemData(index))
