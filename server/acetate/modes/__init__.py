"""Every generation mode, declared once.

A `ModeSpec` says everything the rest of Acetate needs to know about a mode: its label and help,
the images it takes (and which one sets the result frame), list inputs whose items carry their
own fields, whether it needs a prompt, the layers it returns (fixed names or a pattern counted
from the request), the options it reads with their defaults per model family, the families it
runs on (the official files each needs, or why it cannot) and its denoising stages. The request
schema, the CLI flags, `GET /api/modes`, both editors' controls, result ordering, visibility and
alpha rules, the model requirements and the engine's pipeline table are all derived from here.

Adding a mode = one `ModeSpec` in `builtin.py` + one pipeline function (named by `pipeline`)
+ its tests. `options.py` declares the request options, `spec.py` what a declaration is made of;
this module is the registry everything else reads.
Modules named in `ACETATE_EXTRA_MODES` (comma-separated, each with a `MODES` list) are loaded
before anything else reads the registry; the test suite uses it for a dummy mode.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from acetate.modes.builtin import BUILTIN_MODES
from acetate.modes.options import (
    FAMILIES,
    FAMILY_LABELS,
    MAX_PROMPT,
    OPTIONS,
    SCHEDULERS,
    TINY_SIZE,
    Family,
    Option,
    OptionType,
    Scheduler,
)
from acetate.modes.spec import (
    FamilySupport,
    ImageInput,
    ImageKind,
    ImageSource,
    LayerOut,
    ListInput,
    ModeSpec,
    Stage,
)

__all__ = [
    "API_VERSION",
    "BUILTIN_MODES",
    "FAMILIES",
    "FAMILY_LABELS",
    "IMAGE_FIELDS",
    "LIST_INPUTS",
    "MASK_FIELDS",
    "MAX_PROMPT",
    "MODES",
    "MODE_NAMES",
    "OPTIONS",
    "SCHEDULERS",
    "TINY_SIZE",
    "Family",
    "FamilySupport",
    "ImageInput",
    "ImageKind",
    "ImageSource",
    "LayerOut",
    "ListInput",
    "ModeSpec",
    "Option",
    "OptionType",
    "Scheduler",
    "Stage",
    "modes_document",
]


def _load_extra_modes() -> tuple[ModeSpec, ...]:
    extra: list[ModeSpec] = []
    for module_name in filter(None, os.environ.get("ACETATE_EXTRA_MODES", "").split(",")):
        module = importlib.import_module(module_name.strip())
        extra += list(module.MODES)
        OPTIONS.update(getattr(module, "OPTIONS", {}))
    return tuple(extra)


#: Every mode by name, built-in first, in the order editors list them.
MODES: dict[str, ModeSpec] = {spec.name: spec for spec in (*BUILTIN_MODES, *_load_extra_modes())}
MODE_NAMES: tuple[str, ...] = tuple(MODES)


def _check_registry() -> None:
    """Spec consistency, checked at import so a bad spec fails every test at once."""
    for spec in MODES.values():
        unknown = [name for name in spec.options if name not in OPTIONS]
        if unknown:
            raise ValueError(f"mode {spec.name}: unknown options {unknown}")
        if sum(image.frame for image in spec.inputs) > 1:
            raise ValueError(f"mode {spec.name}: more than one frame image")
        if set(spec.families) & set(spec.unsupported):
            raise ValueError(f"mode {spec.name}: a family both supported and unsupported")
        lists = {item.field for item in spec.lists}
        for layer in spec.layers:
            if layer.count_from is not None and "{i}" not in layer.name:
                raise ValueError(f"mode {spec.name}: counted layer {layer.name} lacks {{i}}")
            if layer.title_from is not None and layer.count_from not in lists:
                raise ValueError(f"mode {spec.name}: {layer.name} titled from a non-list")
            if layer.only_without is not None and layer.only_without not in spec.allowed_images:
                raise ValueError(f"mode {spec.name}: {layer.name} depends on an unknown input")
        for support in spec.families.values():
            for stage in support.stages:
                if stage.per_item is not None and stage.per_item not in lists:
                    raise ValueError(f"mode {spec.name}: stage {stage.name} per unknown list")


_check_registry()

#: Every image field any mode takes, in declaration order.
IMAGE_FIELDS: tuple[str, ...] = tuple(
    dict.fromkeys(image.field for spec in MODES.values() for image in spec.inputs)
)
MASK_FIELDS: frozenset[str] = frozenset(
    image.field for spec in MODES.values() for image in spec.inputs if image.kind == "mask"
)
#: Every list input any mode takes: field → declaration (the first declaration wins).
LIST_INPUTS: dict[str, ListInput] = {}
for _spec in MODES.values():
    for _list in _spec.lists:
        LIST_INPUTS.setdefault(_list.field, _list)


#: The protocol version `/api/health` and `/api/modes` report (2: modes published by the server).
API_VERSION = 2


def modes_document() -> dict[str, Any]:
    """The body of `GET /api/modes`."""
    return {"api_version": API_VERSION, "modes": [spec.to_json() for spec in MODES.values()]}
