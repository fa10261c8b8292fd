"""LoRAs and textual-inversion embeddings the server lists, for the docker's pickers (Qt-free).

LoRAs (`GET /api/models` → `loras`: `{name, family, tiny, …}`): rows of {a LoRA that runs on
the chosen base (its family, tiny with tiny), a strength}, at most `MAX_LORAS`, strengths from
`MIN_STRENGTH` to `MAX_STRENGTH` (the server's `LoraRequest`, published in
`/api/openapi.json`). The request field is `loras: [{name, strength}]`. Rows are remembered
per mode and family (`loras.<mode>.<family>`, JSON text); a remembered LoRA the server no longer
lists for the base is left out of the request and named in a note (it comes back if the
server lists it again).

Embeddings (`embeddings`, the same items) are used by writing their name in a prompt: the
docker's "Insert embedding" menu lists those that run on the base and inserts the name at
the cursor. A server that lists no `embeddings` key gets no menu.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .protocol import BaseModelInfo, ModeInfo, ModelFileInfo, ModesInfo

#: The request field.
FIELD = "loras"
#: How many LoRAs one request may name (server/acetate/protocol.py MAX_LORAS).
MAX_LORAS = 8
#: A LoRA's strength range (server/acetate/protocol.py LoraRequest); negative: the opposite.
MIN_STRENGTH, MAX_STRENGTH = -2.0, 2.0
DEFAULT_STRENGTH = 1.0
#: Settings keys of the rows start with this (`loras.<mode>.<family>`).
KEY_PREFIX = "loras"


@dataclass(frozen=True)
class LoraRow:
    """One picker row: a LoRA name and its strength."""

    name: str
    strength: float = DEFAULT_STRENGTH

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "strength": self.strength}


def fitting_names(files: Iterable[ModelFileInfo] | None, base: BaseModelInfo | None) -> list[str]:
    """The names of the listed LoRAs (or embeddings) that run on `base`, as listed."""
    return [file.name for file in files or () if file.fits(base)]


def takes_loras(mode: ModeInfo | None, base: BaseModelInfo | None) -> bool:
    """Whether `mode` runs on `base`'s family (its UNet is what a LoRA changes)."""
    family = mode.family(base.family) if mode is not None and base is not None else None
    return family is not None and family.supported


def rows_key(mode: str, family: str) -> str:
    return f"{KEY_PREFIX}.{mode}.{family}"


def clamp_strength(value: Any) -> float:
    """A strength within the server's range (garbled: the default)."""
    try:
        strength = float(value)
    except (TypeError, ValueError):
        return DEFAULT_STRENGTH
    if strength != strength:  # NaN
        return DEFAULT_STRENGTH
    return min(MAX_STRENGTH, max(MIN_STRENGTH, strength))


def parse_rows(text: str) -> tuple[LoraRow, ...]:
    """Stored rows back (none when unset or garbled; at most `MAX_LORAS`)."""
    try:
        data = json.loads(text) if text else []
    except ValueError:
        return ()
    if not isinstance(data, list):
        return ()
    rows = [
        LoraRow(item["name"], clamp_strength(item.get("strength", DEFAULT_STRENGTH)))
        for item in data
        if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]
    ]
    return tuple(rows[:MAX_LORAS])


def format_rows(rows: Sequence[LoraRow]) -> str:
    return json.dumps([row.to_json() for row in rows[:MAX_LORAS]])


def stored_rows(
    modes: ModesInfo, families: Iterable[str], read: Callable[[str], str]
) -> dict[str, tuple[LoraRow, ...]]:
    """Every remembered row list of the modes on `families` (`read`: the settings store)."""
    out: dict[str, tuple[LoraRow, ...]] = {}
    for mode in modes.modes:
        for family in set(families):
            key = rows_key(mode.name, family)
            rows = parse_rows(read(key))
            if rows:
                out[key] = rows
    return out


def split_rows(
    rows: Iterable[LoraRow], fitting: Iterable[str]
) -> tuple[tuple[LoraRow, ...], tuple[str, ...]]:
    """The rows whose LoRA the server lists for the base, and the names of those it does not."""
    names = set(fitting)
    listed = tuple(rows)
    kept = tuple(row for row in listed if row.name in names)
    return kept, tuple(row.name for row in listed if row.name not in names)


def request_loras(rows: Iterable[LoraRow], fitting: Iterable[str]) -> list[dict[str, Any]]:
    """The `loras` field: the fitting rows, each LoRA once (the server refuses a name given
    twice: the first row counts), at most `MAX_LORAS`."""
    kept, _ = split_rows(rows, fitting)
    seen: set[str] = set()
    out = []
    for row in kept:
        if row.name not in seen:
            seen.add(row.name)
            out.append(row.to_json())
    return out[:MAX_LORAS]


def dropped_note(dropped: Sequence[str]) -> str:
    """The picker's note about remembered LoRAs the server no longer lists for the base."""
    if not dropped:
        return ""
    names = ", ".join(dropped)
    verb = "is" if len(dropped) == 1 else "are"
    return f"Left out: {names} {verb} no longer on the server for this model."


def insert_name(text: str, cursor: int, name: str) -> tuple[str, int]:
    """`name` inserted into `text` at `cursor`, spaced from the words around it; returns the
    new text and the cursor after the name."""
    cursor = max(0, min(cursor, len(text)))
    before, after = text[:cursor], text[cursor:]
    lead = " " if before and not before[-1].isspace() else ""
    trail = " " if after and not after[0].isspace() else ""
    inserted = f"{lead}{name}{trail}"
    return before + inserted + after, cursor + len(lead) + len(name)
