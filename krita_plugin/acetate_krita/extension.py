"""Krita's entry points: the extension (event loop, model, settings) and the docker factory."""

from __future__ import annotations

from typing import Any

from krita import DockWidgetFactory, DockWidgetFactoryBase, Extension, Krita

from . import eventloop, settings
from .document import Documents
from .local_server import LocalServer
from .model import Model
from .network import QtHttp
from .process import QtProcess
from .ui.docker import AcetateDocker

DOCKER_ID = "acetate"


class AcetateExtension(Extension):
    """Owns the one model every Acetate docker (one per window) shows."""

    def __init__(self, parent: Any) -> None:
        super().__init__(parent)
        self.model = Model(Documents(), QtHttp(), eventloop.run)
        self.local_server = LocalServer(self.model, QtProcess, eventloop.run)

    def setup(self) -> None:
        eventloop.setup()
        settings.bind(self.model)
        settings.bind(self.local_server)
        if not self.local_server.executable:
            self.local_server.detect(report=False)  # pre-filled for Start; nothing said if absent
        self.model.reconnect()
        Krita.instance().notifier().applicationClosing.connect(self.shutdown)

    def shutdown(self) -> None:
        self.local_server.shutdown()  # only a server this docker started
        self.model.close()
        eventloop.stop()

    def createActions(self, window: Any) -> None:
        pass


_extension: AcetateExtension | None = None


def instance() -> AcetateExtension:
    """The running extension (for dockers and the end-to-end tests)."""
    if _extension is None:
        raise RuntimeError("the Acetate extension is not registered")
    return _extension


class Docker(AcetateDocker):
    """What Krita instantiates (without arguments) for each window."""

    def __init__(self) -> None:
        super().__init__(instance().model, instance().local_server)


def register() -> None:
    global _extension
    app = Krita.instance()
    _extension = AcetateExtension(app)
    app.addExtension(_extension)
    position = DockWidgetFactoryBase.DockPosition.DockRight
    app.addDockWidgetFactory(DockWidgetFactory(DOCKER_ID, position, Docker))
