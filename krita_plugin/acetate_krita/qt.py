"""The Qt binding Krita provides: PyQt5 (Krita 5.x) or PyQt6 (Krita 6).

Every other module imports Qt from here, never PyQt5/PyQt6 itself. Enums are always
written fully scoped (`Qt.AlignmentFlag.AlignLeft`, `QProcess.ExitStatus.CrashExit`),
which both bindings accept; PyQt6 has no unscoped enum members, no `exec_` and no QRegExp.

Which binding: `ACETATE_QT=pyqt5|pyqt6` (tests) decides; else the one already loaded in
this process (inside Krita, the `krita` module has loaded Krita's own binding: a second Qt
major version in Krita's process would crash it, even when both are installed, as on a
Linux system Python); else PyQt5, then PyQt6.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

BINDINGS = ("PyQt5", "PyQt6")
_PARTS = ("QtCore", "QtGui", "QtNetwork", "QtWidgets")


def _choose() -> tuple[str, ...]:
    """The bindings to try, in order."""
    forced = os.environ.get("ACETATE_QT", "").strip().lower()
    if forced:
        named = [name for name in BINDINGS if name.lower() == forced]
        if not named:
            raise ImportError(f"ACETATE_QT={forced!r}: expected one of pyqt5, pyqt6")
        return tuple(named)
    loaded = tuple(name for name in BINDINGS if name in sys.modules)
    return loaded or BINDINGS


def _load() -> tuple[str, ModuleType, ModuleType, ModuleType, ModuleType]:
    errors = []
    for name in _choose():
        try:
            modules = [importlib.import_module(f"{name}.{part}") for part in _PARTS]
        except ImportError as error:
            errors.append(f"{name}: {error}")
            continue
        return (name, *modules)  # type: ignore[return-value]
    raise ImportError("no Qt binding for Python found (" + "; ".join(errors) + ")")


#: "PyQt5" or "PyQt6".
BINDING, QtCore, QtGui, QtNetwork, QtWidgets = _load()
#: True on Qt 6 (Krita 6).
QT6 = BINDING == "PyQt6"
#: The Qt namespace (`Qt.AlignmentFlag`, `Qt.ItemDataRole`, …).
Qt = QtCore.Qt
#: The Qt library's version, e.g. "5.15.8" (not the binding's).
QT_VERSION = str(QtCore.QT_VERSION_STR)

__all__ = ["BINDING", "QT6", "QT_VERSION", "Qt", "QtCore", "QtGui", "QtNetwork", "QtWidgets"]
