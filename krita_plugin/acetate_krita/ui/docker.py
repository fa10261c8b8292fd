"""The "Acetate" docker: connection, model and mode, prompt, options, generate, history."""

from __future__ import annotations

import asyncio
from typing import Any

from krita import DockWidget

from .. import eventloop
from ..form import FILE, LORAS, SOURCE, STRUCTURE, mode_controls
from ..inputs import generatable, layout_lists, source_of
from ..local_server import LocalServer
from ..model import HistoryItem, Model
from ..protocol import MAX_SEED, ListInputInfo
from ..qt import QtCore, QtGui, QtWidgets
from .bind import bind_check, bind_combo, bind_line, bind_spin, bind_text, watch
from .layer_files import FilePicker
from .layers import labelled_row
from .local_server import LocalServerSection
from .loras import EmbeddingButton, LoraBox, PromptField
from .options import OptionEditor, TextEditor, option_editor
from .sources import SourcePicker
from .structure import StructureBox

Qt = QtCore.Qt
PREVIEW_SIDE = 160
THUMBNAIL_SIDE = 64


#: How the docker names where an input is read from.
SOURCE_LABELS = {"layer": "Active layer", "canvas": "Whole canvas", "selection": "Selection"}


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

    def __init__(self, model: Model, local_server: LocalServer | None = None) -> None:
        super().__init__()
        self.setWindowTitle("Acetate")
        self.model = model
        self.local_server = local_server
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
        watch(model, "mode", self, lambda _: self._build_mode_controls())
        watch(model, "modes", self, lambda _: self._build_mode_controls())
        watch(model, "option_values", self, lambda _: self._show_option_values())
        watch(model, "model_name", self, lambda _: self._model_changed())
        watch(model, "models", self, lambda _: self._model_changed())
        watch(model, "file_choices", self, lambda _: self._show_option_values())
        watch(model, "list_values", self, lambda _: self._show_lists())
        self._build_mode_controls()

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
        for widget in (
            labelled_row("Server", self.url_edit),
            labelled_row("Token", self.token_edit),
            status,
        ):
            self.layout_.addWidget(widget)
        self.local_section = (
            LocalServerSection(self.local_server) if self.local_server is not None else None
        )
        if self.local_section is not None:
            self.layout_.addWidget(self.local_section)
        watch(model, "connected", self, lambda _: self._show_connection())
        watch(model, "connection_text", self, lambda _: self._show_connection())
        self._show_connection()

    def _build_prompt(self) -> None:
        model = self.model
        self.model_combo = QtWidgets.QComboBox()
        self.mode_combo = QtWidgets.QComboBox()
        watch(model, "models", self, lambda _: self._fill_models())
        watch(model, "modes", self, lambda _: self._fill_modes())
        self._fill_models()
        self._fill_modes()
        bind_combo(model, "model_name", self.model_combo)
        bind_combo(model, "mode", self.mode_combo)
        self.problem_label = _wrapping_label("color: #d08000;")
        watch(model, "mode_problem", self, self._show_problem)
        self.prompt_edit = QtWidgets.QPlainTextEdit()
        self.prompt_edit.setPlaceholderText("Describe the layer, e.g. a glass bottle, high quality")
        self.prompt_edit.setFixedHeight(64)
        bind_text(model, "prompt", self.prompt_edit)
        self.embedding_button = EmbeddingButton(model, self._prompt_fields)
        for widget in (
            labelled_row("Model", self.model_combo),
            labelled_row("Mode", self.mode_combo),
            self.problem_label,
            self.prompt_edit,
            self.embedding_button,
        ):
            self.layout_.addWidget(widget)
        self._show_problem(model.mode_problem)

    def _build_options(self) -> None:
        """Seed and batch (every mode); the mode's own options are built from its declaration."""
        model = self.model
        # QSpinBox stops at 2**31 - 1; seeds go to 2**32 - 1.
        self.seed_spin = _double(0, MAX_SEED, 1)
        self.seed_spin.setDecimals(0)
        self.random_check = QtWidgets.QCheckBox("Random")
        bind_spin(model, "seed", self.seed_spin, int)
        bind_check(model, "random_seed", self.random_check)
        self.random_check.toggled.connect(lambda on: self.seed_spin.setEnabled(not on))
        self.seed_spin.setEnabled(not model.random_seed)
        self.batch_spin = _spin(1, 16)
        bind_spin(model, "batch", self.batch_spin, int)
        self.alpha_mask_check = QtWidgets.QCheckBox("Alpha as editable mask")
        self.alpha_mask_check.setToolTip(
            "Insert each transparent layer opaque, its colour kept everywhere, with a "
            "transparency mask holding its alpha: paint the mask to edit the edge."
        )
        bind_check(model, "alpha_mask", self.alpha_mask_check)
        #: The mode's controls live here, rebuilt when the mode changes.
        self.mode_box = QtWidgets.QWidget()
        self.mode_layout = QtWidgets.QVBoxLayout(self.mode_box)
        self.mode_layout.setContentsMargins(0, 0, 0, 0)
        self.option_editors: dict[str, OptionEditor] = {}
        self.list_boxes: dict[str, ListEditor | LayoutBox] = {}
        self.generate_checks: dict[str, QtWidgets.QCheckBox] = {}
        #: Where an input with other sources is read from (decompose: layer or canvas).
        self.source_combos: dict[str, QtWidgets.QComboBox] = {}
        self.advanced_box: QtWidgets.QGroupBox | None = None
        self.advanced_open = False
        #: The Structure section, for modes that take a structure layer.
        self.structure_box: StructureBox | None = None
        #: The layer picker of each input any layer can fill (sources.py), and the LoRA rows.
        self.source_pickers: dict[str, SourcePicker] = {}
        self.lora_box: LoraBox | None = None
        watch(model, "source_choices", self, lambda _: self._show_option_values())
        watch(model, "lora_choices", self, lambda _: self._show_option_values())
        #: Layer-file pickers by part, and which files they offer (rebuilt when that changes).
        self.file_pickers: dict[str, FilePicker] = {}
        self._pickers_shown: tuple[tuple[str, tuple[str, ...]], ...] = ()
        for widget in (
            self.mode_box,
            labelled_row("Seed", self.seed_spin, self.random_check),
            labelled_row("Batch", self.batch_spin),
            self.alpha_mask_check,
        ):
            self.layout_.addWidget(widget)

    def _build_mode_controls(self) -> None:
        """One control per option the mode lists (advanced ones folded), one editor per list."""
        while self.mode_layout.count():
            item = self.mode_layout.takeAt(0)
            if item.widget() is not None:
                item.widget().hide()
                item.widget().deleteLater()
        self.option_editors, self.list_boxes, self.advanced_box = {}, {}, None
        self.generate_checks, self.source_combos, self.file_pickers = {}, {}, {}
        self.structure_box, self.lora_box, self.source_pickers = None, None, {}
        self._pickers_shown = self._pickers_wanted()
        mode = self.model.mode_info
        if mode is None:
            return
        self.mode_combo.setToolTip(mode.help)
        optional = "" if mode.prompt_required else " (optional)"
        self.prompt_edit.setPlaceholderText(f"Describe the layer{optional}")
        basic: list[OptionEditor] = []
        advanced: list[OptionEditor | FilePicker] = []
        for control in mode_controls(mode, self.model.file_parts(), self.model.takes_loras()):
            if control.kind == SOURCE and control.image is not None:
                self.source_pickers[control.image.field] = SourcePicker(self.model, control.image)
            elif control.kind == LORAS:
                self.lora_box = LoraBox(self.model)
            elif control.kind == FILE and control.part is not None:
                picker = FilePicker(control.part, self.model.set_layer_file)
                self.file_pickers[control.part.part] = picker
                advanced.append(picker)
            elif control.kind == STRUCTURE:
                self.structure_box = StructureBox(self.model, mode.option("control_strength"))
            elif control.option is not None:
                editor = option_editor(control.option, mode, self._option_changed)
                self.option_editors[control.option.name] = editor
                (advanced if control.advanced else basic).append(editor)
        for editor in basic:
            self.mode_layout.addWidget(editor.row)
        for image, layer in generatable(mode):
            check = QtWidgets.QCheckBox(f"Generate the {(layer.label or layer.name).lower()}")
            check.setToolTip(
                f"Let the server generate it (from the prompt, or the {layer.name} layer "
                f"prompt) instead of sending the canvas as the {image.label.lower()}."
            )
            check.setChecked(image.field in self.model.generated_inputs)
            check.toggled.connect(lambda on, f=image.field: self.model.set_generated(f, on))
            self.generate_checks[image.field] = check
            self.mode_layout.addWidget(check)
        for image in mode.inputs:
            if len(image.sources) < 2:
                continue
            combo = QtWidgets.QComboBox()
            for source in image.sources:
                combo.addItem(SOURCE_LABELS.get(source, source), source)
            combo.setToolTip(image.help)
            chosen = source_of(image, self.model.input_sources)
            combo.setCurrentIndex(max(combo.findData(chosen), 0))
            combo.currentIndexChanged.connect(
                lambda _, f=image.field, c=combo: self.model.set_input_source(f, c.currentData())
            )
            self.source_combos[image.field] = combo
            self.mode_layout.addWidget(labelled_row(f"{image.label or image.field} from", combo))
        for source_picker in self.source_pickers.values():
            self.mode_layout.addWidget(source_picker.row)
        layouts = {spec.field for spec in layout_lists(mode)}
        for spec in mode.lists:
            box: ListEditor | LayoutBox
            if spec.field in layouts:
                box = LayoutBox(self.model, spec)
            else:
                box = ListEditor(self.model, spec)
            self.list_boxes[spec.field] = box
            self.mode_layout.addWidget(box)
        if self.structure_box is not None:
            self.mode_layout.addWidget(self.structure_box)
        if self.lora_box is not None:
            self.mode_layout.addWidget(self.lora_box)
        if advanced:
            self.advanced_box = QtWidgets.QGroupBox("Advanced")
            self.advanced_box.setCheckable(True)
            self.advanced_box.setChecked(self.advanced_open)
            inner = QtWidgets.QWidget()
            layout = QtWidgets.QVBoxLayout(self.advanced_box)
            layout.setContentsMargins(4, 0, 4, 0)
            layout.addWidget(inner)
            inner_layout = QtWidgets.QVBoxLayout(inner)
            inner_layout.setContentsMargins(0, 0, 0, 0)
            for editor in advanced:
                inner_layout.addWidget(editor.row)
            inner.setVisible(self.advanced_open)
            self.advanced_box.toggled.connect(inner.setVisible)
            self.advanced_box.toggled.connect(lambda on: setattr(self, "advanced_open", on))
            self.mode_layout.addWidget(self.advanced_box)
        self._show_option_values()
        self._show_lists()

    def _option_changed(self, name: str, value: Any) -> None:
        self.model.set_option(name, value)

    def _show_option_values(self) -> None:
        for name, editor in self.option_editors.items():
            editor.show_value(self.model.option_value(name))
        for part, picker in self.file_pickers.items():
            picker.show_value(self.model.layer_file(part))
        if self.structure_box is not None:
            self.structure_box.show_values()
        for source_picker in self.source_pickers.values():
            source_picker.show_value()
        if self.lora_box is not None:
            self.lora_box.refresh()

    def _prompt_fields(self) -> list[PromptField]:
        """The prompt fields an embedding can go into: the prompt, the negative prompt."""
        fields: list[PromptField] = [("prompt", self.prompt_edit)]
        negative = self.option_editors.get("negative_prompt")
        if isinstance(negative, TextEditor):
            fields.append(("negative prompt", negative.edit))
        return fields

    def _pickers_wanted(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        parts = self.model.file_parts()
        wanted = tuple((p.part, tuple(f.name for f in p.files)) for p in parts if p.choosable)
        return (*wanted, (LORAS, ("yes",) if self.model.takes_loras() else ()))

    def _model_changed(self) -> None:
        """Another base or model list: the pickers follow the files that fit it."""
        self.embedding_button.refresh()
        if self._pickers_wanted() != self._pickers_shown:
            self._build_mode_controls()
        else:
            self._show_option_values()
            if self.structure_box is not None:
                self.structure_box.refresh()  # the ControlNets that fit the base

    def _show_lists(self) -> None:
        for box in self.list_boxes.values():
            box.refresh()

    def _build_run(self) -> None:
        model = self.model
        self.generate_button = QtWidgets.QPushButton("Generate")
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.clicked.connect(lambda: model.cancel())
        self.undo_result_button = QtWidgets.QPushButton("Undo whole result")
        self.undo_result_button.setToolTip("Remove every group the last result inserted")
        self.undo_result_button.clicked.connect(lambda: model.undo_result())
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
            self.undo_result_button,
            self.progress_bar,
            self.status_label,
            self.preview_label,
            self.error_label,
        ):
            self.layout_.addWidget(widget)
        watch(model, "busy", self, lambda _: self._show_busy())
        watch(model, "server_too_old", self, lambda _: self._show_buttons())
        watch(model, "can_undo_result", self, lambda _: self._show_buttons())
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

    def _fill_modes(self) -> None:
        self.mode_combo.blockSignals(True)
        self.mode_combo.clear()
        for mode in self.model.modes.modes:
            self.mode_combo.addItem(mode.label, mode.name)
            self.mode_combo.setItemData(
                self.mode_combo.count() - 1, mode.help, Qt.ItemDataRole.ToolTipRole
            )
        index = self.mode_combo.findData(self.model.mode)
        self.mode_combo.setCurrentIndex(max(index, 0))
        self.mode_combo.blockSignals(False)

    def _show_problem(self, text: str) -> None:
        self.problem_label.setText(text)
        self.problem_label.setVisible(bool(text))

    def _show_busy(self) -> None:
        self._show_buttons()
        if self.model.busy:
            self.progress_bar.setValue(0)

    def _show_buttons(self) -> None:
        busy = self.model.busy
        self.generate_button.setEnabled(not busy and not self.model.server_too_old)
        self.cancel_button.setEnabled(busy)
        self.undo_result_button.setVisible(self.model.can_undo_result and not busy)

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


