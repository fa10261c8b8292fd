"""`acetate serve` as a user runs it: first lines, a request, Ctrl-C, unsafe binds refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from server_helpers import free_port


def serve(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("ACETATE_TOKEN", None)
    return subprocess.Popen(
        [sys.executable, "-m", "acetate", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def test_serve_prints_models_answers_and_stops_on_ctrl_c(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    process = serve(
        "--port", str(port), "--models-dir", str(tiny_models_dir), "--output-dir", str(tmp_path)
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not any(line.startswith("Press Ctrl-C") for line in lines):
            line = process.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        text = "".join(lines)
        assert lines[0].startswith("No real base model found") and "TINY TEST MODELS" in lines[0]
        assert f"http://127.0.0.1:{port}" in text
        assert "tiny-sdxl (sdxl) [test model]: fg, fg2bg" in text
        assert "tiny-sd15 (sd15) [test model]:" in text and "joint" in text
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health") as response:
                    health = json.load(response)
                break
            except OSError:
                time.sleep(0.2)
        assert health["device"] == "cpu" and health["queue_length"] == 0
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_refuses_an_exposed_bind_without_token(tmp_path: Path) -> None:
    process = serve("--listen", "--port", str(free_port()), "--output-dir", str(tmp_path))
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "--listen" in output and "--token" in output and "ACETATE_TOKEN" in output
