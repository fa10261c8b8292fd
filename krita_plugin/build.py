"""Build dist/acetate-krita-<version>.zip, installable with Krita's
Tools ▸ Scripts ▸ Import Python Plugin from File.

The zip holds `acetate_krita.desktop` and the `acetate_krita/` package with explicit folder
entries (Krita's importer looks for them). Entries are sorted and time-stamped 1980-01-01,
so the same sources always give the same bytes. The plugin needs nothing beyond Qt and the
standard library, so nothing is vendored.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PACKAGE = "acetate_krita"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def plugin_version() -> str:
    """`__version__` of the plugin package, which must equal the project's version."""
    text = (HERE / PACKAGE / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise SystemExit(f"no __version__ in {PACKAGE}/__init__.py")
    version = match.group(1)
    project = re.search(
        r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M
    )
    if project is not None and project.group(1) != version:
        raise SystemExit(
            f"{PACKAGE}.__version__ is {version} but pyproject.toml says {project.group(1)}: "
            "update krita_plugin/acetate_krita/__init__.py"
        )
    return version


def plugin_files() -> list[tuple[str, Path | None]]:
    """(archive name, source) for every entry; folders have no source."""
    entries: list[tuple[str, Path | None]] = [(f"{PACKAGE}.desktop", HERE / f"{PACKAGE}.desktop")]
    for folder, dirs, files in os.walk(HERE / PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        base = Path(folder)
        entries.append((base.relative_to(HERE).as_posix() + "/", None))
        for name in sorted(files):
            if name.endswith(".py"):
                entries.append(((base / name).relative_to(HERE).as_posix(), base / name))
    return sorted(entries)


def build(out_dir: Path) -> Path:
    """Write the plugin zip (atomically) and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"acetate-krita-{plugin_version()}.zip"
    partial = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(partial, "w") as archive:
        for name, source in plugin_files():
            info = zipfile.ZipInfo(name, FIXED_TIME)
            if source is None:
                info.external_attr = (0o40755 << 16) | 0x10
                archive.writestr(info, b"")
            else:
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, source.read_bytes())
    os.replace(partial, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder")
    args = parser.parse_args(argv)
    print(build(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
