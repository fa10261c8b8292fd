"""`acetate serve | generate | models | export | bench | doctor | train | eval | data`.

Each sub-command lives in its own module with `add_parser(subparsers)`; heavy imports
(torch, diffusers, aiohttp) happen inside the command so `acetate --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from acetate import __version__
from acetate.errors import AcetateError, InputError

COMMANDS = ("serve", "generate", "models", "export", "bench", "doctor", "train", "eval", "data")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acetate", description="Transparent image layers with LayerDiffusion."
    )
    parser.add_argument("--version", action="version", version=f"acetate {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the Python traceback of unexpected errors"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"acetate.cli.{name}")
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # transformers warns at import about optional image processors we never use.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except InputError as error:
        message = error.message
        if error.field and error.field.startswith("-") and error.field not in message:
            message = f"{error.field}: {message}"  # a CLI-only error names its flag
        print(f"acetate {args.command}: error: {message}", file=sys.stderr)
        return 2
    except AcetateError as error:
        print(f"acetate {args.command}: {error.code}: {error.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"acetate {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        # A bug or an environment failure: one line, the traceback only with --debug.
        if args.debug:
            traceback.print_exc()
        text = " ".join(str(error).split())[:500] or "(no message)"
        hint = "" if args.debug else " (run with --debug for the traceback)"
        print(
            f"acetate {args.command}: unexpected error: {type(error).__name__}: {text}{hint}",
            file=sys.stderr,
        )
        return 1
