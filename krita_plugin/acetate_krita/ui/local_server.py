"""The docker's "Local server" section: the acetate executable, Start/Stop, a folding log."""

from __future__ import annotations

from ..local_server import LocalServer
from ..qt import QtCore, QtWidgets
from .bind import bind_line, watch

Qt = QtCore.Qt
STATE_COLOURS = {"running": "#30b030", "starting": "#d0a000", "failed": "#c04040"}


class LocalServerSection(QtWidgets.QGroupBox):
    """Widgets only; `LocalServer` holds the state and runs the process."""

    def __init__(self, server: LocalServer) -> None:
        super().__init__("Local server")
        self.server = server
        layout = QtWidgets.QVBoxLayout(self)
        self.executable_edit = QtWidgets.QLineEdit()
        self.executable_edit.setPlaceholderText("acetate executable (found on PATH or in a venv)")
        bind_line(server, "executable", self.executable_edit)
        self.browse_button = QtWidgets.QToolButton()
        self.browse_button.setText("…")
        self.browse_button.setToolTip("Choose the acetate executable")
        self.browse_button.clicked.connect(self._browse)
        self.detect_button = QtWidgets.QToolButton()
        self.detect_button.setText("Detect")
        self.detect_button.setToolTip("Look on PATH and in the usual virtual environments")
        self.detect_button.clicked.connect(lambda: server.detect())  # not `checked` as report
        path_row = QtWidgets.QHBoxLayout()
        path_row.addWidget(self.executable_edit, 1)
        path_row.addWidget(self.browse_button)
        path_row.addWidget(self.detect_button)
        layout.addLayout(path_row)

        self.start_button = QtWidgets.QPushButton("Start")
        self.start_button.setToolTip("Run `acetate serve` on this machine and connect to it")
        self.start_button.clicked.connect(lambda: server.start())
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.clicked.connect(lambda: server.stop())
        self.status_dot = QtWidgets.QLabel("●")
        self.status_label = QtWidgets.QLabel()
        self.status_label.setWordWrap(True)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.status_dot)
        buttons.addWidget(self.status_label, 1)
        layout.addLayout(buttons)

        self.log_toggle = QtWidgets.QToolButton()
        self.log_toggle.setText("Server log")
        self.log_toggle.setCheckable(True)
        self.log_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.log_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.log_toggle.setAutoRaise(True)
        self.log_toggle.toggled.connect(self._fold)
        self.log_view = QtWidgets.QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)
        self.log_view.setMinimumHeight(140)
        self.log_view.hide()
        layout.addWidget(self.log_toggle)
        layout.addWidget(self.log_view)

        watch(server, "state", self, lambda _: self._show_state())
        watch(server, "status_text", self, lambda _: self._show_state())
        watch(server, "log", self, self._show_log)
        self._show_state()
        self._show_log(server.log)

    def _browse(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "The acetate executable", self.server.executable or ""
        )
        if path:
            self.server.executable = path

    def _fold(self, open_: bool) -> None:
        self.log_toggle.setArrowType(Qt.ArrowType.DownArrow if open_ else Qt.ArrowType.RightArrow)
        self.log_view.setVisible(open_)

    def _show_state(self) -> None:
        state = self.server.state
        active = state in ("starting", "running")
        self.start_button.setEnabled(not active)
        self.stop_button.setEnabled(active)
        self.executable_edit.setEnabled(not active)
        self.status_label.setText(self.server.status_text)
        self.status_dot.setStyleSheet(f"color: {STATE_COLOURS.get(state, '#808080')};")

    def _show_log(self, text: str) -> None:
        self.log_view.setPlainText(text)
        bar = self.log_view.verticalScrollBar()
        bar.setValue(bar.maximum())
