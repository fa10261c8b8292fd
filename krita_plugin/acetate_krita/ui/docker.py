"""The "Acetate" docker: connection, model and mode, prompt, options, generate, history."""

from __future__ import annotations

import asyncio
from typing import Any

from krita import DockWidget

from .. import eventloop
from ..model import HistoryItem, Model
from ..protocol import (
    DECODES,
    LAYER_PROMPTS,
    MAX_SEED,
    MODE_LABELS,
    MODE_OPTIONS,
    MODES,
    SCALE,
    SIZE,
    STRENGTH,
)
from ..qt import QtCore, QtGui, QtWidgets
from .bind import bind_check, bind_combo, bind_line, bind_spin, bind_text, watch

Qt = QtCore.Qt
DECODE_LABELS = {"tta": "Best (TTA)", "fast": "Fast"}
PREVIEW_SIDE = 160
THUMBNAIL_SIDE = 64


def _row(label: str, *widgets: QtWidgets.QWidget) -> QtWidgets.QWidget:
    """A labelled row that can be hidden as one piece (Qt 5 forms cannot hide rows)."""
    row = QtWidgets.QWidget()
    layout = QtWidgets.QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    caption = QtWidgets.QLabel(label)
    caption.setMinimumWidth(70)
    layout.addWidget(caption)
    for widget in widgets:
        layout.addWidget(widget, 1)
    return row


def _spin(low: int, high: int, step: int = 1, auto: bool = False) -> QtWidgets.QSpinBox:
    spin = QtWidgets.QSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    if auto:
        spin.setSpecialValueText("Auto")
    return spin


def _double(low: float, high: float, step: float, auto: bool = False) -> QtWidgets.QDoubleSpinBox:
    spin = QtWidgets.QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setDecimals(2)
    if auto:
        spin.setSpecialValueText("Auto")
    return spin


def _wrapping_label(style: str = "") -> QtWidgets.QLabel:
    label = QtWidgets.QLabel()
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setStyleSheet(style)
    return label


