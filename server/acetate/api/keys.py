"""Typed application state (`web.AppKey`), set once by `create_app`."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiohttp import web

from acetate.api.auth import TicketBook, TokenRegistry
from acetate.api.config import ServerConfig
from acetate.api.ws import Hub
from acetate.backends.base import Backend
from acetate.jobs.cache import LayerCache
from acetate.jobs.queue import JobQueue
from acetate.jobs.worker import GenerationEngine


class ModelCatalog(Protocol):
    """What the API needs of `acetate.engine.store.models.ModelStore`."""

    def describe(self) -> dict[str, Any]: ...


CONFIG = web.AppKey("config", ServerConfig)
ENGINE = web.AppKey("engine", GenerationEngine)
MODELS = web.AppKey("models", ModelCatalog)
QUEUE = web.AppKey("queue", JobQueue)
CACHE = web.AppKey("cache", LayerCache)
#: Where jobs run (`LocalBackend` or `RayBackend`).
BACKEND = web.AppKey("backend", Backend)
HUB = web.AppKey("hub", Hub)
TOKENS = web.AppKey("tokens", TokenRegistry)
TICKETS = web.AppKey("tickets", TicketBook)
#: One lock per job whose PSD is being built, so two requests build it once.
PSD_LOCKS = web.AppKey("psd_locks", dict[str, asyncio.Lock])
