"""Inside real Krita: the docker's "Local server" section runs `acetate serve` itself.

Detect finds `acetate` on PATH; Start then Stop (while it is still starting) ends the process;
Start again runs it on a free port (the tiny models come from the environment Krita hands
down), the docker connects on its own and generates, and the server is left running for
Krita's own exit to stop (the host side watches that process). Records what the section
showed at each step; pytest asserts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from e2e import FAST, click_and_wait, docker, fill_form, make_document, record_json, tree, until


def section_state() -> dict[str, Any]:
    section = docker().local_section
    server = section.server
    return {
        "state": server.state,
        "status": section.status_label.text(),
        "executable": section.executable_edit.text(),
        "start_enabled": section.start_button.isEnabled(),
        "stop_enabled": section.stop_button.isEnabled(),
        "pid": server.pid,
        "url": server.url,
        "server_url": docker().model.server_url,
        "connection": docker().connection_label.text(),
        "log_visible": section.log_view.isVisible(),
    }


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def run(ctx: Any) -> None:
    params = ctx.params
    # What a user's shell would hold: acetate's venv on PATH, and (for the test) tiny models.
    os.environ.update(params["env"])
    os.environ["PATH"] = params["venv_bin"] + os.pathsep + os.environ.get("PATH", "")
    results = ctx.results
    d = docker()
    d.show()
    section = d.local_section
    server = section.server
    results["initial"] = section_state()

    section.detect_button.click()
    results["detected"] = section.executable_edit.text()

    # The docker's URL names a free port: the local server takes it.
    d.url_edit.setText(params["url"])
    d.url_edit.editingFinished.emit()
    section.start_button.click()
    results["starting"] = section_state()
    # Stop while it is still starting (importing torch): the process must end all the same.
    first_pid = server.pid
    section.stop_button.click()
    await until(lambda: server.state == "stopped" and server.pid is None, 30, "Stop")
    await until(lambda: not alive(first_pid), 10, "the stopped process to end")
    results["stopped"] = {**section_state(), "first_pid": first_pid}

    section.start_button.click()
    await until(lambda: server.state in ("running", "failed"), 180, "the local server")
    await until(lambda: d.model.connected or server.state == "failed", 60, "the connection")
    await until(lambda: bool(d.model.models.bases), 30, "the model list")
    results["running"] = section_state()
    section.log_toggle.click()
    results["log_open"] = section.log_view.isVisible()
    results["log"] = section.log_view.toPlainText()[-4000:]

    doc = await make_document("local", 64, 48, "U8")
    fill_form(mode="fg", prompt="a tiny moon", width=64, height=64, **FAST)
    record = await click_and_wait(d.generate_button)
    doc.waitForDone()
    results["record"] = record_json(record) if record is not None else None
    results["error"] = d.error_label.text() if d.error_label.isVisible() else ""
    results["tree"] = tree(doc)
    # The host watches this process: Krita's exit (the driver quits next) must end it.
    Path(params["pid_file"]).write_text(str(server.pid))
