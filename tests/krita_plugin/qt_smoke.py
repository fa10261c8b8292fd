"""Every Qt path of the plugin, offscreen and without Krita, on one Qt binding.

Run as a script (test_qt_compat.py does, once per binding): `ACETATE_QT=pyqt6
QT_QPA_PLATFORM=offscreen python qt_smoke.py`. It imports every plugin module (the `krita`
module is a stub: widgets only need its DockWidget, a QDockWidget), builds the docker for
every mode of tests/data/modes.json and drives its controls, does real HTTP through
QtHttp (QNetworkAccessManager) against a local server, and runs a child process through
QtProcess. Prints one JSON line {"binding", "qt", "python", "checked"}; exits non-zero on
the first failure.
"""

from __future__ import annotations

import json
import os
import pkgutil
import sys
import threading
import time
import types
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import import_module
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PLUGIN_DIR = HERE.parents[1] / "krita_plugin"
MODES_JSON = HERE.parent / "data" / "modes.json"
sys.path.insert(0, str(PLUGIN_DIR))

import acetate_krita  # noqa: E402  (no `krita` yet: registers nothing)
from acetate_krita import qt  # noqa: E402

QtCore, QtGui, QtWidgets = qt.QtCore, qt.QtGui, qt.QtWidgets
checked: list[str] = []


def install_krita_stub() -> None:
    """What the plugin imports from `krita`; only DockWidget is used for real here."""
    krita = types.ModuleType("krita")

    class DockWidgetFactoryBase:
        class DockPosition:
            DockRight = 2

    class Krita:
        @staticmethod
        def instance() -> Any:
            raise RuntimeError("no Krita in this smoke test")

    krita.DockWidget = QtWidgets.QDockWidget  # type: ignore[attr-defined]
    krita.DockWidgetFactoryBase = DockWidgetFactoryBase  # type: ignore[attr-defined]
    krita.DockWidgetFactory = type("DockWidgetFactory", (), {})  # type: ignore[attr-defined]
    krita.Extension = QtCore.QObject  # type: ignore[attr-defined]
    krita.Krita = Krita  # type: ignore[attr-defined]
    krita.Document = type("Document", (), {})  # type: ignore[attr-defined]
    krita.Node = type("Node", (), {})  # type: ignore[attr-defined]
    sys.modules["krita"] = krita


def import_everything() -> None:
    for info in pkgutil.walk_packages(acetate_krita.__path__, "acetate_krita."):
        import_module(info.name)
        checked.append(f"import {info.name}")


def pump(app: Any, until: Callable[[], bool], timeout: float = 20.0) -> None:
    """Qt's events and the plugin's asyncio loop, as in Krita, until `until()`."""
    from acetate_krita import eventloop

    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise TimeoutError("the Qt/asyncio pump timed out")
        app.processEvents()
        eventloop.process_events()
        time.sleep(0.002)


class NoDocuments:
    def active(self) -> None:
        return None


def png_bytes(width: int, height: int) -> bytes:
    image = QtGui.QImage(width, height, QtGui.QImage.Format.Format_RGBA8888)
    image.fill(QtGui.QColor(10, 200, 30, 128))
    buffer = QtCore.QBuffer()
    buffer.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
    assert image.save(buffer, "PNG")
    return bytes(buffer.data())


def drive_loras(app: Any, model: Any, box: Any) -> None:
    """Add two LoRA rows, change the second, remove the first: the model follows."""
    box.add_button.click()
    box.add_button.click()
    app.processEvents()
    assert [row.name for row in model.lora_rows()[0]] == ["ink", "wash"]
    _, combo, spin = box.rows[1]
    spin.setValue(-1.5)
    combo.setCurrentIndex(combo.findData("ink"))
    box.rows[0][0].findChild(QtWidgets.QToolButton).click()
    app.processEvents()
    assert [(r.name, r.strength) for r in model.lora_rows()[0]] == [("ink", -1.5)]
    assert len(box.rows) == 1 and box.add_button.isEnabled()


