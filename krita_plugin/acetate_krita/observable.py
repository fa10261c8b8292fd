"""Observable state without Qt: signals and properties that announce their changes.

The model declares its state as `Property` descriptors; widgets bind to them (ui/bind.py)
and settings persist the ones marked `persist=True`. Everything runs on Krita's main thread
(the asyncio loop is pumped by a Qt timer), so plain callbacks are enough.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class Signal:
    """A list of callbacks called with the emitted values."""

    def __init__(self) -> None:
        self._slots: list[Callable[..., object]] = []

    def connect(self, slot: Callable[..., object]) -> None:
        self._slots.append(slot)

    def disconnect(self, slot: Callable[..., object]) -> None:
        if slot in self._slots:
            self._slots.remove(slot)

    def emit(self, *args: Any) -> None:
        for slot in list(self._slots):
            slot(*args)


class Observable:
    """Base for objects with `Property` fields: `changed(name)` is that field's signal."""

    def changed(self, name: str) -> Signal:
        signals: dict[str, Signal] = self.__dict__.setdefault("_signals", {})
        if name not in signals:
            if not isinstance(getattr(type(self), name, None), Property):
                raise AttributeError(f"{type(self).__name__} has no property {name!r}")
            signals[name] = Signal()
        return signals[name]

    @classmethod
    def persisted(cls) -> list[str]:
        """Names of the properties saved in Krita's settings."""
        return [
            name
            for name in dir(cls)
            if isinstance(prop := getattr(cls, name), Property) and prop.persist
        ]


class Property(Generic[T]):
    """A field with a default that emits `changed(name)` when set to a different value."""

    def __init__(self, default: T, *, persist: bool = False) -> None:
        self.default = default
        self.persist = persist
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> Property[T]: ...
    @overload
    def __get__(self, instance: Observable, owner: type) -> T: ...
    def __get__(self, instance: Observable | None, owner: type) -> T | Property[T]:
        if instance is None:
            return self
        return instance.__dict__.get(self.name, self.default)

    def __set__(self, instance: Observable, value: T) -> None:
        if instance.__dict__.get(self.name, self.default) == value:
            return
        instance.__dict__[self.name] = value
        instance.changed(self.name).emit(value)
