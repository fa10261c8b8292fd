"""The app factory: `create_app(config, engine, store)` → a ready `web.Application`."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from typing import Any

from aiohttp import web

from acetate.api import redact
from acetate.api.auth import TicketBook, TokenRegistry
from acetate.api.config import ServerConfig
from acetate.api.keys import (
    BACKEND,
    CACHE,
    CONFIG,
    ENGINE,
    HUB,
    MODELS,
    PSD_LOCKS,
    QUEUE,
    TICKETS,
    TOKENS,
    ModelCatalog,
)
from acetate.api.metrics import setup_metrics
from acetate.api.middlewares import RedactingAccessLogger, error_middleware, security_middleware
from acetate.api.routes import setup_routes
from acetate.api.ws import Hub
from acetate.backends.base import Backend
from acetate.backends.local import LocalBackend
from acetate.errors import InputError
from acetate.jobs.cache import LayerCache
from acetate.jobs.queue import JobQueue
from acetate.jobs.store import JobStore
from acetate.jobs.worker import GenerationEngine

#: Builds the backend once the app's queue and layer cache exist (`acetate serve --backend`).
BackendFactory = Callable[[JobQueue, LayerCache, ServerConfig], Backend]

log = logging.getLogger(__name__)


def create_app(
    config: ServerConfig,
    engine: GenerationEngine,
    store: ModelCatalog,
    backend: BackendFactory | None = None,
) -> web.Application:
    """A fresh application; `store` is the `ModelStore` (for GET /api/models); `backend`
    builds where jobs run (default: `LocalBackend`, one thread on `engine`)."""
    config.check()
    redact.install()  # no token or ticket in any log record from here on
    tokens = TokenRegistry(config.token, config.tokens_file)
    tickets = TicketBook(config.ws_ticket_ttl_s)
    app = web.Application(
        client_max_size=config.max_body_bytes,
        middlewares=[error_middleware, security_middleware(config, tokens, tickets)],
    )
    queue = JobQueue(
        JobStore(config.output_dir),
        max_queued_per_client=config.max_queued_per_client,
        max_queued_per_peer=config.max_queued_per_peer,
        max_queued_total=config.max_queued_total,
    )
    app[TOKENS] = tokens
    app[TICKETS] = tickets
    cache = LayerCache(config.raw_cache_bytes)
    app[CONFIG] = config
    app[ENGINE] = engine
    app[MODELS] = store
    app[QUEUE] = queue
    app[CACHE] = cache
    if backend is None:
        app[BACKEND] = LocalBackend(
            queue,
            engine,
            cache,
            preview_interval_s=config.preview_interval_s,
            preview_max_side=config.preview_max_side,
            shutdown_timeout_s=config.shutdown_timeout_s,
        )
    else:
        app[BACKEND] = backend(queue, cache, config)
    app[HUB] = Hub(queue, max_message_bytes=config.max_ws_message_bytes)
    app[PSD_LOCKS] = {}
    app.cleanup_ctx.append(jobs_context)
    if config.tokens_file is not None:
        app.cleanup_ctx.append(reload_on_sighup)
    app.on_shutdown.append(app[HUB].close_all)
    setup_routes(app)
    setup_metrics(app)
    return app


def runner_options(config: ServerConfig) -> dict[str, Any]:
    """Keyword arguments for `web.AppRunner` / `web.run_app`: the redacting access log and the
    header timeout (aiohttp closes a connection whose request head is not complete within
    `keepalive_timeout` of its opening or of its previous response)."""
    return {
        "access_log_class": RedactingAccessLogger,
        "keepalive_timeout": config.header_timeout_s,
        # After an early answer (408, 413…) the rest of a body is drained at most this long.
        "lingering_time": min(5.0, config.body_timeout_s),
        "shutdown_timeout": config.shutdown_timeout_s,
    }


def ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    """`--tls-cert/--tls-key` → a server SSL context (TLS 1.2+), or None for plain HTTP."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as error:
        raise InputError(f"--tls-cert/--tls-key: cannot load: {error}", field="tls_cert") from None
    return context


async def reload_on_sighup(app: web.Application) -> AsyncIterator[None]:
    """`kill -HUP`: re-read `--tokens FILE` (a bad file keeps the tokens in force)."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, app[TOKENS].reload)
    except (NotImplementedError, AttributeError, RuntimeError, ValueError):
        log.warning("SIGHUP is not available here: restart the server to reload --tokens")
        yield
        return
    yield
    loop.remove_signal_handler(signal.SIGHUP)


async def jobs_context(app: web.Application) -> AsyncIterator[None]:
    """Restore finished jobs, run the backend and the retention sweep; stop them cleanly."""
    queue, config = app[QUEUE], app[CONFIG]
    restored = await asyncio.to_thread(queue.restore)
    if restored:
        log.info("restored %d finished jobs from %s", restored, queue.store.root)
    await sweep(queue, config)  # before serving: expired results are never shown
    worker = asyncio.create_task(app[BACKEND].run(), name="acetate-worker")
    sweeper = asyncio.create_task(sweep_forever(queue, config), name="acetate-expiry")
    yield
    sweeper.cancel()
    await queue.cancel_all()
    worker.cancel()
    for task in (sweeper, worker):
        with suppress(asyncio.CancelledError):
            await task
    try:
        await app[BACKEND].release()
    except Exception:
        log.exception("releasing the engine failed")
    await app[BACKEND].close()


async def sweep(queue: JobQueue, config: ServerConfig) -> None:
    """Delete finished jobs past the retention limits (age, then total size)."""
    try:
        deleted = await queue.expire(
            max_age_s=config.max_age_s, max_total_bytes=config.max_total_bytes
        )
    except OSError:
        log.exception("result retention sweep failed")
        return
    if deleted:
        log.info("deleted %d expired jobs", len(deleted))


async def sweep_forever(queue: JobQueue, config: ServerConfig) -> None:
    while True:
        await asyncio.sleep(config.expire_interval_s)
        await sweep(queue, config)
