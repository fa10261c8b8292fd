"""`acetate generate`: run one request locally (or on a server) and write a result folder.

The request flags are derived from the request schema: one flag per field of
`acetate.protocol.GenerateParameters` (constraints and help from `acetate.modes.OPTIONS`) and
one `--field PNG` per image field (`acetate.modes.IMAGE_FIELDS`), so a mode or option added in
`acetate.modes` (or loaded from `ACETATE_EXTRA_MODES`) gets its flag without touching this file.
A flag the user does not give is not sent: the server / mode default applies.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from acetate.cli.common import (
    add_engine_options,
    add_store_options,
    engine_options,
    extra_models_dirs,
    models_dir,
)
from acetate.errors import InputError
from acetate.modes import FAMILY_LABELS, IMAGE_FIELDS, LIST_INPUTS, MODE_NAMES, MODES, OPTIONS

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


# -- building the parser -------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from acetate.protocol import GenerateParameters

    parser = subparsers.add_parser(
        "generate",
        help="generate transparent layers into a folder",
        description="Generate transparent layers. Writes DIR/foreground.png (and the other "
        "layers the mode makes), DIR/result.json and, with --psd/--ora, DIR/layers.psd/.ora. "
        "Request flags left out take the server's default for the mode and model family.",
    )
    parser.error = types.MethodType(_one_line_error, parser)  # type: ignore[method-assign]
    add_arguments(parser, GenerateParameters.model_fields, IMAGE_FIELDS)
    parser.set_defaults(run=run)


def _one_line_error(self: argparse.ArgumentParser, message: str) -> NoReturn:
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
            images.add_argument(_flag(name), type=Path, metavar="PNG", dest=name, help=help_text)
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
            _flag(dest),
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


def _flag(name: str) -> str:
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
    group.add_argument(_flag(name), **kwargs)


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
        return list(OPTIONS[name].choices)
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


# -- running -------------------------------------------------------------------------------


def request_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The non-image request fields the user gave flags for (the rest keep their defaults)."""
    fields: dict[str, Any] = {
        name: getattr(args, name)
        for name in args.request_fields
        if getattr(args, name, None) is not None
    }
    layer_prompts = {
        layer: getattr(args, dest)
        for dest, layer in LAYER_PROMPT_FLAGS.items()
        if getattr(args, dest, None) is not None
    }
    if layer_prompts:
        fields["layer_prompts"] = layer_prompts
    names = []
    for flag, value in layer_file_values(args):
        if not _is_path(value, args):
            names.append(value)
        elif getattr(args, "server", None):
            raise InputError(
                f"{flag}: a server cannot read this machine's files; name one it lists in "
                f"/api/models (got {value!r})",
                field=flag,
            )
    if names:
        fields["layer_files"] = names
    specs = lora_specs(args)
    if getattr(args, "server", None) and any(path for _, _, path in specs):
        raise InputError(
            "--lora: a server cannot read this machine's files; name a LoRA it lists in "
            "/api/models",
            field="--lora",
        )
    # Local files are registered with the model store and added by name in `_run_local`.
    loras = [{"name": name, "strength": strength} for name, strength, path in specs if not path]
    if loras:
        fields["loras"] = loras
    return fields


def lora_specs(args: argparse.Namespace) -> list[tuple[str, float, bool]]:
    """(name or path, strength, is a path) of every `--lora NAME[:STRENGTH]`."""
    specs = []
    for text in getattr(args, "lora_specs", None) or []:
        value, strength = text, 1.0
        head, colon, tail = text.rpartition(":")
        if colon:
            try:
                value, strength = head, float(tail)
            except ValueError:
                if not _lora_is_path(text, args):
                    raise InputError(
                        f"--lora: expected NAME[:STRENGTH] with a number after ':' (got {text!r})",
                        field="--lora",
                    ) from None
        specs.append((value, strength, _lora_is_path(value, args)))
    return specs


def _lora_is_path(value: str, args: argparse.Namespace) -> bool:
    """A LoRA is a local file when absolute, `./`/`~`-relative, Windows-style or an existing file;
    otherwise a listed name (which may have `/`-separated sub-folders)."""
    if value.startswith((".", "~", "/")) or "\\" in value or Path(value).is_absolute():
        return True
    return not getattr(args, "server", None) and Path(value).is_file()


