"""`acetate data synth`: synthetic RGBA images (with captions) for tests and demos."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="make training data (synthetic RGBA images)",
        description="Training data helpers.",
    )
    commands = parser.add_subparsers(dest="data_command", metavar="WHAT", required=True)
    synth = commands.add_parser(
        "synth",
        help="write deterministic synthetic RGBA PNGs with a caption .txt each",
        description=(
            "Soft-edged shapes, hair-like strokes, smoke-like noise alpha and glass-like "
            "partial alpha over colour; the same --seed always gives the same files."
        ),
    )
    synth.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    synth.add_argument("--count", type=int, default=100, help="number of images (default 100)")
    synth.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    synth.add_argument("--size", type=int, default=256, help="side in pixels (default 256)")
    synth.set_defaults(run=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from acetate.errors import InputError
    from acetate.train.synth import write_synth

    if args.count < 1:
        raise InputError(f"--count must be at least 1, got {args.count}", field="--count")
    if not 64 <= args.size <= 4096:
        raise InputError(f"--size must be 64…4096, got {args.size}", field="--size")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"{args.out} exists and is not a folder", field="--out")
    paths = write_synth(args.out, args.count, args.seed, args.size)
    print(f"wrote {len(paths)} RGBA images with captions to {args.out}")
    return 0
