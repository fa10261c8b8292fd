"""`acetate generate`: run one request locally (or on a server) and write a result folder."""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path
from typing import Any

from acetate.cli.common import (
    add_engine_options,
    add_store_options,
    engine_options,
    models_dir,
)
from acetate.errors import InputError
from acetate.protocol import IMAGE_FIELDS, MODES, SCHEDULERS

#: Request field → CLI flag, where the flag is not simply `--field-with-dashes`.
LAYER_PROMPT_FLAGS = {
    "fg_prompt": "foreground",
    "bg_prompt": "background",
    "blend_prompt": "blended",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate transparent layers into a folder",
        description="Generate transparent layers. Writes DIR/foreground.png (and background.png, "
        "blended.png as the mode makes them), DIR/result.json and, with --psd, DIR/layers.psd.",
    )
    parser.add_argument("--mode", choices=MODES, default="fg")
    parser.add_argument(
        "--model", help="base model name from `acetate models` (default: first usable)"
    )
    parser.add_argument("--prompt", default="")
    parser.add_argument("--negative-prompt", default="")
    parser.add_argument("--fg-prompt", help="extra text for the foreground layer")
    parser.add_argument("--bg-prompt", help="extra text for the background layer")
    parser.add_argument("--blend-prompt", help="extra text for the blended layer")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--cfg", type=float)
    parser.add_argument("--scheduler", choices=SCHEDULERS)
    parser.add_argument("--width", type=int, help="multiple of 64 (fg and joint)")
    parser.add_argument("--height", type=int, help="multiple of 64 (fg and joint)")
    parser.add_argument("--batch", type=int, default=1, help="number of result sets")
    parser.add_argument("--strength", type=float, default=0.7)
    parser.add_argument("--layer-weight", type=float, default=1.0)
    parser.add_argument("--stop-at", type=float)
    parser.add_argument("--decode", choices=("tta", "fast"), default="tta")
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--margin", type=int, default=64)
    parser.add_argument("--feather", type=int, default=4)
    parser.add_argument("--control", choices=("none", "canny", "image"), default="none")
    parser.add_argument("--controlnet", help="ControlNet name, or a .safetensors file / folder")
    parser.add_argument("--control-strength", type=float, default=1.0)
    for field in IMAGE_FIELDS:
        parser.add_argument(f"--{field.replace('_', '-')}", type=Path, metavar="PNG", dest=field)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--psd", action="store_true", help="also write DIR/layers.psd")
    parser.add_argument("--transparent-decoder", type=Path, metavar="FILE")
    parser.add_argument("--transparent-encoder", type=Path, metavar="FILE")
    parser.add_argument("--layer-model", type=Path, action="append", default=[], metavar="FILE")
    parser.add_argument("--server", metavar="URL", help="run on an Acetate server instead")
    parser.add_argument("--token", help="server token (or $ACETATE_TOKEN)")
    add_store_options(parser)
    add_engine_options(parser)
    parser.set_defaults(run=run)


def request_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The non-image request fields from the flags (DESIGN.md flags ↔ fields table)."""
    fields: dict[str, Any] = {
        name: getattr(args, name)
        for name in (
            "mode",
            "model",
            "prompt",
            "negative_prompt",
            "seed",
            "steps",
            "cfg",
            "scheduler",
            "width",
            "height",
            "batch",
            "strength",
            "layer_weight",
            "stop_at",
            "decode",
            "scale",
            "margin",
            "feather",
            "control",
            "controlnet",
            "control_strength",
        )
    }
    layer_prompts = {
        layer: getattr(args, flag)
        for flag, layer in LAYER_PROMPT_FLAGS.items()
        if getattr(args, flag) is not None
    }
    if layer_prompts:
        fields["layer_prompts"] = layer_prompts
    return {key: value for key, value in fields.items() if value is not None}


def validate(fields: dict[str, Any]):
    """Pydantic validation, with errors turned into one line naming the flag."""
    from pydantic import ValidationError

    from acetate.protocol import GenerateParameters

    try:
        return GenerateParameters.model_validate(fields)
    except ValidationError as error:
        first = error.errors()[0]
        location = [str(part) for part in first["loc"]]
        field = location[0] if location else "request"
        flag = "--" + field.replace("_", "-")
        if field == "layer_prompts" and len(location) > 1:
            flag = {v: k for k, v in LAYER_PROMPT_FLAGS.items()}.get(location[1], field)
            flag = "--" + flag.replace("_", "-")
        message = first["msg"].removeprefix("Value error, ")
        raise InputError(f"{flag}: {message}", field=field) from None


def load_images(args: argparse.Namespace) -> dict[str, Any]:
    from acetate.images import load_image_file

    return {
        field: load_image_file(getattr(args, field), field)
        for field in IMAGE_FIELDS
        if getattr(args, field) is not None
    }


def run(args: argparse.Namespace) -> int:
    fields = request_fields(args)
    params = validate(fields)
    images = load_images(args)
    from acetate.checks import check_request

    check_request(params, images)
    if args.server:
        return _run_remote(args, params, images)
    return _run_local(args, params, images)


def _run_local(args: argparse.Namespace, params, images) -> int:
    from tqdm import tqdm

    from acetate.engine.engine import Engine
    from acetate.engine.store.models import ModelStore
    from acetate.export.result import write_result

    overrides = [
        path
        for path in (args.transparent_decoder, args.transparent_encoder, *args.layer_model)
        if path is not None
    ]
    for path in overrides:
        if not path.is_file():
            raise InputError(f"no such file: {path}", field="layer_model")
    store = ModelStore(models_dir(args), args.extra_models_dir)
    if args.controlnet and Path(args.controlnet).exists():
        params = params.model_copy(
            update={"controlnet": store.add_controlnet(Path(args.controlnet))}
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
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    record = write_result(args.out, result, job_id=f"j_{secrets.token_hex(8)}", psd=args.psd)
    _print_paths(args.out, record)
    return 0


def _run_remote(args: argparse.Namespace, params, images) -> int:
    import asyncio
    import os

    from acetate.client import run_job

    token = args.token or os.environ.get("ACETATE_TOKEN")
    record = asyncio.run(
        run_job(
            args.server, token, params.model_dump(exclude_none=True), images, args.out, psd=args.psd
        )
    )
    _print_paths(args.out, record)
    return 0


def _print_paths(out: Path, record) -> None:
    for warning in record.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for layer in record.layers:
        print(out / layer.file)
    if record.psd:
        print(out / record.psd)
    print(out / "result.json")