def layer_file_values(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(flag, value) of every --transparent-decoder/--transparent-encoder/--layer-model."""
    given = [
        ("--transparent-decoder", getattr(args, "transparent_decoder", None)),
        ("--transparent-encoder", getattr(args, "transparent_encoder", None)),
        *(("--layer-model", value) for value in getattr(args, "layer_model", None) or []),
    ]
    return [(flag, value) for flag, value in given if value]


def _is_path(value: str, args: argparse.Namespace) -> bool:
    """A layer-file flag's value is a file path (locally only) when it names an existing file
    or has a folder in it; otherwise it is a name the model store lists."""
    if any(sep in value for sep in ("/", "\\")):
        return True
    return not getattr(args, "server", None) and Path(value).is_file()


def layer_file_paths(args: argparse.Namespace) -> list[Path]:
    """The layer-file flags that are local file paths; a missing one is an `InputError`."""
    paths = []
    for flag, value in layer_file_values(args):
        if _is_path(value, args):  # `request_fields` refused paths for a server
            path = Path(value).expanduser()
            if not path.is_file():
                raise InputError(f"{flag}: no such file: {path}", field=flag)
            paths.append(path)
    return paths


def flag_for(field: str, flags: Mapping[str, str] | None = None) -> str:
    """The CLI flag of a request field (or of a `layer_prompts` key) for error messages."""
    layer_flags = {layer: dest for dest, layer in LAYER_PROMPT_FLAGS.items()}
    if field in layer_flags:
        return _flag(layer_flags[field])
    if flags is not None and field in flags:
        return flags[field]
    return _flag(field)


def validate(fields: dict[str, Any], flags: Mapping[str, str] | None = None):
    """Pydantic validation, with errors turned into one line naming the flag."""
    from pydantic import ValidationError

    from acetate.protocol import GenerateParameters

    try:
        return GenerateParameters.model_validate(fields)
    except ValidationError as error:
        first = error.errors()[0]
        location = list(first["loc"])
        field = str(location[0]) if location else "request"
        if field == "layer_prompts" and len(location) > 1:
            flag, rest = flag_for(str(location[1])), location[2:]
        else:
            flag, rest = flag_for(field, flags), location[1:]
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in rest)
        message = first["msg"].removeprefix("Value error, ")
        raise InputError(f"{flag}{where}: {message}", field=flag) from None


def load_images(args: argparse.Namespace) -> dict[str, Any]:
    from acetate.images import load_image_file

    return {
        field: load_image_file(getattr(args, field), field)
        for field in args.image_fields
        if getattr(args, field) is not None
    }


def parse_object(text: str, index: int) -> tuple[dict[str, Any], Path | None]:
    """`--object` text → an `objects` item and its mask file: split at the last '@' before the
    box (`PROMPT@L,T,W,H`) or the mask reference (`PROMPT@MASK.png@L,T`)."""
    flag = f"--object[{index}]"
    head, at, numbers = text.rpartition("@")
    try:
        values = [int(value) for value in numbers.split(",")] if at else []
    except ValueError:
        values = []
    if len(values) == 4:
        left, top, width, height = values
        region = {"left": left, "top": top, "width": width, "height": height}
        return {"prompt": head, "region": region}, None
    prompt, at, mask = head.rpartition("@")
    if len(values) == 2 and at and mask:
        return {"prompt": prompt, "region": {"left": values[0], "top": values[1]}}, Path(mask)
    raise InputError(
        f"{flag}: expected PROMPT@LEFT,TOP,WIDTH,HEIGHT or PROMPT@MASK.png@LEFT,TOP (got "
        f"{text[:80]!r})",
        field=flag,
    )


def scene_objects(args: argparse.Namespace) -> tuple[list[Any] | None, dict[str, Any]]:
    """`--object`s or `--scene`: the `objects` list and the masks read from files (by image
    key); None when neither flag is given."""
    from acetate.images import load_image_file
    from acetate.protocol import item_image_key

    specs: list[str] = getattr(args, "object_specs", None) or []
    scene: Path | None = getattr(args, "scene", None)
    if not specs and scene is None:
        return None, {}
    if specs and scene is not None:
        raise InputError("give --object flags or --scene, not both", field="--scene")
    masks: dict[str, Any] = {}
    objects: list[Any] = []
    if scene is not None:
        try:
            objects = json.loads(scene.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InputError(f"--scene: cannot read {scene}: {error}", field="--scene") from None
        if isinstance(objects, dict) and isinstance(objects.get("objects"), list):
            objects = objects["objects"]
        if not isinstance(objects, list):
            raise InputError("--scene: expected a JSON list of objects", field="--scene")
        for index, item in enumerate(objects):
            region = item.get("region") if isinstance(item, dict) else None
            mask = region.get("mask") if isinstance(region, dict) else None
            path = scene.parent / mask if isinstance(mask, str) and mask.endswith(".png") else None
            if path is not None and path.is_file() and isinstance(region, dict):
                key = item_image_key("objects", index)
                masks[key] = load_image_file(path, key)
                region.pop("mask")
        return objects, masks
    for index, text in enumerate(specs):
        item, mask_path = parse_object(text, index)
        objects.append(item)
        if mask_path is not None:
            key = item_image_key("objects", index)
            masks[key] = load_image_file(mask_path, key)
    return objects, masks


def run(args: argparse.Namespace) -> int:
    try:
        from acetate.images import decode_image_value
        from acetate.protocol import split_item_images

        fields = request_fields(args)
        objects, masks = scene_objects(args)
        if objects is not None:
            if "objects" in fields:
                raise InputError("give --objects, --object or --scene, once", field="--objects")
            fields["objects"] = objects
        params = validate(fields, args.flags)
        params, inline = split_item_images(params)
        images = load_images(args)
        images.update(masks)
        images.update({key: decode_image_value(value, key) for key, value in inline.items()})
        from acetate.checks import check_request

        check_request(params, images)
        if args.server:
            return _run_remote(args, params, images)
        return _run_local(args, params, images)
    except InputError as error:
        _name_the_flag(error, args.flags)
        raise


def _name_the_flag(error: InputError, flags: Mapping[str, str]) -> None:
    """Point an error about a request field at its flag (`bg` → `--bg`)."""
    field = error.field
    if not field or field.startswith("-") or field not in flags:
        return
    flag = flags[field]
    message = error.message
    if message.startswith(f"{field}: "):
        error.args = (f"{flag}: {message.removeprefix(f'{field}: ')}", *error.args[1:])
    error.field = flag


def _run_local(args: argparse.Namespace, params, images) -> int:
    from tqdm import tqdm

    from acetate.engine.engine import Engine
    from acetate.engine.store.models import ModelStore
    from acetate.export.result import write_result

    overrides = layer_file_paths(args)
    store = ModelStore(models_dir(args), extra_models_dirs(args))
    local_loras = [
        {"name": store.add_lora(Path(value)), "strength": strength}
        for value, strength, path in lora_specs(args)
        if path
    ]
    if local_loras:  # registered by path, requested by the name the store gives them
        from acetate.protocol import LoraRequest

        added = [LoraRequest.model_validate(item) for item in local_loras]
        params = params.model_copy(update={"loras": [*(params.loras or []), *added]})
    if params.controlnet and Path(params.controlnet).exists():
        params = params.model_copy(
            update={"controlnet": store.add_controlnet(Path(params.controlnet))}
        )
    engine = Engine(store, engine_options(args))
    bars: list[tqdm] = []

    def on_step(info) -> None:
        if not bars:
            bars.append(tqdm(total=info.total, unit="step", desc=params.mode, file=sys.stderr))
        bars[0].n = info.step
        bars[0].refresh()

    try:
        result = engine.generate(params, images, callback=on_step, overrides=overrides)
    finally:
        for bar in bars:
            bar.close()
    job_id = f"j_{secrets.token_hex(8)}"
    record = write_result(args.out, result, job_id=job_id, psd=args.psd, ora=args.ora)
    _print_paths(args.out, record)
    return 0


def _run_remote(args: argparse.Namespace, params, images) -> int:
    import asyncio
    import os

    from acetate.client import run_job

    token = args.token or os.environ.get("ACETATE_TOKEN")
    # Only what the user gave: the server fills the defaults for the mode and model family.
    request = params.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    record = asyncio.run(
        run_job(args.server, token, request, images, args.out, psd=args.psd, ora=args.ora)
    )
    _print_paths(args.out, record)
    return 0


def _print_paths(out: Path, record) -> None:
    """The warnings (stderr) and the written files (stdout), local and remote alike."""
    for warning in record.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for layer in record.layers:
        print(out / layer.file)
    for document in (record.psd, record.ora):
        if document:
            print(out / document)
    print(out / "result.json")
