"""The model's persisted properties in Krita's settings (kritarc, group "acetate")."""

from __future__ import annotations

from typing import Any

from .observable import Observable

GROUP = "acetate"


def parse(text: str, default: Any) -> Any:
    """A stored string back as the type of the property's default; the default if garbled."""
    try:
        if isinstance(default, bool):
            return text == "true"
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        return default
    return text


def format_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def bind(model: Observable) -> None:
    """Load the persisted properties, then save each one whenever it changes."""
    from krita import Krita

    app = Krita.instance()
    for name in model.persisted():
        default = getattr(type(model), name).default
        stored = app.readSetting(GROUP, name, "")
        if stored != "":
            setattr(model, name, parse(stored, default))
        model.changed(name).connect(
            lambda value, name=name: app.writeSetting(GROUP, name, format_value(value))
        )