class LayoutBox(QtWidgets.QGroupBox):
    """A list input whose items have a region: filled from a layout group's child layers.

    The group is the active layer (when it is a group) or one picked here; each visible
    child is one item, bottom → top, named after its prompt and painted where it goes.
    """

    ACTIVE = ""

    def __init__(self, model: Model, spec: ListInputInfo) -> None:
        super().__init__(spec.label or spec.field)
        self.model, self.spec = model, spec
        self.setToolTip(spec.help)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        label = (spec.label or spec.field).lower()
        hint = _wrapping_label()
        hint.setText(
            f"From a layout group: one layer per {label[:-1] if label.endswith('s') else label}"
            f" (bottom → top, at most {spec.max_items}), named after it, painted where it goes."
            " The result goes above the group, which is then hidden."
        )
        self.combo = QtWidgets.QComboBox()
        self.refresh_button = QtWidgets.QToolButton()
        self.refresh_button.setText("⟳")
        self.refresh_button.setToolTip("List the document's groups again")
        self.refresh_button.clicked.connect(self.refresh)
        self.combo.currentIndexChanged.connect(self._picked)
        layout.addWidget(hint)
        layout.addWidget(labelled_row("Group", self.combo, self.refresh_button))
        self.refresh()

    def refresh(self) -> None:
        document = self.model.documents.active()
        groups = document.groups() if document is not None else []
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem("The active layer (a group)", self.ACTIVE)
        for node_id, name in groups:
            self.combo.addItem(name, node_id)
        self.combo.setCurrentIndex(max(self.combo.findData(self.model.layout_group), 0))
        self.combo.blockSignals(False)

    def _picked(self, index: int) -> None:
        if index >= 0:
            self.model.layout_group = self.combo.itemData(index) or self.ACTIVE


