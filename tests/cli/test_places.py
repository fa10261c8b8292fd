"""Where models, results and settings live: flags → environment → settings file → checkout →
the platform's user folders; `acetate models link`; `acetate doctor` shows the choice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path, PureWindowsPath

import pytest

from acetate.cli import places
from acetate.engine.store.discovery import model_name
from acetate.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (places.MODELS_ENV, places.OUTPUT_ENV, places.CONFIG_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_precedence_flag_env_settings_checkout(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = places.Settings(models_dir=tmp_path / "from-settings", output_dir=tmp_path / "out")
    # This test runs from the checkout, so the fallback is its models/ folder.
    assert places.checkout_root() == ROOT
    assert places.models_place(None, places.Settings()) == places.Place(
        ROOT / "models", "source checkout"
    )
    assert places.output_place(None, places.Settings()).path == ROOT / "outputs" / "server"
    assert places.models_place(None, settings) == places.Place(
        tmp_path / "from-settings", "settings file"
    )
    assert places.output_place(None, settings).source == "settings file"
    clean_env.setenv(places.MODELS_ENV, str(tmp_path / "from-env"))
    assert places.models_place(None, settings) == places.Place(
        tmp_path / "from-env", places.MODELS_ENV
    )
    assert places.models_place(tmp_path / "flag", settings) == places.Place(
        tmp_path / "flag", "--models-dir"
    )


def test_settings_file_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    for document, key in (
        ({"models_folder": "x"}, "models_folder"),
        ({"models_dir": ""}, "models_dir"),
        ({"extra_models_dirs": "C:/one"}, "extra_models_dirs"),
        ({"extra_models_dirs": [3]}, "extra_models_dirs"),
        ([], "config"),
    ):
        path.write_text(json.dumps(document), encoding="utf-8")
        with pytest.raises(InputError) as caught:
            places.load_settings(path)
        assert caught.value.field == key and str(path) in caught.value.message
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="not a readable JSON"):
        places.load_settings(path)
    assert places.load_settings(tmp_path / "absent.json") == places.Settings()


def test_windows_paths_survive_the_settings_file(tmp_path: Path) -> None:
    """A settings file written on Windows keeps its drive-letter, backslash paths verbatim."""
    path = tmp_path / "config.json"
    windows = [r"C:\Users\Ann\ComfyUI\models", r"D:\Forge\models\Stable-diffusion"]
    path.write_text(
        json.dumps({"extra_models_dirs": windows, "models_dir": r"E:\Acetate Models"}),
        encoding="utf-8",
    )
    loaded = places.load_settings(path)
    assert [str(p) for p in loaded.extra_models_dirs] == windows
    places.save_settings(loaded, path)
    assert json.loads(path.read_text(encoding="utf-8"))["extra_models_dirs"] == windows
    assert str(places.models_place(None, loaded).path) == r"E:\Acetate Models"


def test_model_names_are_slash_separated_on_windows() -> None:
    folder = PureWindowsPath(r"C:\Users\Ann\ComfyUI\models\checkpoints")
    file = folder / "sdxl" / "juggernautXL.safetensors"
    assert model_name(file.relative_to(folder), is_file=True) == "sdxl/juggernautXL"
    diffusers = PureWindowsPath(r"C:\models\checkpoints\SD15\dreamshaper")
    assert model_name(diffusers.relative_to(r"C:\models\checkpoints"), False) == "SD15/dreamshaper"


def test_link_and_unlink(tmp_path: Path) -> None:
    settings_file = tmp_path / "cfg" / "config.json"
    comfy = tmp_path / "ComfyUI" / "models"
    (comfy / "checkpoints").mkdir(parents=True)
    assert places.link(comfy, settings_file) == (settings_file, True)
    assert places.link(comfy, settings_file) == (settings_file, False)
    assert places.load_settings(settings_file).extra_models_dirs == (comfy.resolve(),)
    assert places.extra_models_dirs([tmp_path / "x"], places.load_settings(settings_file)) == [
        comfy.resolve(),
        tmp_path / "x",
    ]
    assert places.unlink(comfy, settings_file)
    assert not places.unlink(comfy, settings_file)
    with pytest.raises(InputError) as caught:
        places.link(tmp_path / "missing", settings_file)
    assert caught.value.field == "DIR"


def _acetate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acetate", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )


def test_cli_link_then_doctor_shows_every_place(tmp_path: Path, tiny_models_dir: Path) -> None:
    """End to end through the CLI: link a ComfyUI install once, and doctor (and models) use it."""
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "checkpoints").mkdir(parents=True)
    env = {
        places.CONFIG_ENV: str(tmp_path / "settings" / "config.json"),
        places.MODELS_ENV: str(tiny_models_dir),
        places.OUTPUT_ENV: str(tmp_path / "results"),
    }
    linked = _acetate("models", "link", str(comfy), env=env)
    assert linked.returncode == 0, linked.stderr
    assert f"linked: {comfy.resolve()}" in linked.stdout

    bad = _acetate("models", "link", str(tmp_path / "nowhere"), env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no such folder" in bad.stderr
    not_models = tmp_path / "empty"
    not_models.mkdir()
    bad = _acetate("models", "link", str(not_models), env=env)
    assert bad.returncode == 2 and "not a models folder" in bad.stderr

    doctor = _acetate("doctor", "--device", "cpu", env=env)
    assert doctor.returncode == 0, doctor.stderr
    out = doctor.stdout
    assert f"settings: {tmp_path / 'settings' / 'config.json'} (present)" in out
    assert f"models folder: {tiny_models_dir} (from ACETATE_MODELS_DIR)" in out
    assert f"linked folder: {comfy.resolve()}" in out
    assert f"results folder: {tmp_path / 'results'} (from ACETATE_OUTPUT_DIR)" in out
    assert "test model(s)" in out

    listing = _acetate("models", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout)["extra_dirs"] == [str(comfy.resolve())]

    broken = tmp_path / "broken.json"
    broken.write_text('{"model_dir": "x"}', encoding="utf-8")
    failed = _acetate("models", env={**env, places.CONFIG_ENV: str(broken)})
    assert failed.returncode == 2 and "unknown setting 'model_dir'" in failed.stderr
    assert "Traceback" not in failed.stderr
