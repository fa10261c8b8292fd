"""`acetate bench`: run the benchmarks of a source checkout (bench/*.py)."""

from __future__ import annotations

import argparse
import runpy
import sys

SUITES = ("decoder", "export", "modes", "server", "train")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run benchmarks (ratios against a baseline measured in the same run)",
        description="Runs bench/<suite>.py from a source checkout; extra arguments pass through.",
    )
    parser.add_argument("suite", choices=(*SUITES, "all"), nargs="?", default="all")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the suite")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from acetate.cli.places import checkout_root
    from acetate.errors import InputError

    root = checkout_root()
    if root is None or not (root / "bench").is_dir():
        raise InputError("benchmarks ship with the source checkout only (bench/ not found)")
    bench_dir = root / "bench"
    suites = SUITES if args.suite == "all" else (args.suite,)
    for suite in suites:
        script = bench_dir / f"{suite}.py"
        print(f"== bench/{suite}.py", flush=True)
        saved, saved_path = sys.argv, list(sys.path)
        sys.argv = [str(script), *args.rest]
        sys.path.insert(0, str(bench_dir))  # as `python bench/<suite>.py` would
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as exit_:
            if exit_.code not in (None, 0):
                return int(exit_.code) if isinstance(exit_.code, int) else 1
        finally:
            sys.argv, sys.path[:] = saved, saved_path
    return 0
