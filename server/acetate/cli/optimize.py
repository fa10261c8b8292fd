"""`acetate models optimize [--sizes 512,1024] [--decoder FILE]…`: prepare transparent decoders.

Exports each transparent decoder for ONNX Runtime at each size into the private decoder cache
(see `engine/nets/prepared_decoder.py`), so that CPU decodes of those sizes take the prepared
path from the first job on instead of preparing it in the background. Needs the optional
`fast-decoder` extra.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from acetate.cli.common import extra_models_dirs, models_dir

DEFAULT_SIZES = "512,1024"


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """`512,1024x768` → [(512, 512), (1024, 768)] (height × width, multiples of 64)."""
    from acetate.engine.nets.transparent_vae import SIZE_MULTIPLE

    sizes = []
    for part in text.split(","):
        sides = part.strip().lower().split("x")
        try:
            height, width = (int(sides[0]), int(sides[-1])) if len(sides) <= 2 else (0, 0)
        except ValueError:
            height = width = 0
        if height <= 0 or width <= 0 or height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} is not a side or HxW of positive multiples of {SIZE_MULTIPLE}"
            )
        sizes.append((height, width))
    return sizes


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register `optimize` under `acetate models`."""
    optimize = commands.add_parser(
        "optimize",
        help="prepare the transparent decoders for ONNX Runtime on this CPU (fast-decoder extra)",
        description="Exports each full-size transparent decoder of the store (or each --decoder "
        "FILE) at each size into the private decoder cache; `acetate doctor` lists them.",
    )
    optimize.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes(DEFAULT_SIZES),
        help=f"comma-separated square sides or HxW (default {DEFAULT_SIZES})",
    )
    optimize.add_argument(
        "--decoder", type=Path, action="append", metavar="FILE", help="a decoder file (repeatable)"
    )
    optimize.add_argument(
        "--models-dir", type=Path, default=argparse.SUPPRESS, help="model store folder"
    )
    optimize.set_defaults(run=run)


def _decoder_files(args: argparse.Namespace) -> list[Path]:
    if args.decoder:
        return list(args.decoder)
    from acetate.engine.store.models import ModelStore

    store = ModelStore(models_dir(args), extra_models_dirs(args))
    return [
        layer.path
        for layer in store.layer_files()
        if layer.identity.role == "transparent_decoder" and not layer.tiny
    ]


def run(args: argparse.Namespace) -> int:
    import torch

    from acetate.engine.nets.decoder_paths import prepared_path_problem
    from acetate.engine.nets.prepared_decoder import PreparedCache, current_key
    from acetate.engine.nets.transparent_vae import load_transparent_decoder
    from acetate.engine.store.digest import file_sha256

    problem = prepared_path_problem(torch.device("cpu"), torch.float32, export=True)
    if problem:
        print(f"cannot prepare decoders: {problem}")
        return 1
    files = _decoder_files(args)
    if not files:
        print("no full-size transparent decoder in the model store (see `acetate models`)")
        return 1
    cache = PreparedCache()
    for path in files:
        decoder = load_transparent_decoder(path)
        digest = file_sha256(path)
        for height, width in args.sizes:
            key = current_key(digest, height, width)
            started = time.perf_counter()
            loaded = cache.load(key, decoder)
            if not isinstance(loaded, str):
                print(f"{path.name} {height}x{width}: already prepared ({cache.entry(key)})")
                continue
            _, difference = cache.prepare(key, decoder)
            print(
                f"{path.name} {height}x{width}: prepared in {time.perf_counter() - started:.0f} s, "
                f"max |diff| vs eager {difference:.1e} ({cache.entry(key)})"
            )
    return 0
