"""`acetate serve`: the local generation server (HTTP + WebSocket)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from acetate.cli import places
from acetate.cli.common import (
    add_engine_options,
    add_store_options,
    engine_options,
    extra_models_dirs,
    models_dir,
)
from acetate.cli.serve_options import (
    add_backend_options,
    apply_config,
    check_backend_flags,
    ray_backend,
    ray_settings,
)


def default_output_dir() -> Path:
    """$ACETATE_OUTPUT_DIR → the settings file → the checkout's `outputs/server` → user data."""
    return places.output_place(None).path


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
        "--token",
        default=None,
        help="require this bearer token (default: $ACETATE_TOKEN); its holder is an admin",
    )
    parser.add_argument(
        "--tokens",
        type=Path,
        default=None,
        metavar="FILE",
        help="one `name token [admin]` per line: a token per person, each owning its jobs "
        "(mode 600, tokens of >= 128 bits; re-read on SIGHUP)",
    )
    parser.add_argument("--tls-cert", type=Path, default=None, help="serve HTTPS/WSS: PEM cert")
    parser.add_argument("--tls-key", type=Path, default=None, help="the certificate's PEM key")
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
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="where job results are kept (default: $ACETATE_OUTPUT_DIR, the settings file's "
        "output_dir, the checkout's outputs/server, else the user data folder)",
    )
    parser.add_argument(
        "--keep-days", type=float, default=7.0, help="delete results older than this"
    )
    parser.add_argument(
        "--keep-gb", type=float, default=20.0, help="delete the oldest results past this total"
    )
    parser.add_argument("--max-queued", type=int, default=16, help="queued jobs allowed per client")
    parser.add_argument(
        "--max-queued-per-address", type=int, default=32, help="queued jobs per peer address"
    )
    parser.add_argument(
        "--max-queued-total", type=int, default=256, help="queued jobs on the whole server"
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="drop a connection whose request head is not complete after S seconds",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="answer 408 when a job's request body takes longer than S seconds",
    )
    add_store_options(parser)
    add_engine_options(parser)
    add_backend_options(parser)
    parser.set_defaults(run=run, serve_parser=parser)


def run(args: argparse.Namespace) -> int:
    apply_config(args, args.serve_parser)  # --config FILE fills what the flags left out
    check_backend_flags(args)
    from acetate.api.config import GiB, ServerConfig

    config = ServerConfig(
        output_dir=args.output_dir or default_output_dir(),
        host=args.host,
        port=args.port,
        listen=args.listen,
        token=args.token or os.environ.get("ACETATE_TOKEN") or None,
        tokens_file=args.tokens,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        max_queued_per_peer=args.max_queued_per_address,
        max_queued_total=args.max_queued_total,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        allowed_hosts=tuple(args.allowed_host),
        allowed_origins=tuple(args.allow_origin),
        max_queued_per_client=args.max_queued,
        max_age_s=args.keep_days * 24 * 3600,
        max_total_bytes=int(args.keep_gb * GiB),
    )
    config.check()  # before the heavy imports: an unsafe bind is refused at once
    settings = ray_settings(args) if args.backend == "ray" else None  # likewise bad Ray flags

    import logging

    from aiohttp import web

    from acetate.api import redact
    from acetate.api.app import create_app, runner_options, ssl_context
    from acetate.api.auth import TokenRegistry
    from acetate.api.startup import open_models, startup_lines
    from acetate.engine.engine import Engine

    redact.install()
    TokenRegistry(config.token, config.tokens_file)  # a bad tokens file: refused before loading
    context = ssl_context(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    store, notes = open_models(models_dir(args), extra_models_dirs(args))
    engine = Engine(store, engine_options(args))
    for line in notes + startup_lines(config, engine, store):
        print(line, flush=True)
    backend = None
    if settings is not None:
        extra = extra_models_dirs(args)
        backend = ray_backend(settings, models_dir(args), extra, engine_options(args), config)
        print(f"Ray backend: {settings.slots} replica slot(s); the queue is here", flush=True)
    app = create_app(config, engine, store, backend)
    web.run_app(
        app,
        host=config.bind_host,
        port=config.port,
        ssl_context=context,
        print=None,
        **runner_options(config),
    )
    return 0
