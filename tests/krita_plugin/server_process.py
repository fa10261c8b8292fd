"""`acetate serve` as a subprocess on a free port, the way a user runs it next to Krita."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    output_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.alive:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_server(
    models_dir: Path,
    work: Path,
    *extra: str,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """Start `acetate serve` on the tiny models and wait until /api/health answers.

    `extra` are more `acetate serve` options; with `--token`, health is asked with it. `env`
    adds environment variables (e.g. `ACETATE_EXTRA_MODES` for the test-only dummy mode).
    """
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    output_dir = work / "out"
    log_path = work / "server.log"
    command = [sys.executable, "-m", "acetate", "serve", "--port", str(port)]
    command += ["--models-dir", str(models_dir), "--output-dir", str(output_dir), *extra]
    headers = {}
    if "--token" in extra:
        headers["Authorization"] = f"Bearer {extra[extra.index('--token') + 1]}"
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    server = ServerProcess(process, port, output_dir, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive:
            raise RuntimeError(f"acetate serve exited with {process.returncode}\n{server.log()}")
        try:
            request = urllib.request.Request(f"{server.url}/api/health", headers=headers)
            with urllib.request.urlopen(request, timeout=2) as response:
                json.load(response)
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"acetate serve did not answer within {timeout:.0f} s\n{server.log()}")
