"""Two-way bindings between model properties and Qt widgets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..observable import Observable
from ..qt import QtWidgets


def bind_line(model: Observable, name: str, widget: QtWidgets.QLineEdit) -> None:
    """Text fields commit on Enter or focus loss (a URL must not reconnect per keystroke)."""
    widget.setText(getattr(model, name))
    widget.editingFinished.connect(lambda: setattr(model, name, widget.text()))
    model.changed(name).connect(lambda value: value != widget.text() and widget.setText(value))


def bind_text(model: Observable, name: str, widget: QtWidgets.QPlainTextEdit) -> None:
    widget.setPlainText(getattr(model, name))
    widget.textChanged.connect(lambda: setattr(model, name, widget.toPlainText()))

    def update(value: str) -> None:
        if value != widget.toPlainText():
            widget.setPlainText(value)

    model.changed(name).connect(update)


def bind_spin(
    model: Observable,
    name: str,
    widget: QtWidgets.QSpinBox | QtWidgets.QDoubleSpinBox,
    convert: Callable[[Any], Any] = float,
) -> None:
    """`convert` gives the property's type (a seed is an int shown in a QDoubleSpinBox)."""
    widget.setValue(getattr(model, name))
    widget.valueChanged.connect(lambda value: setattr(model, name, convert(value)))
    model.changed(name).connect(widget.setValue)


def bind_check(model: Observable, name: str, widget: QtWidgets.QAbstractButton) -> None:
    widget.setChecked(getattr(model, name))
    widget.toggled.connect(lambda value: setattr(model, name, value))
    model.changed(name).connect(widget.setChecked)


def bind_combo(model: Observable, name: str, widget: QtWidgets.QComboBox) -> None:
    """The combo's item data are the property's values."""

    def select(value: Any) -> None:
        index = widget.findData(value)
        if index >= 0 and index != widget.currentIndex():
            widget.setCurrentIndex(index)

    select(getattr(model, name))
    widget.currentIndexChanged.connect(
        lambda index: index >= 0 and setattr(model, name, widget.itemData(index))
    )
    model.changed(name).connect(select)
