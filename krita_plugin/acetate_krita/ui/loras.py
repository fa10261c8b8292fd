"""The LoRA rows (a LoRA that runs on the base, a strength; add and remove within the server's
limit) and the "Insert embedding" button for the prompt fields. The logic is in loras.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..loras import MAX_LORAS, MAX_STRENGTH, MIN_STRENGTH, LoraRow, dropped_note, insert_name
from ..model import Model
from ..qt import QtWidgets

#: A prompt field the embedding menu can insert into: (its caption, the edit).
PromptField = tuple[str, QtWidgets.QPlainTextEdit | QtWidgets.QLineEdit]


class LoraBox(QtWidgets.QGroupBox):
    """The mode's LoRA rows on the chosen family (`model.lora_rows`), remembered per both."""

    def __init__(self, model: Model) -> None:
        super().__init__("LoRAs")
        self.model = model
        self.setToolTip(
            "Style or character LoRAs the server has for this model's family, each at a "
            f"strength ({MIN_STRENGTH:g} to {MAX_STRENGTH:g}; negative: the opposite)."
        )
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.rows_box = QtWidgets.QWidget()
        self.rows_layout = QtWidgets.QVBoxLayout(self.rows_box)
        self.rows_layout.setContentsMargins(0, 0, 0, 0)
        self.note = QtWidgets.QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #d08000;")
        self.add_button = QtWidgets.QPushButton("Add LoRA")
        self.add_button.clicked.connect(self.add_row)
        layout.addWidget(self.rows_box)
        layout.addWidget(self.note)
        layout.addWidget(self.add_button)
        self.rows: list[tuple[QtWidgets.QWidget, QtWidgets.QComboBox, QtWidgets.QDoubleSpinBox]]
        self.rows = []
        self._names: tuple[str, ...] = ()
        self.refresh()

    def refresh(self) -> None:
        """The rows as the model has them; widgets are rebuilt only when their number or the
        LoRAs on offer change (so a spin box keeps its focus while typing)."""
        names = tuple(self.model.lora_names())
        rows, dropped = self.model.lora_rows()
        if len(rows) != len(self.rows) or names != self._names:
            self._names = names
            self._rebuild(len(rows))
        for (_, combo, spin), row in zip(self.rows, rows, strict=True):
            for widget in (combo, spin):
                widget.blockSignals(True)
            combo.setCurrentIndex(max(combo.findData(row.name), 0))
            spin.setValue(row.strength)
            for widget in (combo, spin):
                widget.blockSignals(False)
        note = dropped_note(dropped)
        if not names:
            note = "The server has no LoRA for this model's family (models/loras/)."
        self.note.setText(note)
        self.note.setVisible(bool(note))
        self.add_button.setEnabled(bool(names) and len(rows) < MAX_LORAS)

    def current_rows(self) -> list[LoraRow]:
        return [LoraRow(combo.currentData(), spin.value()) for _, combo, spin in self.rows]

    def add_row(self) -> None:
        rows = self.current_rows()
        used = {row.name for row in rows}
        if self._names and len(rows) < MAX_LORAS:
            name = next((n for n in self._names if n not in used), self._names[0])
            self.model.set_lora_rows([*rows, LoraRow(name)])

    def remove_row(self, index: int) -> None:
        rows = self.current_rows()
        if 0 <= index < len(rows):
            del rows[index]
            self.model.set_lora_rows(rows)

    def _edited(self, *_: object) -> None:
        self.model.set_lora_rows(self.current_rows())

    def _rebuild(self, count: int) -> None:
        for row, _, _ in self.rows:
            row.hide()
            row.deleteLater()
        self.rows = []
        for index in range(count):
            row = QtWidgets.QWidget()
            layout = QtWidgets.QHBoxLayout(row)
            layout.setContentsMargins(0, 0, 0, 0)
            combo = QtWidgets.QComboBox()
            for name in self._names:
                combo.addItem(name, name)
            spin = QtWidgets.QDoubleSpinBox()
            spin.setRange(MIN_STRENGTH, MAX_STRENGTH)
            spin.setSingleStep(0.05)
            spin.setDecimals(2)
            spin.setToolTip("Strength")
            remove = QtWidgets.QToolButton()
            remove.setText("−")
            remove.setToolTip("Remove this LoRA")
            remove.clicked.connect(lambda _=False, i=index: self.remove_row(i))
            combo.currentIndexChanged.connect(self._edited)
            spin.valueChanged.connect(self._edited)
            layout.addWidget(combo, 2)
            layout.addWidget(spin, 1)
            layout.addWidget(remove)
            self.rows_layout.addWidget(row)
            self.rows.append((row, combo, spin))


class EmbeddingButton(QtWidgets.QToolButton):
    """ "Insert embedding": a menu of the embeddings that run on the base; one inserts its name
    at the cursor of a prompt field (a submenu per field when there are several). Hidden when
    the server lists no embeddings at all."""

    def __init__(self, model: Model, fields: Callable[[], Sequence[PromptField]]) -> None:
        super().__init__()
        self.model, self.fields = model, fields
        self.setText("Insert embedding")
        self.setToolTip("Textual-inversion embeddings work by writing their name in a prompt.")
        self.setPopupMode(QtWidgets.QToolButton.ToolButtonPopupMode.InstantPopup)
        self.menu_ = QtWidgets.QMenu(self)
        self.menu_.aboutToShow.connect(self.fill)
        self.setMenu(self.menu_)
        self.refresh()

    def refresh(self) -> None:
        names = self.model.embedding_names()
        self.setVisible(names is not None)
        self.setEnabled(bool(names))

    def fill(self) -> None:
        """The menu for the embeddings and prompt fields there are now."""
        self.menu_.clear()
        names = self.model.embedding_names() or []
        fields = list(self.fields())
        for caption, edit in fields:
            menu = self.menu_ if len(fields) == 1 else self.menu_.addMenu(f"Into the {caption}")
            for name in names:
                action = menu.addAction(name)
                action.triggered.connect(lambda _=False, n=name, e=edit: insert_into(e, n))


def insert_into(edit: QtWidgets.QPlainTextEdit | QtWidgets.QLineEdit, name: str) -> None:
    """Insert `name` at the edit's cursor, as typing would (the model follows the edit)."""
    if isinstance(edit, QtWidgets.QPlainTextEdit):
        cursor = edit.textCursor()
        text, position = insert_name(edit.toPlainText(), cursor.position(), name)
        edit.setPlainText(text)
        cursor = edit.textCursor()
        cursor.setPosition(position)
        edit.setTextCursor(cursor)
    else:
        text, position = insert_name(edit.text(), edit.cursorPosition(), name)
        edit.setText(text)
        edit.setCursorPosition(position)
        edit.editingFinished.emit()
