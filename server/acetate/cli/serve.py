"""`acetate serve`: the local generation server (HTTP + WebSocket)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from acetate.cli.common import (
    DEFAULT_MODELS_DIR,
    add_engine_options,
    add_store_options,
    engine_options,
    models_dir,
)


def default_output_dir() -> Path:
    """`$ACETATE_OUTPUT_DIR`, else the checkout's `outputs/server`, else ~/.acetate/outputs."""
    env = os.environ.get("ACETATE_OUTPUT_DIR")
    if env:
        return Path(env).expanduser()
    if (DEFAULT_MODELS_DIR / "README.md").is_file():
        return DEFAULT_MODELS_DIR.parent / "outputs" / "server"
    return Path.home() / ".acetate" / "outputs"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the local generation server for the Krita and Photoshop plugins",
        description="Serve the HTTP + WebSocket API (docs/protocol.md). Binds 127.0.0.1 unless "
        "told otherwise; any other address needs a token.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7865)
    parser.add_argument(
        "--listen", action="store_true", help="bind all interfaces (LAN); needs --token"
    )
    parser.add_argument(
        "--token", default=None, help="require this bearer token (default: $ACETATE_TOKEN)"
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another Host name/address clients use to reach this server (repeatable)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="an exact Origin value to accept (repeatable)",
    )
    parser.add_argument("--output-dir", type=Path, default=None, help="where job results are kept")
    parser.add_argument(
        "--keep-days", type=float, default=7.0, help="delete results older than this"
    )
    parser.add_argument(
        "--keep-gb", type=float, default=20.0, help="delete the oldest results past this total"
    )
    parser.add_argument("--max-queued", type=int, default=16, help="queued jobs allowed per client")
    add_store_options(parser)
    add_engine_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from acetate.api.config import GiB, ServerConfig

    config = ServerConfig(
        output_dir=args.output_dir or default_output_dir(),
        host=args.host,
        port=args.port,
        listen=args.listen,
        token=args.token or os.environ.get("ACETATE_TOKEN") or None,
        allowed_hosts=tuple(args.allowed_host),
        allowed_origins=tuple(args.allow_origin),
        max_queued_per_client=args.max_queued,
        max_age_s=args.keep_days * 24 * 3600,
        max_total_bytes=int(args.keep_gb * GiB),
    )
    config.check()  # before the heavy imports: an unsafe bind is refused at once

    import logging

    from aiohttp import web

    from acetate.api.app import create_app
    from acetate.api.middlewares import RedactingAccessLogger
    from acetate.api.startup import open_models, startup_lines
    from acetate.engine.engine import Engine

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    store, notes = open_models(models_dir(args), args.extra_models_dir)
    engine = Engine(store, engine_options(args))
    for line in notes + startup_lines(config, engine, store):
        print(line, flush=True)
    app = create_app(config, engine, store)
    web.run_app(
        app,
        host=config.bind_host,
        port=config.port,
        access_log_class=RedactingAccessLogger,
        shutdown_timeout=config.shutdown_timeout_s,
        print=None,
    )
    return 0
