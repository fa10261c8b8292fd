"""`local_server.Process` on QProcess: runs `acetate serve` as a child of Krita."""

from __future__ import annotations

import sys
from collections.abc import Callable

from .qt import QtCore

QProcess = QtCore.QProcess


class QtProcess:
    """One child process; its stdout and stderr arrive merged, decoded as UTF-8."""

    def __init__(self) -> None:
        self._process: QtCore.QProcess | None = None

    def start(
        self,
        program: str,
        arguments: list[str],
        on_output: Callable[[str], None],
        on_finished: Callable[[int | None, str], None],
    ) -> None:
        process = QProcess()
        self._process = process
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        environment = QtCore.QProcessEnvironment.systemEnvironment()
        environment.insert("PYTHONUNBUFFERED", "1")  # log lines as they are printed
        environment.insert("PYTHONIOENCODING", "utf-8")
        process.setProcessEnvironment(environment)

        def read() -> None:
            on_output(bytes(process.readAllStandardOutput()).decode("utf-8", "replace"))

        def finished(code: int, status: QtCore.QProcess.ExitStatus) -> None:
            read()
            crashed = status == QProcess.ExitStatus.CrashExit
            on_finished(None if crashed else code, "")

        def failed(error: QtCore.QProcess.ProcessError) -> None:
            # Only a failed start ends here without `finished` following.
            if error == QProcess.ProcessError.FailedToStart:
                on_finished(None, f"could not start {program}: {process.errorString()}")

        process.readyReadStandardOutput.connect(read)
        process.finished.connect(finished)
        process.errorOccurred.connect(failed)
        process.start(program, arguments)

    def running(self) -> bool:
        process = self._process
        return process is not None and process.state() != QProcess.ProcessState.NotRunning

    def pid(self) -> int:
        return int(self._process.processId()) if self._process is not None else 0

    def terminate(self) -> None:
        if self._process is None:
            return
        if sys.platform == "win32":
            # A console program ignores the WM_CLOSE that terminate() posts on Windows.
            self._process.kill()
        else:
            self._process.terminate()

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()

    def wait(self, timeout_s: float) -> bool:
        if self._process is None:
            return True
        return bool(self._process.waitForFinished(int(timeout_s * 1000)))
