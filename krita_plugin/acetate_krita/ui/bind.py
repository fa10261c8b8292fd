"""Two-way bindings between model properties and Qt widgets.

The model outlives any docker (one per Krita window), so every slot a widget connects to
the model is disconnected again when that widget is destroyed (`watch`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..observable import Observable
from ..qt import QtCore, QtWidgets


def watch(
    model: Observable, name: str, widget: QtCore.QObject, slot: Callable[..., object]
) -> None:
    """Call `slot` when the property changes, for as long as `widget` exists."""
    signal = model.changed(name)
    signal.connect(slot)
    widget.destroyed.connect(lambda *_: signal.disconnect(slot))


def bind_line(model: Observable, name: str, widget: QtWidgets.QLineEdit) -> None:
    """Text fields commit on Enter or focus loss (a URL must not reconnect per keystroke)."""

    def update(value: str) -> None:
        if value != widget.text():
            widget.setText(value)

    widget.setText(getattr(model, name))
    widget.editingFinished.connect(lambda: setattr(model, name, widget.text()))
    watch(model, name, widget, update)


def bind_text(model: Observable, name: str, widget: QtWidgets.QPlainTextEdit) -> None:
    widget.setPlainText(getattr(model, name))
    widget.textChanged.connect(lambda: setattr(model, name, widget.toPlainText()))

    def update(value: str) -> None:
        if value != widget.toPlainText():
            widget.setPlainText(value)

    watch(model, name, widget, update)


def bind_spin(
    model: Observable,
    name: str,
    widget: QtWidgets.QSpinBox | QtWidgets.QDoubleSpinBox,
    convert: Callable[[Any], Any] = float,
) -> None:
    """`convert` gives the property's type (a seed is an int shown in a QDoubleSpinBox)."""
    widget.setValue(getattr(model, name))
    widget.valueChanged.connect(lambda value: setattr(model, name, convert(value)))
    watch(model, name, widget, widget.setValue)


def bind_check(model: Observable, name: str, widget: QtWidgets.QAbstractButton) -> None:
    widget.setChecked(getattr(model, name))
    widget.toggled.connect(lambda value: setattr(model, name, value))
    watch(model, name, widget, widget.setChecked)


def bind_combo(model: Observable, name: str, widget: QtWidgets.QComboBox) -> None:
    """The combo's item data are the property's values."""

    def select(value: Any) -> None:
        index = widget.findData(value)
        if index >= 0 and index != widget.currentIndex():
            widget.setCurrentIndex(index)

    def chosen(index: int) -> None:
        if index >= 0:
            setattr(model, name, widget.itemData(index))

    select(getattr(model, name))
    widget.currentIndexChanged.connect(chosen)
    watch(model, name, widget, select)
