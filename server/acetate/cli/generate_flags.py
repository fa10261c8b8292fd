"""`acetate generate`'s flags, derived from the request schema.

One flag per field of `acetate.protocol.GenerateParameters` (constraints and help from
`acetate.modes.OPTIONS`) and one `--field PNG` per image field (`acetate.modes.IMAGE_FIELDS`),
so a mode or option added in `acetate.modes` (or loaded from `ACETATE_EXTRA_MODES`) gets its flag
without touching this file; plus the CLI's own flags (output, server, model files, engine).
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from acetate.cli.common import add_engine_options, add_store_options
from acetate.modes import FAMILY_LABELS, LIST_INPUTS, MODE_NAMES, MODES, OPTIONS

#: CLI flag dest → `layer_prompts` key. `layer_prompts` itself gets no generated flag.
LAYER_PROMPT_FLAGS = {
    "fg_prompt": "foreground",
    "bg_prompt": "background",
    "blend_prompt": "blended",
}

#: Request fields with no generated flag.
NOT_FLAGS = frozenset(
    {
        # set per layer with --fg-prompt / --bg-prompt / --blend-prompt (LAYER_PROMPT_FLAGS)
        "layer_prompts",
        # editors only: places a selection-sized mask on the canvas; a CLI mask / selection is
        # a whole-image PNG, so there is nothing to place
        "selection_bounds",
        # editors only: groups one editor's jobs on a server; meaningless for one CLI run
        "client_id",
        # set by --transparent-decoder / --transparent-encoder / --layer-model (LAYER_FILE_FLAGS)
        "layer_files",
        # set by --lora NAME[:STRENGTH] (repeatable)
        "loras",
    }
)

#: What the CLI does beyond the schema for some fields (said in their help).
CLI_NOTES = {
    "controlnet": "Locally also a .safetensors file or a diffusers folder.",
    "model": "Default: the first usable one.",
}

_SCALARS = (int, float, str)
#: Namespace names the command itself uses: no request field may take them.
RESERVED_DESTS = ("command", "run", "request_fields", "image_fields", "flags")


def one_line_error(self: argparse.ArgumentParser, message: str) -> NoReturn:
    """Usage errors as one line (the full usage of this command is long): exit code 2."""
    self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_arguments(
    parser: argparse.ArgumentParser,
    fields: Mapping[str, FieldInfo],
    image_fields: Iterable[str],
) -> None:
    """Every `acetate generate` flag: the request's from `fields` / `image_fields`, then the
    CLI's own. A request flag that would clash with a CLI flag raises `ValueError`."""
    request = parser.add_argument_group("request (left out: the mode's / model family's default)")
    images = parser.add_argument_group("input images (which ones a mode reads: --mode)")
    output = parser.add_argument_group("output")
    server = parser.add_argument_group("server (run the request there instead of locally)")
    engine = parser.add_argument_group("models and engine (local runs)")

    request_fields = [name for name in fields if name not in NOT_FLAGS]
    image_list = list(image_fields)
    try:
        for name in request_fields:
            _add_field(request, name, fields[name])
        for name in image_list:
            help_text = _escape(_image_help(name))
            images.add_argument(
                flag_name(name), type=Path, metavar="PNG", dest=name, help=help_text
            )
        _add_cli_flags(request, output, server, engine)
    except argparse.ArgumentError as error:  # argparse refuses an option string used twice
        raise ValueError(f"a request field would duplicate another flag: {error}") from None
    dests = [action.dest for action in parser._actions] + list(RESERVED_DESTS)
    twice = sorted({dest for dest in dests if dests.count(dest) > 1})
    if twice:
        raise ValueError(f"request fields would duplicate CLI flags or settings: {twice}")
    flags = {
        action.dest: action.option_strings[0] for action in parser._actions if action.option_strings
    }
    flags["layer_files"] = "--layer-model"  # errors on the chosen files name the flag
    flags["loras"] = "--lora"
    parser.set_defaults(
        request_fields=tuple(request_fields), image_fields=tuple(image_list), flags=flags
    )


