"""The installable zip, and the plugin's settings format."""

from __future__ import annotations

import configparser
import zipfile
from pathlib import Path

import build  # krita_plugin/build.py
import pytest

from acetate import __version__
from acetate_krita.settings import format_value, parse


def test_zip_has_the_layout_krita_imports(tmp_path: Path) -> None:
    path = build.build(tmp_path)
    assert path.name == f"acetate-krita-{__version__}.zip"
    names = zipfile.ZipFile(path).namelist()
    # Krita's importer needs the folder entries, not only the files in them.
    assert {"acetate_krita.desktop", "acetate_krita/", "acetate_krita/ui/"} <= set(names)
    assert "acetate_krita/__init__.py" in names and "acetate_krita/ui/docker.py" in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    desktop = configparser.ConfigParser()
    desktop.read_string(zipfile.ZipFile(path).read("acetate_krita.desktop").decode())
    assert desktop["Desktop Entry"]["X-KDE-Library"] == "acetate_krita"
    assert desktop["Desktop Entry"]["ServiceTypes"] == "Krita/PythonPlugin"


def test_zip_is_reproducible(tmp_path: Path) -> None:
    first = build.build(tmp_path / "a").read_bytes()
    assert build.build(tmp_path / "b").read_bytes() == first


def test_krita_importer_accepts_the_zip(tmp_path: Path) -> None:
    from krita_harness import Profile, install_plugin_zip, plugin_importer_path

    try:
        plugin_importer_path()
    except FileNotFoundError:
        pytest.skip("Krita is not installed: its plugin importer is not available")
    profile = Profile(tmp_path / "profile")
    profile.resources.mkdir(parents=True)
    assert install_plugin_zip(profile, build.build(tmp_path)) == ["acetate_krita"]
    assert (profile.pykrita / "acetate_krita.desktop").is_file()
    assert (profile.pykrita / "acetate_krita" / "ui" / "docker.py").is_file()
    assert "enable_acetate_krita=true" in profile.kritarc.read_text()


@pytest.mark.parametrize(
    ("value", "default"), [(True, False), (False, True), (7, 0), (2.5, 0.0), ("http://x:1", "")]
)
def test_settings_round_trip(value: object, default: object) -> None:
    assert parse(format_value(value), default) == value
    assert type(parse(format_value(value), default)) is type(default)


def test_garbled_settings_fall_back_to_the_default() -> None:
    assert parse("seven", 3) == 3
    assert parse("", 0.5) == 0.5
