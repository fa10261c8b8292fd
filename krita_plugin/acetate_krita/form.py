"""The controls the docker builds for a mode, Qt-free: one editor per option it offers (the
kind of editor follows the option's type), the Structure section for modes that take a
structure layer (it edits `control`, `controlnet`, `control_strength`: structure.py), one
layer picker per input any layer can fill or mask a layer's alpha can be (sources.py), the
LoRA rows (loras.py) and one picker per layer-file part with a choice.
ui/docker.py builds its widgets from this list, so a test can check, without Qt, that every
option the server declares has a control.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .choices import offered
from .layer_files import FilePart
from .protocol import ImageInputInfo, ModeInfo, OptionInfo
from .sources import pickable
from .structure import STRUCTURE_OPTIONS, takes_structure

#: Option type → the editor ui/options.py builds for it.
EDITOR_KINDS = {
    "int": "number",
    "float": "number",
    "enum": "choice",
    "bool": "check",
    "text": "text",
    "prompts": "prompts",
}
#: The kind of a layer-file picker's control.
FILE = "file"
#: The kind (and key) of the Structure section's control.
STRUCTURE = "structure"
#: The kind of an input's layer picker.
SOURCE = "source"
#: The kind (and key) of the LoRA rows.
LORAS = "loras"
#: Request fields outside the modes' options and inputs → the kind of control that fills them.
REQUEST_FIELD_CONTROLS = {"layer_files": FILE, "loras": LORAS}


@dataclass(frozen=True)
class Control:
    """One control of the mode's form: an option's editor or a layer-file picker."""

    key: str
    kind: str
    advanced: bool
    option: OptionInfo | None = None
    part: FilePart | None = None
    image: ImageInputInfo | None = None


def editor_kind(option: OptionInfo) -> str | None:
    """The editor for `option`'s type; None for a type the docker has no editor for."""
    return EDITOR_KINDS.get(option.type)


def covered_by(option: OptionInfo) -> str | None:
    """The control key that edits `option` when it has no editor of its own (structure)."""
    return STRUCTURE if option.name in STRUCTURE_OPTIONS else None


def file_key(part: str) -> str:
    return f"layer_files.{part}"


def source_key(field: str) -> str:
    return f"{SOURCE}.{field}"


def mode_controls(
    mode: ModeInfo, parts: Iterable[FilePart] = (), loras: bool = False
) -> tuple[Control, ...]:
    """The options the docker offers (in the server's order), the Structure section, the
    inputs' layer pickers, the LoRA rows (`loras`: the mode runs on the base), then the file
    pickers (in the Advanced section: most users keep the official files)."""
    controls = [
        Control(option.name, editor_kind(option) or "text", option.advanced, option=option)
        for option in offered(mode)
    ]
    if takes_structure(mode):
        controls.append(Control(STRUCTURE, STRUCTURE, True))
    controls += [
        Control(source_key(image.field), SOURCE, False, image=image) for image in pickable(mode)
    ]
    if loras:
        controls.append(Control(LORAS, LORAS, False))
    controls += [
        Control(file_key(part.part), FILE, True, part=part) for part in parts if part.choosable
    ]
    return tuple(controls)
