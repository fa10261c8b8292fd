"""Options shared by several sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from acetate.cli import places
from acetate.engine.options import EngineOptions


def default_models_dir() -> Path:
    """$ACETATE_MODELS_DIR → the settings file → the checkout's `models/` → user data folder."""
    return places.models_place(None).path


def add_store_options(parser: argparse._ActionsContainer) -> None:
    """`--models-dir`, `--extra-models-dir` (on a parser or an argument group)."""
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="model store (default: $ACETATE_MODELS_DIR, the settings file's models_dir, the "
        "checkout's models/, else the user data folder; `acetate doctor` shows which)",
    )
    parser.add_argument(
        "--extra-models-dir",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="an existing ComfyUI / Forge / A1111 models folder (repeatable; "
        "`acetate models link DIR` records one for good)",
    )


def add_engine_options(parser: argparse._ActionsContainer) -> None:
    """`--device`, `--dtype`, `--offload`, `--quantize`, `--decoder` (on a parser or a group)."""
    parser.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    parser.add_argument("--dtype", choices=("auto", "fp16", "bf16", "fp32"), default="auto")
    parser.add_argument(
        "--offload",
        choices=("none", "model", "sequential", "group"),
        default="none",
        help="keep weights in CPU memory: whole models (model), every layer (sequential) or "
        "block groups (group: Qwen-Image-Layered on CUDA)",
    )
    parser.add_argument(
        "--quantize",
        choices=("none", "nf4", "int8"),
        default="none",
        help="load Qwen-Image-Layered's transformer and text encoder in 4-bit NF4 or 8-bit "
        "(bitsandbytes, CUDA only)",
    )
    parser.add_argument(
        "--decoder",
        choices=("auto", "eager"),
        default="auto",
        help="transparent decoder: auto runs the prepared ONNX Runtime decoder on the CPU where "
        "acetate[fast-decoder] is installed (see `acetate doctor`), eager never does",
    )


def engine_options(args: argparse.Namespace) -> EngineOptions:
    return EngineOptions(
        device=args.device,
        dtype=args.dtype,
        offload=args.offload,
        quantize=args.quantize,
        decoder=getattr(args, "decoder", "auto"),
    )


def models_dir(args: argparse.Namespace) -> Path:
    return places.models_place(args.models_dir).path


def extra_models_dirs(args: argparse.Namespace) -> list[Path]:
    """The folders linked in the settings file, then every --extra-models-dir."""
    return places.extra_models_dirs(list(args.extra_models_dir))
