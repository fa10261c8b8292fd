"""JSON from clients with bounded nesting: HTTP bodies, multipart `request` parts, WS frames.

The C decoder recurses per level and raises `RecursionError` around depth 1000 (a 500 if it
escapes); the depth is checked on the raw text first, in one pass over the brackets outside
strings, so a `[` × 100000 body costs a linear scan and a clear 400.
"""

from __future__ import annotations

import json
import re
from typing import Any

from acetate.errors import InputError

#: Deeper than any request needs (the deepest, a list item's image object, is 4 levels).
MAX_DEPTH = 32

# Strings (with escapes) or single structural brackets.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def nesting_depth(data: bytes, limit: int = MAX_DEPTH) -> int:
    """The maximum bracket depth of JSON text, stopping as soon as it passes `limit`."""
    depth = deepest = 0
    for match in _TOKENS.finditer(data):
        char = match[0][:1]
        if char in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


def loads(data: bytes | str, field: str, what: str = "body", max_depth: int = MAX_DEPTH) -> Any:
    """Parse client JSON; `InputError(field=field)` for invalid or too deeply nested text."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if nesting_depth(raw, max_depth) > max_depth:
        raise InputError(
            f"{what} is nested deeper than {max_depth} levels", field=field, code="invalid_input"
        )
    try:
        return json.loads(raw)
    except RecursionError:
        raise InputError(
            f"{what} is nested too deeply", field=field, code="invalid_input"
        ) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError(f"{what} is not valid JSON: {error}", field=field) from None
