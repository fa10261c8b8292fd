"""`acetate generate`: run one request locally (or on a server) and write a result folder.

The flags come from the request schema (`acetate.cli.generate_flags`). A flag the user does not
give is not sent: the server / mode default applies.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from acetate.cli.common import engine_options, extra_models_dirs, models_dir
from acetate.cli.generate_flags import (
    LAYER_PROMPT_FLAGS,
    add_arguments,
    flag_name,
    one_line_error,
)
from acetate.errors import InputError
from acetate.modes import IMAGE_FIELDS

__all__ = ["add_arguments", "add_parser", "request_fields", "run", "validate"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from acetate.protocol import GenerateParameters

    parser = subparsers.add_parser(
        "generate",
        help="generate transparent layers into a folder",
        description="Generate transparent layers. Writes DIR/foreground.png (and the other "
        "layers the mode makes), DIR/result.json and, with --psd/--ora, DIR/layers.psd/.ora. "
        "Request flags left out take the server's default for the mode and model family.",
    )
    parser.error = types.MethodType(one_line_error, parser)  # type: ignore[method-assign]
    add_arguments(parser, GenerateParameters.model_fields, IMAGE_FIELDS)
    parser.set_defaults(run=run)


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
        return flag_name(layer_flags[field])
    if flags is not None and field in flags:
        return flags[field]
    return flag_name(field)


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
