"""Launch real Krita under Xvfb with a throwaway profile and a test driver plugin.

Krita runs with a clean
environment (system PATH first, or its embedded Python picks up a venv and cannot import
PyQt5), in its own session so a whole process group can be killed, and the test reads only
the driver's results file. A template data dir (Krita's resource database, built by one
launch) makes later launches take seconds instead of ~15 s.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DRIVER_DIR = HERE / "driver"
DRIVER = "acetate_test_driver"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def krita_missing() -> str | None:
    """Why Krita cannot run here, or None."""
    for tool in ("krita", "xvfb-run", "xauth"):
        if shutil.which(tool, path=SYSTEM_PATH) is None:
            return f"{tool} is not installed (apt-get install krita xvfb xauth python3-pyqt5)"
    return None


def krita_key() -> str:
    """Identifies the installed Krita build (for caching its template profile)."""
    binary = Path(shutil.which("krita", path=SYSTEM_PATH) or "krita").resolve()
    stat = binary.stat()
    return hashlib.sha256(f"{binary}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def plugin_importer_path() -> Path:
    """Krita's own "Import Python Plugin from File" module, shipped with Krita."""
    binary = Path(shutil.which("krita", path=SYSTEM_PATH) or "/usr/bin/krita").resolve()
    for prefix in (binary.parent.parent, Path("/usr")):
        path = prefix / "share/krita/pykrita/plugin_importer/plugin_importer.py"
        if path.is_file():
            return path
    raise FileNotFoundError("Krita's plugin_importer.py was not found next to the krita binary")


@dataclass
class Profile:
    """A throwaway Krita home: config, data (resources + pykrita), cache, runtime dirs."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def resources(self) -> Path:
        """Krita's app data location (`Krita.instance().getAppDataLocation()`)."""
        return self.data / "krita"

    @property
    def pykrita(self) -> Path:
        return self.resources / "pykrita"

    @property
    def kritarc(self) -> Path:
        return self.root / "config" / "kritarc"

    def create(self, template: Path | None = None) -> Profile:
        for name in ("home", "config", "cache"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        runtime = self.root / "runtime"
        runtime.mkdir(exist_ok=True)
        runtime.chmod(0o700)
        if template is not None and (template / "data").is_dir():
            shutil.copytree(template / "data", self.data, ignore=shutil.ignore_patterns("pykrita"))
        self.pykrita.mkdir(parents=True, exist_ok=True)
        shutil.copy(DRIVER_DIR / f"{DRIVER}.desktop", self.pykrita)
        shutil.copytree(DRIVER_DIR / DRIVER, self.pykrita / DRIVER, dirs_exist_ok=True)
        self.enable(DRIVER)
        return self

    def enable(self, *plugins: str) -> None:
        """Write kritarc: plugins enabled, no welcome page (what the plugin importer does)."""
        enabled = set(plugins)
        if self.kritarc.exists():
            enabled |= {
                line.split("=")[0].removeprefix("enable_")
                for line in self.kritarc.read_text().splitlines()
                if line.startswith("enable_")
            }
        lines = ["[python]", *(f"enable_{name}=true" for name in sorted(enabled))]
        lines += ["", "[General]", "ShowWelcomeWindow=false", ""]
        self.kritarc.parent.mkdir(parents=True, exist_ok=True)
        self.kritarc.write_text("\n".join(lines))

    def env(self, config: Path) -> dict[str, str]:
        keep = {key: value for key, value in os.environ.items() if key in ("USER", "LOGNAME")}
        return {
            **keep,
            "PATH": SYSTEM_PATH,
            "HOME": str(self.root / "home"),
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "XDG_DATA_HOME": str(self.data),
            "XDG_CACHE_HOME": str(self.root / "cache"),
            "XDG_RUNTIME_DIR": str(self.root / "runtime"),
            "LANG": "C.UTF-8",
            "KRITA_TEST_CONFIG": str(config),
        }


def install_plugin_zip(profile: Profile, zip_path: Path) -> list[str]:
    """Install a plugin zip the way Tools ▸ Scripts ▸ Import Python Plugin from File does.

    Runs Krita's own importer module (plugin_importer.py ships with Krita and imports only
    the standard library), then enables what it imported, as the importer's "Enable plugins
    now?" answer does. Returns the imported module names.
    """
    spec = importlib.util.spec_from_file_location("krita_plugin_importer", plugin_importer_path())
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # The importer's error paths call Krita's i18n(), a builtin only inside Krita.
    module.i18n = getattr(builtins, "i18n", str)  # type: ignore[attr-defined]
    importer = module.PluginImporter(str(zip_path), str(profile.resources), lambda plugin: True)
    names = [plugin["name"] for plugin in importer.import_all()]
    profile.enable(*names)
    return names


@dataclass
class KritaRun:
    results: dict[str, Any]
    log: str
    wall_s: float

    def describe(self) -> str:
        tail = "\n".join(self.log.splitlines()[-40:])
        body = json.dumps(self.results, indent=1)[-6000:]
        return f"results: {body}\nkrita.log (tail):\n{tail}"


class KritaFailed(AssertionError):
    pass


def run_krita(
    profile: Profile,
    script: Path,
    params: dict[str, Any] | None = None,
    *,
    timeout: float = 150.0,
    start_timeout: float = 60.0,
) -> KritaRun:
    """Run `script` inside Krita; return once Krita exits (or was killed)."""
    results = profile.root / "results.json"
    results.unlink(missing_ok=True)
    config = profile.root / "config.json"
    config.write_text(
        json.dumps(
            {"script": str(script), "results": str(results), "timeout": timeout, "params": params}
        )
    )
    log_path = profile.root / "krita.log"
    command = [
        "timeout", "-k", "10", str(int(timeout + 20)),
        "xvfb-run", "-a", "-s", "-screen 0 1280x1024x24",
        "krita", "--nosplash",
    ]  # fmt: skip
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=profile.env(config),
            cwd=profile.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _wait(process, results, timeout + 30, start_timeout)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            else:
                # Xvfb may outlive krita when the group leader exits first.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
    wall = time.monotonic() - started
    text = log_path.read_text(errors="replace")
    data = json.loads(results.read_text()) if results.exists() else {"status": "no results"}
    return KritaRun(data, text, wall)


def _wait(process: subprocess.Popen[bytes], results: Path, timeout: float, start: float) -> None:
    begin = time.monotonic()
    while process.poll() is None:
        elapsed = time.monotonic() - begin
        if elapsed > timeout:
            return
        if elapsed > start and not results.exists():
            return  # the driver never loaded: Krita is stuck or the plugin failed to import
        time.sleep(0.2)


def build_template(target: Path) -> KritaRun:
    """One Krita launch in a fresh profile; keep its data dir as the template."""
    work = target.parent / f"{target.name}.build"
    shutil.rmtree(work, ignore_errors=True)
    profile = Profile(work).create()
    script = HERE / "scenarios" / "noop.py"
    run = run_krita(profile, script, timeout=120, start_timeout=90)
    if run.results.get("status") != "ok":
        raise KritaFailed(f"building the Krita template failed\n{run.describe()}")
    target.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target / "data", ignore_errors=True)
    shutil.copytree(profile.data, target / "data", ignore=shutil.ignore_patterns("pykrita"))
    shutil.rmtree(work, ignore_errors=True)
    return run
