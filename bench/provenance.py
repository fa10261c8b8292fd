"""Shared by the benchmarks: the commit measured, and where built model stores are cached."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path


def commit() -> str:
    """`git describe --always --dirty` of the checkout, or "unknown" outside one."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def add_cache_argument(parser: argparse.ArgumentParser) -> None:
    """`--cache DIR`: where full-size random model stores are built once and kept
    (`$ACETATE_BENCH_CACHE`, else `~/.cache/acetate-bench`)."""
    default = os.environ.get("ACETATE_BENCH_CACHE", Path.home() / ".cache" / "acetate-bench")
    parser.add_argument("--cache", type=Path, default=Path(default))
