"""The Qt binding Krita provides: PyQt5 (Krita 5) or PyQt6 (Krita 6).

Every other module imports Qt from here. Enums are always written fully scoped
(`Qt.AlignmentFlag.AlignLeft`), which both bindings accept.
"""

from __future__ import annotations

try:
    from PyQt5 import QtCore, QtGui, QtNetwork, QtWidgets
except ImportError:  # Krita 6
    from PyQt6 import QtCore, QtGui, QtNetwork, QtWidgets  # type: ignore[no-redef]

__all__ = ["QtCore", "QtGui", "QtNetwork", "QtWidgets"]
