"""Real Krita: the docker's "Local server" section starts, uses and stops `acetate serve`.

A launch of its own (scenarios/local_server.py, ~45 s), since the main end-to-end launch talks
to a server pytest started. The host side watches the server the docker started last: it must end
while Krita is still shutting down, not be left behind.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import build  # krita_plugin/build.py
import pytest
from krita_harness import Profile, install_plugin_zip, krita_missing, run_krita
from server_process import free_port
from test_krita_e2e import SCENARIOS, template

pytestmark = pytest.mark.krita


def _state(pid: int) -> str | None:
    """The process's state letter, None once it is gone (a zombie counts as ended: "Z")."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _parent(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def watch_exit(pid_file: Path, done: threading.Event, seen: dict[str, Any]) -> None:
    """Once the docker's last server is known: did it end while its parent (Krita) still ran?

    The harness kills Krita's whole process group after Krita exits, so a server that only
    dies then was left behind by the plugin.
    """
    while not pid_file.exists() or not pid_file.read_text().strip():
        if done.wait(0.05):
            return
    pid = int(pid_file.read_text())
    krita = _parent(pid)
    seen.update(pid=pid, krita=krita)
    while _state(pid) not in (None, "Z"):
        if done.wait(0.01):
            break  # Krita is gone: what is measured below then says so
    seen["krita_state_when_server_ended"] = _state(krita) if krita else None


def test_docker_starts_uses_and_stops_a_local_server(tiny_models_dir: Path, tmp_path: Path) -> None:
    reason = krita_missing()
    if reason is not None:
        pytest.skip(reason)
    zip_path = build.build(tmp_path / "dist")
    profile = Profile(tmp_path / "krita").create(template())
    assert install_plugin_zip(profile, zip_path) == ["acetate_krita"]
    port = free_port()
    pid_file = tmp_path / "server.pid"
    params = {
        "venv_bin": str(Path(sys.executable).parent),
        "url": f"http://127.0.0.1:{port}",
        "pid_file": str(pid_file),
        "env": {
            "ACETATE_MODELS_DIR": str(tiny_models_dir),
            "ACETATE_OUTPUT_DIR": str(tmp_path / "results"),
            "ACETATE_CONFIG": "",
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
        },
    }
    seen: dict[str, Any] = {}
    done = threading.Event()
    watcher = threading.Thread(target=watch_exit, args=(pid_file, done, seen), daemon=True)
    watcher.start()
    try:
        run = run_krita(
            profile, SCENARIOS / "local_server.py", params, timeout=240, start_timeout=90
        )
    finally:
        done.set()
        watcher.join(30)
    print(f"\nKrita run (local server): {run.wall_s:.1f} s wall")
    results = run.results
    assert results.get("status") == "ok", run.describe()

    initial = results["initial"]
    assert initial["state"] == "stopped" and initial["pid"] is None
    assert initial["start_enabled"] and not initial["stop_enabled"]
    acetate = str(Path(sys.executable).parent / "acetate")
    assert results["detected"] == acetate, "Detect did not find acetate on PATH"

    starting = results["starting"]
    assert starting["state"] == "starting" and starting["stop_enabled"]
    assert not starting["start_enabled"] and starting["pid"]
    stopped = results["stopped"]
    assert stopped["state"] == "stopped" and stopped["status"] == "Stopped"
    assert stopped["start_enabled"] and not stopped["stop_enabled"]
    assert stopped["first_pid"] == starting["pid"]

    running = results["running"]
    assert running["state"] == "running", run.describe()
    assert running["url"] == running["server_url"] == f"http://127.0.0.1:{port}"
    assert running["connection"].startswith("Connected: Acetate"), running
    assert "(protocol 2)" in running["connection"]
    assert not running["start_enabled"] and running["stop_enabled"]
    assert results["log_open"] and f"serve --host 127.0.0.1 --port {port}" in results["log"]
    assert "TINY TEST MODELS" in results["log"], results["log"]

    record = results["record"]
    assert record is not None, results["error"]
    assert record["mode"] == "fg" and [layer["name"] for layer in record["layers"]] == [
        "foreground"
    ]
    assert any(node["name"].startswith("a tiny moon") for node in results["tree"])

    assert seen.get("pid") == running["pid"], seen
    assert _state(seen["pid"]) in (None, "Z"), "the docker's server outlived Krita"
    # It ended before Krita itself was gone (Krita still running or exiting, not yet reaped).
    assert seen.get("krita_state_when_server_ended") is not None, seen
