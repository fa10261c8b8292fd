"""A layer of the active document, picked in a combo box (the Structure section's layer, the
inputs' source layers): fixed entries first ("None", "Active layer"…), then the document's
layers top → bottom as the Layers docker lists them, listed again each time the list opens
(and by a ⟳ button)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..inputs import Documents
from ..qt import QtWidgets

#: The entry of a picked layer that is no longer in the document (generating says so).
MISSING = "Missing layer: pick another"


class _ListingCombo(QtWidgets.QComboBox):
    """A combo box that lists the layers again each time it opens (layers come and go)."""

    def __init__(self, before_opening: Callable[[], None]) -> None:
        super().__init__()
        self._before_opening = before_opening

    def showPopup(self) -> None:  # Qt's override
        self._before_opening()
        super().showPopup()


class LayerPicker:
    """`combo` + `refresh_button` in `widgets`; `picked(value)` on a user's pick, where the
    value is a fixed entry's or a layer's node id. `current()` gives the value to show."""

    def __init__(
        self,
        documents: Documents,
        fixed: Sequence[tuple[str, str]],
        current: Callable[[], str],
        picked: Callable[[str], None],
        entry: Callable[[str], str] = str,
    ) -> None:
        self.documents, self.fixed, self.current, self.entry = documents, fixed, current, entry
        self._picked = picked
        self.combo = _ListingCombo(self.refresh)
        self.combo.currentIndexChanged.connect(self._changed)
        self.refresh_button = QtWidgets.QToolButton()
        self.refresh_button.setText("⟳")
        self.refresh_button.setToolTip("List the document's layers again")
        self.refresh_button.clicked.connect(self.refresh)
        self.widgets: tuple[QtWidgets.QWidget, ...] = (self.combo, self.refresh_button)
        self.refresh()

    def refresh(self) -> None:
        """The fixed entries and the active document's layers, then the current value."""
        document = self.documents.active()
        layers = document.layers() if document is not None else []
        self.combo.blockSignals(True)
        self.combo.clear()
        for label, value in (*self.fixed, *((self.entry(name), nid) for nid, name in layers)):
            self.combo.addItem(label, value)
        self.combo.blockSignals(False)
        self.show_value()

    def show_value(self) -> None:
        """Select the current value; a layer no longer in the document shows as missing."""
        value = self.current()
        self.combo.blockSignals(True)
        index = self.combo.findData(value)
        if index < 0 and value:
            self.combo.addItem(MISSING, value)
            index = self.combo.count() - 1
        self.combo.setCurrentIndex(max(index, 0))
        self.combo.blockSignals(False)

    def _changed(self, index: int) -> None:
        if index >= 0:
            self._picked(self.combo.itemData(index) or "")


def labelled_row(label: str, *widgets: QtWidgets.QWidget) -> QtWidgets.QWidget:
    """A caption and widgets side by side, hideable as one piece."""
    row = QtWidgets.QWidget()
    layout = QtWidgets.QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    caption = QtWidgets.QLabel(label)
    caption.setMinimumWidth(70)
    layout.addWidget(caption)
    for widget in widgets:
        layout.addWidget(widget, 1)
    return row