def _add_cli_flags(
    request: argparse._ArgumentGroup,
    output: argparse._ArgumentGroup,
    server: argparse._ArgumentGroup,
    engine: argparse._ArgumentGroup,
) -> None:
    """The flags that are not request fields (and the per-layer prompts)."""
    modes = _modes_text(_modes_reading("layer_prompts"))
    for dest, layer in LAYER_PROMPT_FLAGS.items():
        request.add_argument(
            flag_name(dest),
            metavar="TEXT",
            help=_escape(f"Extra text in front of the prompt for the {layer} layer ({modes})."),
        )
    request.add_argument(
        "--object",
        dest="object_specs",
        action="append",
        default=[],
        metavar="PROMPT@L,T,W,H|PROMPT@MASK.png@L,T",
        help="One scene object (repeatable, bottom to top): its prompt, then '@' and a box "
        "left,top,width,height, or '@' a mask PNG (white = the object's region, cropped to its "
        "bounds) and '@' its left,top. Sets --objects (mode scene).",
    )
    request.add_argument(
        "--scene",
        type=Path,
        metavar="FILE.json",
        help="The scene's objects as JSON, the same list as the API's `objects`; a region's "
        "`mask` may also be a PNG path relative to the file. Sets --objects (mode scene).",
    )
    output.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    output.add_argument("--psd", action="store_true", help="also write DIR/layers.psd")
    output.add_argument(
        "--ora", action="store_true", help="also write DIR/layers.ora (OpenRaster: Krita, MyPaint)"
    )
    request.add_argument(
        "--lora",
        dest="lora_specs",
        action="append",
        default=[],
        metavar="NAME[:STRENGTH]",
        help="Apply a LoRA to the base for this job (repeatable): a name from `acetate models` "
        "(on a server, from its /api/models) or, locally, a .safetensors file; STRENGTH -2 to 2, "
        "default 1. Sets --loras.",
    )
    server.add_argument("--server", metavar="URL", help="run on an Acetate server instead")
    server.add_argument("--token", help="server token (or $ACETATE_TOKEN)")
    engine.add_argument(
        "--transparent-decoder",
        metavar="NAME|FILE",
        help="use this transparent decoder: a name from `acetate models` (official or trained; "
        "on a server, from its /api/models) or, locally, a file",
    )
    engine.add_argument(
        "--transparent-encoder", metavar="NAME|FILE", help="use this transparent encoder (ditto)"
    )
    engine.add_argument(
        "--layer-model",
        action="append",
        default=[],
        metavar="NAME|FILE",
        help="use this LayerDiffusion file for the part it fills (repeatable; ditto)",
    )
    add_store_options(engine)
    add_engine_options(engine)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_field(group: argparse._ArgumentGroup, name: str, info: FieldInfo) -> None:
    kind = _unwrap(info.annotation)
    kwargs: dict[str, Any] = {"dest": name, "default": None}
    choices = _choices(name, info, kind)
    if kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif choices:
        kwargs.update(choices=choices, type=str)
    elif kind in _SCALARS:
        kwargs["type"] = kind
    else:  # lists and objects: JSON text or @file.json
        kwargs.update(type=_json_type(name, kind), metavar="JSON|@FILE")
    kwargs["help"] = _escape(_field_help(name, info))
    group.add_argument(flag_name(name), **kwargs)


