"""Options shared by several sub-commands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from acetate.engine.options import EngineOptions

DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[3] / "models"


def default_models_dir() -> Path:
    """`$ACETATE_MODELS_DIR`, else the checkout's `models/`, else ~/.acetate/models."""
    env = os.environ.get("ACETATE_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    if (DEFAULT_MODELS_DIR / "README.md").is_file():
        return DEFAULT_MODELS_DIR
    return Path.home() / ".acetate" / "models"


def add_store_options(parser: argparse._ActionsContainer) -> None:
    """`--models-dir`, `--extra-models-dir` (on a parser or an argument group)."""
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="model store (default: $ACETATE_MODELS_DIR or the repo's models/)",
    )
    parser.add_argument(
        "--extra-models-dir",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="an existing ComfyUI / Forge / A1111 models folder (repeatable)",
    )


def add_engine_options(parser: argparse._ActionsContainer) -> None:
    """`--device`, `--dtype`, `--offload` (on a parser or an argument group)."""
    parser.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    parser.add_argument("--dtype", choices=("auto", "fp16", "bf16", "fp32"), default="auto")
    parser.add_argument("--offload", choices=("none", "model", "sequential"), default="none")


def engine_options(args: argparse.Namespace) -> EngineOptions:
    return EngineOptions(device=args.device, dtype=args.dtype, offload=args.offload)


def models_dir(args: argparse.Namespace) -> Path:
    return args.models_dir if args.models_dir is not None else default_models_dir()