class ListEditor(QtWidgets.QGroupBox):
    """A list input: one row per item (its options), add and remove buttons within limits."""

    def __init__(self, model: Model, spec: ListInputInfo) -> None:
        super().__init__(spec.label or spec.field)
        self.setToolTip(spec.help)
        self.model, self.spec = model, spec
        self.rows: list[tuple[QtWidgets.QWidget, dict[str, OptionEditor]]] = []
        self.layout_ = QtWidgets.QVBoxLayout(self)
        self.layout_.setContentsMargins(4, 4, 4, 4)
        self.rows_box = QtWidgets.QWidget()
        self.rows_layout = QtWidgets.QVBoxLayout(self.rows_box)
        self.rows_layout.setContentsMargins(0, 0, 0, 0)
        self.add_button = QtWidgets.QPushButton(f"Add {spec.label.lower() or 'item'}")
        self.add_button.clicked.connect(lambda: model.add_item(spec.field))
        self.layout_.addWidget(self.rows_box)
        self.layout_.addWidget(self.add_button)
        self.refresh()

    def refresh(self) -> None:
        items = self.model.list_items(self.spec.field)
        if len(items) != len(self.rows):
            self._rebuild(len(items))
        for (_, editors), item in zip(self.rows, items, strict=True):
            for name, editor in editors.items():
                editor.show_value(item.get(name))
        full = self.spec.max_items is not None and len(items) >= self.spec.max_items
        self.add_button.setEnabled(not full)
        for row, _ in self.rows:
            row.findChild(QtWidgets.QToolButton).setEnabled(len(items) > self.spec.min_items)

    def _rebuild(self, count: int) -> None:
        for row, _ in self.rows:
            row.hide()
            row.deleteLater()
        self.rows = []
        for index in range(count):
            row = QtWidgets.QWidget()
            layout = QtWidgets.QHBoxLayout(row)
            layout.setContentsMargins(0, 0, 0, 0)
            layout.addWidget(QtWidgets.QLabel(f"{index + 1}."))
            editors: dict[str, OptionEditor] = {}
            for option in self.spec.item_options:
                editor = option_editor(option, None, self._changer(index), compact=True)
                editors[option.name] = editor
                layout.addWidget(editor.row, 1)
            remove = QtWidgets.QToolButton()
            remove.setText("−")
            remove.setToolTip("Remove this item")
            remove.clicked.connect(
                lambda _=False, i=index: self.model.remove_item(self.spec.field, i)
            )
            layout.addWidget(remove)
            self.rows_layout.addWidget(row)
            self.rows.append((row, editors))

    def _changer(self, index: int) -> Any:
        return lambda name, value: self.model.set_item(self.spec.field, index, name, value)