def _unwrap(annotation: Any) -> Any:
    """`X | None` → X (other unions stay as they are)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return _unwrap(rest[0])
    return annotation


def _choices(name: str, info: FieldInfo, kind: Any) -> list[str] | None:
    if name == "mode":
        return list(MODE_NAMES)
    if typing.get_origin(kind) is Literal:
        return [str(arg) for arg in typing.get_args(kind)]
    extra = info.json_schema_extra
    enum = extra.get("enum") if isinstance(extra, dict) else None
    if isinstance(enum, list):
        return [str(value) for value in enum]
    if name in OPTIONS and OPTIONS[name].choices:
        return [str(value) for value in OPTIONS[name].choices]
    return None


def _json_type(name: str, kind: Any):
    is_list = typing.get_origin(kind) is list

    def parse(text: str) -> Any:
        if text.startswith("@"):
            try:
                text = Path(text[1:]).read_text(encoding="utf-8")
            except OSError as error:
                raise argparse.ArgumentTypeError(f"cannot read {text[1:]}: {error}") from None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise argparse.ArgumentTypeError(f"invalid JSON ({error})") from None
        if is_list and not isinstance(value, list):
            raise argparse.ArgumentTypeError("expected a JSON list, e.g. '[{...}]'")
        return value

    parse.__name__ = name  # argparse names the type in some messages
    return parse


# -- help ----------------------------------------------------------------------------------


def _escape(text: str) -> str:
    return text.replace("%", "%%")


def _modes_reading(option: str) -> list[str]:
    return [spec.name for spec in MODES.values() if option in spec.options]


def _modes_text(names: list[str]) -> str:
    if list(names) == list(MODE_NAMES):
        return "all modes"
    return "modes: " + ", ".join(names) if names else "no built-in mode"


def _value_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (bool, type(None))) else str(value)


def _option_default_text(name: str) -> str | None:
    """The option's default as the specs give it: one value, per family, or "varies"."""
    by_family: dict[str, list[Any]] = {}
    for spec in MODES.values():
        if name not in spec.options:
            continue
        for family in spec.families:
            values = by_family.setdefault(FAMILY_LABELS.get(family, family), [])
            value = spec.default(name, family)
            if value not in (None, "") and value not in values:
                values.append(value)
    every = [v for values in by_family.values() for v in values]
    distinct = list(dict.fromkeys(_value_text(v) for v in every))
    if not distinct:
        return None
    if len(distinct) == 1:
        return f"default {distinct[0]}"
    if all(len(values) <= 1 for values in by_family.values()):
        parts = [f"{family} {_value_text(v[0])}" for family, v in by_family.items() if v]
        return "default " + ", ".join(parts)
    return "default by mode and model family: " + " or ".join(distinct)


def _field_help(name: str, info: FieldInfo) -> str:
    parts: list[str] = []
    if name == "mode":
        parts.append("; ".join(f"{spec.name}: {spec.label}" for spec in MODES.values()) + ".")
    # The server's model list is what `acetate models` shows.
    text = (info.description or info.title or "").strip().replace("/api/models", "`acetate models`")
    if text:
        parts.append(text if text.endswith(".") else text + ".")
    if name in LIST_INPUTS:
        spec = LIST_INPUTS[name]
        keys = [option.name for option in spec.item_options]
        keys += [image.field for image in spec.item_images]
        parts.append(
            f"A JSON list of {spec.min_items}-{spec.max_items} objects with "
            f"{', '.join(keys)} (or @file.json)."
        )
    if name in CLI_NOTES:
        parts.append(CLI_NOTES[name])
    notes: list[str] = []
    if name in OPTIONS:
        notes.append(_modes_text(_modes_reading(name)))
        default = _option_default_text(name)
        if default:
            notes.append(default)
    elif name in LIST_INPUTS:
        notes.append(
            _modes_text([s.name for s in MODES.values() if any(x.field == name for x in s.lists)])
        )
    elif info.default not in (None, "", PydanticUndefined) and not isinstance(
        info.default, BaseModel
    ):
        notes.append(f"default {_value_text(info.default)}")
    if notes:
        parts.append(f"({'; '.join(notes)})")
    return " ".join(parts)


def _image_help(field: str) -> str:
    users = [
        (spec.name, image)
        for spec in MODES.values()
        for image in spec.inputs
        if image.field == field
    ]
    if not users:
        return "An image (PNG)."
    first = users[0][1]
    kind = "mask PNG, white = selected" if first.kind == "mask" else "PNG"
    modes = ", ".join(f"{mode}{'' if image.required else ' optional'}" for mode, image in users)
    if len(users) == len(MODE_NAMES) and not any(image.required for _, image in users):
        modes = "all modes, optional"
    help_text = first.help if first.help.endswith(".") else first.help + "."
    return f"{first.label} ({kind}): {help_text} ({modes})"
