"""The docker's local server logic without Krita: finding `acetate` (Windows and POSIX paths),
choosing the port, running a real `acetate serve`, and refusing servers of another protocol."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp_transport import AiohttpTransport
from test_model import FakeDocument, FakeDocuments

from acetate_krita import settings
from acetate_krita.client import AcetateClient, ServerError, version_problem
from acetate_krita.local_server import (
    LocalServer,
    choose_port,
    detect_executable,
    executable_candidates,
)
from acetate_krita.model import Model
from acetate_krita.protocol import API_VERSION


class PopenProcess:
    """`local_server.Process` on subprocess (Krita's QProcess is not available here)."""

    def __init__(self) -> None:
        self.popen: subprocess.Popen[bytes] | None = None

    def start(
        self,
        program: str,
        arguments: list[str],
        on_output: Callable[[str], None],
        on_finished: Callable[[int | None, str], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        popen = subprocess.Popen(
            [program, *arguments], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        self.popen = popen

        def pump() -> None:
            assert popen.stdout is not None
            for chunk in iter(lambda: popen.stdout.read1(4096), b""):  # type: ignore[union-attr]
                loop.call_soon_threadsafe(on_output, chunk.decode("utf-8", "replace"))
            code = popen.wait()
            loop.call_soon_threadsafe(on_finished, code if code >= 0 else None, "")

        threading.Thread(target=pump, daemon=True).start()

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def pid(self) -> int:
        return self.popen.pid if self.popen is not None else 0

    def terminate(self) -> None:
        if self.popen is not None:
            self.popen.terminate()

    def kill(self) -> None:
        if self.popen is not None:
            self.popen.kill()

    def wait(self, timeout_s: float) -> bool:
        try:
            if self.popen is not None:
                self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True


@pytest_asyncio.fixture
async def http() -> AsyncIterator[AiohttpTransport]:
    transport = AiohttpTransport()
    yield transport
    await transport.close()


def make(http: AiohttpTransport, url: str) -> tuple[Model, LocalServer]:
    model = Model(FakeDocuments(FakeDocument()), http, asyncio.ensure_future)
    model.server_url = url
    return model, LocalServer(model, PopenProcess, asyncio.ensure_future)


async def until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


# -- finding the executable ----------------------------------------------------------------


def test_windows_candidates_use_scripts_and_exe() -> None:
    home = PureWindowsPath(r"C:\Users\Ann Lee")
    path_env = r'C:\Windows\system32;"C:\Program Files\Python311\Scripts";;D:\tools'
    found = executable_candidates(home, path_env, windows=True)
    assert found[:3] == [
        PureWindowsPath(r"C:\Windows\system32\acetate.exe"),
        PureWindowsPath(r"C:\Program Files\Python311\Scripts\acetate.exe"),
        PureWindowsPath(r"D:\tools\acetate.exe"),
    ]
    assert PureWindowsPath(r"C:\Users\Ann Lee\acetate\.venv\Scripts\acetate.exe") in found
    assert PureWindowsPath(r"C:\Users\Ann Lee\venv\Scripts\acetate.exe") in found
    roaming = PureWindowsPath(r"C:\Users\Ann Lee\AppData\Roaming\Python\Scripts\acetate.exe")
    assert roaming in found
    assert all(isinstance(path, PureWindowsPath) and path.name == "acetate.exe" for path in found)
    assert len(found) == len(set(found))
    # The first that is a program wins, in this order.
    wanted = r"C:\Users\Ann Lee\acetate\.venv\Scripts\acetate.exe"
    assert detect_executable(found, lambda path: str(path) == wanted) == wanted
    assert detect_executable(found, lambda path: False) == ""


def test_posix_candidates() -> None:
    found = executable_candidates(PurePosixPath("/home/ann"), "/usr/bin:/opt/x/bin", False)
    assert found[:2] == [PurePosixPath("/usr/bin/acetate"), PurePosixPath("/opt/x/bin/acetate")]
    assert PurePosixPath("/home/ann/acetate/.venv/bin/acetate") in found
    assert PurePosixPath("/home/ann/.local/bin/acetate") in found


def test_detect_on_this_machine_checks_it_is_a_program(tmp_path: Path) -> None:
    plain = tmp_path / "plain" / "acetate"
    plain.parent.mkdir()
    plain.write_text("not executable")
    program = tmp_path / "bin" / "acetate"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    assert detect_executable([plain, program]) == str(program)


def test_windows_paths_survive_krita_settings() -> None:
    """kritarc stores strings: a Windows path comes back exactly, backslashes and spaces."""
    path = r"C:\Users\Ann Lee\acetate\.venv\Scripts\acetate.exe"
    assert settings.parse(settings.format_value(path), "") == path
    assert settings.parse(r"\\server\share\acetate.exe", "") == r"\\server\share\acetate.exe"


def test_choose_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert choose_port(f"http://127.0.0.1:{taken}") != taken
    free = choose_port("http://example.org:7865")  # not local: any free port
    assert choose_port(f"http://localhost:{free}") == free


# -- running it ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_missing_executable_and_a_failing_server(
    http: AiohttpTransport, tmp_path: Path
) -> None:
    model, server = make(http, "http://127.0.0.1:9")
    server.executable = str(tmp_path / "nowhere" / "acetate")
    server.start()
    assert server.state == "failed" and "not found" in server.status_text
    failing = tmp_path / "acetate"
    failing.write_text(
        f"#!{sys.executable}\nimport sys\nprint('port', sys.argv[-1])\n"
        "print('no models here', file=sys.stderr)\nsys.exit(3)\n"
    )
    failing.chmod(0o755)
    server.executable = str(failing)
    try:
        server.start()
        assert server.state == "starting"
        await until(lambda: server.state == "failed", 30)
    finally:
        model.close()
    assert server.status_text == "acetate serve ended (exit code 3); see the log"
    assert "no models here" in server.log and server.pid is None
    assert server.log.startswith(f"$ {failing} serve --host 127.0.0.1 --port ")


@pytest.mark.asyncio
async def test_start_connect_stop_a_real_acetate_serve(
    http: AiohttpTransport,
    tiny_models_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACETATE_MODELS_DIR", str(tiny_models_dir))
    monkeypatch.setenv("ACETATE_OUTPUT_DIR", str(tmp_path / "results"))
    acetate = Path(sys.executable).parent / "acetate"
    model, server = make(http, "http://example.org:1")  # not local: a free port is chosen
    server.executable = str(acetate)
    try:
        server.start()
        await until(lambda: server.state == "running" and model.connected, 120)
        assert server.url.startswith("http://127.0.0.1:") and model.server_url == server.url
        assert model.connection_text.startswith("Connected: Acetate ")
        assert f"(protocol {API_VERSION})" in model.connection_text
        pid = server.pid
        assert pid is not None and "TINY TEST MODELS" in server.log
        server.stop()
        await until(lambda: server.state == "stopped", 30)
    finally:
        server.shutdown()
        model.close()
    assert server.pid is None and server.status_text == "Stopped"


# -- protocol versions ---------------------------------------------------------------------


def test_version_messages_name_both_sides() -> None:
    assert version_problem("0.1.0", API_VERSION) is None
    old, new = version_problem("0.0.9", API_VERSION - 1), version_problem("9.0", API_VERSION + 1)
    assert old is not None and new is not None
    assert old.code == "too_old" and old.message.startswith("Server too old — update Acetate")
    assert new.code == "too_new" and new.message.startswith("Server too new — update the Acetate")
    assert "Acetate 9.0 with protocol 3" in new.message and "speaks protocol 2" in new.message


@pytest.mark.asyncio
async def test_a_too_new_server_is_refused(http: AiohttpTransport) -> None:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"version": "9.0.0", "device": "cpu", "api_version": 99})

    app = web.Application()
    app.router.add_get("/api/health", health)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    url = f"http://127.0.0.1:{test_server.port}"
    model = Model(FakeDocuments(FakeDocument()), http, asyncio.ensure_future)
    try:
        with pytest.raises(ServerError) as caught:
            await AcetateClient(http, url).health()
        model.server_url = url
        connected = await model.connect()
    finally:
        model.close()
        await test_server.close()
    assert caught.value.code == "too_new"
    assert not connected and model.server_too_old
    assert model.connection_text.startswith("Server too new — update the Acetate plugin")
    assert "Acetate 9.0.0 with protocol 99" in model.connection_text
