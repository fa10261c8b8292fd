"""`acetate export`: a layered PSD and/or OpenRaster file from PNG layers or a result folder."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from acetate.errors import InputError

DESCRIPTION = """\
Write a layered PSD (8-bit RGBA, sRGB, merged composite included) and/or an OpenRaster file
(.ora: Krita, MyPaint; straight-alpha layer PNGs, merged image, thumbnail). At least one of
--psd and --ora.

  acetate export [--psd OUT.psd] [--ora OUT.ora] DIR
      from a result folder (DIR/result.json): one group per batch item, `blended` hidden,
      exactly as the server's /api/jobs/{id}/result.psd and result.ora.

  acetate export [--psd OUT.psd] [--ora OUT.ora] [--canvas WxH] [--group NAME] LAYER...
      from PNG files, stacked bottom → top in the order given. Each LAYER is
          [NAME=]FILE.png[@LEFT,TOP]
      NAME defaults to the file's stem; LEFT,TOP (canvas pixels, may be negative) default to
      0,0. The canvas defaults to the bounding box of all layers measured from 0,0.
      Example: acetate export --psd out.psd --ora out.ora bg.png "cat=fg.png@120,-8"
"""

_OFFSET = re.compile(r"(-?\d+),(-?\d+)")
_CANVAS = re.compile(r"(-?\d+)[x×](-?\d+)")


@dataclass(frozen=True)
class LayerArg:
    """One `[NAME=]FILE[@LEFT,TOP]` argument."""

    name: str
    path: Path
    left: int
    top: int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a layered PSD/OpenRaster file from PNG layers or a result folder",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--psd", type=Path, metavar="OUT.psd", help="PSD file to write")
    parser.add_argument(
        "--ora", type=Path, metavar="OUT.ora", help="OpenRaster file to write (Krita, MyPaint)"
    )
    parser.add_argument(
        "--canvas", metavar="WxH", help="canvas size (default: bounding box of the layers)"
    )
    parser.add_argument(
        "--group", metavar="NAME", help="put the layers in one group (default: no group)"
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="LAYER|DIR", help="[NAME=]FILE.png[@LEFT,TOP]…, or DIR"
    )
    parser.set_defaults(run=run)


def parse_layer(text: str) -> LayerArg:
    """Parse `[NAME=]FILE[@LEFT,TOP]`; a token that names an existing file is taken whole."""
    name: str | None = None
    rest = text
    if "=" in rest and not Path(rest).exists():
        name, rest = rest.split("=", 1)
        if not name:
            raise InputError(f"empty layer name in {text!r}", field="LAYER")
    left = top = 0
    if "@" in rest and not Path(rest).exists():
        rest, offset = rest.rsplit("@", 1)
        match = _OFFSET.fullmatch(offset)
        if match is None:
            raise InputError(
                f"bad offset {offset!r} in {text!r} (expected @LEFT,TOP, e.g. @120,-8)",
                field="LAYER",
            )
        left, top = int(match[1]), int(match[2])
    path = Path(rest)
    return LayerArg(name or path.stem, path, left, top)


def parse_canvas(text: str) -> tuple[int, int]:
    """`WxH` → (width, height), both ≥ 1."""
    match = _CANVAS.fullmatch(text.strip())
    if match is None:
        raise InputError(
            f"bad canvas size {text!r} (expected WxH, e.g. 1024x768)", field="--canvas"
        )
    width, height = int(match[1]), int(match[2])
    if width < 1 or height < 1:
        raise InputError(f"canvas must be at least 1x1, got {text!r}", field="--canvas")
    return width, height


def run(args: argparse.Namespace) -> int:
    from acetate.export.ora import write_ora
    from acetate.export.psd import PsdGroup, PsdLayer, write_psd
    from acetate.export.result import load_layer, read_result, result_groups
    from acetate.images import check_size, decode_png

    if args.psd is None and args.ora is None:
        raise InputError("give --psd OUT.psd and/or --ora OUT.ora", field="--psd")
    inputs: list[str] = args.inputs
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        if args.canvas or args.group:
            raise InputError("--canvas and --group apply to PNG layers, not to a result folder")
        folder = Path(inputs[0])
        record = read_result(folder)
        groups = result_groups(record, lambda layer: load_layer(folder, layer))
        canvas = (record.canvas.width, record.canvas.height)
    else:
        layers = []
        for text in inputs:
            spec = parse_layer(text)
            if spec.path.is_dir():
                raise InputError(f"{text}: a folder can only be given alone", field="LAYER")
            try:
                data = spec.path.read_bytes()
            except OSError as error:
                raise InputError(f"{spec.path}: {error.strerror}", field="LAYER") from error
            try:
                rgba = decode_png(data, str(spec.path))
            except InputError as error:
                raise InputError(error.message, field="LAYER", code=error.code) from error
            layers.append(PsdLayer(spec.name, rgba, spec.left, spec.top))
        if args.canvas:
            canvas = parse_canvas(args.canvas)
        else:
            canvas = (
                max(layer.left + layer.rgba.shape[1] for layer in layers),
                max(layer.top + layer.rgba.shape[0] for layer in layers),
            )
            if canvas[0] < 1 or canvas[1] < 1:
                raise InputError("the layers lie entirely left of or above 0,0; give --canvas")
        groups = [PsdGroup(args.group, layers)]
    check_size(*canvas, "--canvas")
    for flag, path, write in (("--psd", args.psd, write_psd), ("--ora", args.ora, write_ora)):
        if path is None:
            continue
        try:
            write(path, canvas, groups)
        except OSError as error:
            raise InputError(f"cannot write {path}: {error.strerror}", field=flag) from error
        print(path)
    return 0