class AcetateDocker(DockWidget):
    """Widgets only: every value lives in the `Model`, every button calls one of its actions."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.setWindowTitle("Acetate")
        self.model = model
        self.task: asyncio.Task[Any] | None = None
        body = QtWidgets.QWidget()
        self.layout_ = QtWidgets.QVBoxLayout(body)
        self._build_connection()
        self._build_prompt()
        self._build_options()
        self._build_run()
        self._build_history()
        self.layout_.addStretch(1)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(body)
        self.setWidget(scroll)
        watch(model, "mode", self, lambda _: self._show_mode_inputs())
        self._show_mode_inputs()

    # -- building -------------------------------------------------------------------------

    def _build_connection(self) -> None:
        model = self.model
        self.url_edit = QtWidgets.QLineEdit()
        self.url_edit.setPlaceholderText("http://127.0.0.1:7865")
        self.token_edit = QtWidgets.QLineEdit()
        self.token_edit.setEchoMode(QtWidgets.QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("token (only for a server on another machine)")
        bind_line(model, "server_url", self.url_edit)
        bind_line(model, "token", self.token_edit)
        self.connect_button = QtWidgets.QToolButton()
        self.connect_button.setText("⟳")
        self.connect_button.setToolTip("Connect again")
        self.connect_button.clicked.connect(lambda: model.reconnect())
        self.status_dot = QtWidgets.QLabel("●")
        self.connection_label = _wrapping_label()
        status = QtWidgets.QWidget()
        layout = QtWidgets.QHBoxLayout(status)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.status_dot)
        layout.addWidget(self.connection_label, 1)
        layout.addWidget(self.connect_button)
        for widget in (_row("Server", self.url_edit), _row("Token", self.token_edit), status):
            self.layout_.addWidget(widget)
        watch(model, "connected", self, lambda _: self._show_connection())
        watch(model, "connection_text", self, lambda _: self._show_connection())
        self._show_connection()

    def _build_prompt(self) -> None:
        model = self.model
        self.model_combo = QtWidgets.QComboBox()
        self.mode_combo = QtWidgets.QComboBox()
        for mode in MODES:
            self.mode_combo.addItem(MODE_LABELS[mode], mode)
        watch(model, "models", self, lambda _: self._fill_models())
        self._fill_models()
        bind_combo(model, "model_name", self.model_combo)
        bind_combo(model, "mode", self.mode_combo)
        self.problem_label = _wrapping_label("color: #d08000;")
        watch(model, "mode_problem", self, self._show_problem)
        self.prompt_edit = QtWidgets.QPlainTextEdit()
        self.prompt_edit.setPlaceholderText("Describe the layer, e.g. a glass bottle, high quality")
        self.prompt_edit.setFixedHeight(64)
        self.negative_edit = QtWidgets.QPlainTextEdit()
        self.negative_edit.setPlaceholderText("Negative prompt (optional)")
        self.negative_edit.setFixedHeight(40)
        bind_text(model, "prompt", self.prompt_edit)
        bind_text(model, "negative_prompt", self.negative_edit)
        self.layer_prompt_rows = []
        for name, label in (("fg_prompt", "Foreground"), ("bg_prompt", "Background")):
            edit = QtWidgets.QLineEdit()
            bind_line(model, name, edit)
            self.layer_prompt_rows.append(_row(label, edit))
        blend = QtWidgets.QLineEdit()
        bind_line(model, "blend_prompt", blend)
        self.layer_prompt_rows.append(_row("Blended", blend))
        for widget in (
            _row("Model", self.model_combo),
            _row("Mode", self.mode_combo),
            self.problem_label,
            self.prompt_edit,
            self.negative_edit,
            *self.layer_prompt_rows,
        ):
            self.layout_.addWidget(widget)
        self._show_problem(model.mode_problem)

    def _build_options(self) -> None:
        model = self.model
        # QSpinBox stops at 2**31 - 1; seeds go to 2**32 - 1.
        self.seed_spin = _double(0, MAX_SEED, 1)
        self.seed_spin.setDecimals(0)
        self.random_check = QtWidgets.QCheckBox("Random")
        bind_spin(model, "seed", self.seed_spin, int)
        bind_check(model, "random_seed", self.random_check)
        self.random_check.toggled.connect(lambda on: self.seed_spin.setEnabled(not on))
        self.seed_spin.setEnabled(not model.random_seed)
        self.steps_spin = _spin(0, 150, auto=True)
        self.cfg_spin = _double(0.0, 30.0, 0.5, auto=True)
        self.width_spin = _spin(64, 4096, 64)
        self.height_spin = _spin(64, 4096, 64)
        self.strength_spin = _double(0.05, 1.0, 0.05)
        self.scale_spin = _double(1.25, 4.0, 0.25)
        self.batch_spin = _spin(1, 16)
        self.decode_combo = QtWidgets.QComboBox()
        for decode in DECODES:
            self.decode_combo.addItem(DECODE_LABELS[decode], decode)
        for name, spin in (
            ("steps", self.steps_spin),
            ("cfg", self.cfg_spin),
            ("width", self.width_spin),
            ("height", self.height_spin),
            ("strength", self.strength_spin),
            ("scale", self.scale_spin),
            ("batch", self.batch_spin),
        ):
            bind_spin(model, name, spin, type(getattr(model, name)))
        bind_combo(model, "decode", self.decode_combo)
        self.option_rows = {
            SIZE: _row("Size", self.width_spin, QtWidgets.QLabel("×"), self.height_spin),
            STRENGTH: _row("Strength", self.strength_spin),
            SCALE: _row("Scale", self.scale_spin),
        }
        for widget in (
            _row("Seed", self.seed_spin, self.random_check),
            _row("Steps", self.steps_spin, QtWidgets.QLabel("CFG"), self.cfg_spin),
            *self.option_rows.values(),
            _row("Batch", self.batch_spin, QtWidgets.QLabel("Quality"), self.decode_combo),
        ):
            self.layout_.addWidget(widget)

    def _build_run(self) -> None:
        model = self.model
        self.generate_button = QtWidgets.QPushButton("Generate")
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.clicked.connect(lambda: model.cancel())
        buttons = QtWidgets.QWidget()
        layout = QtWidgets.QHBoxLayout(buttons)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.generate_button, 2)
        layout.addWidget(self.cancel_button, 1)
        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.status_label = _wrapping_label()
        self.preview_label = QtWidgets.QLabel()
        self.preview_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.error_label = _wrapping_label("color: #e04040;")
        for widget in (
            buttons,
            self.progress_bar,
            self.status_label,
            self.preview_label,
            self.error_label,
        ):
            self.layout_.addWidget(widget)
        watch(model, "busy", self, lambda _: self._show_busy())
        watch(model, "progress", self, lambda v: self.progress_bar.setValue(int(v * 1000)))
        watch(model, "status", self, self.status_label.setText)
        watch(model, "error", self, self._show_error)
        watch(model, "preview", self, self._show_preview)
        self._show_busy()
        self._show_error(model.error)

    def _build_history(self) -> None:
        self.history_list = QtWidgets.QListWidget()
        self.history_list.setIconSize(QtCore.QSize(THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        self.history_list.setMinimumHeight(3 * THUMBNAIL_SIDE)
        self.history_list.itemDoubleClicked.connect(lambda _: self.insert_again())
        self.insert_button = QtWidgets.QPushButton("Insert again")
        self.insert_button.clicked.connect(self.insert_again)
        self.psd_button = QtWidgets.QPushButton("Open as PSD")
        self.psd_button.setToolTip("Open the job's layered PSD as a new document")
        self.psd_button.clicked.connect(self.open_psd)
        buttons = QtWidgets.QWidget()
        layout = QtWidgets.QHBoxLayout(buttons)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.insert_button)
        layout.addWidget(self.psd_button)
        self.layout_.addWidget(QtWidgets.QLabel("History"))
        self.layout_.addWidget(self.history_list)
        self.layout_.addWidget(buttons)
        watch(self.model, "history", self, lambda _: self._fill_history())
        self._fill_history()

    # -- actions --------------------------------------------------------------------------

    def generate(self) -> None:
        self.task = eventloop.run(self.model.generate())

    def selected(self) -> HistoryItem | None:
        row = self.history_list.currentRow()
        history = self.model.history
        return history[row] if 0 <= row < len(history) else (history[0] if history else None)

    def insert_again(self) -> None:
        item = self.selected()
        if item is not None:
            self.task = eventloop.run(self.model.insert_again(item))

    def open_psd(self) -> None:
        item = self.selected()
        if item is not None:
            self.task = eventloop.run(self.model.open_psd(item))

    # -- showing state --------------------------------------------------------------------

    def _show_connection(self) -> None:
        colour = "#30b030" if self.model.connected else "#c04040"
        self.status_dot.setStyleSheet(f"color: {colour};")
        self.connection_label.setText(self.model.connection_text)

    def _fill_models(self) -> None:
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for base in self.model.models.bases:
            self.model_combo.addItem(base.label, base.name)
        index = self.model_combo.findData(self.model.model_name)
        self.model_combo.setCurrentIndex(max(index, 0))
        self.model_combo.blockSignals(False)

    def _show_mode_inputs(self) -> None:
        options = MODE_OPTIONS[self.model.mode]
        for option, row in self.option_rows.items():
            row.setVisible(option in options)
        for row in self.layer_prompt_rows:
            row.setVisible(LAYER_PROMPTS in options)
        optional = " (optional)" if self.model.mode == "upscale" else ""
        self.prompt_edit.setPlaceholderText(f"Describe the layer{optional}")

    def _show_problem(self, text: str) -> None:
        self.problem_label.setText(text)
        self.problem_label.setVisible(bool(text))

    def _show_busy(self) -> None:
        busy = self.model.busy
        self.generate_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        if busy:
            self.progress_bar.setValue(0)

    def _show_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.setVisible(bool(text))

    def _show_preview(self, data: bytes) -> None:
        pixmap = QtGui.QPixmap()
        if data and pixmap.loadFromData(data):
            self.preview_label.setPixmap(
                pixmap.scaled(
                    PREVIEW_SIDE,
                    PREVIEW_SIDE,
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )
        else:
            self.preview_label.clear()

    def _fill_history(self) -> None:
        self.history_list.clear()
        for item in self.model.history:
            entry = QtWidgets.QListWidgetItem(item.title)
            entry.setToolTip(f"{item.record.id}\n{item.title}")
            if item.thumbnail is not None:
                data, width, height = item.thumbnail
                image = QtGui.QImage(
                    data, width, height, 4 * width, QtGui.QImage.Format.Format_RGBA8888
                )
                entry.setIcon(QtGui.QIcon(QtGui.QPixmap.fromImage(image.copy())))
            self.history_list.addItem(entry)

    def canvasChanged(self, canvas: Any) -> None:
        pass
