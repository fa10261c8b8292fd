"""Helpers for the server tests: a live server, event following, test images."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

from acetate.api.app import create_app, runner_options, ssl_context
from acetate.api.config import ServerConfig
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
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

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


async def start_server(
    config: ServerConfig, engine: Any, store: Any, backend: Any = None
) -> LiveServer:
    """`backend`: a `create_app` backend factory (default: the local worker)."""
    app = create_app(config, engine, store, backend)
    options = {**runner_options(config), "shutdown_timeout": 5.0}
    runner = web.AppRunner(app, **options)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", config.port, ssl_context=ssl_context(config))
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


class BlockingEngine:
    """The real engine, except that `stream` waits for `gate` (or the job's cancel) first:
    jobs stay running/queued as long as a test needs."""

    def __init__(self, engine: Any) -> None:
        import threading

        self.engine = engine
        self.gate = threading.Event()

    @property
    def device_name(self) -> str:
        return str(self.engine.device_name)

    def prepare(self, params: Any, images: Any) -> Any:
        return self.engine.prepare(params, images)

    def stream(self, prepared: Any, images: Any, callback: Any = None, cancel: Any = None) -> Any:
        from acetate.errors import GenerationCancelled

        while not self.gate.wait(0.02):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled("cancelled while blocked")
        yield from self.engine.stream(prepared, images, callback, cancel)

    def release(self) -> None:
        self.engine.release()


async def raw_http(port: int, data: bytes, *, timeout: float = 30.0) -> bytes:
    """Send raw bytes on a fresh connection; everything the server answers until it closes."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def status_of_raw(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def body_of_raw(answer: bytes) -> Any:
    import json

    head, _, body = answer.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        size, _, rest = body.partition(b"\r\n")
        body = rest[: int(size, 16)]
    return json.loads(body)


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    content_length: int | None = None,
) -> bytes:
    """A raw HTTP/1.1 request (the bytes exactly as given: no client normalises them)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or content_length is not None:
        lines.append(f"Content-Length: {len(body) if content_length is None else content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
