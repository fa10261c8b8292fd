"""Runs a test script inside real Krita and writes what it saw to a JSON file.

Configured by `$KRITA_TEST_CONFIG` (JSON: script, results, timeout, params). Never lets Krita
hang a test run: a heartbeat at setup, a watchdog thread, an excepthook that records instead
of opening Krita's modal error dialog, a modal-dialog killer, and a quit with a hard fallback.
The script defines `run(ctx)` (plain or `async`); async scripts run on the Acetate plugin's
own event loop, so they can await its coroutines.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from krita import Extension, Krita
from PyQt5.QtCore import QTimer
from PyQt5.QtWidgets import QApplication


class Context:
    """What a test script gets: its parameters and a results dict saved atomically."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.params: dict[str, Any] = config.get("params", {})
        self.workdir = Path(config["results"]).parent
        self.results: dict[str, Any] = {"status": "started", "modals": [], "log": []}
        self.started = time.monotonic()

    def log(self, message: str) -> None:
        self.results["log"].append(f"{time.monotonic() - self.started:7.2f}s {message}")
        self.write()

    def write(self, status: str | None = None) -> None:
        if status is not None:
            self.results["status"] = status
        path = Path(self.config["results"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=1, default=str))
        os.replace(tmp, path)


CTX: Context | None = None


def _excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    if CTX is None:
        return
    CTX.results.setdefault("errors", []).append(
        "".join(traceback.format_exception(kind, value, tb))
    )
    CTX.write("error")
    quit_krita(1)


def _watchdog(seconds: float) -> None:
    time.sleep(seconds)
    if CTX is not None:
        CTX.write("timeout")
    os._exit(3)


def _kill_modals() -> None:
    widget = QApplication.activeModalWidget()
    if widget is not None and CTX is not None:
        text = getattr(widget, "text", lambda: "")()
        CTX.results["modals"].append(f"{widget.windowTitle()} | {text}")
        CTX.write()
        widget.close()
        reject = getattr(widget, "reject", None)
        if reject is not None:
            reject()


def quit_krita(code: int = 0) -> None:
    for document in Krita.instance().documents():
        document.setModified(False)
        document.close()

    def fallback() -> None:
        time.sleep(15)
        os._exit(code)

    threading.Thread(target=fallback, daemon=True).start()
    action = Krita.instance().action("file_quit")
    if action is not None:
        action.trigger()
    else:  # no main window yet
        QApplication.instance().quit()


def _load_script(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("acetate_test_script", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(Path(path).parent))
    spec.loader.exec_module(module)
    return module


def _run_test() -> None:
    assert CTX is not None
    try:
        module = _load_script(CTX.config["script"])
        outcome = module.run(CTX)
    except Exception:
        _excepthook(*sys.exc_info())  # type: ignore[arg-type]
        return
    if not asyncio.iscoroutine(outcome):
        CTX.write("ok")
        quit_krita(0)
        return
    from acetate_krita import eventloop

    eventloop.setup()
    task = eventloop.run(outcome)

    def done(task: asyncio.Task[Any]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            _excepthook(type(error), error, error.__traceback__)
        else:
            CTX.write("ok")
            quit_krita(0)

    task.add_done_callback(done)


class TestDriver(Extension):
    def __init__(self, parent: Any) -> None:
        super().__init__(parent)
        self._timers: list[QTimer] = []

    def setup(self) -> None:
        global CTX
        path = os.environ.get("KRITA_TEST_CONFIG")
        if not path:
            return
        CTX = Context(json.loads(Path(path).read_text()))
        sys.excepthook = _excepthook
        CTX.write("started")
        timeout = float(CTX.config.get("timeout", 120))
        threading.Thread(target=_watchdog, args=(timeout,), daemon=True).start()
        Krita.instance().setBatchmode(True)
        Krita.instance().notifier().windowCreated.connect(self._on_window)

    def _on_window(self) -> None:
        timer = QTimer(self)
        timer.timeout.connect(_kill_modals)
        timer.start(300)
        self._timers.append(timer)
        QTimer.singleShot(200, _run_test)

    def createActions(self, window: Any) -> None:
        pass


Krita.instance().addExtension(TestDriver(Krita.instance()))
