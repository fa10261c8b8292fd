"""Helpers for the server tests: a live server, event following, test images."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

from acetate.api.app import create_app
from acetate.api.config import ServerConfig
from acetate.api.middlewares import RedactingAccessLogger
from acetate.client import AcetateClient
from acetate.protocol import FINAL_EVENTS, JobMessage

#: Small, fast request fields for the tiny models.
FAST = {"steps": 2, "decode": "fast", "seed": 3}


@dataclass
class LiveServer:
    """A running server: its URL, app and runner (stop it with `stop()`)."""

    app: web.Application
    runner: web.AppRunner
    port: int
    config: ServerConfig
    clients: list[AcetateClient] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, token: str | None = None) -> AcetateClient:
        client = AcetateClient(self.url, token if token is not None else self.config.token)
        self.clients.append(client)
        return client

    async def stop(self) -> None:
        for client in self.clients:
            await client.close()
        await self.runner.cleanup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_server(config: ServerConfig, engine: Any, store: Any) -> LiveServer:
    app = create_app(config, engine, store)
    runner = web.AppRunner(app, access_log_class=RedactingAccessLogger, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", config.port)
    await site.start()
    return LiveServer(app, runner, config.port, config)


async def follow(client: AcetateClient, job_id: str) -> list[JobMessage]:
    """Every event of one job until its final event."""
    return [message async for message in client.events([job_id])]


def final(messages: list[JobMessage]) -> JobMessage:
    last = messages[-1]
    assert last.type in FINAL_EVENTS, [m.type for m in messages]
    return last


def mask(width: int, height: int) -> np.ndarray:
    selection = np.zeros((height, width), np.uint8)
    selection[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
    return selection
