"""The WebSocket hub: `/api/ws` subscriptions and event fan-out.

Each socket has an outbox drained by its own sender task, so a slow client never delays the
others and a preview's JSON header and binary frame stay adjacent. Only the handler reads from
a socket. Sockets live in `Hub.connections` and are removed in `finally`, closed on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Literal

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from acetate.api.auth import LOCAL, Principal
from acetate.api.jsonsafe import loads
from acetate.api.middlewares import principal_of
from acetate.errors import InputError
from acetate.jobs.job import JOB_ID
from acetate.jobs.queue import JobQueue
from acetate.protocol import JobError, JobEvent, JobMessage

log = logging.getLogger(__name__)

#: Previews are dropped while a socket has this many messages waiting (they are replaceable).
PREVIEW_BACKLOG = 4
#: A client this far behind is disconnected rather than buffered without end.
MAX_BACKLOG = 10_000


class WsCommand(BaseModel):
    """A client → server message."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["subscribe", "unsubscribe"]
    jobs: list[str] = Field(max_length=1000)


class Connection:
    """One open socket, its subscriptions and its outbox."""

    def __init__(self, ws: web.WebSocketResponse, principal: Principal = LOCAL) -> None:
        self.ws = ws
        self.principal = principal
        self.jobs: set[str] = set()
        self.outbox: asyncio.Queue[JobMessage | None] = asyncio.Queue()
        self.sender = asyncio.create_task(self._send_loop())
        self.closing: asyncio.Task[bool] | None = None

    def send(self, message: JobMessage) -> None:
        if self.closing is not None:
            return
        backlog = self.outbox.qsize()
        if message.type is JobEvent.preview and backlog >= PREVIEW_BACKLOG:
            return
        if backlog >= MAX_BACKLOG:
            log.warning("closing a WebSocket that is %d messages behind", backlog)
            self.sender.cancel()
            self.closing = asyncio.create_task(self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER))
            return
        self.outbox.put_nowait(message)

    async def _send_loop(self) -> None:
        while (message := await self.outbox.get()) is not None:
            if self.ws.closed:
                return
            try:
                await self.ws.send_json(message.json())
                if message.binary is not None:
                    await self.ws.send_bytes(message.binary)
            except (ConnectionError, RuntimeError):
                return

    async def close(self) -> None:
        self.outbox.put_nowait(None)
        with suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(self.sender, 5.0)
        await self.ws.close()


def protocol_error(code: str, message: str, job_id: str | None = None) -> JobMessage:
    """An `error` event about the socket's own messages (not about a job's run)."""
    return JobMessage.failed(job_id, JobError(code=code, message=message))


class Hub:
    """Routes queue events to the sockets subscribed to each job."""

    def __init__(self, queue: JobQueue, *, max_message_bytes: int) -> None:
        self.queue = queue
        self.max_message_bytes = max_message_bytes
        self.connections: set[Connection] = set()
        self.subscribers: dict[str, set[Connection]] = {}
        queue.add_listener(self.publish)

    def publish(self, message: JobMessage) -> None:
        if message.job_id is None:
            return
        for connection in list(self.subscribers.get(message.job_id, ())):
            connection.send(message)

    def subscribe(self, connection: Connection, job_ids: list[str]) -> None:
        for job_id in job_ids:
            job = self.queue.jobs.get(job_id) if JOB_ID.fullmatch(job_id) else None
            if job is None:
                shown = job_id if JOB_ID.fullmatch(job_id) else None
                connection.send(protocol_error("not_found", f"no job {job_id[:80]!r}", shown))
                continue
            if not connection.principal.may_touch(job.owner):
                connection.send(
                    protocol_error("forbidden", f"job {job_id} belongs to someone else", job_id)
                )
                continue
            connection.jobs.add(job_id)
            self.subscribers.setdefault(job_id, set()).add(connection)
            for message in self.queue.state_messages(job):
                connection.send(message)

    def unsubscribe(self, connection: Connection, job_ids: list[str]) -> None:
        for job_id in job_ids:
            connection.jobs.discard(job_id)
            subscribers = self.subscribers.get(job_id)
            if subscribers is not None:
                subscribers.discard(connection)
                if not subscribers:
                    del self.subscribers[job_id]

    def handle_text(self, connection: Connection, text: str) -> None:
        try:
            command = WsCommand.model_validate(loads(text, "message", "message"))
        except InputError as error:
            connection.send(protocol_error("bad_message", f"not a valid message: {error.message}"))
            return
        except (ValueError, ValidationError) as error:
            detail = str(error).splitlines()[0][:200]
            connection.send(protocol_error("bad_message", f"not a valid message: {detail}"))
            return
        if command.type == "subscribe":
            self.subscribe(connection, command.jobs)
        else:
            self.unsubscribe(connection, command.jobs)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """GET /api/ws: the socket's only reader."""
        ws = web.WebSocketResponse(max_msg_size=self.max_message_bytes, heartbeat=30.0)
        await ws.prepare(request)
        connection = Connection(ws, principal_of(request))
        self.connections.add(connection)
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    self.handle_text(connection, message.data)
                elif message.type is WSMsgType.BINARY:
                    connection.send(protocol_error("bad_message", "binary messages are not used"))
                elif message.type is WSMsgType.ERROR:
                    log.info("WebSocket closed with error: %s", ws.exception())
        finally:
            self.connections.discard(connection)
            self.unsubscribe(connection, list(connection.jobs))
            await connection.close()
        return ws

    async def close_all(self, app: web.Application) -> None:
        """`on_shutdown`: close every socket so clients know to reconnect."""
        for connection in list(self.connections):
            connection.sender.cancel()
            with suppress(Exception):
                await connection.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
