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


class KritaStore:
    """Option values in Krita's settings, one key per option (the same keys as before the
    options came from the server: steps, cfg, strength, scale, decode, negative_prompt…)."""

    def read(self, name: str) -> str:
        from krita import Krita

        return str(Krita.instance().readSetting(GROUP, name, ""))

    def write(self, name: str, value: str) -> None:
        from krita import Krita

        Krita.instance().writeSetting(GROUP, name, value)


def bind(model: Observable) -> None:
    """Load the persisted properties, then save each one whenever it changes."""
    from krita import Krita

    app = Krita.instance()
    if hasattr(model, "store"):
        model.store = KritaStore()
    for name in model.persisted():
        default = getattr(type(model), name).default
        stored = app.readSetting(GROUP, name, "")
        if stored != "":
            setattr(model, name, parse(stored, default))
        model.changed(name).connect(
            lambda value, name=name: app.writeSetting(GROUP, name, format_value(value))
        )
