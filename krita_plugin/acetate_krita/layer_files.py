"""Which LayerDiffusion file fills each part of a job: the docker's per-part pickers.

A mode declares, per model family, the parts it loads and the official kinds that fill each
(`GET /api/modes`: `families[].files`); the server lists the files it has, official and
trained (`GET /api/models`: `layer_files`). A file fits a part when its kind is one of the
part's kinds and its family and tiny flag are those of the chosen base model. A part with more
than one fitting file gets a picker: "Default" (send nothing: the server's preferred official
file) first, then each fitting file. Choices are remembered per mode, family and part; one
that no longer fits (another base, a file removed from the server) counts as "Default".
Qt-free and Krita-free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .protocol import BaseModelInfo, LayerFileInfo, ModeInfo, ModesInfo

#: Settings keys of the choices start with this (`layer_file.<mode>.<family>.<part>`).
KEY_PREFIX = "layer_file"
SUFFIX = ".safetensors"


@dataclass(frozen=True)
class FilePart:
    """One part of a mode on a family and the files that fit it, preferred official first."""

    part: str
    kinds: tuple[str, ...]
    files: tuple[LayerFileInfo, ...]

    @property
    def choosable(self) -> bool:
        """Whether the docker shows a picker: only a choice between files is worth one."""
        return len(self.files) > 1

    def fits(self, name: str | None) -> bool:
        return any(file.name == name for file in self.files)

    @property
    def label(self) -> str:
        return part_label(self.part)


def part_label(part: str) -> str:
    """The picker's caption: "attention_sharing" → "Attention sharing file"."""
    return f"{part.replace('_', ' ').capitalize()} file"


def file_label(file: LayerFileInfo) -> str:
    """The picker's text for a file: its name, trained ones marked with their steps."""
    name = file.name.removesuffix(SUFFIX)
    if file.trained is None:
        return name
    steps = file.trained.get("acetate.steps")
    return f"{name} (trained, {steps} steps)" if steps else f"{name} (trained)"


def file_parts(
    mode: ModeInfo | None, base: BaseModelInfo | None, files: Iterable[LayerFileInfo]
) -> tuple[FilePart, ...]:
    """The parts `mode` loads on `base`'s family, each with the listed files that fit it."""
    family = mode.family(base.family) if mode is not None and base is not None else None
    if base is None or family is None or not family.supported:
        return ()
    listed = tuple(files)
    parts = []
    for part, kinds in family.files.items():
        fitting = [
            file
            for file in listed
            if file.kind in kinds and file.family == base.family and file.tiny == base.tiny
        ]
        # Official files in the order of preference, then trained ones by name.
        fitting.sort(key=lambda f: (f.trained is not None, kinds.index(f.kind), f.name))
        parts.append(FilePart(part, tuple(kinds), tuple(fitting)))
    return tuple(parts)


def choice_key(mode: str, family: str, part: str) -> str:
    return f"{KEY_PREFIX}.{mode}.{family}.{part}"


def stored_choices(modes: ModesInfo, read: Callable[[str], str]) -> dict[str, str]:
    """Every remembered choice of the modes' parts (`read`: the settings store)."""
    choices = {}
    for mode in modes.modes:
        for family in mode.families:
            for part in family.files:
                key = choice_key(mode.name, family.family, part)
                name = read(key)
                if name:
                    choices[key] = name
    return choices


def chosen(
    mode: ModeInfo, family: str, parts: Iterable[FilePart], choices: Mapping[str, str]
) -> dict[str, str]:
    """Part → the file chosen for it that still fits (parts on "Default" are left out)."""
    out = {}
    for part in parts:
        name = choices.get(choice_key(mode.name, family, part.part))
        if part.choosable and part.fits(name) and name:
            out[part.part] = name
    return out
