"""The docker's "Local server": find `acetate`, start `acetate serve`, show its log, stop it.

Qt-free: the child process comes in through the `Process` port (process.py runs it with
QProcess inside Krita). Only a server this object started is ever stopped, and it is stopped
when Krita closes. Once the server answers /api/health, the model connects to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any, Protocol
from urllib.parse import urlsplit

from .client import AcetateClient, ServerError
from .model import Model
from .observable import Observable, Property

#: Log lines kept for the docker's log view.
LOG_LINES = 500
#: How long a starting server may take to answer /api/health (first start imports torch).
START_TIMEOUT_S = 300.0
#: After asking the server to stop, kill it if it is still running this much later.
STOP_GRACE_S = 5.0
LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")
#: Folders (under the home folder) where people create the Acetate virtual environment.
VENV_HOMES = ("acetate", "Acetate", ".acetate", "", "venvs/acetate", ".venvs/acetate")
VENV_NAMES = (".venv", "venv", "env")


class Process(Protocol):
    """A child process the local server runs in (process.QtProcess inside Krita)."""

    def start(
        self,
        program: str,
        arguments: list[str],
        on_output: Callable[[str], None],
        on_finished: Callable[[int | None, str], None],
    ) -> None:
        """Start it; `on_finished(exit code or None, why)` also reports a failed start."""

    def running(self) -> bool: ...

    def pid(self) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def wait(self, timeout_s: float) -> bool:
        """Block until it has exited (True) or the time is up (False)."""


def executable_candidates(home: PurePath, path_env: str, windows: bool) -> list[PurePath]:
    """Where `acetate` may be, best first: every PATH entry, then common venv locations.

    Pure path arithmetic (Windows rules when `windows`), so it is testable on any system.
    """
    kind: type[PurePath] = PureWindowsPath if windows else PurePosixPath
    home = kind(home)
    name = "acetate.exe" if windows else "acetate"
    scripts = "Scripts" if windows else "bin"
    found: list[PurePath] = [
        kind(entry.strip().strip('"')) / name
        for entry in path_env.split(";" if windows else ":")
        if entry.strip().strip('"')
    ]
    for base in VENV_HOMES:
        folder = home / base if base else home
        found += [folder / venv / scripts / name for venv in VENV_NAMES]
    found.append(home / ".local" / "bin" / name)  # pipx and `pip install --user` (POSIX)
    if windows:  # `pip install --user` on Windows, and pipx's default
        found.append(home / "AppData" / "Roaming" / "Python" / "Scripts" / name)
        found.append(home / "pipx" / "bin" / name)
    unique: list[PurePath] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def _is_program(path: PurePath) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def detect_executable(
    candidates: Iterable[PurePath] | None = None,
    is_program: Callable[[PurePath], bool] = _is_program,
) -> str:
    """The first candidate that is an executable file, else ""."""
    if candidates is None:
        candidates = executable_candidates(
            Path.home(), os.environ.get("PATH", ""), windows=os.name == "nt"
        )
    return next((str(path) for path in candidates if is_program(path)), "")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_port(server_url: str) -> int:
    """The port of the docker's URL when it is a free loopback port, else any free port."""
    with contextlib.suppress(ValueError):
        parts = urlsplit(server_url)
        if parts.hostname in LOOPBACK and parts.port and port_is_free(parts.port):
            return parts.port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalServer(Observable):
    """Start/stop of one `acetate serve` on this machine, its log and its state."""

    executable = Property("", persist=True)
    #: stopped | starting | running | failed
    state = Property("stopped")
    status_text = Property("Not started from Krita")
    log = Property("")
    url = Property("")

    def __init__(
        self,
        model: Model,
        new_process: Callable[[], Process],
        run: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
    ) -> None:
        self.model = model
        self._new_process = new_process
        self._run = run
        self._process: Process | None = None
        self._ended: Process | None = None
        self._stopping = False
        self._lines: list[str] = []
        self._partial = ""
        self._waiting: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The running server's process id (one this object started), else None."""
        return self._process.pid() if self._process is not None else None

    def detect(self, report: bool = True) -> str:
        """Fill `executable` from PATH and the usual venv folders; "" when none is found
        (`report`: then say so in the status)."""
        found = detect_executable()
        if found:
            self.executable = found
        elif report:
            self.status_text = (
                "No acetate executable found on PATH or in ~/acetate/.venv: choose it with …"
            )
        return found

    def start(self) -> None:
        """Run `acetate serve` on a free local port and connect to it once it answers."""
        if self._process is not None:
            return
        program = self.executable.strip() or self.detect()
        if not program or not os.path.isfile(program):
            self.state = "failed"
            self.status_text = (
                f"Acetate executable not found: {program}" if program else self.status_text
            )
            return
        port = choose_port(self.model.server_url)
        self.url = f"http://127.0.0.1:{port}"
        self._lines, self._partial, self.log = [], "", ""
        self._stopping = False
        self.state = "starting"
        self.status_text = f"Starting acetate serve on port {port}…"
        process = self._new_process()
        self._process = process
        arguments = ["serve", "--host", "127.0.0.1", "--port", str(port)]
        self._append(f"$ {program} {' '.join(arguments)}\n")
        process.start(program, arguments, self._append, self._finished)
        if self._process is process:  # not already finished (a failed start)
            self._waiting = self._run(self._wait_until_up(process, self.url))

    def stop(self) -> None:
        """Ask the server this docker started to exit; kill it if it lingers."""
        process = self._process
        if process is None:
            return
        self._stopping = True
        self.status_text = "Stopping…"
        process.terminate()

        async def kill_later() -> None:
            await asyncio.sleep(STOP_GRACE_S)
            if process.running():
                process.kill()

        self._run(kill_later())

    def shutdown(self) -> None:
        """Krita is closing: stop the server if (and only if) this docker started it."""
        process = self._process
        if self._waiting is not None:
            self._waiting.cancel()
        if process is None:
            return
        self._stopping = True
        process.terminate()
        if not process.wait(STOP_GRACE_S):
            process.kill()
            process.wait(STOP_GRACE_S)

    async def _wait_until_up(self, process: Process, url: str) -> None:
        client = AcetateClient(self.model.http, url, "")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while self._process is process and process.running():
            try:
                await client.health()
            except ServerError as error:
                if error.code in ("too_old", "too_new"):
                    pass  # it is up; the model's connection says why it refuses it
                elif loop.time() > deadline:
                    self.status_text = f"No answer from {url} after {START_TIMEOUT_S:.0f} s"
                    return
                else:
                    await asyncio.sleep(0.5)
                    continue
            self.state = "running"
            self.status_text = f"Running at {url} (started here; stops when Krita closes)"
            if self.model.server_url != url:
                self.model.server_url = url  # the model reconnects on its own
            else:
                self.model.reconnect()
            return

    def _append(self, text: str) -> None:
        lines = (self._partial + text.replace("\r\n", "\n")).split("\n")
        self._partial = lines.pop()
        self._lines = (self._lines + lines)[-LOG_LINES:]
        self.log = "\n".join([*self._lines, self._partial] if self._partial else self._lines)

    def _finished(self, code: int | None, why: str) -> None:
        if self._waiting is not None:
            self._waiting.cancel()
            self._waiting = None
        # Keep the finished process object alive: this runs inside its own signal handler.
        self._ended, self._process = self._process, None
        if self._stopping:
            self.state, self.status_text = "stopped", "Stopped"
        else:
            self.state = "failed"
            detail = why or (f"exit code {code}" if code is not None else "crashed")
            self.status_text = f"acetate serve ended ({detail}); see the log"
        self._append(f"[{self.status_text}]\n")
