"""The plugin on the Qt bindings and Pythons Krita ships, without Krita.

Krita 5.1.5 embeds PyQt5 on the system Python (3.11 on Debian 12; test_krita_e2e.py runs
it); Krita 5.2 embeds Python 3.10 with PyQt5; Krita 6 embeds PyQt6 (Qt 6). Here:

- qt_smoke.py, once per binding (ACETATE_QT forces the shim; PyQt5 may come from the system
  Python Krita embeds, with Debian's python3-pyqt5): every plugin module
  imported, the docker built offscreen for every mode and driven, real HTTP through
  QNetworkAccessManager, a child process through QProcess.
- the shim's choice of binding, and that no other module imports PyQt5/PyQt6 itself.
- Python 3.10: `vermin` finds nothing newer than 3.10 in the plugin; where a Python 3.10
  interpreter is on this machine, every Qt-free module imports and parses on it (and
  qt_smoke.py runs on it for each binding that interpreter has).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PLUGIN_DIR = HERE.parents[1] / "krita_plugin"
PACKAGE = PLUGIN_DIR / "acetate_krita"
SMOKE = HERE / "qt_smoke.py"
BINDINGS = {"pyqt5": "PyQt5", "pyqt6": "PyQt6"}
TIMEOUT = 180
#: The Python that Debian's Krita embeds (with python3-pyqt5 for the real-Krita tests).
SYSTEM_PYTHON = "/usr/bin/python3"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ACETATE_QT"}
    env.update(QT_QPA_PLATFORM="offscreen", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def _run(python: str, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, *args],
        env=_env(**env),
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def _smoke(python: str, binding: str) -> dict[str, object]:
    done = _run(python, [str(SMOKE)], ACETATE_QT=binding)
    assert done.returncode == 0, f"{binding} on {python}:\n{done.stdout}\n{done.stderr[-6000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["binding"] == BINDINGS[binding]
    return report


def _need(module: str) -> None:
    if find_spec(module) is None:
        pytest.skip(f"{module} is not installed in this environment (pip install {module})")


def _has(python: str, module: str) -> bool:
    if python == sys.executable:
        return find_spec(module) is not None
    if not Path(python).is_file():
        return False
    return _run(python, ["-c", f"import {module}.QtWidgets"]).returncode == 0


@pytest.mark.parametrize("binding", sorted(BINDINGS))
def test_the_plugin_runs_on_the_binding(binding: str) -> None:
    """PyQt6 is Krita 6's binding (the dev extra installs it); PyQt5 is Krita 5's: from this
    environment, else from the system Python Krita embeds (Debian's python3-pyqt5)."""
    module = BINDINGS[binding]
    python = next((p for p in (sys.executable, SYSTEM_PYTHON) if _has(p, module)), None)
    if python is None:
        pytest.skip(f"{module} is installed neither here nor for {SYSTEM_PYTHON}")
    report = _smoke(python, binding)
    checked = report["checked"]
    assert isinstance(checked, list)
    modules = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PLUGIN_DIR).with_suffix("").parts
        modules.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    modules.discard("acetate_krita")
    assert {f"import {name}" for name in modules} <= set(checked)
    assert {"docker widgets", "QtHttp", "QtProcess", "docker mode scene"} <= set(checked)


def test_the_shim_takes_the_binding_krita_has_loaded() -> None:
    """Inside Krita 6 `krita` has loaded PyQt6: the shim must not add PyQt5 to the process,
    even where PyQt5 is installed too (a Linux system Python)."""
    _need("PyQt6")
    code = (
        "import sys, PyQt6.QtCore; from acetate_krita import qt; "
        "assert qt.BINDING == 'PyQt6' and qt.QT6, qt.BINDING; "
        "assert 'PyQt5' not in sys.modules; "
        "assert qt.Qt.AlignmentFlag.AlignLeft is not None; print('ok')"
    )
    done = _run(sys.executable, ["-c", code], PYTHONPATH=str(PLUGIN_DIR))
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_shim_names_an_unknown_binding() -> None:
    code = "from acetate_krita import qt"
    done = _run(sys.executable, ["-c", code], PYTHONPATH=str(PLUGIN_DIR), ACETATE_QT="pyside6")
    assert done.returncode != 0 and "expected one of pyqt5, pyqt6" in done.stderr


def test_only_the_shim_imports_a_qt_binding() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "qt.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ("PyQt5", "PyQt6", "PySide2", "PySide6", "sip"):
                    offenders.append(f"{path.relative_to(PLUGIN_DIR)}:{node.lineno} {name}")
    assert not offenders, "import Qt from acetate_krita.qt instead: " + ", ".join(offenders)


def test_vermin_finds_nothing_newer_than_python_310() -> None:
    """Krita 5.2 embeds Python 3.10 (`make lint` runs the same check)."""
    _need("vermin")
    code = "import sys; from vermin import main; sys.exit(main())"
    args = ["--target=3.10-", "--no-tips", "--violations", str(PACKAGE)]
    done = _run(sys.executable, ["-c", code, *args])
    assert done.returncode == 0, done.stdout + done.stderr


def _python310() -> str | None:
    candidates = [os.environ.get("ACETATE_PYTHON310", "")]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))
    candidates += [shutil.which("python3.10") or ""]
    for candidate in filter(None, candidates):
        try:
            done = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except OSError:
            continue
        if done.stdout.strip() == "True":
            return candidate
    return None


PY310_IMPORTS = """
import json, pkgutil, sys
from importlib import import_module
import acetate_krita
imported, skipped = [], []
for info in pkgutil.walk_packages(acetate_krita.__path__, "acetate_krita."):
    try:
        import_module(info.name)
    except ImportError as error:  # Qt or krita: not on this interpreter
        if error.name != "krita" and "no Qt binding" not in str(error):
            raise
        skipped.append(info.name)
    else:
        imported.append(info.name)
from acetate_krita.protocol import ModesInfo
modes = ModesInfo.from_json(json.loads(open(sys.argv[1]).read()))
print(json.dumps({"imported": imported, "skipped": skipped, "modes": len(modes.modes)}))
"""


def test_the_plugin_imports_on_python_310() -> None:
    """A real 3.10 interpreter where the machine has one (pyenv; ACETATE_PYTHON310 names one)."""
    python = _python310()
    if python is None:
        pytest.skip("no Python 3.10 interpreter here (set ACETATE_PYTHON310)")
    modes = HERE.parent / "data" / "modes.json"
    done = _run(python, ["-c", PY310_IMPORTS, str(modes)], PYTHONPATH=str(PLUGIN_DIR))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    qt_free = {"client", "model", "protocol", "websocket", "pixels", "inputs", "local_server"}
    assert {f"acetate_krita.{name}" for name in qt_free} <= set(report["imported"])
    assert report["modes"] > 0
    for binding, module in BINDINGS.items():
        has = _run(python, ["-c", f"import {module}.QtWidgets"])
        if has.returncode == 0:
            _smoke(python, binding)
