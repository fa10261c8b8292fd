"""One control per option, built from the option's declaration (`GET /api/modes`).

int/float → a spin box (with "Auto" at its bottom when the option has no default: the
server's default), enum → a combo box ("Default" first when it has no default), bool → a
check box, text → a line edit (a small text box for long texts), prompts → one line edit
per layer of the mode whose name is fixed. Values go to the model through `changed(name,
value)`; `show_value` updates the control without reporting a change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..form import editor_kind
from ..protocol import ModeInfo, OptionInfo
from ..qt import QtWidgets

Changed = Callable[[str, Any], None]
#: Texts longer than this get a small text box instead of a line.
LONG_TEXT = 200


def _step(option: OptionInfo) -> float:
    if option.type == "int":
        return float(option.multiple_of or 1)
    span = (option.maximum or 1.0) - (option.minimum or 0.0)
    return 0.05 if span <= 2 else 0.25 if span <= 10 else 0.5


class OptionEditor:
    """A labelled control for one option; `row` is the widget to place."""

    def __init__(self, option: OptionInfo, changed: Changed) -> None:
        self.option = option
        self.changed = changed
        self.row = QtWidgets.QWidget()
        self.row.setToolTip(option.help)
        self.layout = QtWidgets.QHBoxLayout(self.row)
        self.layout.setContentsMargins(0, 0, 0, 0)
        self.widget: QtWidgets.QWidget | None = None
        self._updating = False

    def label(self, compact: bool) -> None:
        if compact:
            return
        caption = QtWidgets.QLabel(self.option.label or self.option.name)
        caption.setMinimumWidth(70)
        self.layout.addWidget(caption)

    def emit(self, value: Any) -> None:
        if not self._updating:
            self.changed(self.option.name, value)

    def show_value(self, value: Any) -> None:
        self._updating = True
        try:
            self._show(value)
        finally:
            self._updating = False

    def _show(self, value: Any) -> None:
        raise NotImplementedError


class NumberEditor(OptionEditor):
    def __init__(self, option: OptionInfo, changed: Changed, compact: bool) -> None:
        super().__init__(option, changed)
        self.label(compact)
        step = _step(option)
        is_int = option.type == "int"
        spin: QtWidgets.QSpinBox | QtWidgets.QDoubleSpinBox
        if is_int:
            spin = QtWidgets.QSpinBox()
        else:
            spin = QtWidgets.QDoubleSpinBox()
            spin.setDecimals(2)
        low = option.minimum if option.minimum is not None else 0.0
        high = option.maximum if option.maximum is not None else (2**31 - 1 if is_int else 1e6)
        if option.exclusive_minimum:
            low += step
        #: No default: the lowest value of the box reads "Auto" and means "not sent".
        self.auto = option.default is None
        if self.auto:
            low -= step
            spin.setSpecialValueText("Auto")
        spin.setRange(int(low) if is_int else low, int(high) if is_int else high)
        spin.setSingleStep(int(step) if is_int else step)
        spin.valueChanged.connect(self._changed)
        self.spin = self.widget = spin
        self.layout.addWidget(spin, 1)

    def _changed(self, value: float) -> None:
        if self.auto and value == self.spin.minimum():
            self.emit(None)
        else:
            self.emit(int(value) if self.option.type == "int" else float(value))

    def _show(self, value: Any) -> None:
        shown = self.spin.minimum() if value is None else value
        # PyQt6, and PyQt5 on Python >= 3.10, refuse a float for a QSpinBox's int.
        self.spin.setValue(int(shown) if self.option.type == "int" else float(shown))


class EnumEditor(OptionEditor):
    def __init__(self, option: OptionInfo, changed: Changed, compact: bool) -> None:
        super().__init__(option, changed)
        self.label(compact)
        combo = QtWidgets.QComboBox()
        if option.default is None:
            combo.addItem("Default", None)
        for choice in option.choices or ():
            combo.addItem(choice, choice)
        combo.currentIndexChanged.connect(lambda i: i >= 0 and self.emit(combo.itemData(i)))
        self.combo = self.widget = combo
        self.layout.addWidget(combo, 1)

    def _show(self, value: Any) -> None:
        self.combo.setCurrentIndex(max(self.combo.findData(value), 0))


class BoolEditor(OptionEditor):
    def __init__(self, option: OptionInfo, changed: Changed, compact: bool) -> None:
        super().__init__(option, changed)
        check = QtWidgets.QCheckBox(option.label or option.name)
        check.toggled.connect(self.emit)
        self.check = self.widget = check
        self.layout.addWidget(check, 1)

    def _show(self, value: Any) -> None:
        self.check.setChecked(bool(value))


class TextEditor(OptionEditor):
    def __init__(self, option: OptionInfo, changed: Changed, compact: bool) -> None:
        super().__init__(option, changed)
        self.long = not compact and (option.max_length or 0) > LONG_TEXT
        if self.long:
            edit = QtWidgets.QPlainTextEdit()
            edit.setPlaceholderText(option.label)
            edit.setFixedHeight(40)
            edit.textChanged.connect(lambda: self.emit(edit.toPlainText()))
            self.layout.addWidget(edit, 1)
        else:
            self.label(compact)
            edit = QtWidgets.QLineEdit()
            edit.setPlaceholderText(option.label if compact else "")
            if option.max_length:
                edit.setMaxLength(option.max_length)
            edit.editingFinished.connect(lambda: self.emit(edit.text()))
            self.layout.addWidget(edit, 1)
        self.edit = self.widget = edit

    def text(self) -> str:
        return self.edit.toPlainText() if self.long else self.edit.text()

    def _show(self, value: Any) -> None:
        text = "" if value is None else str(value)
        if text != self.text():
            if self.long:
                self.edit.setPlainText(text)
            else:
                self.edit.setText(text)


class PromptsEditor(OptionEditor):
    """Extra prompt text per layer: one line per fixed-name layer of the mode."""

    def __init__(self, option: OptionInfo, changed: Changed, mode: ModeInfo | None) -> None:
        super().__init__(option, changed)
        self.layout.setDirection(QtWidgets.QBoxLayout.Direction.TopToBottom)
        self.edits: dict[str, QtWidgets.QLineEdit] = {}
        for layer in mode.fixed_layers if mode is not None else ():
            line = QtWidgets.QWidget()
            row = QtWidgets.QHBoxLayout(line)
            row.setContentsMargins(0, 0, 0, 0)
            caption = QtWidgets.QLabel(layer.label or layer.name)
            caption.setMinimumWidth(70)
            edit = QtWidgets.QLineEdit()
            edit.setPlaceholderText(f"extra text for the {layer.name} layer")
            edit.editingFinished.connect(self._changed)
            row.addWidget(caption)
            row.addWidget(edit, 1)
            self.layout.addWidget(line)
            self.edits[layer.name] = edit

    def _changed(self) -> None:
        self.emit({name: edit.text() for name, edit in self.edits.items()})

    def _show(self, value: Any) -> None:
        value = value if isinstance(value, dict) else {}
        for name, edit in self.edits.items():
            text = str(value.get(name) or "")
            if text != edit.text():
                edit.setText(text)


def option_editor(
    option: OptionInfo, mode: ModeInfo | None, changed: Changed, compact: bool = False
) -> OptionEditor:
    """The control for `option` (compact: no caption, for list rows); the kind follows
    `form.EDITOR_KINDS`, a type without one gets a text field."""
    kind = editor_kind(option)
    if kind == "number":
        return NumberEditor(option, changed, compact)
    if kind == "choice":
        return EnumEditor(option, changed, compact)
    if kind == "check":
        return BoolEditor(option, changed, compact)
    if kind == "prompts":
        return PromptsEditor(option, changed, mode)
    return TextEditor(option, changed, compact)
