"""Where the model store, results and settings live, and the settings file itself.

Order for each folder: the command-line flag → the environment variable → the settings file →
the source checkout's folder (`models/`, `outputs/server`, only when the package runs from a
checkout) → the platform's user data folder (`platformdirs`: `~/.local/share/acetate` on Linux,
`~/Library/Application Support/acetate` on macOS, `%LOCALAPPDATA%\\acetate` on Windows).

The settings file is JSON (`config.json` in the platform's user config folder, or
`$ACETATE_CONFIG`; `ACETATE_CONFIG=""` means none):
`{"models_dir": "…", "extra_models_dirs": ["…"], "output_dir": "…"}`, every key optional.
`acetate models link DIR` adds to `extra_models_dirs`. Nothing here reads a file relative to
the installed package unless the package sits in a source checkout.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acetate.errors import InputError
from acetate.export.atomic import write_bytes_atomic

APP = "acetate"
CONFIG_ENV = "ACETATE_CONFIG"
MODELS_ENV = "ACETATE_MODELS_DIR"
OUTPUT_ENV = "ACETATE_OUTPUT_DIR"
KEYS = ("models_dir", "extra_models_dirs", "output_dir")


@dataclass(frozen=True)
class Place:
    """A folder and what chose it (shown by `acetate doctor`)."""

    path: Path
    source: str


@dataclass(frozen=True)
class Settings:
    """The settings file's contents; `None`/empty means "not set there"."""

    models_dir: Path | None = None
    extra_models_dirs: tuple[Path, ...] = field(default=())
    output_dir: Path | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.models_dir is not None:
            data["models_dir"] = str(self.models_dir)
        if self.extra_models_dirs:
            data["extra_models_dirs"] = [str(path) for path in self.extra_models_dirs]
        if self.output_dir is not None:
            data["output_dir"] = str(self.output_dir)
        return data


def checkout_root() -> Path | None:
    """The source checkout this package runs from (`server/acetate` of it), else None.

    An installed wheel lives in site-packages, where no `pyproject.toml` + `models/README.md`
    pair sits two levels up, so it never picks up files from wherever it was built.
    """
    root = Path(__file__).resolve().parents[3]
    markers = (root / "pyproject.toml", root / "models" / "README.md", root / "server" / APP)
    return root if all(path.exists() for path in markers) else None


def user_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def config_file() -> Path | None:
    """`$ACETATE_CONFIG` (empty: no settings file), else config.json in the user config folder."""
    env = os.environ.get(CONFIG_ENV)
    if env is not None:
        return Path(env).expanduser() if env.strip() else None
    import platformdirs

    return Path(platformdirs.user_config_dir(APP, appauthor=False)) / "config.json"


def _path(value: Any, key: str, source: Path) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{source}: {key!r} must be a non-empty path string", field=key)
    return Path(value).expanduser()


def parse_settings(data: Any, source: Path) -> Settings:
    """Settings from a decoded JSON document; a wrong key or value names itself and the file."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: the settings file must hold a JSON object", field="config")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise InputError(
            f"{source}: unknown setting {unknown[0]!r} (known: {', '.join(KEYS)})",
            field=unknown[0],
        )
    extra = data.get("extra_models_dirs", [])
    if not isinstance(extra, list):
        raise InputError(
            f"{source}: 'extra_models_dirs' must be a list of paths", field="extra_models_dirs"
        )
    return Settings(
        models_dir=_path(data["models_dir"], "models_dir", source)
        if "models_dir" in data
        else None,
        extra_models_dirs=tuple(_path(item, "extra_models_dirs", source) for item in extra),
        output_dir=_path(data["output_dir"], "output_dir", source)
        if "output_dir" in data
        else None,
    )


def load_settings(path: Path | None = None) -> Settings:
    """The settings file (default: `config_file()`); empty settings when there is none."""
    path = path if path is not None else config_file()
    if path is None or not path.is_file():
        return Settings()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(
            f"{path}: not a readable JSON settings file ({error})", field="config"
        ) from None
    return parse_settings(data, path)


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Write the settings file atomically (creating its folder) and return its path."""
    path = path if path is not None else config_file()
    if path is None:
        raise InputError(
            f"{CONFIG_ENV} is empty: there is no settings file to write", field="config"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(settings.to_json(), indent=2) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))
    return path


def models_place(flag: Path | None, settings: Settings | None = None) -> Place:
    """The model store: --models-dir → $ACETATE_MODELS_DIR → settings → checkout → user data."""

    def configured() -> Path | None:
        return (settings if settings is not None else load_settings()).models_dir

    return _place(flag, "--models-dir", MODELS_ENV, configured, ("models",), "models")


def output_place(flag: Path | None, settings: Settings | None = None) -> Place:
    """Server results: --output-dir → $ACETATE_OUTPUT_DIR → settings → checkout → user data."""

    def configured() -> Path | None:
        return (settings if settings is not None else load_settings()).output_dir

    checkout = ("outputs", "server")
    return _place(flag, "--output-dir", OUTPUT_ENV, configured, checkout, "results")


def _place(
    flag: Path | None,
    flag_name: str,
    env_name: str,
    configured: Callable[[], Path | None],
    in_checkout: tuple[str, ...],
    in_user_data: str,
) -> Place:
    """The first of: the flag, the environment variable, the settings file, the source
    checkout's folder, the user data folder — with what chose it. The settings file is read
    only when neither flag nor variable decides (a broken file does not block an override)."""
    if flag is not None:
        return Place(flag, flag_name)
    env = os.environ.get(env_name)
    if env:
        return Place(Path(env).expanduser(), env_name)
    from_settings = configured()
    if from_settings is not None:
        return Place(from_settings, "settings file")
    root = checkout_root()
    if root is not None:
        return Place(root.joinpath(*in_checkout), "source checkout")
    return Place(user_data_dir() / in_user_data, "user data folder")


def extra_models_dirs(flags: list[Path], settings: Settings | None = None) -> list[Path]:
    """Linked folders from the settings file, then those given with --extra-models-dir."""
    settings = settings if settings is not None else load_settings()
    merged: list[Path] = []
    for path in [*settings.extra_models_dirs, *flags]:
        if path not in merged:
            merged.append(path)
    return merged


def link(folder: Path, path: Path | None = None) -> tuple[Path, bool]:
    """Record an existing models folder (ComfyUI / Forge / A1111) in the settings file `path`
    (default: `config_file()`). Returns the settings file and whether the folder was new."""
    if not folder.expanduser().is_dir():
        raise InputError(f"{folder} is not an existing folder", field="DIR")
    folder = folder.expanduser().resolve()
    settings = load_settings(path)
    if folder in settings.extra_models_dirs:
        return save_settings(settings, path), False
    updated = Settings(
        settings.models_dir, (*settings.extra_models_dirs, folder), settings.output_dir
    )
    return save_settings(updated, path), True


def unlink(folder: Path, path: Path | None = None) -> bool:
    """Forget a linked folder (as given or resolved); whether it was recorded."""
    settings = load_settings(path)
    candidates = {folder.expanduser(), folder.expanduser().resolve()}
    kept = tuple(item for item in settings.extra_models_dirs if item not in candidates)
    if len(kept) == len(settings.extra_models_dirs):
        return False
    save_settings(Settings(settings.models_dir, kept, settings.output_dir), path)
    return True
