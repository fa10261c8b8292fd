"""The app factory: `create_app(config, engine, store)` → a ready `web.Application`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import suppress

from aiohttp import web

from acetate.api.config import ServerConfig
from acetate.api.keys import (
    CACHE,
    CONFIG,
    ENGINE,
    HUB,
    MODELS,
    PSD_LOCKS,
    QUEUE,
    WORKER,
    ModelCatalog,
)
from acetate.api.middlewares import error_middleware, security_middleware
from acetate.api.routes import setup_routes
from acetate.api.ws import Hub
from acetate.jobs.cache import LayerCache
from acetate.jobs.queue import JobQueue
from acetate.jobs.store import JobStore
from acetate.jobs.worker import GenerationEngine, Worker

log = logging.getLogger(__name__)


def create_app(
    config: ServerConfig,
    engine: GenerationEngine,
    store: ModelCatalog,
) -> web.Application:
    """A fresh application; `store` is the `ModelStore` (for GET /api/models)."""
    config.check()
    app = web.Application(
        client_max_size=config.max_body_bytes,
        middlewares=[error_middleware, security_middleware(config)],
    )
    queue = JobQueue(
        JobStore(config.output_dir), max_queued_per_client=config.max_queued_per_client
    )
    cache = LayerCache(config.raw_cache_bytes)
    app[CONFIG] = config
    app[ENGINE] = engine
    app[MODELS] = store
    app[QUEUE] = queue
    app[CACHE] = cache
    app[WORKER] = Worker(
        queue,
        engine,
        cache,
        preview_interval_s=config.preview_interval_s,
        preview_max_side=config.preview_max_side,
        shutdown_timeout_s=config.shutdown_timeout_s,
    )
    app[HUB] = Hub(queue, max_message_bytes=config.max_ws_message_bytes)
    app[PSD_LOCKS] = {}
    app.cleanup_ctx.append(jobs_context)
    app.on_shutdown.append(app[HUB].close_all)
    setup_routes(app)
    return app


async def jobs_context(app: web.Application) -> AsyncIterator[None]:
    """Restore finished jobs, run the worker and the retention sweep; stop them cleanly."""
    queue, config = app[QUEUE], app[CONFIG]
    restored = await asyncio.to_thread(queue.restore)
    if restored:
        log.info("restored %d finished jobs from %s", restored, queue.store.root)
    await sweep(queue, config)  # before serving: expired results are never shown
    worker = asyncio.create_task(app[WORKER].run(), name="acetate-worker")
    sweeper = asyncio.create_task(sweep_forever(queue, config), name="acetate-expiry")
    yield
    sweeper.cancel()
    await queue.cancel_all()
    worker.cancel()
    for task in (sweeper, worker):
        with suppress(asyncio.CancelledError):
            await task
    try:
        await app[WORKER].release()
    except Exception:
        log.exception("releasing the engine failed")
    app[WORKER].executor.shutdown(wait=True)


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
