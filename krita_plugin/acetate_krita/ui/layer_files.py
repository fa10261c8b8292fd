"""A layer-file picker: "Default" first, then each file that fits the part (layer_files.py)."""

from __future__ import annotations

from collections.abc import Callable

from ..layer_files import FilePart, file_label
from ..qt import QtWidgets


class FilePicker:
    """A labelled combo box for one part; `changed(part, name or None)` on a user's pick."""

    def __init__(self, part: FilePart, changed: Callable[[str, str | None], None]) -> None:
        self.part = part
        self.row = QtWidgets.QWidget()
        self.row.setToolTip(
            f"The LayerDiffusion file for the {part.part.replace('_', ' ')} part. Default: "
            "the server's official file; trained files come from `acetate train`."
        )
        layout = QtWidgets.QHBoxLayout(self.row)
        layout.setContentsMargins(0, 0, 0, 0)
        caption = QtWidgets.QLabel(part.label)
        caption.setMinimumWidth(70)
        layout.addWidget(caption)
        self.combo = QtWidgets.QComboBox()
        self.combo.addItem("Default", None)
        for file in part.files:
            self.combo.addItem(file_label(file), file.name)
        self._updating = False
        self.combo.currentIndexChanged.connect(self._changed)
        self._report = changed
        layout.addWidget(self.combo, 1)

    def _changed(self, index: int) -> None:
        if index >= 0 and not self._updating:
            self._report(self.part.part, self.combo.itemData(index))

    def show_value(self, name: str | None) -> None:
        self._updating = True
        try:
            self.combo.setCurrentIndex(max(self.combo.findData(name), 0) if name else 0)
        finally:
            self._updating = False
