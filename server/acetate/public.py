"""Messages fit for a (possibly remote) client: no server paths, no object addresses."""

from __future__ import annotations

import re

_ABSOLUTE_PATH = re.compile(r"""(?<![\w.:/])(?:[A-Za-z]:[\\/]|~?/)[^\s'"`,;:()<>]+""")
_OBJECT_REPR = re.compile(r"<([\w.]+)(?: object)? at 0x[0-9a-fA-F]+>")


def public_message(message: str) -> str:
    """An error message fit for a (possibly remote) client: absolute paths become their last
    component and object reprs their type, so the server's layout never leaks."""

    def short(match: re.Match[str]) -> str:
        path = match[0].rstrip("/\\")
        name = re.split(r"[\\/]", path)[-1]
        return f"…/{name}" if name else "…"

    message = _OBJECT_REPR.sub(lambda m: f"<{m[1].rsplit('.', 1)[-1]}>", message)
    return _ABSOLUTE_PATH.sub(short, message)