def drive_docker(app: Any) -> None:
    from acetate_krita import eventloop
    from acetate_krita.local_server import LocalServer
    from acetate_krita.model import HistoryItem, Model
    from acetate_krita.network import QtHttp
    from acetate_krita.process import QtProcess
    from acetate_krita.protocol import ModelsInfo, ModesInfo, ResultRecord
    from acetate_krita.ui.docker import AcetateDocker, LayoutBox, ListEditor
    from acetate_krita.ui.options import EnumEditor, NumberEditor, TextEditor

    model = Model(NoDocuments(), QtHttp(), eventloop.run)  # type: ignore[arg-type]
    server = LocalServer(model, QtProcess, eventloop.run)
    docker = AcetateDocker(model, server)
    docker.resize(360, 900)
    docker.show()
    model.modes = ModesInfo.from_json(json.loads(MODES_JSON.read_text()))
    bases = [
        {"name": "xl", "family": "sdxl", "modes": {"fg": []}},
        {"name": "sd", "family": "sd15", "modes": {"fg": [], "joint": []}},
    ]
    loras = [{"name": "ink", "family": "sdxl"}, {"name": "wash", "family": "sdxl"}]
    embeddings = [{"name": "emb-xl", "family": "sdxl"}, {"name": "emb-sd", "family": "sd15"}]
    models = {"default_base": "xl", "bases": bases, "loras": loras, "embeddings": embeddings}
    model.models = ModelsInfo.from_json(models)
    assert docker.model_combo.count() == 2 and docker.mode_combo.count() == len(model.modes.modes)
    tip = docker.mode_combo.itemData(0, qt.Qt.ItemDataRole.ToolTipRole)
    assert tip == model.modes.modes[0].help, tip
    for mode in model.modes.modes:
        docker.mode_combo.setCurrentIndex(docker.mode_combo.findData(mode.name))
        assert model.mode == mode.name and model.mode_info is not None
        app.processEvents()
        for name, editor in docker.option_editors.items():
            if isinstance(editor, NumberEditor):
                editor.spin.setValue(editor.spin.maximum())
                editor.show_value(model.option_value(name))
            elif isinstance(editor, EnumEditor) and editor.combo.count() > 1:
                editor.combo.setCurrentIndex(editor.combo.count() - 1)
                assert model.option_values[name] == editor.combo.itemData(editor.combo.count() - 1)
            elif isinstance(editor, TextEditor) and not editor.long:
                editor.edit.setText("x")
                editor.edit.editingFinished.emit()
                assert model.option_values[name] == "x"
        for field, box in docker.list_boxes.items():
            if isinstance(box, ListEditor) and box.add_button.isEnabled():
                box.add_button.click()
                assert model.list_items(field), field
                app.processEvents()
            elif isinstance(box, LayoutBox):
                box.refresh_button.click()
        if docker.advanced_box is not None:
            docker.advanced_box.setChecked(True)
        for check in docker.generate_checks.values():
            check.setChecked(not check.isChecked())
        for combo in docker.source_combos.values():
            combo.setCurrentIndex(combo.count() - 1)
        for field, picker in docker.source_pickers.items():
            picker.combo.showPopup()  # lists the layers again (none: no document)
            picker.combo.hidePopup()
            picker.combo.setCurrentIndex(picker.combo.count() - 1)
            assert model.source_choice(field) == (picker.combo.currentData() or ""), field
        if docker.lora_box is not None:
            drive_loras(app, model, docker.lora_box)
        checked.append(f"docker mode {mode.name}")
    docker.prompt_edit.setPlainText("a cat")
    docker.prompt_edit.moveCursor(QtGui.QTextCursor.MoveOperation.End)
    docker.embedding_button.fill()
    prompt_menu = docker.embedding_button.menu_.actions()[0].menu()  # prompt, negative prompt
    assert docker.embedding_button.isVisibleTo(docker) and prompt_menu is not None
    assert [action.text() for action in prompt_menu.actions()] == ["emb-xl"]
    prompt_menu.actions()[0].trigger()
    assert model.prompt == "a cat emb-xl", model.prompt
    docker.model_combo.setCurrentIndex(1)
    assert model.model_name == "sd"
    docker.random_check.setChecked(False)
    docker.seed_spin.setValue(4_000_000_000)
    assert model.seed == 4_000_000_000 and docker.seed_spin.isEnabled()
    docker.batch_spin.setValue(3)
    assert model.batch == 3
    docker.prompt_edit.setPlainText("a glass bottle")
    assert model.prompt == "a glass bottle"
    docker.url_edit.setText("http://127.0.0.1:9")
    docker.url_edit.editingFinished.emit()
    assert model.server_url == "http://127.0.0.1:9"
    model.preview = png_bytes(40, 20)
    assert docker.preview_label.pixmap() is not None and not docker.preview_label.pixmap().isNull()
    model.preview = b""
    record = ResultRecord.from_json(
        {"id": "j_1", "mode": "fg", "parameters": {"prompt": "cat", "seed": 3}, "layers": []}
    )
    thumbnail = (bytes([255, 0, 0, 255]) * 16, 4, 4)
    model.history = (HistoryItem(record, "http://x", thumbnail), HistoryItem(record, "", None))
    assert docker.history_list.count() == 2
    assert not docker.history_list.item(0).icon().isNull()
    model.busy, model.progress, model.status, model.error = True, 0.5, "Working", "Oops"
    assert docker.progress_bar.value() == 500 and not docker.generate_button.isEnabled()
    model.busy = False
    section = docker.local_section
    assert section is not None
    section.log_toggle.setChecked(True)
    server.log = "line 1\nline 2\n"
    assert section.log_view.toPlainText() == server.log
    server.state = "running"
    assert not section.start_button.isEnabled() and section.stop_button.isEnabled()
    app.processEvents()
    docker.close()
    docker.deleteLater()
    app.processEvents()
    checked.append("docker widgets")


class Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        data = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "body": body.decode(),
                "token": self.headers.get("Authorization"),
            }
        ).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Acetate-Width", "7")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


def http_roundtrip(app: Any) -> None:
    from acetate_krita import eventloop
    from acetate_krita.client import NetworkError
    from acetate_krita.network import QtHttp

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    http = QtHttp()
    try:
        get = eventloop.run(http.request("GET", f"{url}/api/health", {"Authorization": "Bearer t"}))
        post = eventloop.run(http.request("POST", f"{url}/api/jobs", {}, b'{"mode": "fg"}', 5.0))
        pump(app, lambda: get.done() and post.done())
        answer = get.result()
        assert answer.status == 200, answer
        assert answer.headers["x-acetate-width"] == "7", answer.headers
        assert json.loads(answer.body) == {
            "method": "GET",
            "path": "/api/health",
            "body": "",
            "token": "Bearer t",
        }
        answer = post.result()
        assert answer.status == 201 and json.loads(answer.body)["body"] == '{"mode": "fg"}'
    finally:
        httpd.shutdown()
        httpd.server_close()
    refused = eventloop.run(http.request("GET", url, {}))
    pump(app, refused.done)
    assert isinstance(refused.exception(), NetworkError), refused.exception()
    checked.append("QtHttp")


def child_process(app: Any) -> None:
    from acetate_krita.process import QtProcess

    process = QtProcess()
    output: list[str] = []
    ended: list[tuple[int | None, str]] = []
    code = "import sys; print('hello', flush=True); print('err', file=sys.stderr); sys.exit(3)"
    process.start(sys.executable, ["-c", code], output.append, lambda c, m: ended.append((c, m)))
    pump(app, lambda: bool(ended))
    assert ended == [(3, "")], ended
    text = "".join(output)
    assert "hello" in text and "err" in text, text
    assert not process.running()
    missing = QtProcess()
    missing.start("/nonexistent/acetate", [], output.append, lambda c, m: ended.append((c, m)))
    pump(app, lambda: len(ended) == 2)
    assert ended[1][0] is None and "could not start" in ended[1][1], ended
    checked.append("QtProcess")


def main() -> None:
    forced = os.environ.get("ACETATE_QT")
    if forced:
        assert qt.BINDING.lower() == forced.lower(), (qt.BINDING, forced)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["qt_smoke"])
    install_krita_stub()
    import_everything()
    from acetate_krita import eventloop

    eventloop.setup()
    drive_docker(app)
    http_roundtrip(app)
    child_process(app)
    eventloop.stop()
    print(
        json.dumps(
            {
                "binding": qt.BINDING,
                "qt": qt.QT_VERSION,
                "python": sys.version.split()[0],
                "checked": checked,
            }
        )
    )


if __name__ == "__main__":
    main()
